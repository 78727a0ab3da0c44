"""BentoML serving the same registry artifact with its adaptive batching (used only by benchmarks/serve.py).

Requests are JSON `{"images": ["<base64 PNG>"]}`: a batchable BentoML API takes a list, and BentoML merges the
lists of concurrent requests into one batch (up to max_batch_size, waiting at most max_latency_ms).
"""
import base64
import os

import bentoml


@bentoml.service(workers=1, traffic={"timeout": 60})
class Digits:
    def __init__(self):
        import torch

        from fullstack_ml import registry

        torch.set_num_threads(1)
        self.model = registry.load(os.environ.get("FSML_BENCH_MODEL", "digits@production"))

    @bentoml.api(batchable=True, max_batch_size=64, max_latency_ms=1000)
    def predict(self, images: list[str]) -> list[dict]:
        from fullstack_ml.worker import decode_small, predict_batch

        decoded = [decode_small(base64.b64decode(image)) for image in images]
        return [{**output, "model": self.model.ref} for output in predict_batch(self.model, decoded)]
