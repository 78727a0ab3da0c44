"""The papermill runner and the `fsml` command: parameters in, results and reports out, failures named."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, fsml
from fullstack_ml.pipeline import STAGES, StageFailed, run_pipeline

FIXTURES = REPO / "nbs" / "fixtures" / "pipeline"


def test_parameters_are_injected_and_results_recorded(fsml_home, tmp_path):
    config = tmp_path / "fixture.yml"
    config.write_text("profiles:\n  fixture:\n    collect: {n: 2}\n")
    run = run_pipeline("fixture", config_path=config, notebooks=FIXTURES, stage_list=[("collect", "ok.ipynb")],
                       overrides=["collect.n=7"], progress=False)
    run_dir = Path(run["run_dir"])
    assert run_dir.parent == fsml_home / "runs"
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "done"
    (stage,) = record["stages"]
    assert stage["stage"] == "collect" and stage["status"] == "done"
    assert stage["parameters"] == {"n": 7}
    assert stage["result"] == {"n_squared": 49}
    assert stage["ended_at"] >= stage["started_at"]
    executed = json.loads((run_dir / "ok.ipynb").read_text())  # the executed notebook is the report
    assert any("injected-parameters" in c["metadata"].get("tags", []) for c in executed["cells"])


def test_a_raising_cell_fails_the_run_naming_notebook_and_cell(fsml_home):
    with pytest.raises(StageFailed) as info:
        run_pipeline("smoke", notebooks=FIXTURES, progress=False,
                     stage_list=[("collect", "ok.ipynb"), ("annotate", "fails.ipynb"), ("train", "ok.ipynb")])
    message = str(info.value)
    assert "stage 'annotate' failed in fails.ipynb at cell" in message
    assert "raise ValueError" in message and "this stage always fails" in message
    (run_dir,) = (fsml_home / "runs").iterdir()
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "failed"
    assert [(s["stage"], s["status"]) for s in record["stages"]] == [("collect", "done"), ("annotate", "failed")]


def test_stages_selects_a_subset(fsml_home):
    run = run_pipeline("smoke", notebooks=FIXTURES, stages=["train"], progress=False,
                       stage_list=[("collect", "fails.ipynb"), ("train", "ok.ipynb")])
    assert [s["stage"] for s in run["stages"]] == ["train"]
    with pytest.raises(ValueError, match="unknown stage"):
        run_pipeline("smoke", notebooks=FIXTURES, stages=["nope"], progress=False)


def test_a_user_config_adds_profiles(fsml_home, tmp_path):
    config = tmp_path / "mine.yml"
    config.write_text("profiles:\n  tiny:\n    collect: {n: 3}\n")
    run = run_pipeline("tiny", config_path=config, notebooks=FIXTURES, stage_list=[("collect", "ok.ipynb")],
                       progress=False)
    assert run["stages"][0]["result"] == {"n_squared": 9}


def test_every_stage_has_a_notebook_or_will():
    names = [name for name, _ in STAGES]
    assert names == ["collect", "annotate", "datasets", "train", "eval", "serve"]


@pytest.mark.parametrize("args, env, expected", [
    (["pipeline", "--profile", "nope"], {}, "unknown profile 'nope'; expected one of: default, smoke"),
    (["pipeline", "--set", "collect.max_pages"], {}, "expected STAGE.KEY=VALUE"),
    (["pipeline", "--set", "nope.x=1"], {}, "unknown stage 'nope'"),
    (["pipeline", "--config", "/nonexistent.yml"], {}, "does not exist"),
    (["pipeline"], {"FSML_DB_URL": "postgresql://nobody@127.0.0.1:1/x"}, "check FSML_DB_URL"),
])
def test_bad_settings_give_one_line_and_a_nonzero_exit(fsml_home, args, env, expected):
    result = fsml(*args, env={**os.environ, **env}, check=False)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fsml: error: "), result.stderr
    assert expected in lines[0]
    assert not (fsml_home / "runs").exists() or not any((fsml_home / "runs").iterdir())


def test_version_answers_without_importing_torch():
    code = "import sys; from fullstack_ml.cli import main; sys.argv=['fsml','--help']\n" \
           "try:\n    main()\nexcept SystemExit:\n    pass\nassert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
    assert fsml("--version").stdout.startswith("fsml, version")
