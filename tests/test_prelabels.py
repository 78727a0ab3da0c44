"""Pre-labels and the order of the queue (chapter 03d): the production model suggests a label for every queued
item (once per version, refreshed when production moves), a suggestion never votes, and the queue serves the
most valuable label first while evaluation's flags stay on top."""
import json

import numpy as np
import pytest
import sqlalchemy as sa
from conftest import fsml
from serve_helpers import publish_untrained

from fullstack_ml.annotate import Priority, claim, enqueue, ensure_project, submit
from fullstack_ml.labels import consensus, import_weak_labels
from fullstack_ml.prelabels import (
    _explored, current_prelabels, order_queue, prelabel, set_queue_order, uncertainty, write_prelabels,
)
from fullstack_ml.store import annotations, connect, items, now, open_files, sha256_hex, tasks

DIGITS = [str(d) for d in range(10)]


@pytest.fixture(params=["sqlite", "postgresql"])
def home(request, fsml_home, monkeypatch):
    "An empty home on SQLite, or with its database on a fresh PostgreSQL database."
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    if request.param == "postgresql":
        monkeypatch.setenv("FSML_DB_URL", request.getfixturevalue("postgres_db"))
    return fsml_home


def queued_digits(n: int) -> list:
    "`n` bundled digit pictures as items of the digits project, queued, with their weak labels imported."
    from fullstack_ml.datasets import add_bundled_items

    engine, store = connect(), open_files()
    ensure_project(engine, "digits")
    ids = add_bundled_items(engine, store, "digits", range(n))
    enqueue(engine, "digits", ids)
    import_weak_labels(engine, "digits")
    return ids


def fake_items(engine, n: int, weak: str | None = None, start: int = 0) -> list:
    "`n` items without bytes (ids from `start`), all with weak label `weak`."
    ids = [sha256_hex(f"prelabel test {i}".encode()) for i in range(start, start + n)]
    with engine.begin() as conn:
        conn.execute(items.insert(), [{"id": i, "width": 8, "height": 8, "format": "PNG", "created_at": now(),
                                       "weak_label": weak} for i in ids])
    return ids


def guesses(*tops) -> np.ndarray:
    "Probabilities over DIGITS: for each (label, p), p on that label and the rest spread evenly."
    return np.array([[p if d == label else (1 - p) / 9 for d in DIGITS] for label, p in tops])


def prelabel_rows(engine) -> list:
    with engine.connect() as conn:
        return conn.execute(sa.select(annotations).where(annotations.c.kind == "prelabel")).mappings().all()


def test_prelabel_suggests_every_queued_item_once_per_version_and_refreshes_when_production_moves(home):
    ids = queued_digits(24)
    first = publish_untrained(seed=0)
    report = json.loads(fsml("annotate", "prelabel", "--json", "--batch-size", "10").stdout)
    assert (report["model"], report["queued"], report["prelabelled"], report["failed"]) == (
        f"digits@{first['version']}", 24, 24, 0)
    engine = connect()
    rows = prelabel_rows(engine)
    assert {row["item_id"] for row in rows} == set(ids)
    for row in rows:  # the agreed row: annotator model:NAME@VERSION, the top label, its probabilities in meta
        meta = row["meta"]
        assert row["annotator"] == f"model:{report['model']}" and meta["model"] == report["model"]
        scores = np.array([meta["scores"][d] for d in DIGITS])
        assert row["label"] == DIGITS[int(scores.argmax())] and meta["score"] == pytest.approx(scores.max(), abs=1e-5)
        assert 1 - meta["margin"] == pytest.approx(uncertainty(scores[None])[0], abs=1e-5)
        assert 0 <= meta["entropy"] <= 1
    again = json.loads(fsml("annotate", "prelabel", "--json").stdout)
    assert (again["prelabelled"], again["skipped"]) == (0, 24)  # the same version: nothing is predicted twice
    second = publish_untrained(seed=1)
    moved = prelabel(progress=False)
    assert (moved["model"], moved["prelabelled"]) == (f"digits@{second['version']}", 24)
    assert {s["model"] for s in current_prelabels(connect(), "digits").values()} == {moved["model"]}
    assert len(prelabel_rows(connect())) == 48  # the old suggestions stay as history


def test_a_prelabel_is_never_a_vote_nor_a_dataset_label(fsml_home):
    engine = connect()
    ensure_project(engine, "digits", DIGITS)
    captioned, bare = fake_items(engine, 2, weak="3"), fake_items(engine, 2, start=2)
    enqueue(engine, "digits", captioned + bare)
    import_weak_labels(engine, "digits")
    write_prelabels(engine, "digits", "digits@1", captioned + bare, guesses(*[("8", 0.99)] * 4), DIGITS)
    table = consensus(engine, "digits").set_index("item_id")
    assert set(table.index) == set(captioned)  # items only the model has an opinion on are not labelled
    assert (table.label == "3").all() and (table.source == "weak").all()  # the weak label, not the model's 8
    person = claim(engine, "digits", "ann", explore=0.0)[0]
    submit(engine, "digits", person, "ann", "5")
    assert consensus(engine, "digits").set_index("item_id").loc[person, "n_labels"] == 1


def test_value_order_serves_the_most_valuable_label_first_and_keeps_flags_on_top(home):
    engine = connect()
    ensure_project(engine, "digits", DIGITS)
    ids = fake_items(engine, 6, weak="4")
    enqueue(engine, "digits", ids)
    import_weak_labels(engine, "digits")
    sure, unsure, contradicted, torn = ("4", 0.99), ("4", 0.5), ("9", 0.97), ("9", 0.4)
    write_prelabels(engine, "digits", "digits@1", ids[:5], guesses(sure, unsure, contradicted, torn, sure), DIGITS)
    enqueue(engine, "digits", [ids[4]], priority=Priority.LABEL_ISSUE, reason="suspected label error")
    result = order_queue(engine, "digits", explore=0.0)
    assert (result["order"], result["ranked"], result["explored"]) == ("value", 6, 0)
    served = [claim(engine, "digits", f"person{i}", explore=0.0)[0] for i in range(6)]
    # flagged (though sure), torn and contradicted, contradicted, never predicted (0.5), unsure, sure
    assert served == [ids[4], ids[3], ids[2], ids[5], ids[1], ids[0]]


def test_random_order_is_kept_by_the_project_and_ignores_value(home):
    engine = connect()
    ensure_project(engine, "digits", DIGITS)
    ids = fake_items(engine, 60, weak="4")
    enqueue(engine, "digits", ids)
    probabilities = guesses(*[("4", p) for p in np.linspace(0.3, 0.99, 60)])
    write_prelabels(engine, "digits", "digits@1", ids, probabilities, DIGITS)
    set_queue_order(engine, "digits", "random")
    assert order_queue(engine, "digits")["order"] == "random"
    with engine.connect() as conn:
        rank = dict(conn.execute(sa.select(tasks.c.item_id, tasks.c.rank)).all())
    by_value = np.corrcoef(uncertainty(probabilities), [rank[i] for i in ids])[0, 1]
    assert abs(by_value) < 0.5  # random ranks: no relation to the model's uncertainty
    set_queue_order(engine, "digits", "value")
    explored = order_queue(engine, "digits")["explored"]
    assert explored == sum(_explored(i, 0.1) for i in ids) and 0 < explored < 20  # a stable random share
    with engine.connect() as conn:
        rank = dict(conn.execute(sa.select(tasks.c.item_id, tasks.c.rank)).all())
    valued = [i for i in ids if not _explored(i, 0.1)]
    assert {rank[i] for i in ids if _explored(i, 0.1)} <= {rank[i] for i in valued}  # random places in the queue
    assert np.corrcoef(uncertainty(probabilities)[[ids.index(i) for i in valued]], [rank[i] for i in valued]
                       )[0, 1] > 0.99


def test_status_reports_agreement_with_suggestions_and_pace_with_and_without(fsml_home):
    engine = connect()
    ensure_project(engine, "digits", DIGITS)
    ids = fake_items(engine, 6)
    enqueue(engine, "digits", ids)
    hint = {"label": "1", "model": "digits@1", "score": 0.9}
    for label, seconds, shown in (("1", 1.0, True), ("1", 2.0, True), ("1", 2.0, True), ("7", 4.0, True),
                                  ("2", 5.0, False), ("3", 7.0, False)):
        meta = {"suggestion": hint, "accepted": label == "1", "shown": shown}
        submit(engine, "digits", claim(engine, "digits", "sue")[0], "sue", label, seconds=seconds, meta=meta)
    report = json.loads(fsml("annotate", "status", "--json").stdout)["suggestions"]
    assert (report["shown"], report["hidden"], report["agreement"], report["accepted"]) == (4, 2, 0.75, 0.75)
    assert (report["seconds_with"], report["seconds_without"], report["speedup"]) == (2.0, 6.0, 3.0)
    assert "suggestions: 4 labels with one shown, 75% agree" in fsml("annotate", "status").stdout


def test_prelabel_refuses_a_model_of_another_label_set(fsml_home):
    from serve_helpers import letters_project

    queued_digits(4)
    publish_untrained(seed=0, project=letters_project())
    with pytest.raises(ValueError, match="predicts \\['alpha', 'beta', 'gamma'\\]"):
        prelabel(project="digits", model="letters@production", progress=False)
    assert prelabel_rows(connect()) == []  # the refusal wrote nothing


def test_an_accepted_suggestion_through_submit_and_claim_keeps_its_meta_on_both_backends(home):
    from fullstack_ml.annotate import submit_and_claim
    from fullstack_ml.labels import suggestion_stats

    engine = connect()
    ensure_project(engine, "digits", DIGITS)
    ids = fake_items(engine, 3)
    enqueue(engine, "digits", ids)
    write_prelabels(engine, "digits", "digits@4", ids, guesses(("6", 0.9), ("6", 0.8), ("1", 0.7)), DIGITS)
    suggestions = current_prelabels(engine, "digits")
    held = claim(engine, "digits", "ann", explore=0.0)
    for shown in (True, True, False):
        item = held[0]
        hint = {key: suggestions[item][key] for key in ("label", "model", "score")}
        label = hint["label"] if shown else "0"
        meta = {"suggestion": hint, "accepted": shown, "shown": shown}
        _, held = submit_and_claim(engine, "digits", item, "ann", label, seconds=1.0 if shown else 3.0, meta=meta,
                                   explore=0.0)
    with engine.connect() as conn:
        metas = conn.execute(sa.select(annotations.c.meta).where(annotations.c.kind == "label")
                             .order_by(annotations.c.id)).scalars().all()
    assert [m["suggestion"]["model"] for m in metas] == ["digits@4"] * 3 and [m["shown"] for m in metas] == [
        True, True, False]
    stats = suggestion_stats(engine, "digits")
    assert (stats["shown"], stats["agreement"], stats["seconds_with"], stats["seconds_without"]) == (2, 1.0, 1.0, 3.0)


def test_a_promotion_moves_the_suggestions_and_a_store_without_a_queue_is_left_alone(fsml_home):
    from fullstack_ml.prelabels import follow_production
    from fullstack_ml.registry import load

    publish_untrained(seed=0)
    assert follow_production(load("digits@production")) is None  # no project, no queue: serving goes on
    ids = queued_digits(6)
    second = publish_untrained(seed=1)
    report = follow_production(load("digits@production"))
    assert (report["model"], report["prelabelled"]) == (f"digits@{second['version']}", 6)
    assert set(current_prelabels(connect(), "digits", model=report["model"])) == set(ids)
