"""The registry: atomic numbered publishing (threads on SQLite, processes on PostgreSQL), aliases that only move to
verified artifacts, and refusing tampered or unknown artifacts (also via the CLI)."""
import json
import multiprocessing
import queue
import threading

import numpy as np
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


def _publish_at_once(db_url: str, store_url: str, run_ids: list, barrier, results) -> None:
    "One publisher process: wait for the others, then publish `run_ids` one after another as fast as it can."
    from fullstack_ml.registry import publish

    engine, store = connect(db_url), open_files(store_url)
    barrier.wait(timeout=120)
    for run_id in run_ids:
        results.put(publish(run_id, engine=engine, store=store))


def test_concurrent_publisher_processes_on_postgresql_get_distinct_verifiable_versions(postgres_db, tmp_path):
    store_url = str(tmp_path / "files")
    engine, store = connect(postgres_db), open_files(store_url)
    processes, per_process = 4, 3
    run_ids = [[make_run(engine, store, 10 * p + k) for k in range(per_process)] for p in range(processes)]
    spawn = multiprocessing.get_context("spawn")
    barrier, results = spawn.Barrier(processes), spawn.Queue()
    workers = [spawn.Process(target=_publish_at_once, args=(postgres_db, store_url, ids, barrier, results))
               for ids in run_ids]
    for worker in workers:
        worker.start()
    rows = []
    while len(rows) < processes * per_process and (any(w.is_alive() for w in workers) or not results.empty()):
        try:
            rows.append(results.get(timeout=1))
        except queue.Empty:
            pass
    for worker in workers:
        worker.join(timeout=60)
        assert worker.exitcode == 0, "a publisher failed: see its traceback above"
    assert sorted(r["version"] for r in rows) == list(range(1, processes * per_process + 1))
    assert len({r["path"] for r in rows}) == len(rows)  # no two publishers shared a folder
    assert sorted(r["run_id"] for r in rows) == sorted(run_id for ids in run_ids for run_id in ids)
    for row in rows:  # each version's files are its own run's, whole: every checksum holds
        manifest = verify(f"digits@{row['version']}", engine, store)
        assert manifest["run_id"] == row["run_id"]
        assert json.loads(store.read(f"{row['path']}/manifest.json"))["run_id"] == row["run_id"]
    engine.dispose()


def test_promote_verifies_first_and_refuses_a_tampered_artifact(fsml_home):
    publish_untrained(seed=1)  # promoted to production
    row = publish_untrained(seed=2, promote_to=None)
    store = open_files()
    name = f"{row['path']}/weights.safetensors"
    data = bytearray(store.read(name))
    data[len(data) // 2] ^= 0x01
    store.write(name, bytes(data))
    with pytest.raises(ArtifactError, match="weights.safetensors does not match its checksum"):
        promote("digits", row["version"])
    assert resolve("digits@production") == ("digits", 1)  # the alias did not move
    done = fsml("registry", "promote", "digits", str(row["version"]), check=False)
    assert done.returncode == 1 and "does not match its checksum" in done.stderr and "Traceback" not in done.stderr
    assert resolve("digits@production") == ("digits", 1)


def test_promote_and_rollback_move_the_alias_and_the_cli_reports_it(fsml_home):
    publish_untrained(seed=1)
    publish_untrained(seed=2, promote_to=None)
    assert resolve("digits@production") == ("digits", 1)
    moved = json.loads(fsml("registry", "promote", "digits", "2", "production", "--json").stdout)
    assert moved == {"name": "digits", "alias": "production", "version": 2, "previous": 1}
    listing = [json.loads(line) for line in fsml("registry", "list", "--json").stdout.splitlines()]
    assert [(r["version"], r["aliases"]) for r in listing] == [(2, ["production"]), (1, [])]
    shown = json.loads(fsml("registry", "show", "digits@production", "--json").stdout)
    assert shown["version"] == 2
    assert set(shown["files"]) == {"weights.safetensors", "model.py", "preprocessing.py", "project.py"}
    assert shown["labels"] == [str(d) for d in range(10)] and shown["dataset_version"] == "ds-test"
    rolled = json.loads(fsml("registry", "rollback", "digits", "--json").stdout)
    assert (rolled["version"], rolled["previous"]) == (1, 2) and resolve("digits@production") == ("digits", 1)
    from fullstack_ml.gate import decisions  # a hand rollback is on the record, like `fsml retrain --rollback`
    assert [(d["id"], d["status"], d["meta"]["production"]) for d in decisions(name="digits")] == [
        (rolled["decision"], "rolled_back", "digits@1")]
    promote("digits", 2)
    assert rollback("digits")["version"] == 1
    with pytest.raises(ValueError, match="no earlier version"):
        rollback("digits")
    with pytest.raises(FileNotFoundError, match="no model 'digits@7'"):
        promote("digits", 7)


def test_an_artifact_from_the_first_releases_still_verifies_and_loads(fsml_home):
    "Artifacts of the first releases: arch 'digitnet', gray preprocessing without a colour, model.py only."
    import torch

    from fullstack_ml.model import build_model, weights_to_bytes
    from fullstack_ml.registry import MANIFEST_FORMAT, artifact_path
    from fullstack_ml.store import aliases, now

    store, engine = open_files(), connect()
    config = {"model": {"arch": "digitnet", "width": 8, "input_size": 16, "dropout": 0.2, "members": 1, "tta": False},
              "preprocessing": {"image_size": 8, "invert": "auto", "fit": "box"}, "labels": [str(d) for d in range(10)]}
    torch.manual_seed(0)
    files = {"weights.safetensors": weights_to_bytes(build_model(config)), "model.py": b"# the old network code\n"}
    manifest = {"format": MANIFEST_FORMAT, "name": "digits", "run_id": "old-run", "created_at": now(),
                "labels": config["labels"], "preprocessing": config["preprocessing"], "config": config,
                "files": {n: {"sha256": sha256_hex(d), "size": len(d)} for n, d in files.items()}}
    files["manifest.json"] = json.dumps(manifest, indent=2, sort_keys=True).encode()
    for name, data in files.items():
        store.write(f"{artifact_path('digits', 1)}/{name}", data)
    with engine.begin() as conn:
        conn.execute(artifacts.insert().values(name="digits", version=1, path=artifact_path("digits", 1),
                                               run_id="old-run", created_at=now(), metrics={},
                                               manifest_sha256=sha256_hex(files["manifest.json"])))
        conn.execute(aliases.insert().values(name="digits", alias="production", version=1, updated_at=now(),
                                             history=[]))
    assert sorted(verify("digits@1")["_files"]) == ["manifest.json", "model.py", "weights.safetensors"]
    model = load()  # the only model
    assert model.ref == "digits@1" and model.predictor.preprocessing.config["colour"] == "gray"
    assert len(model.predictor.predict([np.zeros((8, 8), dtype=np.float32)])) == 1


def test_a_resnet_on_colour_images_trains_and_round_trips_with_its_manifest(fsml_home):
    "A colour project made in the test: a resnet trains a few steps, publishes, loads from the manifest only."
    import io

    from PIL import Image

    from fullstack_ml.annotate import enqueue
    from fullstack_ml.datasets import add_items, snapshot
    from fullstack_ml.labels import import_weak_labels
    from fullstack_ml.preprocessing import Preprocessing
    from fullstack_ml.project import ImageSpec, Project, save_project
    from fullstack_ml.train import get_run, make_config, train

    colours = {"red": (220, 40, 40), "green": (40, 200, 60), "blue": (40, 60, 220), "yellow": (230, 220, 40)}
    project = Project("paint", list(colours), ImageSpec(side=16, colour="rgb", mean=(0.5, 0.5, 0.5), std=(0.25,) * 3))
    rng = np.random.default_rng(0)

    def picture(name: str) -> bytes:  # a patch of the colour on a noisy background, any size
        width, height = rng.integers(20, 48, 2)
        pixels = rng.integers(0, 255, (height, width, 3)).astype(np.uint8)
        pixels[height // 4:, width // 4:] = colours[name]
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, "PNG")
        return buffer.getvalue()

    engine, store = connect(), open_files()
    save_project(engine, project)
    ids = add_items(engine, store, [(picture(name), name) for name in list(colours) * 15])
    enqueue(engine, "paint", ids)
    import_weak_labels(engine, "paint")
    summary = train(snapshot(engine, store, "paint"), make_config(project, epochs=3, width=4, batch_size=16),
                    progress=False)
    run = get_run(engine, summary["run_id"])
    assert run["config"]["model"]["arch"] == "resnet" and run["config"]["model"]["in_channels"] == 3
    row = publish(summary["run_id"])
    assert row["name"] == "paint"  # named after its project
    manifest = verify("paint@1")
    assert (manifest["project"], manifest["labels"], manifest["model"]["arch"]) == ("paint", list(colours), "resnet")
    assert Preprocessing.from_config(manifest["preprocessing"]) == Preprocessing.from_spec(project.image)
    model = load("paint@1")
    assert model.predictor.labels == list(colours)
    assert model.predictor.preprocessing == Preprocessing.from_spec(project.image)
    answers = model.predictor.predict([picture("red"), picture("blue")])
    assert all(set(a["scores"]) == set(colours) and a["label"] in colours for a in answers)
