"""Helpers shared by the registry, serving and benchmark code: a run made from an untrained model, images."""
import io
import os

from PIL import Image


def make_run(engine, store, seed: int = 0, accuracy: float = 0.5, dataset_version: str = "ds-test",
             project=None) -> str:
    "A finished training-run record of `project` (default: digits) whose checkpoint is an untrained model."
    import torch
    from fullstack_ml.model import build_model, weights_to_bytes
    from fullstack_ml.preprocessing import Preprocessing
    from fullstack_ml.projects.digits import PROJECT as DIGITS
    from fullstack_ml.store import now, runs

    project = project or DIGITS
    torch.manual_seed(seed)
    config = {"labels": list(project.label_names), "preprocessing": Preprocessing.from_spec(project.image).config,
              "project": project.name}  # the artifact is named after the run's project
    run_id = f"run-{seed}-{os.urandom(3).hex()}"
    checkpoint = store.write(f"runs/{run_id}/weights.safetensors", weights_to_bytes(build_model(config)))
    with engine.begin() as conn:
        conn.execute(runs.insert().values(id=run_id, kind="train", status="done", config=config, created_at=now(),
                                          metrics={"accuracy": accuracy}, checkpoint_path=checkpoint,
                                          dataset_version=dataset_version))
    return run_id


def publish_untrained(seed: int = 0, promote_to: str | None = "production", project=None) -> dict:
    "Publish an untrained model of `project` (default: digits) into the current FSML_HOME (optionally promoted)."
    from fullstack_ml.registry import promote, publish
    from fullstack_ml.store import connect, open_files

    engine, store = connect(), open_files()
    row = publish(make_run(engine, store, seed, project=project), engine=engine, store=store)
    if promote_to:
        promote(row["name"], row["version"], promote_to, engine)
    return row


def letters_project():
    "A second project that shares nothing with digits but the code: word labels, gray 12x12 letterboxed pictures."
    from fullstack_ml.project import ImageSpec, Project

    return Project("letters", ("alpha", "beta", "gamma"), ImageSpec(side=12, colour="gray", fit="letterbox"))


def png_bytes(size=(28, 28), value: int = 0, mode: str = "L") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size, value).save(buffer, format="PNG")
    return buffer.getvalue()


def blank_image(size, fmt: str = "PNG", frames: int = 1, mode: str = "L") -> bytes:
    "A blank image of `size` (a few KB whatever the size: blank compresses), still or with `frames` frames."
    pictures = [Image.new(mode, size, i % 256) for i in range(frames)]
    buffer = io.BytesIO()
    pictures[0].save(buffer, format=fmt, **({"save_all": True, "append_images": pictures[1:]} if frames > 1 else {}))
    return buffer.getvalue()


def digit_png(seed: int = 0) -> bytes:
    "A small random-ish 'digit' image, different per seed."
    import numpy as np

    rng = np.random.default_rng(seed)
    array = (rng.random((28, 28)) > 0.7).astype("uint8") * 255
    buffer = io.BytesIO()
    Image.fromarray(array, mode="L").save(buffer, format="PNG")
    return buffer.getvalue()


def make_dataset_version(engine, store, n: int = 60) -> str:
    "A dataset version of `n` scikit-learn digits (labels from the digits), without annotation."
    import pandas as pd
    from fullstack_ml.datasets import add_bundled_items, split_of, version_id
    from fullstack_ml.store import dataset_versions, now

    ids = add_bundled_items(engine, store, "digits", range(n))
    from sklearn.datasets import load_digits
    targets = load_digits().target[:n]
    manifest = pd.DataFrame({"item_id": ids, "label": [str(t) for t in targets],
                             "split": [split_of(i) for i in ids], "source": "weak", "agreement": 1.0, "group_id": ids})
    version = version_id(manifest)
    path = f"datasets/{version}/manifest.parquet"
    store.write(path, manifest.to_parquet(index=False))
    with engine.begin() as conn:
        conn.execute(dataset_versions.insert().values(id=version, project="digits", manifest_path=path,
                                                      counts={}, created_at=now(), meta={}))
    return version
