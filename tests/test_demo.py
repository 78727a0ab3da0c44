"""The demo's corrections are hints, not votes: fifty corrections from fifty reloads of the demo page cannot outvote
one annotator, and an item only visitors have labelled stays out of a new dataset version until a person labels it."""
import sqlalchemy as sa
from demo_support import digit_splits
from fullstack_ml.project import bundled_project, save_project

RELOADS = 50


def test_fifty_reloads_cannot_outvote_one_annotator_nor_enter_a_dataset(tmp_path):
    from fullstack_ml.annotate import claim, submit
    from fullstack_ml.auth import User
    from fullstack_ml.datasets import read_manifest, snapshot
    from fullstack_ml.demo import VisitorLimits, record_feedback
    from fullstack_ml.labels import consensus
    from fullstack_ml.store import annotations, connect, open_files

    engine, store = connect(f"sqlite:///{tmp_path}/fsml.db"), open_files(str(tmp_path / "files"))
    save_project(engine, bundled_project("digits"))
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
    save_project(engine, bundled_project("digits"))  # the project the corrections belong to (the store's only one)
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


PEAK_SCRIPT = """
import json, sys
from fullstack_ml.demo import record_feedback
from fullstack_ml.project import bundled_project, save_project
from fullstack_ml.images import BadImage
from fullstack_ml.store import connect, open_files


def peak_mb():
    return int(open("/proc/self/status").read().split("VmHWM:")[1].split()[0]) / 1024


engine, store = connect(sys.argv[1]), open_files(sys.argv[2])
save_project(engine, bundled_project("digits"))
record_feedback(open(sys.argv[3], "rb").read(), "1", engine=engine, store=store)  # warm up: imports, Pillow plugins
before, codes = peak_mb(), []
for path in sys.argv[4:]:
    try:
        record_feedback(open(path, "rb").read(), "1", annotator="visitor-" + path[-6:-4], engine=engine, store=store)
        codes.append("stored")
    except BadImage as error:
        codes.append(error.code)
print(json.dumps({"codes": codes, "peak_mb": peak_mb() - before}))
"""


def test_image_bombs_sent_as_corrections_are_refused_in_bounded_memory(tmp_path):
    "The 65536x256 PNG and its siblings, through record_feedback in a fresh process: refused, peak memory measured."
    import io
    import json
    import subprocess
    import sys

    from PIL import Image

    def png(width, height, frames=1):
        buffer = io.BytesIO()
        if frames == 1:
            Image.new("1", (width, height), 1).save(buffer, "PNG")
        else:
            pictures = [Image.new("L", (width, height), 40 * n) for n in range(frames)]
            pictures[0].save(buffer, "GIF", save_all=True, append_images=pictures[1:])
        return buffer.getvalue()

    hostile = {"wide": png(65536, 256), "tall": png(256, 65536), "pixels": png(4100, 4100),
               "strip": png(4000, 100), "frames": png(64, 64, frames=3)}
    paths = []
    for n, (name, data) in enumerate(hostile.items()):
        paths.append(tmp_path / f"{name}-{n:02d}.png")
        paths[-1].write_bytes(data)
    good = tmp_path / "good.png"
    good.write_bytes(digit_splits()["test"][0][1])
    done = subprocess.run([sys.executable, "-c", PEAK_SCRIPT, f"sqlite:///{tmp_path}/fsml.db", str(tmp_path / "files"),
                           str(good), *map(str, paths)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout.splitlines()[-1])
    assert report["codes"] == ["side_too_long", "side_too_long", "too_many_pixels", "aspect_ratio", "too_many_frames"]
    assert report["peak_mb"] < 20, report  # a header read each; the 65536x256 one would need 17 GB padded square
    print(f"demo corrections of {len(paths)} image bombs: all refused, peak memory +{report['peak_mb']:.1f} MB")
