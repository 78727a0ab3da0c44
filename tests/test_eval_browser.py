"""The evaluation app in a real browser: Voila serves nbs/apps/eval.ipynb, Chromium clicks the confusion matrix,
reads an item's lineage (labels with consensus's verdict, sources) and the retraining gate's decisions.

The store is seeded directly (items with tiny images and their sources, one evaluation with its predictions, one
gate decision), so no model is trained.
"""
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from conftest import free_port, stop, wait_for_port
from PIL import Image

from fullstack_ml.store import connect, now, runs, tasks

CLASSES = ["0", "1", "2"]
# (true label, predicted label) of each item: cell (1, 2) holds three items, cell (2, 1) one
PAIRS = [("0", "0")] * 3 + [("1", "1")] * 2 + [("1", "2")] * 3 + [("2", "2")] * 2 + [("2", "1")]
# what a hostile crawled page can put in a caption and its own URL: both must reach the reader as text
HOSTILE_CAPTION = '<img src=x onerror="window.pwned=1"><b>bold</b>'
HOSTILE_PAGE_URL = 'https://gallery.example/p?q="><script>window.pwned=2</script>'
# one decision of the retraining gate, in the shape the gate records (runs row of kind "gate")
GATE = {"candidate": 0.91, "production": 0.9, "n": 200, "b01": 3, "b10": 5, "p_value": 0.727, "delta": 0.01}
HOSTILE_REASON = "McNemar's exact p = 0.727 is not below alpha 0.05 <img src=x onerror=\"window.pwned=3\">"


def _png(value: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (8, 8), value).save(buffer, format="PNG")
    return buffer.getvalue()


def seed_store() -> dict:
    "Items with distinct tiny images and one evaluation of them; returns {(true, predicted): [item ids]}."
    from fullstack_ml.metrics import record_evaluation
    from fullstack_ml.store import items, now, open_files, put_blob

    engine, store = connect(), open_files()
    cells = {}
    with engine.begin() as conn:
        for number, (true, predicted) in enumerate(PAIRS):
            sha = put_blob(store, _png(20 * number))
            conn.execute(items.insert().values(id=sha, width=8, height=8, format="PNG", origin="demo",
                                               caption=f"handwritten digit {true} {HOSTILE_CAPTION}",
                                               page_url=HOSTILE_PAGE_URL, weak_label=true,
                                               created_at=now()))
            cells.setdefault((true, predicted), []).append(sha)
    ids, labels, outputs = [], [], []
    for (true, predicted), members in cells.items():
        for item in members:
            ids.append(item)
            labels.append(true)
            outputs.append({"label": predicted, "scores": {c: 0.8 if c == predicted else 0.1 for c in CLASSES}})
    record_evaluation(engine, "run-seeded", "v-seeded", "test", ids, labels, outputs, CLASSES)
    from fullstack_ml.annotate import ensure_project
    from fullstack_ml.labels import import_weak_labels
    from fullstack_ml.store import item_sources, runs
    ensure_project(engine, "digits")
    import_weak_labels(engine, "digits")  # each item's caption label: the one label consensus has, so "agreed"
    with engine.begin() as conn:
        for number, item in enumerate(ids):
            conn.execute(item_sources.insert().values(item_id=item, source_url=f"https://gallery.example/{number}.png",
                                                      page_url=HOSTILE_PAGE_URL, licence="CC0", fetched_at=now()))
        conn.execute(runs.insert().values(id="gate-seeded", kind="gate", status="refused", created_at=now(), metrics=GATE,
                                          meta={"candidate": "digits@2", "production": "digits@1",
                                                "held_out": "the whole test split", "reason": HOSTILE_REASON}))
    return cells


@pytest.fixture
def eval_app_url(fsml_home):
    cells = seed_store()
    port = free_port()
    exe = Path(sys.executable).parent / "fsml"
    proc = subprocess.Popen([str(exe), "eval", "app", "--port", str(port)], env=dict(os.environ),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for_port(port, timeout=60, proc=proc)
        yield f"http://127.0.0.1:{port}/", cells
    finally:
        stop(proc)


def shown_items(page) -> list[str]:
    return sorted(page.eval_on_selector_all(".fsml-grid .fsml-item", "nodes => nodes.map(n => n.dataset.item)"))


@pytest.mark.slow
def test_clicking_a_confusion_cell_shows_exactly_its_items(eval_app_url, browser, artifacts_dir):
    url, cells = eval_app_url
    page = browser.new_page(viewport={"width": 1200, "height": 1000})
    page.goto(url, timeout=90_000)
    page.wait_for_selector(".fsml-cm-1-2", timeout=90_000)
    for (true, predicted) in [("1", "2"), ("2", "1"), ("0", "0")]:
        i, j = CLASSES.index(true), CLASSES.index(predicted)
        page.click(f".fsml-cm-{i}-{j}")
        expected = sorted(cells[(true, predicted)])
        page.wait_for_function(
            "n => document.querySelectorAll('.fsml-grid .fsml-item').length === n", arg=len(expected), timeout=30_000)
        assert shown_items(page) == expected, f"cell ({true}, {predicted})"
        page.wait_for_function("n => document.querySelector('.fsml-count').textContent === String(n)",
                               arg=len(expected), timeout=30_000)
    page.click(".fsml-cm-1-2")
    page.wait_for_function("ids => [...document.querySelectorAll('.fsml-grid .fsml-item')].map(n => n.dataset.item)"
                           ".sort().join() === ids", arg=",".join(sorted(cells[("1", "2")])), timeout=30_000)
    page.click(".fsml-grid .fsml-details >> nth=0")
    page.wait_for_selector(".fsml-detail .fsml-provenance", timeout=30_000)
    detail = page.inner_text(".fsml-detail")
    assert "handwritten digit 1" in detail
    assert HOSTILE_CAPTION in detail and HOSTILE_PAGE_URL in detail, "caption and URL are shown as their text"
    assert page.eval_on_selector_all(".fsml-detail img[src='x'], .fsml-detail script, .fsml-detail .fsml-provenance b",
                                     "nodes => nodes.length") == 0, "no element was made from a crawled caption"
    assert page.evaluate("() => window.pwned") is None
    labels = page.inner_text(".fsml-detail .fsml-labels")
    assert "weak:" in labels and "agreed" in labels, "the lineage lists each label with consensus's verdict"
    sources = page.inner_text(".fsml-detail .fsml-sources")
    assert HOSTILE_PAGE_URL in sources and "https://gallery.example/" in sources and "CC0" in sources
    shown = page.inner_text(".fsml-detail h4").split()[-1]  # the item id's first 16 characters
    page.click(".fsml-detail .fsml-review")
    page.wait_for_selector("text=queued for review at top priority", timeout=30_000)
    with connect().connect() as conn:
        queued = conn.execute(sa.select(tasks.c.item_id, tasks.c.priority, tasks.c.reason)).all()
    assert [(q.item_id[:16], q.priority) for q in queued] == [(shown, 100)] and "eval app" in queued[0].reason
    page.screenshot(path=str(artifacts_dir / "eval_app.png"), full_page=True)
    page.click("text=gate decisions")
    page.wait_for_selector(".fsml-gates", timeout=30_000)
    gates = page.inner_text(".fsml-gates")
    for shown_text in ("digits@2", "digits@1", "refused", "0.727", "200", "the whole test split", HOSTILE_REASON):
        assert shown_text in gates, shown_text
    assert page.eval_on_selector_all(".fsml-gates img", "nodes => nodes.length") == 0
    with connect().begin() as conn:  # a retrain decides while the page is open: the refresh button shows it
        conn.execute(runs.insert().values(id="gate-later", kind="gate", status="promoted", created_at=now(),
                                          metrics=GATE, meta={"candidate": "digits@9", "production": "digits@9",
                                                              "held_out": "the whole test split", "reason": "better"}))
    assert "digits@9" not in page.inner_text(".fsml-gates")
    page.click(".fsml-gates-refresh")
    page.wait_for_selector(".fsml-gates >> text=digits@9", timeout=30_000)
    assert page.evaluate("() => window.pwned") is None
    page.screenshot(path=str(artifacts_dir / "eval_app_gates.png"), full_page=True)
    page.close()
