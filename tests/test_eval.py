"""Evaluation: metrics against scikit-learn, McNemar by hand, confident learning, and `fsml eval` end to end."""
import json

import numpy as np
import pytest
import sqlalchemy as sa
from conftest import fsml
from sklearn.calibration import calibration_curve
from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support

from fullstack_ml import eval as ev
from fullstack_ml import metrics as m

CLASSES = [str(d) for d in range(5)]


@pytest.fixture(scope="module")
def fixed_predictions():
    "Fixed labels, predictions and confidences: class '4' is never true, class '3' never predicted."
    rng = np.random.default_rng(42)
    truth = rng.choice(CLASSES[:4], 300)
    guess = np.where(rng.random(300) < 0.75, truth, rng.choice(CLASSES, 300))
    guess = np.where(guess == "3", "2", guess)
    confidence = np.round(rng.uniform(0.2, 1.0, 300), 3)
    return truth.tolist(), guess.tolist(), confidence


def test_confusion_matrix_and_accuracy_match_sklearn(fixed_predictions):
    truth, guess, _ = fixed_predictions
    matrix = m.confusion(truth, guess, CLASSES)
    assert (matrix == confusion_matrix(truth, guess, labels=CLASSES)).all()
    assert m.accuracy(matrix) == pytest.approx(accuracy_score(truth, guess))


def test_per_class_precision_recall_f1_match_sklearn(fixed_predictions):
    truth, guess, _ = fixed_predictions
    metrics = m.per_class_metrics(m.confusion(truth, guess, CLASSES), CLASSES)
    precision, recall, f1, support = precision_recall_fscore_support(truth, guess, labels=CLASSES, zero_division=0)
    for i, label in enumerate(CLASSES):
        assert metrics[label]["precision"] == pytest.approx(precision[i])
        assert metrics[label]["recall"] == pytest.approx(recall[i])
        assert metrics[label]["f1"] == pytest.approx(f1[i])
        assert metrics[label]["support"] == support[i]
    assert metrics["3"]["precision"] == 0.0 and metrics["4"]["support"] == 0  # the zero-division cases


@pytest.mark.parametrize("bins", [5, 10, 15])
def test_reliability_and_ece_match_sklearn_calibration_curve(fixed_predictions, bins):
    truth, guess, confidence = fixed_predictions
    correct = np.array(truth) == np.array(guess)
    table = m.reliability(confidence, correct, bins)
    prob_true, prob_pred = calibration_curve(correct, confidence, n_bins=bins, strategy="uniform")
    assert table["accuracy"].to_numpy() == pytest.approx(prob_true)
    assert table["confidence"].to_numpy() == pytest.approx(prob_pred)
    assert table["count"].sum() == len(confidence)
    expected = (np.abs(prob_true - prob_pred) * table["count"].to_numpy()).sum() / len(confidence)
    assert m.expected_calibration_error(confidence, correct, bins) == pytest.approx(expected)


def test_confidence_histogram_counts_every_prediction_once(fixed_predictions):
    import matplotlib
    matplotlib.use("Agg")
    truth, guess, confidence = fixed_predictions
    correct = np.array(truth) == np.array(guess)
    ax = m.plot_confidence_histogram(confidence, correct, bins=10)
    heights = [patch.get_height() for patch in ax.patches]
    assert sum(heights) == len(confidence)
    assert heights[:10] == list(np.histogram(confidence[correct], bins=np.linspace(0, 1, 11))[0])


def test_mcnemar_on_a_hand_checkable_table():
    # b = 1 item only A got right, c = 9 only B got right: exact p = 2 * (C(10,0) + C(10,1)) / 2^10 = 22/1024;
    # continuity-corrected chi2 = (|1 - 9| - 1)^2 / 10 = 4.9, p = P(chi2_1 > 4.9) = 0.026857
    result = m.mcnemar(1, 9)
    assert result["exact_p"] == pytest.approx(22 / 1024)
    assert result["chi2"] == pytest.approx(4.9)
    assert result["chi2_p"] == pytest.approx(0.026857, abs=1e-6)
    assert m.mcnemar(0, 0)["exact_p"] == 1.0 and m.mcnemar(4, 4)["exact_p"] == 1.0


def test_compare_counts_flips_and_brackets_the_difference():
    import pandas as pd
    labels = list("0000011111")
    a = pd.DataFrame({"item_id": list("abcdefghij"), "label": labels, "predicted": list("0000111111")})
    b = pd.DataFrame({"item_id": list("abcdefghij"), "label": labels, "predicted": list("1000011110")})
    result = m.compare(a, b, rounds=500)
    assert result["right_to_wrong"] == ["a", "j"] and result["wrong_to_right"] == ["e"]
    assert result["mcnemar"]["b"] == 2 and result["mcnemar"]["c"] == 1
    interval = result["bootstrap"]
    assert interval["difference"] == pytest.approx(-0.1) and interval["low"] <= -0.1 <= interval["high"]


def test_confident_learning_finds_flipped_labels_of_separable_classes():
    rng = np.random.default_rng(0)
    true = rng.integers(0, 3, 600)
    features = np.eye(3)[true] * 4 + rng.normal(0, 1, (600, 3))
    flipped = rng.random(600) < 0.1
    given = np.where(flipped, (true + rng.integers(1, 3, 600)) % 3, true)
    probabilities, _ = m.out_of_sample_probabilities(features, given, classes=3)
    suspects = m.find_label_issues(probabilities, given)
    hits = (suspects & flipped).sum()
    assert hits / suspects.sum() >= 0.9 and hits / flipped.sum() >= 0.8


# --- end to end: items, weak labels with known errors, a dataset version, a tiny training run, `fsml eval` ---

@pytest.fixture
def trained_store(fsml_home):
    "400 digits with 8% wrong weak labels, a dataset version and a two-epoch run; returns (wrong ids, run id)."
    from sklearn.datasets import load_digits

    from fullstack_ml.annotate import enqueue, ensure_project
    from fullstack_ml.datasets import add_bundled_items, snapshot
    from fullstack_ml.labels import import_weak_labels
    from fullstack_ml.store import connect, open_files
    from fullstack_ml.train import make_config, train

    engine, store = connect(), open_files()
    target = load_digits().target[:400]
    wrong = np.random.default_rng(3).random(400) < 0.08
    weak = [str((t + 3) % 10 if w else t) for t, w in zip(target, wrong)]
    ids = add_bundled_items(engine, store, "digits", range(400), weak_labels=weak)
    ensure_project(engine, "digits")
    enqueue(engine, "digits", ids)
    import_weak_labels(engine, "digits")
    snapshot(engine, store)
    summary = train(config=make_config(epochs=2, model={"width": 8}), progress=False)
    return {i for i, w in zip(ids, wrong) if w}, summary["run_id"]


@pytest.mark.slow
def test_fsml_eval_grades_stores_and_queues_suspects(trained_store):
    from fullstack_ml.store import connect, evaluations, predictions, tasks

    wrong, run_id = trained_store
    report = json.loads(fsml("eval", "--json").stdout)
    assert {"model", "dataset", "accuracy", "per_class", "ece", "label_issues"} <= set(report)
    assert report["model"] == run_id and 0 <= report["accuracy"] <= 1 and set(report["per_class"]) == set(map(str, range(10)))
    for issue in report["label_issues"]:
        assert {"item", "label", "suggested", "score"} <= set(issue) and issue["label"] != issue["suggested"]
    suspects = {issue["item"] for issue in report["label_issues"]}
    assert len(suspects & wrong) >= 0.7 * len(suspects), "most suspects are the items whose weak label is wrong"
    assert len(suspects & wrong) >= 0.5 * len(wrong)
    judge = report["judge"]  # a 2-epoch network is no match for the pixel SVM on digits: the SVM judges
    assert judge["judge"] == "svm" and judge["valid_accuracy"]["svm"] >= judge["valid_accuracy"]["network"] - judge["margin"]

    engine = connect()
    with engine.connect() as conn:
        row = conn.execute(sa.select(evaluations).where(evaluations.c.id == report["evaluation"])).mappings().one()
        stored = conn.execute(sa.select(sa.func.count()).where(predictions.c.evaluation_id == row["id"])).scalar()
        queued = conn.execute(sa.select(tasks.c.item_id, tasks.c.priority, tasks.c.reason)
                              .where(tasks.c.item_id.in_(suspects))).all()
    assert row["dataset_version"] == report["dataset"] and stored == report["items"] and row["meta"]["judge"] == judge
    assert row["metrics"]["accuracy"] == pytest.approx(report["accuracy"])
    assert {q.item_id for q in queued} == suspects
    assert all(q.priority == 100 and q.reason.startswith("suspected label error") for q in queued)

    _, frame = m.load_evaluation(engine, report["evaluation"])  # what the app reads
    assert frame["loss"].is_monotonic_decreasing and frame["suspect"].sum() == len(suspects & set(frame["item_id"]))


@pytest.mark.slow
def test_the_network_judges_when_the_pixel_svm_falls_behind_it(trained_store):
    "Cross-validated networks: each training item judged by a network that never saw it, the rest by the graded one."
    from fullstack_ml.datasets import read_manifest
    from fullstack_ml.eval import _network_probabilities, label_judge, load_model
    from fullstack_ml.store import connect, get_blob, open_files

    _, run_id = trained_store
    engine, store = connect(), open_files()
    predictor = load_model(run_id, engine, store).predictor
    manifest = read_manifest(None, engine, store).astype({"label": str})
    # a margin of -1 puts the SVM behind any network: the rule then hands the judging to the network
    probabilities, judge = label_judge(predictor, store, manifest, "digits", engine, margin=-1.0, network_epochs=1)
    assert (judge["judge"], judge["folds"], judge["epochs"]) == ("network", 3, 1)
    assert probabilities.shape == (len(manifest), 10) and np.allclose(probabilities.sum(1), 1)
    train = (manifest["split"] == "train").to_numpy()
    images = predictor.preprocessing.batch([get_blob(store, item) for item in manifest["item_id"]])
    graded = _network_probabilities(predictor.model, images)
    assert np.allclose(probabilities[~train], graded[~train])  # validation and test: the graded network's own
    assert not np.allclose(probabilities[train], graded[train])  # training items: fold networks that never saw them
    _, default = label_judge(predictor, store, manifest, "digits", engine)
    assert default["judge"] == "svm"  # the default margin keeps the SVM on digits


@pytest.mark.slow
def test_fsml_eval_accepts_a_registry_reference_and_compares(trained_store):
    from fullstack_ml import registry
    from fullstack_ml.registry import publish
    from fullstack_ml.store import connect

    _, run_id = trained_store
    publish(run_id)
    by_run = json.loads(fsml("eval", "--model", run_id, "--no-queue", "--json").stdout)
    by_ref = json.loads(fsml("eval", "--model", "digits@1", "--no-queue", "--json").stdout)
    assert by_ref["model"] == "digits@1" and by_ref["accuracy"] == pytest.approx(by_run["accuracy"])
    result = m.compare_evaluations(connect(), by_run["evaluation"], by_ref["evaluation"], rounds=100)
    for model in (run_id, "digits@1"):  # one loaded-model type, whichever way the model is named
        loaded = ev.load_model(model)
        assert isinstance(loaded, registry.LoadedModel) and loaded.ref == model
    assert result["right_to_wrong"] == [] and result["wrong_to_right"] == []  # the same weights
    assert result["mcnemar"]["exact_p"] == 1.0


@pytest.mark.slow
def test_run_eval_draws_the_chapter_report(trained_store):
    "What the executed chapter shows: confusion, reliability and confidence plots, and the suspects' images."
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.close("all")
    result = ev.run_eval(queue=False, folds=3, show=8)
    figures = [plt.figure(number) for number in plt.get_fignums()]
    titles = [ax.get_title() for figure in figures for ax in figure.axes]
    assert "Confusion matrix" in titles and "Confidence" in titles
    assert any(title.startswith("Reliability (ECE") for title in titles)
    assert result["label_issues"] and any(
        figure._suptitle and figure._suptitle.get_text().startswith("Suspected label errors") for figure in figures)
    plt.close("all")


def test_fsml_eval_errors_are_one_line(fsml_home):
    result = fsml("eval", "--json", check=False)
    assert result.returncode == 1 and "no finished training run" in result.stderr
    assert "Traceback" not in result.stderr
    result = fsml("eval", "--model", "nope@3", check=False)
    assert result.returncode == 1 and "neither a training run in the store nor a registry model" in result.stderr
    result = fsml("eval", "app", "--host", "0.0.0.0", check=False)
    assert result.returncode == 1 and "FSML_TOKEN" in result.stderr


def test_evaluations_round_trip_on_postgresql(postgres_db):
    from fullstack_ml.store import connect

    engine = connect(postgres_db)
    outputs = [{"label": p, "scores": {c: (0.7 if c == p else 0.075) for c in CLASSES}} for p in "01124"]
    first = m.record_evaluation(engine, "run-a", "v1", "test", list("abcde"), list("01234"), outputs, CLASSES,
                                 meta={"label_issues": [{"item": "e", "label": "4", "suggested": "3", "score": 0.9,
                                                         "source": None}]})
    second = m.record_evaluation(engine, "run-b", "v1", "test", list("abcde"), list("01234"), outputs[:2] + [
        {"label": "2", "scores": {c: 0.2 for c in CLASSES}}] + outputs[3:], CLASSES)
    record, frame = m.load_evaluation(engine, first)
    assert record["metrics"]["accuracy"] == pytest.approx(0.6) and frame["suspect"].tolist().count(True) == 1
    assert m.list_evaluations(engine)["id"].tolist() == [second, first]
    result = m.compare_evaluations(engine, first, second, rounds=100)
    assert result["wrong_to_right"] == ["c"] and result["right_to_wrong"] == []


def test_the_app_kernel_stays_torch_free(fsml_home):
    "The Voila page imports the app and builds it from stored rows: no torch, no scikit-learn, no grading stage."
    import subprocess
    import sys
    code = ("import sys; from fullstack_ml.eval_app import EvalApp, eval_app, send_to_review; "
            "print(sorted(m for m in ('torch', 'sklearn', 'fullstack_ml.model', 'fullstack_ml.eval') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


APP_KERNEL = """
import sys
from fullstack_ml import auth
from fullstack_ml.eval_app import eval_app
if sys.argv[1] != "-":
    auth.set_app_user(sys.argv[1], sys.argv[2])  # what the app server does for a signed-in visitor
page = eval_app()
print(type(page).__name__, getattr(page, "value", "") or "")
"""


def _open_eval_app(*user) -> str:
    "Build the eval app as a Voila kernel would, as `user` (name, role) or as nobody signed in ('-')."
    import subprocess
    import sys
    return subprocess.run([sys.executable, "-c", APP_KERNEL, *(user or ["-"])], capture_output=True, text=True,
                          check=True).stdout


def test_the_eval_app_needs_the_evaluate_permission(fsml_home):
    "A demo-only credential (or nobody, once credentials exist) gets a refusal and no evaluation data."
    from fullstack_ml import auth
    from fullstack_ml.store import connect

    engine = connect()
    outputs = [{"label": p, "scores": {c: (0.7 if c == p else 0.075) for c in CLASSES}} for p in "01124"]
    m.record_evaluation(engine, "secret-model", "v1", "test", list("abcde"), list("01234"), outputs, CLASSES)
    auth.add_user(engine, "kim", "demo")
    refused = _open_eval_app("kim", "demo")
    assert refused.startswith("HTML") and "may not evaluate" in refused and "secret-model" not in refused
    refused = _open_eval_app()  # users exist, and nobody signed in to this kernel
    assert refused.startswith("HTML") and "nobody is signed in" in refused and "secret-model" not in refused
    assert _open_eval_app("rita", "reviewer").startswith("VBox")
