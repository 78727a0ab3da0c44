"""Installed, not only cloned: a wheel in a fresh virtual environment runs the pipeline from outside the repo.

This is also the pipeline test: every stage notebook runs, in order, on one temporary FSML_HOME at the smoke
profile, and the run's report (index.html and one page per executed notebook) is written.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO
from fullstack_ml.pipeline import STAGES


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    "A fresh venv (outside the repo) with torch's CPU build and the wheel built from this checkout."
    root = tmp_path_factory.mktemp("installed")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(root / "dist"), str(REPO)],
                   check=True, capture_output=True, timeout=600)
    (wheel,) = (root / "dist").glob("fullstack_ml-*.whl")
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q"]
    subprocess.run(pip + ["torch==2.13.0"], check=True, capture_output=True, timeout=900)
    subprocess.run(pip + [str(wheel)], check=True, capture_output=True, timeout=1200)
    return venv


def test_the_wheel_ships_the_notebooks(installed):
    code = "from fullstack_ml.pipeline import notebooks_dir; print(notebooks_dir())"
    out = subprocess.run([str(installed / "bin" / "python"), "-c", code], capture_output=True, text=True,
                         check=True, cwd=installed.parent).stdout.strip()
    nbs = Path(out)
    assert "site-packages" in nbs.parts and (nbs / "pipeline.yml").exists()
    shipped = {p.relative_to(nbs).as_posix() for p in nbs.rglob("*.ipynb")}
    expected = {p.relative_to(REPO / "nbs").as_posix() for p in (REPO / "nbs").glob("[0-9]*.ipynb")}
    expected |= {p.relative_to(REPO / "nbs").as_posix() for p in (REPO / "nbs").glob("apps/*.ipynb")}
    assert expected <= shipped

    def assets(root: Path) -> set:  # the apps' JavaScript, CSS and Voila templates
        return {p.relative_to(root).as_posix() for p in (root / "assets").rglob("*") if p.is_file()}

    assert assets(REPO / "nbs") <= assets(nbs)


def test_the_smoke_pipeline_runs_from_outside_the_repo(installed, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FSML_", "VIRTUAL_ENV"))}
    env["FSML_HOME"] = str(tmp_path / "home")
    env["PATH"] = "/usr/bin:/bin"  # nothing of the repo's venv
    result = subprocess.run([str(installed / "bin" / "fsml"), "pipeline", "--profile", "smoke", "--json"],
                            capture_output=True, text=True, cwd=tmp_path, env=env, timeout=1500)
    assert result.returncode == 0, result.stderr[-3000:]
    record = json.loads(result.stdout)
    run_dir = Path(record["run_dir"])
    assert run_dir.parent == tmp_path / "home" / "runs"
    on_disk = json.loads((run_dir / "run.json").read_text())
    assert on_disk["status"] == "done"
    assert [s["stage"] for s in on_disk["stages"]] == [name for name, _ in STAGES]
    index = (run_dir / "index.html").read_text()
    for stage in on_disk["stages"]:
        assert stage["status"] == "done" and (run_dir / stage["notebook"]).exists()
        assert f'href="{Path(stage["notebook"]).stem}.html"' in index and (run_dir / stage["notebook"]).with_suffix(".html").exists()
