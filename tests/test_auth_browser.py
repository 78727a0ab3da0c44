"""Who opens an app: real Voila servers from the shared launcher, real tokens, headless Chromium.

Pages named like the apps (`annotate.ipynb`, `demo.ipynb`) that show `auth.app_user()` and a widget test the
launcher's identity alone; the real `fsml annotate app` and `fsml eval app` show that a demo-only credential
is refused by both.
"""
import asyncio
import json
import os
import re
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nbformat
import pytest
import requests
from conftest import free_port, stop, wait_for_port

from fullstack_ml.apps import voila_command
from fullstack_ml.auth import add_user, revoke_user
from fullstack_ml.store import connect

OWNER_TOKEN = "owner-secret-for-the-ps-check"
WHOAMI = """
import ipywidgets as widgets
import fullstack_ml.auth

user = fullstack_ml.auth.app_user()
label = widgets.Label(f"{user.name} {user.role}")
label.add_class("fsml-who")
button = widgets.Button(description="again")
button.on_click(lambda _: setattr(label, "value", label.value + " again"))
widgets.VBox([label, button])
"""


def start(command: list, log_path: Path, port: int) -> subprocess.Popen:
    with open(log_path, "w") as log:
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                env={**os.environ, "FSML_TOKEN": OWNER_TOKEN})
    wait_for_port(port, timeout=60, proc=proc)
    return proc


def start_whoami(tmp_path: Path, app: str) -> tuple[subprocess.Popen, str]:
    "The launcher serving a page named like `app` that shows who the kernel was told opened it."
    page = tmp_path / "pages" / f"{app}.ipynb"
    page.parent.mkdir()
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(WHOAMI)]), page)
    port = free_port()
    return start(voila_command(page, port), tmp_path / "voila.log", port), f"http://127.0.0.1:{port}/"


def command_lines(proc: subprocess.Popen) -> str:
    "Every process's command line, as `ps` shows them to anyone on the machine (the server's own included)."
    def ps(*args):
        return subprocess.run(["ps", "-ww", "-o", "args=", *args], capture_output=True, text=True, check=False).stdout

    assert "run_voila" in ps("-p", str(proc.pid))  # the server is among them
    return ps("-e")


async def send_to_kernel(url: str, kernel_id: str, cookie: str, code: str) -> list[str]:
    "What a browser could do by hand: ask the page's kernel for its info, then to run `code`; the reply types."
    from tornado.httpclient import HTTPRequest
    from tornado.websocket import websocket_connect

    from tornado.httpclient import HTTPClientError

    ws_url = url.replace("http://", "ws://") + f"api/kernels/{kernel_id}/channels"
    try:
        ws = await websocket_connect(HTTPRequest(ws_url, headers={"Cookie": cookie, "Origin": url.rstrip("/")}))
    except HTTPClientError as refused:
        return [f"refused {refused.code}"]
    execute = {"code": code, "silent": False, "store_history": False, "user_expressions": {}, "allow_stdin": False}
    for msg_type, content in (("kernel_info_request", {}), ("execute_request", execute)):
        header = {"msg_id": uuid.uuid4().hex, "username": "visitor", "session": uuid.uuid4().hex,
                  "msg_type": msg_type, "version": "5.3", "date": ""}
        await ws.write_message(json.dumps({"header": header, "parent_header": {}, "metadata": {}, "content": content,
                                           "channel": "shell", "buffers": []}))
    replies, deadline = [], time.time() + 5
    while time.time() < deadline:
        try:
            message = await asyncio.wait_for(ws.read_message(), 1)
        except asyncio.TimeoutError:
            continue
        if message is None:
            break
        if isinstance(message, str):
            replies.append(json.loads(message)["header"]["msg_type"])
    ws.close()
    return replies


def who(page) -> str:
    page.wait_for_selector(".fsml-who", timeout=60_000)
    return page.inner_text(".fsml-who")


@pytest.mark.slow
def test_annotator_is_named_from_the_token_then_the_cookie_and_revocation_ends_it(fsml_home, tmp_path, browser):
    engine = connect()
    token = add_user(engine, "ann", "annotator")
    demo_token = add_user(engine, "dee", "demo")
    proc, url = start_whoami(tmp_path, "annotate")
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(f"{url}?token={token}&item=3")
        assert who(page) == "ann annotator"  # the kernel knows who opened it
        assert token not in page.url and page.url.endswith("/?item=3")  # the secret left the address bar
        page.click("text=again")
        page.wait_for_selector("text=ann annotator again", timeout=30_000)  # widgets still talk to the kernel
        cookie = next(c for c in context.cookies() if c["name"].startswith("username-"))
        assert cookie["httpOnly"] and cookie["sameSite"] == "Lax" and token.split("_")[2] not in cookie["value"]
        page.goto(url)  # no token: the cookie says who
        assert who(page) == "ann annotator"
        shown = command_lines(proc)
        assert OWNER_TOKEN not in shown and token not in shown and token not in (tmp_path / "voila.log").read_text()

        refused = requests.get(f"{url}?token={demo_token}", timeout=60)
        assert refused.status_code == 403 and "dee (role demo) may not open the annotate app" in refused.text
        anonymous = requests.get(url, timeout=60)  # credentials exist: nobody is let in without one
        assert "fsml-who" not in anonymous.text and "password" in anonymous.text.lower()

        revoke_user(engine, "ann")
        page.goto(url)  # the cookie of a revoked user no longer opens the page
        page.wait_for_selector("input[type=password]", timeout=30_000)
        assert page.query_selector(".fsml-who") is None
        again = requests.get(f"{url}?token={token}", timeout=60)
        assert "fsml-who" not in again.text and "password" in again.text.lower()
        page.fill("input[type=password]", add_user(engine, "rita", "reviewer"))  # the login form takes a token too
        page.keyboard.press("Enter")
        assert who(page) == "rita reviewer"
    finally:
        context.close()
        stop(proc)


@pytest.mark.slow
def test_demo_visitors_keep_one_identity_and_demo_credentials_open_the_demo(fsml_home, tmp_path, browser):
    demo_token = add_user(connect(), "dee", "demo")
    proc, url = start_whoami(tmp_path, "demo")
    visitor, member = browser.new_context(), browser.new_context()
    try:
        page = visitor.new_page()
        page.goto(url)
        first = who(page)
        assert first.startswith("visitor-") and first.endswith(" demo")
        page.reload()
        assert who(page) == first  # a reload is the same visitor, not a new vote
        other = member.new_page()
        other.goto(f"{url}?token={demo_token}")
        assert who(other) == "dee demo"
        kernel_id = re.search(r'"kernelId": "([0-9a-f-]+)"', page.content()).group(1)
        cookie = "; ".join(f"{c['name']}={c['value']}" for c in visitor.cookies())
        members_kernel = re.search(r'"kernelId": "([0-9a-f-]+)"', other.content()).group(1)
        with ThreadPoolExecutor(1) as pool:  # Playwright's loop owns this thread
            replies = pool.submit(asyncio.run, send_to_kernel(url, kernel_id, cookie, "open('pwned', 'w')")).result()
            others = pool.submit(asyncio.run, send_to_kernel(url, members_kernel, cookie, "1")).result()
        assert "kernel_info_reply" in replies and "execute_reply" not in replies  # widgets talk; code does not run
        assert others == ["refused 403"]  # someone else's kernel is theirs alone
        assert not (tmp_path / "pages" / "pwned").exists()
    finally:
        visitor.close()
        member.close()
        stop(proc)


@pytest.mark.slow
def test_a_demo_credential_cannot_open_the_annotation_or_eval_app(fsml_home, tmp_path):
    from fullstack_ml.annotate import ensure_project

    engine = connect()
    ensure_project(engine, "digits")
    demo_token = add_user(engine, "dee", "demo")
    admin_token = add_user(engine, "ada", "admin")
    exe = Path(sys.executable).parent / "fsml"
    for app in ("annotate", "eval"):
        port = free_port()
        proc = start([str(exe), app, "app", "--port", str(port)], tmp_path / f"{app}.log", port)
        try:
            url = f"http://127.0.0.1:{port}/"
            refused = requests.get(f"{url}?token={demo_token}", timeout=60)
            assert refused.status_code == 403 and f"may not open the {app} app" in refused.text
            session = requests.Session()
            with session.get(f"{url}?token={admin_token}", timeout=120, stream=True) as opened:
                assert opened.status_code == 200 and session.cookies  # an admin gets in, with a session cookie
                head = b""
                for chunk in opened.iter_content(4096):  # the page's head comes at once, before its cells run
                    head += chunk
                    if b'id="loading_text"' in head:
                        break
            assert b".spinner {" in head and b"@keyframes rotation" in head  # Voila's loading spinner ...
            assert b"animation: rotation" not in head  # ... from our template: standing still
            shown = command_lines(proc)
            assert OWNER_TOKEN not in shown and demo_token not in shown and admin_token not in shown
        finally:
            stop(proc)
        log = (tmp_path / f"{app}.log").read_text()
        assert demo_token not in log and admin_token not in log and OWNER_TOKEN not in log
