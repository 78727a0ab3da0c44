"""The annotation app in a real browser: Voila + headless Chromium, two annotators labelling by keyboard at once,
each named by their own token (never by the URL), a reviewer, query parameters that stay text, and a project that is
not digits: colour images with word labels keyed by the project, and a type-to-filter picker for many labels."""
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
from fullstack_ml.store import connect, items, now, open_files, put_blob


LABELS = [str(d) for d in range(10)]  # the digit-like project these tests make: each label is its own key


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


def kernel_groups(server_pid: int) -> dict:
    "The server's kernels (its child processes) and the nice value of each one's scheduling group (autogroup)."
    groups = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == server_pid:
                groups[int(stat.parent.name)] = (stat.parent / "autogroup").read_text().split()[-1]
        except (OSError, IndexError, ValueError):  # a process that ended while we looked
            continue
    return groups


@pytest.mark.slow
def test_a_starting_kernel_yields_until_its_page_is_built(fsml_home):
    """While Voila builds a newcomer's page (imports, the page's cells), that kernel's scheduling group runs at nice
    10, below the server and the kernels serving people; once the page is built it is back at 0, so a kernel serving
    a person does not starve behind the next arrivals."""
    import threading

    import requests

    from fullstack_ml.apps import KERNEL_NICENESS

    if Path("/proc/sys/kernel/sched_autogroup_enabled").read_text().strip() != "1":
        pytest.skip("this Linux shares the CPU without autogroups: the kernel process itself runs at nice 10")
    make_digit_items(2)
    port = free_port()
    proc = start_app(port, fsml_home.parent / "voila.log")
    try:
        answer = []
        loading = threading.Thread(target=lambda: answer.append(requests.get(f"http://127.0.0.1:{port}/", timeout=120)))
        loading.start()
        while_building = set()
        while loading.is_alive():
            while_building.update(kernel_groups(proc.pid).values())
            time.sleep(0.02)
        assert answer[0].status_code == 200 and "widget-view" in answer[0].text  # the page, with its widget
        assert str(KERNEL_NICENESS) in while_building, while_building
        deadline = time.time() + 10
        while set(kernel_groups(proc.pid).values()) != {"0"}:
            assert time.time() < deadline, kernel_groups(proc.pid)
            time.sleep(0.1)
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


WORDS = ["cat", "dog", "bird", "fish", "horse", "sheep"]  # a second project: word labels, colour photos


def make_colour_items(project: str, labels: list, n: int, side: int = 40, big: int = 0) -> list:
    "Create `project` (keys from `default_keys`); store `n` side x side colour PNGs and `big` photos; queue them."
    from fullstack_ml.project import Label, Project, default_keys, save_project

    engine, files = connect(), open_files()
    keys = default_keys(labels)
    save_project(engine, Project(project, tuple(Label(name, key, f"a photo of a {name}")
                                                for name, key in zip(labels, keys)), overlap=1))
    rng = random.Random(7)
    rows = []
    for i in range(n + big):
        size = (2000, 1500) if i >= n else (side, side)
        image = Image.new("RGB", size, tuple(rng.randrange(256) for _ in range(3)))
        draw = ImageDraw.Draw(image)
        for _ in range(4):  # blobs of colour: an RGB image, not gray
            x, y = rng.randrange(size[0]), rng.randrange(size[1])
            draw.ellipse((x, y, x + size[0] // 3, y + size[1] // 3), fill=tuple(rng.randrange(256) for _ in range(3)))
        buffer = io.BytesIO()
        image.save(buffer, "PNG")
        rows.append({"id": put_blob(files, buffer.getvalue()), "width": size[0], "height": size[1], "format": "PNG",
                     "created_at": now()})
    with engine.begin() as conn:
        conn.execute(items.insert(), rows)
    enqueue(engine, project, [row["id"] for row in rows])
    return [row["id"] for row in rows]


@pytest.mark.slow
def test_a_second_project_is_labelled_with_its_own_keys(fsml_home, browser, artifacts_dir):
    from fullstack_ml.project import default_keys

    ids = make_colour_items("pets", WORDS, 8, big=1)
    keys = default_keys(WORDS)
    port = free_port()
    proc = start_app(port, fsml_home.parent / "voila.log")  # no --project: the store's only project
    context = browser.new_context(viewport={"width": 900, "height": 760})
    try:
        page = context.new_page()
        page.goto(f"http://127.0.0.1:{port}/")
        shown_item(page)
        assert page.text_content(".fsml-who").endswith("· pets")
        buttons = page.query_selector_all(".fsml-buttons .fsml-label")
        assert [b.query_selector(".fsml-name").text_content() for b in buttons] == WORDS  # names, not numbers
        assert [b.query_selector("kbd").text_content() for b in buttons] == keys  # the project's keys
        assert buttons[0].get_attribute("title") == "a photo of a cat"  # the description as a tooltip ...
        assert page.text_content(".fsml-legend").count("a photo of a") == len(WORDS)  # ... and in the legend
        pressed, rng = {}, random.Random(1)
        for _ in ids:
            item = shown_item(page)
            box = page.eval_on_selector(".fsml-image", "e => { const r = e.getBoundingClientRect(); return "
                                        "[r.width, r.height, r.bottom, window.innerHeight, e.naturalWidth, "
                                        "e.className] }")
            width, height, bottom, viewport, natural, classes = box
            assert min(width, height) >= 300 and bottom <= viewport  # readable, and inside the window
            assert ("fsml-pixelated" in classes) == (natural == 40)  # tiny: sharp pixels; a photo: smooth
            if natural == 40:
                page.screenshot(path=str(artifacts_dir / "annotate_rgb.png"))
            choice = rng.randrange(len(WORDS))
            if len(pressed) == len(ids) - 1:  # the last one: the page shows "all done" instead of a new item
                page.keyboard.press(keys[choice])
                page.wait_for_selector(".fsml-empty:has-text('all done')", timeout=30_000)
            else:
                press_and_wait(page, keys[choice], item)
            pressed[item] = WORDS[choice]
        deadline = time.time() + 30
        while len(stored := current_labels(connect(), "pets", kinds=("label",))) < len(ids) and time.time() < deadline:
            time.sleep(0.2)
        assert dict(zip(stored.item_id, stored.label)) == pressed  # the word of each key, on the item shown
        assert set(pressed) == set(ids)
    finally:
        context.close()
        stop(proc)


@pytest.mark.slow
def test_many_labels_are_picked_by_typing(fsml_home, browser):
    labels = [f"{word}-{kind}" for word in ("oak", "elm", "ash", "fir", "yew", "pine", "birch", "beech")
              for kind in ("leaf", "bark", "seed", "bud", "twig")]  # 40 labels: more than there are keys
    (item, second) = make_colour_items("trees", labels, 2)
    port = free_port()
    proc = start_app(port, fsml_home.parent / "voila.log")
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(f"http://127.0.0.1:{port}/")
        first = shown_item(page)
        assert page.is_visible(".fsml-filter")  # more labels than a row of keys: the picker is there
        page.keyboard.press("/")  # focus the filter
        page.keyboard.type("see")
        matches = page.get_attribute(".fsml-annotate", "data-matches").split("\n")
        assert matches == [f"{word}-seed" for word in ("oak", "elm", "ash", "fir", "yew", "pine", "birch", "beech")]
        assert page.query_selector('.fsml-label[data-label="beech-seed"] kbd') is None  # it has no key of its own
        page.fill(".fsml-filter", "beech-s")
        page.keyboard.press("Enter")
        page.wait_for_function("(b) => document.querySelector('.fsml-annotate').dataset.item !== b", arg=first,
                               timeout=30_000)
        assert page.input_value(".fsml-filter") == ""  # cleared for the next item
        page.focus(".fsml-filter")
        page.keyboard.type("pine")
        page.keyboard.press("ArrowDown")  # pine-leaf, then pine-bark
        page.keyboard.press("Enter")
        page.wait_for_selector(".fsml-empty:has-text('all done')", timeout=30_000)
        deadline = time.time() + 30
        while len(stored := current_labels(connect(), "trees", kinds=("label",))) < 2 and time.time() < deadline:
            time.sleep(0.2)
        assert dict(zip(stored.item_id, stored.label)) == {first: "beech-seed", ({item, second} - {first}).pop(): "pine-bark"}
    finally:
        context.close()
        stop(proc)


@pytest.mark.slow
def test_the_bundled_shapes_project_is_labelled_with_its_keys(fsml_home, browser):
    "The second bundled project (colour pictures, word labels, keys from its definition): label by truth, read back."
    from fullstack_ml.projects import shapes

    engine, files = connect(), open_files()
    project = ensure_project(engine, "shapes")  # from the bundled definition
    key_of = dict(zip(project["labels"], project["keys"]))
    truth = {}
    for data, label in shapes.images(6, seed=3):
        item_id = put_blob(files, data)
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
        with engine.begin() as conn:
            conn.execute(items.insert().values(id=item_id, width=width, height=height, format="PNG", created_at=now()))
        truth[item_id] = label
    enqueue(engine, "shapes", list(truth))
    port = free_port()
    proc = start_app(port, fsml_home.parent / "voila.log")
    context = browser.new_context(viewport={"width": 900, "height": 760})
    try:
        page = context.new_page()
        page.goto(f"http://127.0.0.1:{port}/")
        shown_item(page)
        names = [b.text_content() for b in page.query_selector_all(".fsml-buttons .fsml-name")]
        assert names == list(shapes.SHAPES)
        for done in range(len(truth)):
            item = shown_item(page)
            key = key_of[truth[item]]  # the annotator answers right
            if done == len(truth) - 1:
                page.keyboard.press(key)
                page.wait_for_selector(".fsml-empty:has-text('all done')", timeout=30_000)
            else:
                press_and_wait(page, key, item)
        deadline = time.time() + 30
        while len(stored := current_labels(connect(), "shapes", kinds=("label",))) < len(truth) and time.time() < deadline:
            time.sleep(0.2)
        assert dict(zip(stored.item_id, stored.label)) == truth
    finally:
        context.close()
        stop(proc)


@pytest.mark.slow
def test_enter_accepts_the_models_suggestion(fsml_home, browser, artifacts_dir):
    "The page shows the production model's pre-label; Enter stores it as the annotator's own label, model recorded."
    import numpy as np
    import sqlalchemy as sa

    from fullstack_ml.prelabels import write_prelabels
    from fullstack_ml.store import annotations

    ids = make_digit_items(3)
    probabilities = np.full((len(ids), len(LABELS)), 0.01)
    guess = {item_id: str((row + 5) % 10) for row, item_id in enumerate(ids)}
    for row, item_id in enumerate(ids):
        probabilities[row, int(guess[item_id])] = 0.91
    write_prelabels(connect(), "digits", "digits@4", ids, probabilities, LABELS)  # what the pre-label stage writes
    token = add_user(connect(), "alice", "annotator")
    port = free_port()
    proc = start_app(port, fsml_home.parent / "voila.log")
    context = browser.new_context(viewport={"width": 900, "height": 760})
    try:
        page = context.new_page()
        page.goto(f"http://127.0.0.1:{port}/?token={token}")
        accepted = shown_item(page)
        assert page.text_content(".fsml-suggestion") == f"suggestion: {guess[accepted]} · 91% · Enter accepts"
        assert page.get_attribute(".fsml-suggested", "data-label") == guess[accepted]  # its button is marked
        assert "Enter" in page.text_content(".fsml-accept")  # the key help names the accept key
        page.screenshot(path=str(artifacts_dir / "annotate_suggestion.png"))
        press_and_wait(page, "Enter", accepted)
        overridden = shown_item(page)
        override = str((int(guess[overridden]) + 1) % 10)
        press_and_wait(page, override, overridden)  # a label key overrides the suggestion
        hidden = shown_item(page)
        page.click(".fsml-suggestion-toggle input")  # hide suggestions
        assert page.text_content(".fsml-suggestion") == "" and page.query_selector(".fsml-suggested") is None
        page.keyboard.press("Enter")  # nothing to accept while hidden
        time.sleep(0.5)
        assert shown_item(page) == hidden
        page.keyboard.press("0")
        page.wait_for_selector(".fsml-empty:has-text('all done')", timeout=30_000)
        deadline = time.time() + 30
        while True:
            with connect().connect() as conn:
                rows = conn.execute(sa.select(annotations).where(annotations.c.kind == "label")).all()
            if len(rows) == 3 or time.time() > deadline:
                break
            time.sleep(0.2)
        stored = {row.item_id: row for row in rows}
        assert {row.annotator for row in rows} == {"alice"}  # the signed-in person's label, never the model's
        assert stored[accepted].label == guess[accepted]  # Enter stored the suggestion
        suggestion = {"label": guess[accepted], "model": "digits@4", "score": 0.91}
        assert stored[accepted].meta["suggestion"] == suggestion  # with the model version it came from
        assert (stored[accepted].meta["shown"], stored[accepted].meta["accepted"]) == (True, True)
        assert stored[overridden].label == override and stored[overridden].meta["accepted"] is False
        assert stored[hidden].label == "0" and stored[hidden].meta["shown"] is False
    finally:
        context.close()
        stop(proc)


@pytest.mark.slow
def test_fast_keys_store_exactly_the_labels_shown_and_undo_reverts_the_last(fsml_home, browser):
    """Keys pressed in a row, none waiting for the kernel: the store holds each label on the item it was pressed on,
    in order; the page counts a label done only once the kernel's ack says it is stored; undo reverts the last."""
    import sqlalchemy as sa

    from fullstack_ml.store import annotations

    make_digit_items(12)
    token = add_user(connect(), "alice", "annotator")
    port = free_port()
    proc = start_app(port, fsml_home.parent / "voila.log")
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(f"http://127.0.0.1:{port}/?token={token}")
        shown_item(page)
        page.wait_for_selector(".fsml-annotate[data-queued='4']", timeout=30_000)  # 1 + PREFETCH (4) on the page
        assert int(page.get_attribute(".fsml-annotate", "data-batches")) >= 1  # what a blank page would tell
        rng = random.Random(1)
        pressed = []
        for _ in range(4):  # back to back: the image changes in the keydown, before the kernel hears of it
            item, key = page.get_attribute(".fsml-annotate", "data-item"), rng.choice(LABELS)
            page.keyboard.press(key)
            assert page.get_attribute(".fsml-annotate", "data-item") != item  # swapped at once, no wait
            pressed.append((item, key))
        page.wait_for_selector(".fsml-annotate[data-done='4'][data-saving='0']", timeout=30_000)  # all acked
        assert "done 4" in page.text_content(".fsml-progress")
        with connect().connect() as conn:
            rows = conn.execute(sa.select(annotations.c.item_id, annotations.c.label)
                                .where(annotations.c.kind == "label").order_by(annotations.c.id)).all()
        assert [tuple(row) for row in rows] == pressed  # what was shown, with what was pressed, in that order
        page.keyboard.press("Backspace")  # undo: the last item is back on screen and no longer counted
        assert page.get_attribute(".fsml-annotate", "data-item") == pressed[-1][0]
        page.wait_for_selector(".fsml-annotate[data-done='3']", timeout=5_000)
        deadline = time.time() + 30
        while len(undone := annotation_history(connect(), "digits").query("kind == 'label' and undone")) < 1:
            assert time.time() < deadline, "the undo never reached the store"
            time.sleep(0.2)
        assert undone.item_id.tolist() == [pressed[-1][0]]  # the last label is reverted, the others stand
        current = current_labels(connect(), "digits", kinds=("label",))
        assert dict(zip(current.item_id, current.label)) == dict(pressed[:-1])
    finally:
        context.close()
        stop(proc)
