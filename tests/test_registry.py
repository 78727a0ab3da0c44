"""The registry: atomic numbered publishing, aliases, and refusing tampered or unknown artifacts (also via the CLI)."""
import json
import threading

import pytest
from conftest import fsml
from serve_helpers import make_run, publish_untrained

from fullstack_ml.registry import ArtifactError, load, promote, publish, resolve, rollback, verify
from fullstack_ml.store import artifacts, connect, open_files, sha256_hex


def test_a_tampered_artifact_is_refused_at_load_and_by_verify(fsml_home):
    row = publish_untrained(seed=1)
    store = open_files()
    assert load("digits@production").version == row["version"]
    name = f"{row['path']}/weights.safetensors"
    data = bytearray(store.read(name))
    data[len(data) - 10] ^= 0x01  # one bit of one weight byte
    store.write(name, bytes(data))
    with pytest.raises(ArtifactError, match="weights.safetensors does not match its checksum"):
        load("digits@production")
    done = fsml("registry", "verify", "digits@1", check=False)
    assert done.returncode == 1
    assert "weights.safetensors" in done.stderr and "Traceback" not in done.stderr


def test_an_unknown_format_or_edited_manifest_is_refused(fsml_home):
    row = publish_untrained(seed=2)
    store, engine = open_files(), connect()
    manifest = json.loads(store.read(f"{row['path']}/manifest.json"))
    manifest["format"] = "fullstack_ml.artifact/99"
    edited = json.dumps(manifest).encode()
    store.write(f"{row['path']}/manifest.json", edited)
    with pytest.raises(ArtifactError, match="manifest.json does not match"):  # the index keeps its checksum
        verify("digits@1")
    with engine.begin() as conn:  # even with the index updated to match, the format is refused
        conn.execute(artifacts.update().values(manifest_sha256=sha256_hex(edited)))
    with pytest.raises(ArtifactError, match="unknown artifact format 'fullstack_ml.artifact/99'"):
        load("digits@1")


def test_concurrent_publishers_get_distinct_consecutive_versions(fsml_home):
    engine, store = connect(), open_files()
    run_ids = [make_run(engine, store, seed) for seed in range(4)]
    rows = []
    threads = [threading.Thread(target=lambda r=r: rows.append(publish(r, engine=engine, store=store)))
               for r in run_ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(r["version"] for r in rows) == [1, 2, 3, 4]
    for row in rows:
        assert verify(f"digits@{row['version']}")["run_id"] == row["run_id"]


def test_promote_and_rollback_move_the_alias_and_the_cli_reports_it(fsml_home):
    publish_untrained(seed=1)
    publish_untrained(seed=2, promote_to=None)
    assert resolve("digits@production") == ("digits", 1)
    moved = json.loads(fsml("registry", "promote", "digits", "2", "production", "--json").stdout)
    assert moved == {"name": "digits", "alias": "production", "version": 2, "previous": 1}
    listing = [json.loads(line) for line in fsml("registry", "list", "--json").stdout.splitlines()]
    assert [(r["version"], r["aliases"]) for r in listing] == [(2, ["production"]), (1, [])]
    shown = json.loads(fsml("registry", "show", "digits@production", "--json").stdout)
    assert shown["version"] == 2 and set(shown["files"]) == {"weights.safetensors", "model.py", "project.py"}
    assert shown["labels"] == [str(d) for d in range(10)] and shown["dataset_version"] == "ds-test"
    assert rollback("digits")["version"] == 1
    with pytest.raises(ValueError, match="no earlier version"):
        rollback("digits")
    with pytest.raises(FileNotFoundError, match="no model 'digits@7'"):
        promote("digits", 7)
