"""The flywheel's gate: a retrain learns only from trusted labels, a clearly better candidate is promoted and an
equal one refused (both on the recorded statistics), and requests in flight while production swaps all succeed."""
import json
import threading
import time

import pytest
from serve_helpers import publish_untrained

from conftest import fsml

N_ITEMS = 600  # bundled digits, weakly labelled with their truth
TRAINING = {"epochs": 8, "batch_size": 16, "width": 8, "seed": 0}  # a small network that is clearly better than an untrained one


@pytest.fixture
def digits_home(fsml_home, monkeypatch):
    "A store of digits labelled by weak labels, six training items flagged as label errors, an untrained production."
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the machine is shared: one thread trains as fast as several
    from fullstack_ml.annotate import Priority, enqueue, ensure_project
    from fullstack_ml.datasets import add_bundled_items, split_of
    from fullstack_ml.labels import import_weak_labels
    from fullstack_ml.store import connect, open_files

    engine, store = connect(), open_files()
    ensure_project(engine, "digits")
    ids = add_bundled_items(engine, store, "digits", range(N_ITEMS))
    import_weak_labels(engine, "digits")
    flagged = [item_id for item_id in ids if split_of(item_id) == "train"][:6]
    enqueue(engine, "digits", flagged, priority=Priority.LABEL_ISSUE, reason="suspected label error")
    publish_untrained(seed=0)  # digits@1 in production: an untrained network, about chance
    return engine, store, ids, flagged


def wait_for(condition, timeout_s: float, what: str) -> None:
    deadline = time.time() + timeout_s
    while not condition():
        if time.time() > deadline:
            raise TimeoutError(f"waited {timeout_s}s for {what}")
        time.sleep(0.1)


def test_a_retrain_promotes_a_better_candidate_refuses_an_equal_one_and_serving_loses_no_request(digits_home):
    from fullstack_ml import gate
    from fullstack_ml.datasets import read_manifest
    from fullstack_ml.serve import Service, send_images
    from fullstack_ml.store import get_blob
    from fullstack_ml.train import get_run

    engine, store, ids, flagged = digits_home
    images, answers, stop = [get_blob(store, item_id) for item_id in ids[:4]], [], threading.Event()
    with Service(workers=1, batch_size=8, max_delay_ms=5) as service:  # follows the production alias

        def keep_asking():  # a client that never stops while production moves
            while not stop.is_set():
                answers.extend(send_images(service.url, images, 2, service.headers))
                time.sleep(0.05)

        sender = threading.Thread(target=keep_asking, daemon=True)
        sender.start()
        try:
            better = gate.retrain(progress=False, **TRAINING)
            wait_for(lambda: any(a["model"] == "digits@2" for a in answers), 60,
                     f"the worker to serve digits@2 ({better['status']}: {better['reason']}; {sender.is_alive()=}, "
                     f"{len(answers)} answers, the last {answers[-2:]})")
            equal = gate.retrain(progress=False, **TRAINING)  # same labels, same seed: the same model again
            rolled = gate.rollback("digits", reason="test: undo the promotion")
            seen = len(answers)
            wait_for(lambda: any(a["model"] == "digits@1" for a in answers[seen:]), 60, "the swap back to digits@1")
        finally:
            stop.set()
            sender.join(60)

    # the clearly better candidate: promoted on the margin and on McNemar's exact test, numbers recorded
    assert better["promoted"] and better["candidate"] == "digits@2" and better["production"] == "digits@2"
    assert better["previous"] == "digits@1" and "unknown" in better["held_out"]  # production's data is not here
    assert better["candidate_accuracy"] > 0.6 and better["production_accuracy"] < 0.3
    assert better["b10"] > 5 * max(better["b01"], 1) and better["p_value"] < 1e-6
    assert better["delta"] >= gate.GATE.margin and better["n"] >= 50
    record = gate.decisions(engine)[-1]
    assert (record["id"], record["status"], record["meta"]["candidate"]) == (better["decision"], "promoted", "digits@2")
    assert record["metrics"]["p_value"] == better["p_value"] and record["metrics"]["b10"] == better["b10"]
    assert record["config"] == {"margin": gate.GATE.margin, "alpha": gate.GATE.alpha, "test": "mcnemar_exact",
                                "min_fresh": gate.GATE.min_fresh}

    # judged on test items only (never the validation items early stopping looked at), none of them flagged
    manifest = read_manifest(better["dataset"], engine, store)
    test_items = set(manifest.item_id[manifest.split == "test"])
    assert set(record["meta"]["item_ids"]) == test_items and len(test_items) == better["n"]

    # trained on what we trust: the flagged, unreviewed training items were left out, and the run says which
    run = get_run(engine, better["run_id"])
    assert better["excluded"] == 6 and set(run["meta"]["excluded"]["items"]) == set(flagged)

    # the equal candidate: refused, production unmoved, the reason and the statistics recorded
    assert not equal["promoted"] and equal["candidate"] == "digits@3" and equal["production"] == "digits@2"
    assert equal["previous"] == "digits@2" and equal["dataset"] == better["dataset"]
    assert equal["b01"] == equal["b10"] == 0 and equal["delta"] == 0.0 and equal["p_value"] == 1.0
    assert equal["candidate_accuracy"] == equal["production_accuracy"] == better["candidate_accuracy"]
    assert "below the margin" in equal["reason"] and "may be chance" in equal["reason"]
    statuses = [(row["status"], row["meta"].get("candidate")) for row in gate.decisions(engine, "digits")]
    assert statuses == [("rolled_back", None), ("refused", "digits@3"), ("promoted", "digits@2")]
    assert rolled["production"] == "digits@1" and rolled["previous"] == "digits@2"

    # serving through both swaps: every request answered, by the old model and then the new one
    assert len(answers) > 20 and {a["status"] for a in answers} == {200}, [a for a in answers if a["status"] != 200]
    served = [a["model"] for a in answers]
    first_new = served.index("digits@2")
    assert served[0] == "digits@1" and "digits@1" in served[first_new:]


def test_fsml_retrain_rollback_and_decisions_from_the_command_line(fsml_home):
    publish_untrained(seed=0)
    publish_untrained(seed=1)  # digits@2 promoted over digits@1 by hand
    rolled = json.loads(fsml("retrain", "--rollback", "--json").stdout)
    assert (rolled["status"], rolled["production"], rolled["previous"]) == ("rolled_back", "digits@1", "digits@2")
    listed = [json.loads(line) for line in fsml("retrain", "--decisions", "--json").stdout.splitlines()]
    assert [row["id"] for row in listed] == [rolled["decision"]] and "item_ids" not in listed[0]["meta"]
    refused = fsml("retrain", "--rollback", check=False)  # nothing earlier to go back to: a one-line error
    assert refused.returncode != 0 and "no earlier version" in refused.stderr


def test_the_cycle_profile_trains_once_in_the_serve_stage_on_the_profiles_project(digits_home):
    import nbformat

    from fullstack_ml import gate
    from fullstack_ml.annotate import ensure_project
    from fullstack_ml.pipeline import load_profile, notebooks_dir, profile_stages, stages_to_run
    from fullstack_ml.serve import run_serve

    serve = load_profile("cycle")["serve"]
    assert serve == {"retrain": True, "project": "digits"}  # the stage is told its project
    planned = stages_to_run(None, profile_stages("cycle"), "digits")
    assert "train" not in planned and planned[-1] == "serve", planned  # the serve stage's retrain is the one training
    cells = nbformat.read(notebooks_dir() / "07_serve.ipynb", as_version=4).cells
    parameters = next(cell.source for cell in cells if "parameters" in cell.metadata.get("tags", []))
    assert "retrain: bool = False" in parameters and "project: str | None = None" in parameters  # papermill's names
    run_cell = next(cell.source for cell in cells if "save_result(run_serve(" in cell.source)
    assert "project=project" in run_cell, run_cell
    engine, _, _, flagged = digits_home
    ensure_project(engine, "shapes")  # a second project: the store's "only project" no longer exists
    result = run_serve(n_requests=8, concurrency=2, batch_size=4, retrain=True, project="digits")  # its own defaults
    assert result["promoted"] and result["production"] == "digits@2" and result["excluded"] == len(flagged)
    assert result["ok"] == 8 and result["served_by"] == ["digits@2"] and result["p_value"] < gate.GATE.alpha
    assert gate.decisions(engine)[0]["id"] == result["decision"]


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_the_gate_judges_on_test_items_new_since_production_and_records_it(database, fsml_home, monkeypatch, request):
    if database == "postgresql":
        monkeypatch.setenv("FSML_DB_URL", request.getfixturevalue("postgres_db"))
    from serve_helpers import make_dataset_version, make_run

    from fullstack_ml import gate
    from fullstack_ml.annotate import Priority, enqueue, ensure_project
    from fullstack_ml.datasets import read_manifest
    from fullstack_ml.registry import publish
    from fullstack_ml.store import connect, open_files

    engine, store = connect(), open_files()
    ensure_project(engine, "digits")

    def candidate(seed: int, version: str) -> str:  # an untrained network published from a run on `version`
        row = publish(make_run(engine, store, seed=seed, dataset_version=version), engine=engine, store=store)
        return f"{row['name']}@{row['version']}"

    old = make_dataset_version(engine, store, n=100)
    first = gate.promote_if_better(candidate(1, old), engine, store)
    assert first["promoted"] and first["previous"] is None and "no production" in first["reason"]
    new = make_dataset_version(engine, store, n=400)  # the same 100 items and 300 more
    manifest, seen = read_manifest(new, engine, store), set(read_manifest(old, engine, store).item_id)
    fresh = [i for i in manifest.item_id[manifest.split == "test"] if i not in seen]
    enqueue(engine, "digits", fresh[:1], priority=Priority.LABEL_ISSUE, reason="suspected label error")
    second = gate.promote_if_better(candidate(2, new), engine, store, min_fresh=20)
    assert second["previous"] == "digits@1" and second["n"] == len(fresh) - 1 >= 20
    assert "new since production's dataset version" in second["held_out"] and "1 flagged" in second["held_out"]
    records = gate.decisions(engine, "digits")
    assert [r["id"] for r in records] == [second["decision"], first["decision"]]
    assert set(records[0]["meta"]["item_ids"]) == set(fresh[1:])  # never an item an earlier gate judged on
    assert records[0]["status"] == ("promoted" if second["promoted"] else "refused")
    assert records[0]["metrics"]["n"] == second["n"] and records[0]["meta"]["production"] == "digits@1"
