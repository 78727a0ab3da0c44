"""The dataset loader against its limit: samples/s of `load(version).dataloader(...)` vs indexing a preloaded tensor.

Builds a throwaway store with all 1,797 scikit-learn digits as 64x64 PNG items, snapshots a version, then
  1. times the first `load` (decode every PNG through the shared Preprocessing) and a second one (the cache);
  2. iterates shuffled training batches through the DataLoader factory, and, as the limit, the same number
     of batches by indexing one preloaded tensor with a random permutation (no loader at all); for
     comparison also the same batches through torch's DataLoader (what the factory returns with workers).
Prints one JSON line; `ratio` = loader samples/s / limit samples/s (target >= 0.9).

    python benchmarks/loader.py [--batch-size 128] [--epochs 200]
"""
import argparse
import json
import time

import torch

from _home import throwaway_home  # benchmarks/_home.py: a fresh FSML_HOME per run


def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=200, help="passes over the training split per measurement")
    args = parser.parse_args()
    torch.set_num_threads(1)  # the loader is single-threaded Python either way; keep the comparison fair

    with throwaway_home():
        from fullstack_ml.annotate import enqueue
        from fullstack_ml.datasets import add_bundled_items, snapshot
        from fullstack_ml.labels import import_weak_labels
        from fullstack_ml.loader import load
        from fullstack_ml.project import bundled_project, save_project
        from fullstack_ml.store import connect, open_files

        engine, store = connect(), open_files()
        save_project(engine, bundled_project("digits"))
        ids = add_bundled_items(engine, store, "digits", range(1797))
        enqueue(engine, "digits", ids)
        import_weak_labels(engine, "digits")
        version = snapshot(engine, store)

        started = time.perf_counter()
        data = load(version, engine, store)
        first_load = time.perf_counter() - started
        started = time.perf_counter()
        data = load(version, engine, store)
        cached_load = time.perf_counter() - started
        train = data["train"]
        images, targets = train.images.clone(), train.targets.clone()  # the preloaded limit

        def loader_pass():
            seen = 0
            for epoch in range(args.epochs):
                for x, y in data.dataloader("train", batch_size=args.batch_size, seed=epoch):
                    seen += len(y)
            return seen

        def torch_dataloader_pass():  # the same batches through torch's DataLoader machinery, for comparison
            from torch.utils.data import DataLoader

            from fullstack_ml.loader import BatchOrder

            seen = 0
            for epoch in range(args.epochs):
                order = BatchOrder(len(train), args.batch_size, True, epoch)
                for x, y in DataLoader(train, batch_size=None, sampler=order, collate_fn=lambda batch: batch):
                    seen += len(y)
            return seen

        def limit_pass():
            seen = 0
            for epoch in range(args.epochs):
                order = torch.randperm(len(targets), generator=torch.Generator().manual_seed(epoch))
                for start in range(0, len(targets), args.batch_size):
                    index = order[start:start + args.batch_size]
                    batch = images[index], targets[index]
                    seen += len(batch[1])
            return seen

        rates = {}
        passes = (("limit", limit_pass), ("loader", loader_pass), ("torch_dataloader", torch_dataloader_pass))
        for name, run in passes * 3:  # interleaved, best of three
            started = time.perf_counter()
            seen = run()
            rates[name] = max(rates.get(name, 0.0), seen / (time.perf_counter() - started))
        result = {"benchmark": "loader", "items": len(ids), "train_items": len(train), "batch_size": args.batch_size,
                  "first_load_s": round(first_load, 3), "cached_load_s": round(cached_load, 3),
                  "decode_items_per_second": round(len(ids) / first_load, 1),
                  "loader_samples_per_second": round(rates["loader"]),
                  "limit_samples_per_second": round(rates["limit"]),
                  "ratio": round(rates["loader"] / rates["limit"], 3), "target_ratio": 0.9,
                  "torch_dataloader_samples_per_second": round(rates["torch_dataloader"]),
                  "torch_dataloader_ratio": round(rates["torch_dataloader"] / rates["limit"], 3)}
        engine.dispose()
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
