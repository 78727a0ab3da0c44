"""The store on both databases: schema creation and upgrade, atomic claims, clear errors; the file store."""
import multiprocessing
import os
import signal
import subprocess
import sys

import pytest
import sqlalchemy as sa

from fullstack_ml import store
from fullstack_ml.store import (StoreError, connect, get_blob, migrate, now, open_files, put_blob, sha256_hex,
                                write_transaction)


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'fsml.db'}"
    return request.getfixturevalue("postgres_db")


def test_schema_is_created_at_the_newest_version(db_url):
    engine = connect(db_url)
    with engine.connect() as conn:
        assert store.current_version(conn) == len(store.MIGRATIONS)
        names = set(sa.inspect(conn).get_table_names())
    assert {"items", "annotations", "leases", "tasks", "dataset_versions", "runs", "artifacts"} <= names


def test_an_old_database_upgrades_in_place_keeping_its_rows(db_url):
    engine = store.open_engine(db_url)
    migrate(engine, store.MIGRATIONS[:1])
    with engine.begin() as conn:
        conn.execute(store.projects.insert().values(name="p", labels=["a", "b"], overlap=1, created_at=now()))

    def add_note(conn):
        conn.exec_driver_sql("ALTER TABLE projects ADD COLUMN note TEXT")

    assert migrate(engine, store.MIGRATIONS[:1] + [add_note]) == 2
    assert migrate(engine, store.MIGRATIONS[:1] + [add_note]) == 2  # idempotent
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT name, note FROM projects").all() == [("p", None)]
    engine.dispose()


def test_a_failed_migration_step_leaves_the_previous_version(db_url):
    engine = store.open_engine(db_url)
    migrate(engine)

    def broken(conn):
        conn.exec_driver_sql("CREATE TABLE half_done (x INTEGER)")
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        migrate(engine, store.MIGRATIONS + [broken])
    with engine.connect() as conn:
        assert store.current_version(conn) == len(store.MIGRATIONS)
        assert "half_done" not in sa.inspect(conn).get_table_names()
    engine.dispose()


def _increment(db_url: str, n: int) -> None:
    engine = connect(db_url)
    for _ in range(n):
        with write_transaction(engine) as conn:  # read-then-write must not lose updates
            if store.is_postgres(engine):
                conn.exec_driver_sql("SELECT 1 FROM projects WHERE name = 'counter' FOR UPDATE")
            overlap = conn.execute(sa.select(store.projects.c.overlap).where(store.projects.c.name == "counter")).scalar()
            conn.execute(store.projects.update().where(store.projects.c.name == "counter").values(overlap=overlap + 1))


def test_write_transactions_do_not_lose_updates_across_processes(db_url):
    engine = connect(db_url)
    with write_transaction(engine) as conn:
        conn.execute(store.projects.insert().values(name="counter", labels=[], overlap=0, created_at=now()))
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_increment, args=(db_url, 25)) for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    with engine.connect() as conn:
        assert conn.execute(sa.select(store.projects.c.overlap)).scalar() == 100


@pytest.mark.parametrize("url, expected", [
    ("postgresql+psycopg://nobody@127.0.0.1:1/nothing", "cannot use the database at postgresql+psycopg://nobody@127.0.0.1:1/nothing"),
    ("sqlite:////dev/null/fsml.db", "check FSML_DB_URL"),
    ("nosuchdriver://x/y", "check FSML_DB_URL"),
])
def test_an_unusable_database_url_gives_one_clear_line(url, expected):
    with pytest.raises(StoreError) as info:
        connect(url)
    assert expected in str(info.value)
    assert "\n" not in str(info.value)


def test_passwords_are_not_shown_in_errors():
    with pytest.raises(StoreError) as info:
        connect("postgresql://user:hunter2@127.0.0.1:1/db")
    assert "hunter2" not in str(info.value)


def test_blobs_round_trip_and_corruption_is_detected(tmp_path):
    files = open_files(str(tmp_path / "files"))
    sha = put_blob(files, b"\x89PNG fake")
    assert sha == sha256_hex(b"\x89PNG fake")
    assert get_blob(files, sha) == b"\x89PNG fake"
    path = tmp_path / "files" / "blobs" / sha[:2] / sha
    path.write_bytes(b"flipped")
    with pytest.raises(store.IntegrityError, match="corrupt"):
        get_blob(files, sha)


WRITER = """
import sys
from fullstack_ml.store import open_files
files = open_files(sys.argv[1])
big = b"x" * (64 * 1024 * 1024)
print("writing", flush=True)
files.write("model.bin", big)
"""


def test_a_killed_writer_never_replaces_a_good_file(tmp_path):
    files = open_files(str(tmp_path / "files"))
    files.write("model.bin", b"good")
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path / "files")], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "writing"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert files.read("model.bin") in (b"good", b"x" * (64 * 1024 * 1024))  # old or new, never a half file
    assert files.list() == ["model.bin"]  # leftovers of the killed write are not listed


def test_any_fsspec_store_works(tmp_path):
    files = open_files("memory://fsml-store-test")
    sha = put_blob(files, b"abc")
    assert get_blob(files, sha) == b"abc"
    files.write("a/b.json", b"{}")
    assert "a/b.json" in files.list()
