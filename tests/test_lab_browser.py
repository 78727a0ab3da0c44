"""`make lab`: real JupyterLab on the course, opened in headless Chromium, runs a chapter and shows its output."""
import os
import secrets
import subprocess
from pathlib import Path

import pytest
from conftest import REPO, free_port, stop, wait_for_port


def kernel_environments(root: int) -> list[dict]:
    "The environment of every IPython kernel descended from process `root` (kernels get their own session)."
    parent = {}
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit():
                parent[int(proc.name)] = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
    found = []
    for pid in parent:
        ancestor = pid
        while ancestor not in (0, 1, root):
            ancestor = parent.get(ancestor, 0)
        try:
            if ancestor != root or b"ipykernel" not in Path(f"/proc/{pid}/cmdline").read_bytes():
                continue
            pairs = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        found.append(dict(p.decode(errors="replace").split("=", 1) for p in pairs if b"=" in p))
    return found


@pytest.fixture
def lab(tmp_path, artifacts_dir):
    "`make lab` as a learner runs it (own FSML_HOME, a token), on a free loopback port; stopped by PID."
    port, token, home = free_port(), secrets.token_hex(16), tmp_path / "learner-home"
    env = {k: v for k, v in os.environ.items() if not k.startswith("FSML_")}
    env.update(FSML_HOME=str(home), JUPYTER_TOKEN=token,  # the token by environment, never on a command line
               JUPYTER_CONFIG_DIR=str(tmp_path / "jupyter-config"), JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"))
    args = f"--no-browser --ip=127.0.0.1 --port={port}" + (" --allow-root" if os.geteuid() == 0 else "")  # CI's root
    settings = tmp_path / "lab-settings" / "@jupyterlab" / "docmanager-extension"
    settings.mkdir(parents=True)  # the test runs a chapter of the checkout: it must not save outputs into nbs/
    (settings / "plugin.jupyterlab-settings").write_text('{"autosave": false}')
    env["JUPYTERLAB_SETTINGS_DIR"] = str(tmp_path / "lab-settings")
    log = artifacts_dir / "lab.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            ["make", "-o", ".venv/.installed", "lab", f"ARGS={args}"],
            cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for_port(port, timeout=120, proc=proc)
        yield dict(url=f"http://127.0.0.1:{port}", token=token, home=home, proc=proc)
    finally:
        stop(proc)


@pytest.mark.slow
def test_a_chapter_runs_in_jupyterlab(lab, browser, artifacts_dir):
    chapter = REPO / "nbs" / "index.ipynb"
    before = chapter.read_bytes()
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    try:
        page.goto(f"{lab['url']}/lab/tree/index.ipynb?token={lab['token']}", timeout=120_000)
        page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=120_000)
        page.wait_for_selector(".jp-StatusBar-Widget:has-text('Python 3 (ipykernel) | Idle')", timeout=120_000)
        page.click(".lm-MenuBar-itemLabel:text-is('Run')")  # Run > Run All Cells, as a learner would
        page.click("li.lm-Menu-item[data-command='runmenu:run-all']")
        # the frame chapter's own output: the baselines it computes, and the digits it draws
        page.wait_for_function("document.querySelector('.jp-Notebook').innerText.includes('our bar: 99.0%')",
                               timeout=120_000)
        page.wait_for_selector(".jp-OutputArea-output img", state="attached", timeout=30_000)
        assert page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']"
                            ":has-text('Error')").count() == 0
    finally:
        page.screenshot(path=str(artifacts_dir / "lab_index.png"))  # what the learner saw, pass or fail
        page.close()
    assert chapter.read_bytes() == before  # nothing saved into the checkout
    kernels = kernel_environments(lab["proc"].pid)
    assert kernels, "no kernel ran in the lab's process group"
    assert all(k.get("FSML_HOME") == str(lab["home"]) for k in kernels)  # the learner's own store
    assert all(k["PATH"].startswith(str(REPO / ".venv" / "bin")) for k in kernels)  # this environment's Python


def test_lab_refuses_a_request_without_the_token(lab):
    import requests

    assert requests.get(f"{lab['url']}/api/contents/index.ipynb", timeout=30).status_code == 403
    ok = requests.get(f"{lab['url']}/api/contents/index.ipynb", timeout=30,
                      headers={"Authorization": f"token {lab['token']}"})
    assert ok.status_code == 200 and ok.json()["name"] == "index.ipynb"  # rooted at nbs/
