"""Projects: created and read through `fsml project`, kept in the store (SQLite and PostgreSQL), picked by a
pipeline profile or `fsml pipeline --project`, and an error that lists the projects when the choice is ambiguous."""
import json
import os
import subprocess
import sys

import nbformat
import pytest
import sqlalchemy as sa

from conftest import fsml
from fullstack_ml.project import ImageSpec, Label, Project, bundled_project, get_project, list_projects, save_project
from fullstack_ml.store import connect, now, projects


def env_for(home) -> dict:
    "The environment of a user whose FSML_HOME is `home` (no other store URLs)."
    env = {k: v for k, v in os.environ.items() if not k.startswith("FSML_")}
    return dict(env, FSML_HOME=str(home))


def test_cli_creates_lists_and_shows_projects(fsml_home):
    env = env_for(fsml_home)
    made = json.loads(fsml("project", "create", "pets", "--labels", "cat,dog,bird", "--image-size", "64",
                           "--colour", "rgb", "--json", env=env).stdout)
    assert made["labels"] == [{"name": n, "key": k, "description": ""} for n, k in zip(["cat", "dog", "bird"], "123")]
    assert (made["image"]["side"], made["image"]["colour"], made["image"]["fit"]) == (64, "rgb", "letterbox")
    again = fsml("project", "create", "pets", "--labels", "cat,dog,bird", "--image-size", "64", env=env)
    assert again.stdout.startswith("exists: pets")  # a script may re-run it
    fsml("project", "create", "scans", "--labels", "ok,defect", "--image-size", "16", "--colour", "gray", env=env)
    listed = [json.loads(line) for line in fsml("project", "list", "--json", env=env).stdout.splitlines()]
    assert [(p["name"], p["image"]["colour"]) for p in listed] == [("pets", "rgb"), ("scans", "gray")]
    shown = json.loads(fsml("project", "show", "scans", "--json", env=env).stdout)
    assert shown == Project("scans", ["ok", "defect"], ImageSpec(side=16, colour="gray")).to_dict()
    assert "small_cnn" in fsml("project", "show", "scans", env=env).stdout  # tiny gray pictures: the small CNN


def test_cli_errors_say_what_to_do(fsml_home):
    env = env_for(fsml_home)
    fsml("project", "create", "pets", "--labels", "cat,dog", env=env)
    changed = fsml("project", "create", "pets", "--labels", "cat,dog,bird", env=env, check=False)
    assert changed.returncode == 1 and "exists with another definition" in changed.stderr
    assert changed.stderr.count("\n") == 1  # one line, not a traceback
    missing = fsml("project", "show", "cars", env=env, check=False)
    assert missing.returncode == 1 and "no project 'cars'; the store has pets" in missing.stderr
    bad = fsml("project", "create", "my pets", "--labels", "cat", env=env, check=False)
    assert bad.returncode == 1 and "project name 'my pets'" in bad.stderr
    duplicate = fsml("project", "create", "twice", "--labels", "cat,cat", env=env, check=False)
    assert duplicate.returncode == 1 and "distinct" in duplicate.stderr


def test_no_project_named_means_the_only_one_and_several_are_listed(fsml_home):
    engine = connect()
    save_project(engine, Project("pets", ["cat", "dog"]))
    assert get_project(engine).name == "pets"
    save_project(engine, bundled_project("digits"))
    with pytest.raises(ValueError, match=r"2 projects \(digits, pets\): pick one with --project NAME"):
        get_project(engine)
    for_pipeline = fsml("pipeline", "--project", "cars", "--stages", "datasets", env=env_for(fsml_home), check=False)
    assert for_pipeline.returncode == 1 and "no project 'cars'; the store has digits, pets" in for_pipeline.stderr


def echo_notebook(path) -> None:
    "A stage notebook that hands back the project it was given."
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell('project: str = ""  # the project (the pipeline passes it)')
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell(
        "from fullstack_ml.pipeline import save_result\nsave_result({'project': project})")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "python3", "language": "python"}
    nbformat.write(nb, str(path))


@pytest.mark.slow
def test_a_profile_picks_the_project_every_stage_is_given(fsml_home, tmp_path):
    from fullstack_ml.pipeline import run_pipeline

    notebooks = tmp_path / "nbs"
    notebooks.mkdir()
    for name in ("collect", "annotate", "datasets"):
        echo_notebook(notebooks / f"{name}.ipynb")
    stage_list = [(name, f"{name}.ipynb") for name in ("collect", "annotate", "datasets")]
    config = tmp_path / "mine.yml"
    config.write_text("profiles:\n  mine:\n    project: pets\n    annotate: {}\n  demo:\n    project: digits\n")
    engine = connect()
    run = run_pipeline("demo", config, notebooks=notebooks, stage_list=stage_list[1:2], progress=False)
    assert run["stages"][0]["result"]["project"] == "digits"
    assert list_projects(engine) == [bundled_project("digits")]  # a bundled project is stored on its first run
    save_project(engine, Project("pets", ["cat", "dog"]))
    run = run_pipeline("mine", config, notebooks=notebooks, stage_list=stage_list[1:], progress=False)
    assert run["project"] == "pets" and [s["result"]["project"] for s in run["stages"]] == ["pets", "pets"]
    save_project(engine, Project("cars", ["sedan", "truck"]))  # yours: collection is left out, --stages or not
    run = run_pipeline("mine", config, notebooks=notebooks, stage_list=stage_list, progress=False, project="cars")
    assert [(s["stage"], s["result"]["project"]) for s in run["stages"]] == [("annotate", "cars"), ("datasets", "cars")]
    with pytest.raises(ValueError, match="no project 'boats'; the store has cars, digits, pets"):
        run_pipeline("mine", config, notebooks=notebooks, stage_list=stage_list[1:], progress=False, project="boats")


def round_trip(engine) -> None:
    "Save a full definition, read it back; a pre-definition row of a bundled project reads as its definition."
    pets = Project("pets", (Label("cat", "c", "any cat"), Label("dog", "d")),
                   ImageSpec(side=48, colour="rgb", fit="resize", mean=(0.5, 0.4, 0.3), std=(0.2, 0.2, 0.2)),
                   model="resnet", train={"epochs": 4, "lr": 0.01}, overlap=2)
    assert save_project(engine, pets) == pets
    assert get_project(engine, "pets") == pets and list_projects(engine) == [pets]
    assert save_project(engine, pets) == pets  # saving again changes nothing
    with pytest.raises(ValueError, match="has labels \\['cat', 'dog'\\], not \\['cat'\\]"):
        save_project(engine, Project("pets", ["cat"]))
    retrained = Project.from_dict({**pets.to_dict(), "train": {"epochs": 9}, "overlap": 1})
    assert save_project(engine, retrained) == retrained == get_project(engine, "pets")  # same labels: the rest updates
    with engine.begin() as conn:  # as the annotation stage wrote projects before they had definitions
        conn.execute(projects.insert().values(name="digits", labels=[str(d) for d in range(10)], overlap=1,
                                              created_at=now()))
        conn.execute(projects.insert().values(name="old", labels=["yes", "no"], overlap=3, created_at=now()))
    assert get_project(engine, "digits") == bundled_project("digits")
    assert get_project(engine, "old") == Project("old", ["yes", "no"], overlap=3)
    with engine.connect() as conn:
        stored = conn.execute(sa.select(projects.c.labels, projects.c.meta).where(projects.c.name == "pets")).one()
    assert stored.labels == ["cat", "dog"] and stored.meta["project"]["train"] == {"epochs": 9}


def test_save_and_get_round_trip_on_sqlite(tmp_path):
    engine = connect(f"sqlite:///{tmp_path}/fsml.db")
    round_trip(engine)
    engine.dispose()


def test_save_and_get_round_trip_on_postgres(postgres_db):
    engine = connect(postgres_db)
    round_trip(engine)
    engine.dispose()


def test_concurrent_creators_on_postgres_agree(postgres_db):
    "Two processes saving the same project at once: both succeed with one row; different labels: one is refused."
    code = ("import sys\nfrom fullstack_ml.project import Project, save_project\nfrom fullstack_ml.store import connect\n"
            "labels = sys.argv[2].split(',')\n"
            "try:\n    save_project(connect(sys.argv[1]), Project('pets', labels))\n    print('saved')\n"
            "except ValueError as error:\n    print('refused', error)\n")
    connect(postgres_db).dispose()  # the schema exists before the race
    procs = [subprocess.Popen([sys.executable, "-c", code, postgres_db, labels], stdout=subprocess.PIPE, text=True)
             for labels in ("cat,dog", "cat,dog", "cat,bird")]
    outcomes = sorted(p.communicate(timeout=120)[0].split()[0] for p in procs)
    assert outcomes.count("refused") in (1, 2) and "saved" in outcomes
    winner = get_project(connect(postgres_db), "pets")
    assert winner.label_names in (["cat", "dog"], ["cat", "bird"])
    assert outcomes.count("refused") == (1 if winner.label_names == ["cat", "dog"] else 2)


def test_project_module_stays_torch_free():
    code = "import sys, fullstack_ml.project, fullstack_ml.projects.digits; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_eval_grades_the_projects_newest_run_and_version(fsml_home):
    "`fsml eval --project P` (no --model/--dataset): P's newest version and newest finished run on it, not another's."
    from fullstack_ml.eval import project_defaults
    from fullstack_ml.store import dataset_versions, runs

    engine = connect()
    assert project_defaults(engine, None, None, None) == (None, None)  # no projects: the newest, as before
    save_project(engine, Project("pets", ["cat", "dog"]))
    save_project(engine, Project("cars", ["sedan", "truck"]))
    with pytest.raises(ValueError, match=r"2 projects \(cars, pets\)"):
        project_defaults(engine, None, None, None)
    with pytest.raises(ValueError, match="project 'pets' has no dataset version yet"):
        project_defaults(engine, "pets", None, None)
    with engine.begin() as conn:
        for i, (version, project) in enumerate([("v-pets-1", "pets"), ("v-pets-2", "pets"), ("v-cars", "cars")]):
            conn.execute(dataset_versions.insert().values(id=version, project=project, manifest_path="m",
                                                          created_at=now() + i))
        for i, (run, version, status) in enumerate([("r-pets", "v-pets-1", "done"), ("r-pets-failed", "v-pets-2", "failed"),
                                                    ("r-cars", "v-cars", "done")]):
            conn.execute(runs.insert().values(id=run, kind="train", status=status, dataset_version=version,
                                              checkpoint_path="w" if status == "done" else None, created_at=now() + i))
    assert project_defaults(engine, "pets", None, None) == ("r-pets", "v-pets-2")
    assert project_defaults(engine, "cars", None, None) == ("r-cars", "v-cars")
    assert project_defaults(engine, "cars", "r-pets", "v-pets-1") == ("r-pets", "v-pets-1")  # named: as given
    listed = fsml("eval", "--help", env=env_for(fsml_home)).stdout
    assert "--project NAME" in listed


def test_items_of_a_project_are_those_queued_or_labelled_there(fsml_home):
    from fullstack_ml.annotate import enqueue
    from fullstack_ml.store import annotations, items

    engine, env = connect(), env_for(fsml_home)
    save_project(engine, Project("pets", ["cat", "dog"]))
    save_project(engine, Project("cars", ["sedan", "truck"]))
    with engine.begin() as conn:
        conn.execute(items.insert(), [{"id": name, "width": 8, "height": 8, "format": "PNG", "created_at": now() + i}
                                      for i, name in enumerate(["queued", "labelled", "elsewhere"])])
        conn.execute(annotations.insert().values(project="pets", item_id="labelled", annotator="ann", kind="label",
                                                 label="cat", created_at=now()))
    enqueue(engine, "pets", ["queued"])
    enqueue(engine, "cars", ["elsewhere"])
    listed = lambda *args: [json.loads(line)["id"] for line in fsml("items", *args, "--json", env=env).stdout.splitlines()]
    assert listed("--project", "pets") == ["queued", "labelled"]
    assert listed("--project", "cars") == ["elsewhere"]
    assert listed() == ["queued", "labelled", "elsewhere"]  # no project named: every item
    missing = fsml("items", "--project", "boats", env=env, check=False)
    assert missing.returncode == 1 and "the store has cars, pets" in missing.stderr


def test_the_crawl_reads_captions_against_the_projects_labels(fsml_home):
    from fullstack_ml.collect import crawl_vocabulary, run_collect

    engine = connect()
    labels, words = crawl_vocabulary(engine)  # nothing stored: the bundled demo's labels and caption words
    assert labels == bundled_project("digits").label_names and words["seven"] == "7"
    labels, words = crawl_vocabulary(engine, "shapes")  # bundled, not stored yet
    assert labels == bundled_project("shapes").label_names and words
    save_project(engine, Project("pets", ["cat", "dog"]))
    assert crawl_vocabulary(engine) == (["cat", "dog"], {})  # the store's only project; not bundled: no synonyms
    save_project(engine, Project("cars", ["sedan", "truck"]))
    with pytest.raises(ValueError, match=r"2 projects \(cars, pets\)"):
        crawl_vocabulary(engine)
    with pytest.raises(ValueError, match="no bundled gallery to crawl: give start_urls, or bring its images in"):
        run_collect(project="pets")
    assert "--project NAME" in fsml("collect", "--help", env=env_for(fsml_home)).stdout
