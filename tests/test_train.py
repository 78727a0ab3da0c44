"""Training: it can learn, a resumed run matches an uninterrupted one, checkpoints load without running code, runs
name their data, unknown labels fail."""
import json
import os
import pickle

import pytest
import sqlalchemy as sa
import torch
from conftest import fsml
from safetensors.torch import load as load_safetensors

from fullstack_ml.annotate import enqueue
from fullstack_ml.datasets import add_bundled_items, snapshot
from fullstack_ml.labels import import_weak_labels
from fullstack_ml.model import build_model
from fullstack_ml.project import Project, bundled_project, save_project
from fullstack_ml.registry import load_run
from fullstack_ml.store import annotations, connect, now, open_files, runs
from fullstack_ml.benchmark import benchmark_data
from fullstack_ml.train import _load_checkpoint, _save_checkpoint, fit, get_run, make_config, train

DIGITS = bundled_project("digits")

SMALL = {"model": {"width": 8}, "batch_size": 32}


def make_dataset(n: int = 120, project: Project = DIGITS) -> str:
    "A dataset version of the first `n` bundled digits with their true labels as weak labels, in the current FSML_HOME."
    engine, store = connect(), open_files()
    save_project(engine, project)
    ids = add_bundled_items(engine, store, "digits", range(n))
    enqueue(engine, project.name, ids)
    import_weak_labels(engine, project.name)
    return snapshot(engine, store, project.name)


def test_the_network_overfits_one_batch():
    (images, targets), _ = benchmark_data("digits", n=128)
    batch = (images[:64], targets[:64])
    config = make_config(DIGITS, epochs=60, lr=1e-2, batch_size=64, label_smoothing=0.0, width=8, dropout=0.0,
                         augment={"scale_x": 0.0, "scale_y": 0.0, "shift_x": 0.0, "shift_y": 0.0})
    torch.manual_seed(0)
    state = fit(build_model(config), config, batch, progress=False)
    assert state["history"][-1]["train_accuracy"] >= 0.98
    assert state["history"][-1]["train_loss"] < state["history"][0]["train_loss"] / 5


def test_an_interrupted_run_resumes_to_the_uninterrupted_result(fsml_home):
    version = make_dataset()
    config = make_config(DIGITS, epochs=5, patience=100, **SMALL)
    whole = train(version, config, progress=False)

    def crash(record):
        if record["epoch"] == 3:
            raise KeyboardInterrupt  # as if the machine went away after epoch 3's checkpoint

    with pytest.raises(KeyboardInterrupt):
        train(version, config, progress=False, callbacks=[crash])
    engine = connect()
    with engine.connect() as conn:
        failed = conn.execute(sa.select(runs.c.id).where(runs.c.status == "failed")).scalars().all()
    assert len(failed) == 1 and failed[0] != whole["run_id"]
    resumed = train(resume=failed[0], progress=False)
    assert resumed["run_id"] == failed[0] and resumed["epochs"] == 5
    assert abs(resumed["val_accuracy"] - whole["val_accuracy"]) <= 1e-6
    store = open_files()
    a = load_safetensors(store.read(get_run(engine, whole["run_id"])["checkpoint_path"]))
    b = load_safetensors(store.read(get_run(engine, resumed["run_id"])["checkpoint_path"]))
    assert max(float((a[k].float() - b[k].float()).abs().max()) for k in a) <= 1e-5
    assert get_run(engine, resumed["run_id"])["status"] == "done"


def test_the_run_record_names_its_dataset_version_and_finds_its_weights(fsml_home):
    version = make_dataset()
    out = fsml("train", "--dataset", version[:8], "--epochs", "2", "--json")
    summary = json.loads(out.stdout)
    assert {"run_id", "dataset", "val_accuracy", "train_s"} <= set(summary)
    assert summary["dataset"] == version
    run = get_run(connect(), summary["run_id"])
    assert (run["dataset_version"], run["kind"], run["status"]) == (version, "train", "done")
    assert run["package_version"] and run["config"]["labels"] == DIGITS.label_names
    assert run["metrics"]["val_accuracy"] == summary["val_accuracy"] and run["meta"]["timings"]["train_s"] > 0
    assert run["checkpoint_path"].endswith("weights.safetensors") and open_files().exists(run["checkpoint_path"])
    loaded = load_run(summary["run_id"])
    assert (loaded.name, loaded.version, loaded.manifest["run_id"]) == (summary["run_id"], None, summary["run_id"])
    answers = loaded.predictor.predict([torch.zeros(8, 8).numpy()])
    assert set(answers[0]["scores"]) == set(DIGITS.label_names)


def test_a_dataset_with_a_label_the_model_does_not_know_fails_clearly(fsml_home):
    engine = connect()
    wider = Project("digits-and-x", DIGITS.label_names + ["x"], DIGITS.image)  # an eleventh label
    make_dataset(40, wider)
    from fullstack_ml.datasets import read_manifest

    item = read_manifest().item_id[0]
    with engine.begin() as conn:
        conn.execute(annotations.insert().values(project=wider.name, item_id=item, annotator="ann", kind="label",
                                                 label="x", created_at=now()))
    version = snapshot(engine, open_files(), wider.name)
    with pytest.raises(ValueError, match=r"label\(s\) \['x'\] that the model does not know"):
        train(version, make_config(DIGITS, epochs=1), progress=False)  # a config made for the ten digits
    done = fsml("train", "--dataset", version, "--epochs", "1", "--json")  # its own project's config knows 'x'
    assert get_run(engine, json.loads(done.stdout)["run_id"])["config"]["labels"] == wider.label_names


class Payload:
    "What an attacker would plant in a checkpoint: unpickling it runs a shell command."

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_checkpoint_round_trips_and_a_pickle_with_code_is_refused(tmp_path):
    store = open_files(str(tmp_path / "files"))
    config = make_config(DIGITS, epochs=2, **SMALL)
    (images, targets), _ = benchmark_data("digits", n=128)
    saved = []
    torch.manual_seed(0)
    fit(build_model(config), config, (images[:64], targets[:64]), save=saved.append, progress=False)
    _save_checkpoint(store, "r1")(saved[-1])
    back = _load_checkpoint(store, "r1")
    assert back["epoch"] == 2 and back["history"] == saved[-1]["history"]
    assert all(torch.equal(back["model"][k], saved[-1]["model"][k]) for k in saved[-1]["model"])
    assert back["optimizer"]["param_groups"][0]["lr"] == saved[-1]["optimizer"]["param_groups"][0]["lr"]

    marker = tmp_path / "pwned"
    store.write("runs/evil/checkpoint.pt", pickle.dumps({"model": Payload(str(marker))}, protocol=2))
    with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
        _load_checkpoint(store, "evil")
    assert not marker.exists()  # the payload never ran


def test_the_benchmark_runs_beside_training_and_both_give_their_numbers_alone(fsml_home):
    "run_train trains the benchmark's seeds in processes of their own while ours trains here: no shared random state."
    from fullstack_ml.benchmark import run_benchmark
    from fullstack_ml.train import run_train

    version = make_dataset()
    beside = run_train("digits", benchmark_seeds=[0, 1], benchmark_epochs=1, benchmark_images=200, epochs=2, width=4,
                       show=False)
    torch.set_num_threads(1)  # as the workers, and as our training beside them
    alone = run_benchmark("digits", (0, 1), n=200, epochs=1, model={"width": 4}, workers=1, progress=False)
    assert [s["errors"] for s in beside["benchmark"]["seeds"]] == [s["errors"] for s in alone["seeds"]]
    again = train(version, make_config(DIGITS, seed=0, epochs=2, model={"width": 4}), progress=False, threads=1)
    history = get_run(connect(), beside["train"]["run_id"])["metrics"]["history"]
    assert [e["valid_loss"] for e in history] == [e["valid_loss"] for e in again["history"]]
    assert get_run(connect(), beside["benchmark"]["run_id"])["status"] == "done"
