"""Every bundled project runs the whole pipeline: collect → annotate → datasets → train → eval → serve, then the demo
and the edge page, each at its smoke profile on its own temporary FSML_HOME, with the repository's `fsml`.

The two projects differ in everything but the code (8x8 gray drawings of ten one-character labels; 32x32 colour
letterboxed pictures of six word labels, a residual network), so anything that still assumes digits fails here.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fullstack_ml.pipeline import STAGES
from fullstack_ml.project import bundled_project

FSML = Path(sys.executable).parent / "fsml"
# (profile, project, the network's input channels and side)
PROFILES = [("smoke", "digits", 1, 8), ("shapes_smoke", "shapes", 3, 32)]

# What the demo page and the API learn about the served model, read from the store of the given home.
PROBE = """
import json
from fullstack_ml.demo import model_card
from fullstack_ml.project import get_project
from fullstack_ml.registry import load
from fullstack_ml.store import connect

card, model, engine = model_card(), load(), connect()
print(json.dumps({"card": card, "stored_labels": get_project(engine).label_names, "name": model.name,
                  "labels": model.predictor.labels, "preprocessing": model.predictor.preprocessing.config}))
"""


def _env(home: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FSML_")}
    return {**env, "FSML_HOME": str(home)}


def _run(args: list, home: Path, timeout: int) -> subprocess.CompletedProcess:
    result = subprocess.run(args, capture_output=True, text=True, env=_env(home), cwd=home.parent, timeout=timeout)
    assert result.returncode == 0, f"{' '.join(map(str, args))} failed:\n{result.stderr[-4000:]}"
    return result


@pytest.mark.slow
@pytest.mark.timeout(1800)
@pytest.mark.parametrize("profile, project, channels, side", PROFILES, ids=[p[1] for p in PROFILES])
def test_each_bundled_project_runs_the_whole_pipeline(tmp_path, profile, project, channels, side):
    home = tmp_path / "home"
    record = json.loads(_run([FSML, "pipeline", "--profile", profile, "--json"], home, 1500).stdout)
    assert record["status"] == "done" and record["project"] == project
    assert [s["stage"] for s in record["stages"]] == [name for name, _ in STAGES]
    assert all(s["status"] == "done" and s["parameters"]["project"] == project for s in record["stages"])
    served = next(s["result"] for s in record["stages"] if s["stage"] == "serve")
    assert served["requests"] == served["ok"] > 0  # every test image answered through HTTP

    labels = bundled_project(project).label_names
    probe = json.loads(_run([sys.executable, "-c", PROBE], home, 300).stdout)
    assert probe["stored_labels"] == probe["labels"] == probe["card"]["labels"] == labels
    assert probe["name"] == probe["card"]["project"] == project
    card_drawable = bundled_project(project).image.drawable
    assert probe["card"]["drawable"] == card_drawable  # the canvas only for drawings
    assert probe["preprocessing"]["side"] == side and probe["preprocessing"]["colour"] == ("rgb" if channels == 3 else "gray")

    site = tmp_path / "edge"
    edge = json.loads(_run([FSML, "demo", "static", "--out", site, "--json"], home, 600).stdout)
    assert edge["model"].startswith(f"{project}@") and (site / "index.html").exists() and (site / "model.onnx").exists()
    page_model = json.loads((site / "model.json").read_text())  # what the page's JavaScript reads
    assert (page_model["project"], page_model["labels"], page_model["drawable"]) == (project, labels, card_drawable)
    assert page_model["preprocessing"] == probe["preprocessing"]  # the browser prepares pictures as the server does


@pytest.mark.slow
def test_the_shapes_gallery_exported_as_class_folders_imports_with_weak_labels(tmp_path):
    folder, home = tmp_path / "shapes", tmp_path / "home"
    _run([FSML, "gallery", "--project", "shapes", "--images", "60", "--export", folder], home, 300)
    assert sorted(p.name for p in folder.iterdir()) == sorted(bundled_project("shapes").label_names)
    _run([FSML, "project", "create", "shapes", "--labels", ",".join(bundled_project("shapes").label_names),
          "--image-size", "32", "--colour", "rgb"], home, 300)
    report = json.loads(_run([FSML, "items", "import", folder, "--project", "shapes", "--labels-from", "folders",
                              "--json"], home, 300).stdout)
    assert report["imported"] == 70 and report["near_duplicates"] >= 8  # 60 pictures and 10 JPEG re-encodes
    rows = [json.loads(line) for line in _run([FSML, "items", "--json"], home, 120).stdout.splitlines()]
    assert len(rows) == 70 and {r["weak_label"] for r in rows} == set(bundled_project("shapes").label_names)
    again = json.loads(_run([FSML, "items", "import", folder, "--project", "shapes", "--labels-from", "folders",
                             "--json"], home, 300).stdout)
    assert again["imported"] == 0  # a re-run adds nothing
