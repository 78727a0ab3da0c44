"""The demo's corrections are hints, not votes: fifty corrections from fifty reloads of the demo page cannot outvote
one annotator, and an item only visitors have labelled stays out of a new dataset version until a person labels it."""
import sqlalchemy as sa
from demo_support import digit_splits

RELOADS = 50


def test_fifty_reloads_cannot_outvote_one_annotator_nor_enter_a_dataset(tmp_path):
    from fullstack_ml.annotate import claim, ensure_project, submit
    from fullstack_ml.auth import User
    from fullstack_ml.datasets import read_manifest, snapshot
    from fullstack_ml.demo import VisitorLimits, record_feedback
    from fullstack_ml.labels import consensus
    from fullstack_ml.store import annotations, connect, open_files

    engine, store = connect(f"sqlite:///{tmp_path}/fsml.db"), open_files(str(tmp_path / "files"))
    ensure_project(engine, "digits")
    fours = [png for _, png, label in digit_splits()["test"] if label == "4"]
    labelled, hinted = fours[0], fours[1]
    # each reload of the page is a new kernel; a visitor who also drops the cookie is a new visitor each time
    visitors = [User(f"visitor-{n:02d}", "demo") for n in range(RELOADS)]
    unlimited = VisitorLimits(all_corrections=10 * RELOADS)  # not the rate limit: the hints themselves must not count
    first = record_feedback(labelled, "9", {"label": "4", "model": "digits@1"}, annotator=visitors[0].name,
                            engine=engine, store=store, limits=unlimited)
    assert claim(engine, "digits", "ann", n=1, explore=0.0) == [first["item_id"]]  # feedback is queued first
    submit(engine, "digits", first["item_id"], "ann", "4")
    for visitor in visitors[1:]:
        record_feedback(labelled, "9", {"label": "4", "model": "digits@1"}, annotator=visitor.name,
                        engine=engine, store=store, limits=unlimited)
    only_hinted = [record_feedback(hinted, "9", annotator=visitor.name, engine=engine, store=store,
                                   limits=unlimited)["item_id"]
                   for visitor in visitors][0]
    with engine.connect() as conn:
        kinds = conn.execute(sa.select(annotations.c.kind, sa.func.count()).group_by(annotations.c.kind)).all()
    assert dict(kinds) == {"feedback": 2 * RELOADS, "label": 1}  # every hint is kept, as a hint

    decided = consensus(engine, "digits").set_index("item_id")
    assert decided.loc[first["item_id"], "label"] == "4"  # one annotator against fifty visitors
    assert only_hinted not in decided.index or decided.loc[only_hinted, "label"] is None

    version = snapshot(engine, store, "digits", allow_unlabeled=True)  # the hinted item waits for a person
    manifest = read_manifest(version, engine, store).set_index("item_id")
    assert manifest.loc[first["item_id"], "label"] == "4"
    assert only_hinted not in manifest.index  # nobody but visitors labelled it: not in any split, test included
    engine.dispose()


def test_a_visitor_who_reloads_fifty_times_is_one_visitor_with_five_corrections_a_minute(tmp_path):
    "The page names the visitor from their cookie, so reloads share one count; the kernel refuses the sixth."
    from fullstack_ml.demo import RateLimited, VisitorLimits, record_feedback
    from fullstack_ml.store import annotations, connect, open_files

    engine, store = connect(f"sqlite:///{tmp_path}/fsml.db"), open_files(str(tmp_path / "files"))
    sevens = [png for _, png, label in digit_splits()["test"] if label == "7"]
    one_window = VisitorLimits(window_s=86_400)  # the default's, over a window this loop cannot straddle
    refused = 0
    for reload in range(RELOADS):
        try:
            record_feedback(sevens[reload % len(sevens)], "1", annotator="visitor-3f2a", engine=engine, store=store,
                            limits=one_window)
        except RateLimited as error:
            assert "too many corrections" in str(error)
            refused += 1
    with engine.connect() as conn:
        kept = conn.execute(sa.select(sa.func.count()).select_from(annotations)).scalar()
    assert (kept, refused) == (VisitorLimits().corrections, RELOADS - VisitorLimits().corrections)
    engine.dispose()
