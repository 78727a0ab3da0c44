"""The demo page in headless Chromium, against real processes: `fsml serve api`, `fsml serve worker` and
`fsml demo app` (Voila) on free loopback ports, with FSML_TOKEN set (the page's kernel uses it for the API), and a
small model trained for the test and promoted to production. The visitor opens the page with no credential: the
app server names them (`visitor-…`, role demo) in a cookie, so a reload is the same visitor.
Draw -> a prediction naming the model version; upload a digit -> the right label; a correction -> a feedback
label by that visitor in `fsml annotate export` and a demo item in `fsml items`; an image bomb uploaded -> a plain
refusal and nothing stored; a reload -> the same visitor, whose next correction is theirs again; the API stopped ->
a plain-words error, drawing kept, and "Try again" answers once it is back. Screenshots go to test-artifacts/."""
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import fsml, free_port, stop, wait_for_port
from demo_support import digit_splits, publish_quick_model

pytestmark = pytest.mark.slow
FSML = str(Path(sys.executable).parent / "fsml")


def start(*args, env, log: Path) -> subprocess.Popen:
    "Start an `fsml` server in its own process group, its output in `log` (a pipe nobody reads would fill up)."
    with open(log, "w") as out:
        return subprocess.Popen([FSML, *args], env=env, start_new_session=True, stdout=out, stderr=subprocess.STDOUT)


def draw_stroke(page, x0: float, y0: float, x1: float, y1: float) -> None:
    box = page.locator("canvas.fsml-canvas").bounding_box()
    page.mouse.move(box["x"] + x0, box["y"] + y0)
    page.mouse.down()
    page.mouse.move(box["x"] + x1, box["y"] + y1, steps=12)
    page.mouse.up()


def ink_on_canvas(page) -> int:
    "How many canvas pixels are not white: the drawing is still there when this is large."
    return page.evaluate("""() => { const c = document.querySelector('canvas.fsml-canvas');
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data; let n = 0;
        for (let i = 0; i < d.length; i += 4) if (d[i] < 128) n++; return n; }""")


def exported_feedback() -> list:
    "(annotator, label, item) of every feedback annotation, as `fsml annotate export` lists them."
    exported = [json.loads(line) for line in fsml("annotate", "export", "--json").stdout.splitlines()]
    return [(row["annotator"], row["label"], row["item"]) for row in exported if row["kind"] == "feedback"]


def image_bomb() -> bytes:
    "The 65536x256 PNG of the security review: a few KB on the wire."
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("1", (65536, 256), 1).save(buffer, "PNG")
    return buffer.getvalue()


def test_demo_page_predicts_takes_corrections_and_explains_errors(fsml_home, browser, artifacts_dir, tmp_path):
    model = publish_quick_model()
    api_port, voila_port = free_port(), free_port()
    # FSML_TOKEN: the API wants it, the page's kernel sends it; the visitor's browser never sees it
    env = {**os.environ, "FSML_API_URL": f"http://127.0.0.1:{api_port}", "FSML_TOKEN": "demo-test-token"}
    logs = {name: tmp_path / f"{name}.log" for name in ("api", "worker", "app")}
    api = start("serve", "api", "--port", str(api_port), env=env, log=logs["api"])
    worker = start("serve", "worker", "--batch-size", "4", "--max-delay-ms", "5", env=env, log=logs["worker"])
    app = start("demo", "app", "--port", str(voila_port), "--cull-idle", "300", env=env, log=logs["app"])
    page = browser.new_page(viewport={"width": 1100, "height": 800})
    try:
        wait_for_port(api_port, timeout=60, proc=api)
        wait_for_port(voila_port, timeout=90, proc=app)
        url = logs["app"].read_text().splitlines()[0].split(": ", 1)[1]  # the command prints its URL first
        assert url == f"http://127.0.0.1:{voila_port}/"  # no secret in it: a visitor needs none
        page.goto(url, timeout=180_000)
        page.wait_for_selector("canvas.fsml-canvas", timeout=180_000)
        visitor = page.text_content(".fsml-user").split("You are ", 1)[1].split(" ", 1)[0]
        assert visitor.startswith("visitor-") and "(demo)" in page.text_content(".fsml-user")

        # draw a stroke: the bitmap goes to the API, the answer names the model version that gave it
        draw_stroke(page, 140, 40, 140, 240)
        page.wait_for_selector(".fsml-model", timeout=60_000)
        assert page.text_content(".fsml-model") == f"digits@{model['version']}"
        assert page.locator(".fsml-bar").count() == 10
        page.screenshot(path=str(artifacts_dir / "demo_app.png"), full_page=True)

        # one key clears; then upload a digit image and see the right label
        page.keyboard.press("Escape")
        page.wait_for_selector(".fsml-label", state="detached", timeout=30_000)
        assert ink_on_canvas(page) == 0
        _, png, truth = next(case for case in digit_splits()["test"] if case[2] == "4")
        upload = tmp_path / "four.png"
        upload.write_bytes(png)
        with page.expect_file_chooser() as chooser:  # ipywidgets' upload button opens a detached file input
            page.click(".fsml-upload")
        chooser.value.set_files(str(upload))
        page.wait_for_selector(".fsml-label", timeout=60_000)
        assert page.text_content(".fsml-label") == truth

        # "Wrong? Give the right label": the image becomes a demo item with a feedback annotation by this visitor
        page.select_option(".fsml-correct-label select", "9")
        page.click("button.fsml-correct-send")
        page.wait_for_selector(".fsml-saved", timeout=120_000)
        feedback = exported_feedback()
        assert [(who, label) for who, label, _ in feedback] == [(visitor, "9")]
        listed = [json.loads(line) for line in fsml("items", "--json").stdout.splitlines()]
        item = next(row for row in listed if row["id"] == feedback[0][2])
        assert item["source_url"].startswith("demo:") and (item["width"], item["height"]) == (64, 64)

        # an image bomb: refused on the page in plain words, nothing stored
        bomb = tmp_path / "bomb.png"
        bomb.write_bytes(image_bomb())
        with page.expect_file_chooser() as chooser:
            page.click(".fsml-upload")
        chooser.value.set_files(str(bomb))
        page.wait_for_selector(".fsml-error", timeout=60_000)
        assert "cannot be used" in page.text_content(".fsml-error") and "65536x256" in page.text_content(".fsml-error")
        assert page.locator(".fsml-label").count() == 0
        assert len(fsml("items", "--json").stdout.splitlines()) == len(listed)

        # a reload is a new kernel but the same visitor (the cookie), whose next correction is theirs again
        page.reload(timeout=180_000)
        page.wait_for_selector("canvas.fsml-canvas", timeout=180_000)
        assert visitor in page.text_content(".fsml-user")
        draw_stroke(page, 140, 40, 140, 240)
        page.wait_for_selector(".fsml-model", timeout=60_000)
        page.select_option(".fsml-correct-label select", "7")
        page.click("button.fsml-correct-send")
        page.wait_for_selector(".fsml-saved", timeout=120_000)
        assert [(who, label) for who, label, _ in exported_feedback()] == [(visitor, "9"), (visitor, "7")]

        # the API goes away: the page says so in plain words and keeps the drawing
        stop(api)
        page.keyboard.press("Escape")
        draw_stroke(page, 80, 60, 200, 220)
        page.wait_for_selector(".fsml-error", timeout=60_000)
        assert "not reachable" in page.text_content(".fsml-error")
        assert ink_on_canvas(page) > 500
        page.screenshot(path=str(artifacts_dir / "demo_app_api_down.png"), full_page=True)

        # the API comes back: "Try again" sends the same drawing
        api = start("serve", "api", "--port", str(api_port), env=env, log=tmp_path / "api-again.log")
        wait_for_port(api_port, timeout=60, proc=api)
        page.click("button.fsml-retry")
        page.wait_for_selector(".fsml-model", timeout=60_000)
        assert page.locator(".fsml-error").count() == 0 and ink_on_canvas(page) > 500
    except Exception:
        print("--- page status:", page.text_content(".fsml-status") if page.locator(".fsml-status").count() else None)
        for name, log in logs.items():
            print(f"--- {name} log (tail)\n" + "\n".join(log.read_text().splitlines()[-30:]))
        raise
    finally:
        page.close()
        for proc in (app, worker, api):
            stop(proc)


def test_feedback_on_postgresql_twice_and_at_once(postgres_db, tmp_path):
    "Corrections land on PostgreSQL too; the same image sent by two visitors at once is one item with two votes."
    from concurrent.futures import ThreadPoolExecutor

    from fullstack_ml.labels import export_labels
    from fullstack_ml.demo import record_feedback
    from fullstack_ml.project import bundled_project, save_project
    from fullstack_ml.store import connect, open_files

    engine, store = connect(postgres_db), open_files(str(tmp_path / "files"))
    save_project(engine, bundled_project("digits"))  # the store's only project: the corrections' project
    _, png, _ = digit_splits()["test"][0]
    with ThreadPoolExecutor(2) as pool:
        saved = list(pool.map(lambda label: record_feedback(png, label, {"label": "0", "model": "digits@1"},
                                                            annotator=f"visitor-{label}", engine=engine,
                                                            store=store), ["5", "6"]))
    assert saved[0]["item_id"] == saved[1]["item_id"]
    rows = [row for row in export_labels(engine, "digits") if row["item"] == saved[0]["item_id"]]
    assert sorted((row["annotator"], row["label"], row["kind"]) for row in rows) == [
        ("visitor-5", "5", "feedback"), ("visitor-6", "6", "feedback")]
    with engine.connect() as conn:
        count = conn.exec_driver_sql("SELECT count(*) FROM items WHERE origin = 'demo'").scalar()
        reason = conn.exec_driver_sql("SELECT reason FROM tasks").scalar()
    assert count == 1 and "said '0'" in reason
    engine.dispose()
