"""CI fails when an exported module was edited by hand or a notebook carries outputs."""
import json
import re
import shutil
import subprocess
import sys

import pytest

from conftest import REPO

CHECK = [sys.executable, str(REPO / "tools" / "check_notebooks.py")]


@pytest.fixture
def copy(tmp_path):
    "A copy of the project's sources, where breaking things is safe."
    dest = tmp_path / "repo"
    shutil.copytree(REPO, dest, ignore=shutil.ignore_patterns(".venv", ".git", "test-artifacts", "*.egg-info",
                                                              "__pycache__", "build", "dist"))
    return dest


def test_the_checkout_is_clean(copy):
    result = subprocess.run(CHECK + [str(copy)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_a_hand_edited_module_fails_the_check(copy):
    module = copy / "fullstack_ml" / "settings.py"
    module.write_text(module.read_text().replace('DEFAULT_HOME = "~/.fullstack_ml"', 'DEFAULT_HOME = "/tmp/x"'))
    result = subprocess.run(CHECK + [str(copy)], capture_output=True, text=True)
    assert result.returncode == 1
    assert "fullstack_ml/settings.py" in result.stderr


def test_a_notebook_with_outputs_fails_the_check(copy):
    path = copy / "nbs" / "core" / "settings.ipynb"
    nb = json.loads(path.read_text())
    code = next(c for c in nb["cells"] if c["cell_type"] == "code")
    code["outputs"] = [{"output_type": "stream", "name": "stdout", "text": ["hi\n"]}]
    code["execution_count"] = 1
    path.write_text(json.dumps(nb, indent=1))
    result = subprocess.run(CHECK + [str(copy)], capture_output=True, text=True)
    assert result.returncode == 1
    assert "nbs/core/settings.ipynb" in result.stderr


def chapter_text(path) -> str:
    return "".join("".join(c["source"]) for c in json.loads(path.read_text())["cells"])


def test_the_readme_and_the_front_page_map_every_chapter():
    readme, front = (REPO / "README.md").read_text(), chapter_text(REPO / "nbs" / "index.ipynb")
    for path in sorted((REPO / "nbs").glob("[0-9]*.ipynb")):
        assert f"`{path.stem}`" in readme, f"README's map lacks {path.name}"
        assert f"`{path.stem}`" in front, f"nbs/index.ipynb's map lacks {path.name}"
    for folder in ("core", "projects"):
        for path in sorted((REPO / "nbs" / folder).glob("*.ipynb")):
            assert f"{folder}/{path.stem}`" in readme, f"README's map lacks {folder}/{path.name}"
            assert f"`{path.stem}`" in front or f"{folder}/{path.stem}`" in front, f"index's map lacks {folder}/{path.name}"
    for named in re.findall(r"`(nbs/[^`\s]+)`", readme):  # every file the README points at exists
        assert list(REPO.glob(named)), named


def test_nothing_points_outside_the_repository():
    for path in [REPO / "README.md", *(REPO / "nbs").rglob("*.ipynb"), *(REPO / "tests").glob("*.py"),
                 *(REPO / "tools").glob("*.py")]:
        text = path.read_text()
        assert "DESIGN" + ".md" not in text and "../" + "shared" not in text, path
