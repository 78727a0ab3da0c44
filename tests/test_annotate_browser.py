"""The annotation app in a real browser: Voila + headless Chromium, two annotators labelling by keyboard at once,
each named by their own token (never by the URL), a reviewer, and query parameters that stay text."""
import io
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import free_port, stop, wait_for_port
from PIL import Image, ImageDraw

from fullstack_ml.annotate import enqueue, ensure_project
from fullstack_ml.auth import add_user
from fullstack_ml.labels import annotation_history, current_labels
from fullstack_ml.project import LABELS
from fullstack_ml.store import connect, items, now, open_files, put_blob


def make_digit_items(n: int, project: str = "digits") -> list:
    "Store `n` small distinct digit images as items and queue them; return their ids."
    engine, files = connect(), open_files()
    rows = []
    for i in range(n):
        image = Image.new("L", (28, 28), 0)
        ImageDraw.Draw(image).text((9, 7), str(i % 10), fill=255)
        image.putpixel((i % 28, 27 - (i // 28) % 28), 200)  # distinct bytes, so distinct items
        buffer = io.BytesIO()
        image.save(buffer, "PNG")
        rows.append({"id": put_blob(files, buffer.getvalue()), "width": 28, "height": 28, "format": "PNG",
                         "created_at": now(), "weak_label": str(i % 10)})
    with engine.begin() as conn:
        conn.execute(items.insert(), rows)
    ensure_project(engine, project, LABELS, 1)
    enqueue(engine, project, [row["id"] for row in rows])
    return [row["id"] for row in rows]


def start_app(port: int, log_path: Path) -> subprocess.Popen:
    "`fsml annotate app` as a user runs it, in its own process group; return once it listens."
    exe = Path(sys.executable).parent / "fsml"
    with open(log_path, "w") as log:
        proc = subprocess.Popen([str(exe), "annotate", "app", "--port", str(port)], stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True, env=dict(os.environ))
    wait_for_port(port, timeout=60, proc=proc)
    assert f"http://127.0.0.1:{port}/" in log_path.read_text()  # it prints its URL
    return proc


SHOWN = ".fsml-annotate[data-item]:not([data-item=''])"


def shown_item(page) -> str:
    page.wait_for_selector(SHOWN, timeout=60_000)
    return page.get_attribute(".fsml-annotate", "data-item")


def press_and_wait(page, key: str, before: str) -> None:
    "Press `key` and wait until a different item is on screen."
    page.keyboard.press(key)
    page.wait_for_function("(before) => { const r = document.querySelector('.fsml-annotate');"
                           " return r && r.dataset.item && r.dataset.item !== before; }", arg=before, timeout=30_000)


def wait_for_labels(annotators: list, expected: int, timeout: float = 30) -> dict:
    "Current human labels per annotator, once `expected` of them are stored."
    deadline = time.time() + timeout
    while True:
        table = current_labels(connect(), "digits", kinds=("label",))
        if len(table) >= expected or time.time() > deadline:
            return {name: dict(zip(rows.item_id, rows.label)) for name, rows in table.groupby("annotator")}
        time.sleep(0.2)


@pytest.mark.slow
def test_two_annotators_label_by_keyboard(fsml_home, browser, artifacts_dir):
    make_digit_items(30)
    tokens = {name: add_user(connect(), name, "annotator") for name in ("alice", "bob")}
    port = free_port()
    proc = start_app(port, fsml_home.parent / "voila.log")
    contexts = []
    try:
        pages = {}
        for name in ("alice", "bob"):
            contexts.append(browser.new_context(viewport={"width": 900, "height": 760}))
            pages[name] = contexts[-1].new_page()
            pages[name].goto(f"http://127.0.0.1:{port}/?token={tokens[name]}")  # each signs in with their own
        for name, page in pages.items():
            shown_item(page)
            assert page.text_content(".fsml-who") == f"{name} · digits"  # the page says who they are
        pressed = {"alice": {}, "bob": {}}
        rng = random.Random(0)
        for _ in range(6):  # interleaved: both are labelling at the same time
            for name, page in pages.items():
                item, key = shown_item(page), rng.choice(LABELS)
                press_and_wait(page, key, item)
                pressed[name][item] = key
        # undo: alice's last item comes back on screen; she labels it again with another key
        page = pages["alice"]
        last_item = list(pressed["alice"])[-1]
        before = shown_item(page)
        press_and_wait(page, "Backspace", before)
        assert shown_item(page) == last_item
        new_key = str((int(pressed["alice"][last_item]) + 1) % 10)
        press_and_wait(page, new_key, last_item)
        pressed["alice"][last_item] = new_key
        page.screenshot(path=str(artifacts_dir / "annotate_app.png"))

        stored = wait_for_labels(["alice", "bob"], expected=12)
        assert stored == pressed  # what each person pressed, on the item they saw, nothing else
        assert not set(stored["alice"]) & set(stored["bob"])  # overlap 1: no item shown to both
        history = annotation_history(connect(), "digits")
        assert history[(history.kind == "label") & history.undone].item_id.tolist() == [last_item]  # kept, undone
    finally:
        for context in contexts:
            context.close()
        stop(proc)


@pytest.mark.slow
def test_app_requires_the_token_when_one_is_set(fsml_home, monkeypatch):
    import requests

    make_digit_items(2)
    monkeypatch.setenv("FSML_TOKEN", "s3cret")
    port = free_port()
    log_path = fsml_home.parent / "voila.log"
    exe = Path(sys.executable).parent / "fsml"
    with open(log_path, "w") as log:
        proc = subprocess.Popen([str(exe), "annotate", "app", "--port", str(port)], stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True, env=dict(os.environ))
    try:
        wait_for_port(port, timeout=60, proc=proc)
        printed = log_path.read_text()
        assert f"http://127.0.0.1:{port}/" in printed and "s3cret" not in printed  # the URL, never the secret
        for query in ("", "?token=wrong"):
            refused = requests.get(f"http://127.0.0.1:{port}/{query}", allow_redirects=False, timeout=30)
            assert refused.status_code in (302, 401, 403) and "fsml-annotate" not in refused.text
        assert requests.get(f"http://127.0.0.1:{port}/?token=s3cret", timeout=60).status_code == 200
    finally:
        stop(proc)


@pytest.mark.slow
def test_idle_kernels_are_culled(fsml_home):
    import requests

    make_digit_items(2)
    port = free_port()
    log_path = fsml_home.parent / "voila.log"
    exe = Path(sys.executable).parent / "fsml"
    with open(log_path, "w") as log:
        proc = subprocess.Popen([str(exe), "annotate", "app", "--port", str(port), "--cull-idle", "3"], stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True, env=dict(os.environ))
    try:
        wait_for_port(port, timeout=60, proc=proc)
        assert requests.get(f"http://127.0.0.1:{port}/", timeout=60).status_code == 200
        deadline = time.time() + 30
        while "Culling 'idle' kernel" not in log_path.read_text() and time.time() < deadline:
            time.sleep(0.5)
        assert "Culling 'idle' kernel" in log_path.read_text()  # the visitor left; its kernel is stopped
    finally:
        stop(proc)


@pytest.mark.slow
def test_reviewer_settles_a_dispute_by_keyboard(fsml_home, browser):
    from fullstack_ml.annotate import claim, submit
    from fullstack_ml.labels import consensus

    (item_id,) = make_digit_items(1)
    engine = connect()
    ensure_project(engine, "digits", LABELS, 2)
    enqueue(engine, "digits", [item_id], overlap=2)
    for person, label in (("ann", "1"), ("ben", "7")):
        submit(engine, "digits", claim(engine, "digits", person)[0], person, label)
    lead = add_user(engine, "lead", "reviewer")
    port = free_port()
    proc = start_app(port, fsml_home.parent / "voila.log")
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(f"http://127.0.0.1:{port}/?token={lead}&review=1")
        assert shown_item(page) == item_id
        assert page.text_content(".fsml-hint") == "votes: ann 1, ben 7"  # the reviewer sees who said what
        page.keyboard.press("7")
        page.wait_for_selector(".fsml-empty:has-text('all done')", timeout=30_000)
        deadline = time.time() + 30
        while (table := consensus(connect(), "digits")).source.tolist() != ["review"] and time.time() < deadline:
            time.sleep(0.2)
        assert table[["item_id", "label", "source"]].values.tolist() == [[item_id, "7", "review"]]
    finally:
        context.close()
        stop(proc)


@pytest.mark.slow
def test_an_annotator_credential_cannot_label_as_another_nor_review(fsml_home, browser):
    make_digit_items(2)
    ann = add_user(connect(), "ann", "annotator")
    port = free_port()
    proc = start_app(port, fsml_home.parent / "voila.log")
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(f"http://127.0.0.1:{port}/?token={ann}&annotator=lead")  # the URL names someone else
        page.wait_for_selector("text=cannot label as lead", timeout=60_000)
        assert page.query_selector(".fsml-annotate") is None
        page.goto(f"http://127.0.0.1:{port}/?review=1")  # the cookie says ann; ann may not review
        page.wait_for_selector("text=may not review", timeout=60_000)
        assert page.query_selector(".fsml-annotate") is None
        page.goto(f"http://127.0.0.1:{port}/?annotator=ann")  # naming yourself is fine
        shown_item(page)
        assert page.text_content(".fsml-who") == "ann · digits"
    finally:
        context.close()
        stop(proc)


@pytest.mark.slow
def test_html_in_query_parameters_renders_as_text(fsml_home, browser):
    from urllib.parse import quote

    make_digit_items(1)
    port = free_port()
    proc = start_app(port, fsml_home.parent / "voila.log")
    context = browser.new_context()
    attack = '<img src=x onerror="window.__xss = 1"><b id="injected">bold</b>'
    try:
        page = context.new_page()
        for parameter in ("project", "annotator"):
            page.goto(f"http://127.0.0.1:{port}/?{parameter}={quote(attack)}")
            page.wait_for_selector('text=<b id="injected">bold</b>', timeout=60_000)  # shown as the text it is
            assert page.query_selector("#injected") is None and page.query_selector("img[src=x]") is None
            assert page.evaluate("() => window.__xss") is None
    finally:
        context.close()
        stop(proc)
