"""Shared fixtures: real servers (PostgreSQL, Redis, Chromium) on free loopback ports, stopped by PID.

Under CI (CI=true) a missing server binary fails the test instead of skipping it: .ci/run installs them.
"""
import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "test-artifacts"  # screenshots and other things a person may want to look at


def free_port() -> int:
    "A TCP port on 127.0.0.1 that nothing listens on right now."
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, timeout: float = 30.0, proc: subprocess.Popen | None = None) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before listening on {port}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise TimeoutError(f"nothing listened on 127.0.0.1:{port} within {timeout}s")


def stop(proc: subprocess.Popen, sig=signal.SIGTERM, timeout: float = 15.0) -> None:
    "Stop a server by PID (its whole process group), escalating to SIGKILL."
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)


def missing(what: str):
    "Skip on a developer machine without `what`; fail under CI, where .ci/run must have installed it."
    if os.environ.get("CI"):
        pytest.fail(f"{what} is not installed: .ci/run should have installed it")
    pytest.skip(f"{what} is not installed")


@pytest.fixture
def fsml_home(tmp_path, monkeypatch):
    "A fresh embedded store for one test: FSML_HOME in a temp dir, other URLs unset."
    home = tmp_path / "home"
    monkeypatch.setenv("FSML_HOME", str(home))
    for key in ("FSML_DB_URL", "FSML_STORE_URL", "FSML_QUEUE_URL", "FSML_TOKEN", "FSML_API_URL"):
        monkeypatch.delenv(key, raising=False)
    return home


@pytest.fixture(scope="session")
def postgres_url(tmp_path_factory):
    "A real PostgreSQL server from Debian's binaries: initdb into a temp dir, a free loopback port."
    bins = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not bins:
        missing("PostgreSQL (apt-get install postgresql)")
    bindir = Path(bins[-1]).parent
    import tempfile
    root = Path(tempfile.mkdtemp(prefix="fsml-pg-"))  # not under pytest's 0700 tmp: the server runs as postgres
    data = root / "data"
    as_postgres = []
    if os.geteuid() == 0:  # initdb refuses root
        shutil.chown(root, "postgres")
        as_postgres = ["runuser", "-u", "postgres", "--"]
    subprocess.run(as_postgres + [str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres",
                                  "--no-sync"], check=True, capture_output=True)
    port = free_port()
    proc = subprocess.Popen(
        as_postgres + [str(bindir / "postgres"), "-D", str(data), "-p", str(port), "-h", "127.0.0.1",
                       "-k", str(data), "-c", "fsync=off", "-c", "max_connections=200"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_for_port(port, proc=proc)
        for _ in range(50):  # the port opens a moment before connections are accepted
            ok = subprocess.run([str(bindir / "pg_isready"), "-h", "127.0.0.1", "-p", str(port)],
                                capture_output=True).returncode == 0
            if ok:
                break
            time.sleep(0.2)
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    finally:
        stop(proc, signal.SIGINT)  # fast shutdown
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def postgres_db(postgres_url):
    "A fresh, empty database on the session's PostgreSQL server."
    import uuid
    import sqlalchemy as sa
    name = "t_" + uuid.uuid4().hex[:12]
    admin = sa.create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {name}")
    admin.dispose()
    yield postgres_url.rsplit("/", 1)[0] + "/" + name


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory):
    "A real redis-server on a free loopback port, no persistence."
    binary = shutil.which("redis-server")
    if not binary:
        missing("redis-server (apt-get install redis-server)")
    port = free_port()
    workdir = tmp_path_factory.mktemp("redis")
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", str(workdir), "--maxmemory-policy", "noeviction"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_for_port(port, proc=proc)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        stop(proc)


CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]


@pytest.fixture(scope="session")
def browser():
    "Debian's headless Chromium driven by Playwright (never `playwright install`)."
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        missing("Chromium (apt-get install chromium)")
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=path, headless=True, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="session")
def artifacts_dir():
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


def fsml(*args, env=None, check=True, timeout=600, cwd=None) -> subprocess.CompletedProcess:
    "Run the `fsml` console command of this environment, as a user would."
    exe = Path(sys.executable).parent / "fsml"
    return subprocess.run([str(exe), *map(str, args)], capture_output=True, text=True, env=env, check=check,
                          timeout=timeout, cwd=cwd)


def stored_and_fetched(home: Path, site_url: str) -> tuple:
    "The store at `home` after a stopped crawl or import: items and fetch rows, each by its path on `site_url`."
    import sqlalchemy as sa

    from fullstack_ml.store import connect, fetches, items

    engine = connect(f"sqlite:///{home / 'fsml.db'}")
    with engine.connect() as conn:
        stored = {r.source_url.removeprefix(site_url): r for r in conn.execute(sa.select(items))}
        fetched = {r.url.removeprefix(site_url): r for r in conn.execute(sa.select(fetches))}
    engine.dispose()
    return stored, fetched
