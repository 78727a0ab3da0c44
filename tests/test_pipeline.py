"""The papermill runner and the `fsml` command: parameters in, results and reports out, failures named."""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import REPO, fsml
from fullstack_ml.pipeline import STAGES, StageFailed, run_pipeline

FIXTURES = REPO / "nbs" / "fixtures" / "pipeline"
PROFILES = ", ".join(sorted(yaml.safe_load((REPO / "nbs" / "pipeline.yml").read_text())["profiles"]))


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


def test_every_stage_has_its_notebook():
    assert [name for name, _ in STAGES] == ["collect", "annotate", "datasets", "train", "eval", "serve"]
    for _, notebook in STAGES:
        assert (REPO / "nbs" / notebook).exists(), notebook


def test_a_missing_stage_notebook_is_refused_before_anything_runs(fsml_home):
    with pytest.raises(FileNotFoundError, match="gone.ipynb missing from"):
        run_pipeline("smoke", notebooks=FIXTURES, progress=False,
                     stage_list=[("collect", "ok.ipynb"), ("train", "gone.ipynb")])
    assert not (fsml_home / "runs").exists() or not any((fsml_home / "runs").iterdir())  # not even collect ran


def test_the_cli_refuses_a_missing_stage_notebook(fsml_home, tmp_path):
    nbs = tmp_path / "nbs"  # an installed-looking copy of the notebooks with the training chapter gone
    code = ("import sys, shutil, pathlib; import fullstack_ml.pipeline as p\n"
            f"shutil.copytree(p.notebooks_dir(), {str(nbs)!r}); pathlib.Path({str(nbs)!r}, '05_train.ipynb').unlink()\n"
            f"p.notebooks_dir = lambda: pathlib.Path({str(nbs)!r})\n"
            "from fullstack_ml.cli import main; sys.argv = ['fsml', 'pipeline', '--profile', 'smoke']; main()")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 1
    assert "fsml: error: stage notebook(s) 05_train.ipynb missing" in result.stderr
    assert not (fsml_home / "runs").exists() or not any((fsml_home / "runs").iterdir())


def test_run_json_never_holds_a_password(fsml_home, postgres_db, monkeypatch):
    with_password = postgres_db.replace("postgres@", "postgres:s3cret-pw@")  # trust auth: any password is accepted
    monkeypatch.setenv("FSML_DB_URL", with_password)
    monkeypatch.setenv("FSML_QUEUE_URL", "redis://:queue-pw@127.0.0.1:6379/0")
    run = run_pipeline("smoke", notebooks=FIXTURES, stage_list=[("collect", "ok.ipynb")], progress=False,
                       overrides=[f"collect.note={with_password}"])
    run_dir = Path(run["run_dir"])
    written = "".join(p.read_text() for p in run_dir.glob("*") if p.suffix in (".json", ".html"))
    assert "s3cret-pw" not in written and "queue-pw" not in written
    assert "s3cret-pw" not in json.dumps(run)
    record = json.loads((run_dir / "run.json").read_text())
    assert record["settings"]["db_url"] == with_password.replace("s3cret-pw", "***")
    assert record["stages"][0]["parameters"]["note"] == with_password.replace("s3cret-pw", "***")


def test_each_run_writes_an_html_report_with_its_plots(fsml_home):
    with pytest.raises(StageFailed, match="index.html"):
        run_pipeline("smoke", notebooks=FIXTURES, progress=False,
                     stage_list=[("collect", "ok.ipynb"), ("train", "plot.ipynb"), ("eval", "fails.ipynb")])
    (run_dir,) = (fsml_home / "runs").iterdir()
    assert run_dir.name.startswith("pipeline-")
    index = (run_dir / "index.html").read_text()
    for stage, notebook, status in [("collect", "ok", "done"), ("train", "plot", "done"), ("eval", "fails", "failed")]:
        assert f'<td>{stage}</td><td><a href="{notebook}.html">{notebook}.ipynb</a></td><td class="{status}">' in index
    assert "this stage always fails" in index
    plot = (run_dir / "plot.html").read_text()
    assert re.search(r'<img [^>]*src="data:image/png;base64,', plot)  # the figure, embedded
    assert "<table" in plot and "n_squared" in plot  # the DataFrame, as a table


@pytest.mark.parametrize("args, env, expected", [
    (["pipeline", "--profile", "nope"], {}, f"unknown profile 'nope'; expected one of: {PROFILES}"),
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


def test_the_gallery_has_its_clear_name_and_keeps_the_old_one():
    for name in ("gallery", "demo-site"):
        result = fsml(name, "--help")
        assert "--port" in result.stdout, name
    listing = fsml("--help").stdout
    assert "gallery " in listing and "Old name of `fsml gallery`" in listing



def test_each_stage_chapter_says_how_to_get_the_earlier_stages_data():
    for position, (stage, notebook) in enumerate(STAGES[1:], start=1):
        earlier = ",".join(name for name, _ in STAGES[:position])
        text = "".join("".join(c["source"]) for c in json.loads((REPO / "nbs" / notebook).read_text())["cells"])
        assert f"fsml pipeline --profile smoke --stages {earlier}`" in text, notebook


def test_environment_variables_are_read_only_in_settings():
    reads = re.compile(r"os\.environ\.get\(|os\.getenv\(|os\.environ\[[^\]]+\](?!\s*=[^=])|environ\.copy\(|\*\*os\.environ")
    offenders = [f"{path.name}:{number}: {line.strip()}"
                 for path in sorted((REPO / "fullstack_ml").glob("*.py")) if path.name not in ("settings.py", "_modidx.py")
                 for number, line in enumerate(path.read_text().splitlines(), start=1) if reads.search(line)]
    assert not offenders, "read environment variables through fullstack_ml.settings:\n" + "\n".join(offenders)


def test_a_profile_runs_the_stages_it_lists_and_stages_on_the_command_line_win(fsml_home, tmp_path):
    config = tmp_path / "listed.yml"
    config.write_text("profiles:\n  listed:\n    stages: [train]\n    train: {n: 4}\n")
    stage_list = [("collect", "fails.ipynb"), ("train", "ok.ipynb")]  # collect would fail the run if it ran
    run = run_pipeline("listed", config_path=config, notebooks=FIXTURES, stage_list=stage_list, progress=False)
    assert [(s["stage"], s["result"]) for s in run["stages"]] == [("train", {"n_squared": 16})]
    stage_list = [("collect", "ok.ipynb"), ("train", "fails.ipynb")]
    run = run_pipeline("listed", config_path=config, notebooks=FIXTURES, stage_list=stage_list, progress=False,
                       stages=["collect"])
    assert [s["stage"] for s in run["stages"]] == ["collect"]
    config.write_text("profiles:\n  typo:\n    stages: [collect, trian]\n")
    with pytest.raises(ValueError, match=r"profile 'typo' lists unknown stage\(s\) trian under stages:"):
        run_pipeline("typo", config_path=config, notebooks=FIXTURES, progress=False)


def test_one_cycle_trains_once_and_the_other_profiles_run_every_stage():
    from fullstack_ml.pipeline import load_profile, profile_stages, stages_to_run, with_project

    every = [name for name, _ in STAGES]
    for profile in ("default", "smoke", "shapes", "shapes_smoke"):
        assert stages_to_run(None, profile_stages(profile), load_profile(profile)["train"]["project"]) is None
    cycle = stages_to_run(None, profile_stages("cycle"), "digits")
    assert cycle == [name for name in every if name != "train"]  # the serve stage's retrain is the one training
    assert load_profile("cycle")["serve"]["retrain"] is True
    assert with_project(load_profile("cycle"), "shapes")["serve"] == {"retrain": True, "project": "shapes"}
