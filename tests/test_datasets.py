"""Dataset versions: idempotent snapshots, label-level diffs, splits that never move, no near-duplicate leakage,
every validation error, and the loader on any fsspec store (also via `fsml dataset`)."""
import json

import pandas as pd
import pytest
import torch
from conftest import fsml

from fullstack_ml.annotate import enqueue
from fullstack_ml.datasets import (
    add_bundled_items, diff, export_parquet, latest_version, read_manifest, snapshot, validate,
)
from fullstack_ml.labels import import_labels, import_weak_labels
from fullstack_ml.loader import load
from fullstack_ml.preprocessing import Preprocessing
from fullstack_ml.project import bundled_project, save_project
from fullstack_ml.store import annotations, connect, items, now, open_files

DIGITS = bundled_project("digits")


def labelled_items(engine, store, indices, **kwargs) -> list:
    "Add the bundled digits as items with weak labels, queued in the 'digits' project."
    save_project(engine, DIGITS)
    ids = add_bundled_items(engine, store, "digits", indices, **kwargs)
    enqueue(engine, "digits", ids)
    import_weak_labels(engine, "digits")
    return ids


def test_snapshot_is_idempotent_and_a_relabel_shows_as_exactly_that_item(fsml_home, tmp_path):
    engine, store = connect(), open_files()
    ids = labelled_items(engine, store, range(120))
    first = json.loads(fsml("dataset", "snapshot", "--json").stdout)
    again = json.loads(fsml("dataset", "snapshot", "--json").stdout)
    assert again["version"] == first["version"] and first["parent"] is None
    assert sum(first["counts"]["split"].values()) == 120 and sum(first["counts"]["label"].values()) == 120

    (tmp_path / "fix.csv").write_text(f"item,label\n{ids[7]},9\n")
    import_labels(engine, "digits", tmp_path / "fix.csv", annotator="alice")
    second = json.loads(fsml("dataset", "snapshot", "--json").stdout)
    assert second["version"] != first["version"] and second["parent"] == first["version"]
    changes = json.loads(fsml("dataset", "diff", first["version"], second["version"], "--json").stdout)
    assert changes["relabelled"] == [ids[7]]
    assert changes["added"] == changes["removed"] == changes["moved"] == []

    lines = [json.loads(line) for line in fsml("dataset", "show", second["version"], "--items", "--json")
             .stdout.splitlines()]
    assert len(lines) == 120 and {"item", "label", "split"} <= set(lines[0])
    assert {line["item"]: line["label"] for line in lines}[ids[7]] == "9"
    listed = [json.loads(line) for line in fsml("dataset", "list", "--json").stdout.splitlines()]
    assert [row["version"] for row in listed] == [second["version"], first["version"]]


def test_adding_100_items_moves_no_old_item(fsml_home):
    engine, store = connect(), open_files()
    labelled_items(engine, store, range(200))
    before = snapshot(engine, store)
    labelled_items(engine, store, range(200, 300))
    after = snapshot(engine, store)
    changes = diff(before, after, engine, store)
    assert len(changes["added"]) == 100 and changes["moved"] == changes["removed"] == changes["relabelled"] == []
    old, new = read_manifest(before, engine, store), read_manifest(after, engine, store)
    splits = new.set_index("item_id").split
    assert (old.set_index("item_id").split == splits.loc[old.item_id].values).all()


def test_a_near_duplicate_group_lands_in_one_split(fsml_home):
    engine, store = connect(), open_files()
    # 60 items in 15 groups of 4: item k belongs to the group headed by item 4*(k//4)
    labelled_items(engine, store, range(60), groups={k: 4 * (k // 4) for k in range(60) if k % 4})
    manifest = read_manifest(snapshot(engine, store), engine, store)
    assert manifest.group_id.nunique() == 15
    assert (manifest.groupby("group_id").split.nunique() == 1).all()
    assert manifest.split.nunique() > 1  # the groups themselves do spread over the splits


def test_unlabeled_items_fail_unless_allowed(fsml_home):
    engine, store = connect(), open_files()
    ids = labelled_items(engine, store, range(30), weak_labels=[None] * 3 + [None] + [str(i % 10) for i in range(26)])
    with pytest.raises(ValueError, match="4 unlabeled item"):
        snapshot(engine, store)
    done = fsml("dataset", "snapshot", check=False)
    assert done.returncode == 1 and "unlabeled" in done.stderr and "Traceback" not in done.stderr
    version = snapshot(engine, store, allow_unlabeled=True)
    assert set(read_manifest(version, engine, store).item_id) == set(ids[4:])


def test_a_label_outside_the_label_set_fails(fsml_home):
    engine, store = connect(), open_files()
    ids = labelled_items(engine, store, range(20))
    with engine.begin() as conn:  # a label that slipped past the app (e.g. written by an old importer)
        conn.execute(annotations.insert().values(project="digits", item_id=ids[3], annotator="bob", kind="label",
                                                 label="seven", created_at=now()))
    with pytest.raises(ValueError, match="labels outside the label set.*'seven'"):
        snapshot(engine, store)


def test_a_group_change_that_would_move_an_item_between_splits_fails(fsml_home):
    engine, store = connect(), open_files()
    ids = labelled_items(engine, store, range(40))
    snapshot(engine, store)
    manifest = read_manifest(None, engine, store).set_index("item_id")
    # re-group an item under a head that sits in another split: its split would change
    mover = ids[0]
    head = next(i for i in ids if manifest.loc[i, "split"] != manifest.loc[mover, "split"])
    with engine.begin() as conn:
        conn.execute(items.update().where(items.c.id == mover).values(group_id=head))
    with pytest.raises(ValueError, match="1 item\\(s\\) would move between splits"):
        snapshot(engine, store)


def test_validate_reports_near_duplicate_leakage():
    manifest = pd.DataFrame({"item_id": ["a", "b"], "label": ["1", "1"], "split": ["train", "test"],
                             "source": "weak", "agreement": float("nan"), "group_id": ["a", "a"]})
    problems = validate(manifest, DIGITS.label_names)
    assert len(problems) == 1 and "near-duplicate group(s) straddle splits" in problems[0]


def test_the_loader_reads_any_fsspec_store_and_caches_decoded_tensors(fsml_home, tmp_path):
    engine, store = connect(), open_files(f"memory://loader-{tmp_path.name}")
    labelled_items(engine, store, range(50))
    version = snapshot(engine, store)
    assert latest_version(engine) == version
    data = load(version, engine, store, cache_dir=tmp_path / "cache")  # the preprocessing of the version's project
    assert data.preprocessing == Preprocessing.from_spec(DIGITS.image) and data.labels == DIGITS.label_names
    assert sum(len(part) for part in data.splits.values()) == 50
    x, y = data["train"][0]
    assert x.shape == (1, 8, 8) and 0 <= int(y) < 10
    seen = torch.cat([targets for _, targets in data.dataloader("train", batch_size=7)])
    assert sorted(seen.tolist()) == sorted(data["train"].targets.tolist())
    cached = list((tmp_path / "cache").iterdir())
    assert len(cached) == 1
    for name in list(store.list("blobs")):  # with the images gone, the cache still answers
        store.fs.rm(store.path(name))
    again = load(version, engine, store, Preprocessing.from_spec(DIGITS.image), cache_dir=tmp_path / "cache")
    assert torch.equal(again["valid"].images, data["valid"].images)
    with pytest.raises(FileNotFoundError):  # but a different preprocessing must decode again
        load(version, engine, store, Preprocessing(side=8, colour="gray", fit="letterbox", invert="auto"), cache_dir=tmp_path / "cache")


def test_export_to_parquet_keeps_the_manifest_and_image_bytes(fsml_home, tmp_path):
    engine, store = connect(), open_files()
    labelled_items(engine, store, range(12))
    version = snapshot(engine, store)
    assert export_parquet(version, str(tmp_path / "out.parquet"), engine, store) == 12
    frame = pd.read_parquet(tmp_path / "out.parquet")
    assert {"item_id", "label", "split", "image"} <= set(frame.columns)
    assert frame.image.map(lambda b: b[:4] == b"\x89PNG").all()


def test_feedback_only_items_stay_out_of_a_new_version(fsml_home):
    "Demo feedback is a hint, not a vote: 50 of them do not outvote one person, nor put an item in a version."
    engine, store = connect(), open_files()
    ids = labelled_items(engine, store, range(30))
    hinted, labelled = ids[:2]
    with engine.begin() as conn:
        conn.execute(annotations.insert(), [
            {"project": "digits", "item_id": item_id, "annotator": f"visitor-{k}", "kind": "feedback", "label": "8",
             "created_at": now()} for item_id in (hinted, labelled) for k in range(50)])
        conn.execute(annotations.insert().values(project="digits", item_id=labelled, annotator="ann", kind="label",
                                                 label="3", created_at=now()))
    manifest = read_manifest(snapshot(engine, store, allow_unlabeled=True), engine, store).set_index("item_id")
    assert hinted not in manifest.index  # only visitors (and the caption) labelled it: in no split
    assert manifest.loc[labelled, "label"] == "3"  # one annotator against fifty visitors
    assert len(manifest) == len(ids) - 1  # the other items keep their weak labels
