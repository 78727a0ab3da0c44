"""Shared by tests/test_demo_browser.py and tests/test_edge.py: a small real model in the registry, and digit images.

The model is trained for a few seconds on the scikit-learn digits that fall in the train split, recorded as a
training run, published and promoted to production, exactly as the pipeline would leave it.
"""
import io
import time
import uuid
from functools import lru_cache

import numpy as np
import torch

DIGIT_SCALE = 8  # 8x8 digits served as 64x64 PNGs, like the demo gallery
DIGIT_LABELS = [str(n) for n in range(10)]  # the digits project's labels, in the network's output order


@lru_cache(maxsize=1)
def _digits():
    from sklearn.datasets import load_digits

    return load_digits()


def digit_png(index: int) -> bytes:
    "scikit-learn digit `index` as a 64x64 dark-on-white PNG."
    from PIL import Image

    gray = (255 - np.round(_digits().images[index] * 255 / 16)).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(np.kron(gray, np.ones((DIGIT_SCALE, DIGIT_SCALE), np.uint8))).save(buffer, "PNG")
    return buffer.getvalue()


@lru_cache(maxsize=1)
def digit_splits() -> dict:
    "split name -> [(index, png bytes, label)]: every scikit-learn digit, split as a dataset version would."
    from fullstack_ml.datasets import split_of
    from fullstack_ml.store import sha256_hex

    digits, splits = _digits(), {"train": [], "valid": [], "test": []}
    for index in range(len(digits.target)):
        png = digit_png(index)
        splits[split_of(sha256_hex(png))].append((index, png, str(digits.target[index])))
    return splits


def publish_quick_model(epochs: int = 12, width: int = 8, seed: int = 0) -> dict:
    "Train on the train and valid splits (a few seconds), record the run, publish and promote it in FSML_HOME."
    from fullstack_ml import registry
    from fullstack_ml.model import build_model, weights_to_bytes
    from fullstack_ml.preprocessing import Preprocessing
    from fullstack_ml.project import bundled_project, save_project
    from fullstack_ml.store import connect, now, open_files, runs, write_transaction

    torch.manual_seed(seed)
    preprocessing = Preprocessing.from_spec(bundled_project("digits").image)
    config = {"model": {"arch": "small_cnn", "width": width, "input_size": 16, "dropout": 0.1},
              "preprocessing": preprocessing.config, "labels": DIGIT_LABELS, "project": "digits"}
    train = digit_splits()["train"] + digit_splits()["valid"]
    x = preprocessing.batch([png for _, png, _ in train])
    y = torch.tensor([DIGIT_LABELS.index(label) for _, _, label in train])
    model = build_model(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    threads, start = torch.get_num_threads(), time.time()
    torch.set_num_threads(1)  # one thread is fastest for this tiny network on a shared, busy machine
    try:
        for _ in range(epochs):
            model.train()
            for batch in torch.randperm(len(y)).split(64):
                optimizer.zero_grad()
                torch.nn.functional.cross_entropy(model(x[batch]), y[batch]).backward()
                optimizer.step()
    finally:
        torch.set_num_threads(threads)
    model.eval()
    engine, store = connect(), open_files()
    save_project(engine, bundled_project("digits"))  # the project, as the pipeline's annotate stage leaves it
    run_id = uuid.uuid4().hex
    checkpoint = f"runs/{run_id}/weights.safetensors"
    store.write(checkpoint, weights_to_bytes(model))
    with write_transaction(engine) as conn:
        conn.execute(runs.insert().values(id=run_id, kind="train", status="done", config=config,
                                          metrics={"epochs": epochs}, checkpoint_path=checkpoint,
                                          created_at=now(), finished_at=now()))
    row = registry.publish(run_id, "digits", engine, store)
    registry.promote("digits", row["version"], "production", engine)
    engine.dispose()
    return {"run_id": run_id, "name": "digits", "version": row["version"], "epochs": epochs,
            "seconds": time.time() - start}
