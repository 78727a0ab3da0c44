"""`make docs`: the course as a static site, every chapter executed at the smoke profile on a throw-away home.

This is CI's build of the site (the same `make docs` a person runs), then a look at what it made.
"""
import json
import os
import re
import subprocess

import pytest

from conftest import REPO
from fullstack_ml.pipeline import STAGES


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    "The site as `make docs` builds it (the smoke pipeline included), into a temp folder."
    out = tmp_path_factory.mktemp("docs") / "_site"
    home = tmp_path_factory.mktemp("learner-home")
    env = {k: v for k, v in os.environ.items() if not k.startswith("FSML_")}
    env["FSML_HOME"] = str(home)  # the build must not touch it: it makes its own throw-away home
    result = subprocess.run(["make", "-o", ".venv/.installed", "docs", f"SITE={out}"], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=2400)
    assert result.returncode == 0, result.stderr[-4000:]
    assert not any(home.iterdir()), "the docs build wrote into the learner's FSML_HOME"
    return out


def chapter_notebooks() -> list[str]:
    return ["index.ipynb", *sorted(p.relative_to(REPO / "nbs").as_posix()
                                   for folder, pattern in [("", "[0-9]*.ipynb"), ("core", "*.ipynb"), ("projects", "*.ipynb")]
                                   for p in (REPO / "nbs" / folder).glob(pattern))]


@pytest.mark.slow
@pytest.mark.timeout(2700)  # the first test builds the site: the smoke pipeline, then every library chapter
def test_one_page_per_chapter_linked_from_the_index(site):
    pages = json.loads((site / "chapters.json").read_text())
    assert sorted(p["chapter"] for p in pages) == sorted(chapter_notebooks())
    index = (site / "index.html").read_text()
    for page in pages:
        assert (site / page["page"]).exists(), page["page"]
        assert f'href="{page["page"]}"' in index
        assert not page["error"], (page["chapter"], page["error"])
    assert 'href="run.html"' in index and (site / "run.html").exists()  # the smoke run's own report, linked
    jobs = [p["job"] for p in pages]
    assert jobs[0] == "1 Frame" and jobs[-1] == "7 Serve"  # ordered by job


@pytest.mark.slow
@pytest.mark.timeout(2700)
def test_stage_pages_show_a_figure_or_table_made_by_running_them(site):
    pages = {p["chapter"]: p for p in json.loads((site / "chapters.json").read_text())}
    for stage, notebook in STAGES:
        assert pages[notebook]["stage"] == stage
        html = (site / pages[notebook]["page"]).read_text()
        outputs = html.split('class="jp-OutputArea', 1)[1]  # what running it printed and drew, not its source
        assert re.search(r'<img [^>]*src="data:image/png;base64,', outputs) or "<table" in outputs, notebook
        assert "celltag_injected-parameters" in html  # the smoke run's executed notebook, parameters injected
