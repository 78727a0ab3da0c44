"""How long one lineage walk takes as the store grows (the eval app's item detail and `GET /v1/lineage/{id}` run it).

A temporary SQLite home is filled directly, without images: N items each with a source and its crawl page's fetch,
one weak label per item, three people's labels on a fifth of them, `--versions` dataset versions (a manifest of every
item each) and one published model trained on the newest. Then the walk from an item, from a model and from a job
(a real SQLite queue holding one finished result) is timed, median of `--repeats`. The walk reads the project's
consensus (every annotation of the project) and each dataset version's manifest, so it grows with both.

    python benchmarks/lineage.py [--items 2000 20000] [--versions 5] [--repeats 5] [--json]
"""
import argparse
import json
import os
import statistics
import tempfile
import time


def page(n: int) -> str:
    "The gallery page that links image `n` (a hundred a page)."
    return f"https://gallery.example/page/{n // 100}.html"


def fill(engine, store, n_items: int, n_versions: int) -> tuple[str, str]:
    "Items, sources, fetches, labels, dataset versions and a model; return (an item id, the model ref)."
    import hashlib

    import pandas as pd

    from fullstack_ml.annotate import ensure_project
    from fullstack_ml.datasets import split_of
    from fullstack_ml.store import (
        aliases, annotations, artifacts, dataset_versions, fetches, item_sources, items, now, runs,
    )

    ensure_project(engine, "digits")
    when = now()
    ids = [hashlib.sha256(str(n).encode()).hexdigest() for n in range(n_items)]
    with engine.begin() as conn:
        conn.execute(items.insert(), [dict(id=i, width=28, height=28, format="PNG", origin="crawl", created_at=when,
                                           source_url=f"https://gallery.example/img/{n}.png", page_url=page(n))
                                      for n, i in enumerate(ids)])
        conn.execute(item_sources.insert(), [dict(item_id=i, source_url=f"https://gallery.example/img/{n}.png",
                                                  page_url=page(n), licence="CC0", fetched_at=when)
                                             for n, i in enumerate(ids)])
        conn.execute(fetches.insert(), [dict(url=page(n), kind="page", outcome="stored", fetched_at=when)
                                        for n in range(0, n_items, 100)])
        labels = [dict(project="digits", item_id=i, annotator="weak:alt", kind="weak", label=str(n % 10),
                       created_at=when) for n, i in enumerate(ids)]
        labels += [dict(project="digits", item_id=i, annotator=f"ann{k}", kind="label", label=str((n + (k == 2)) % 10),
                        created_at=when + 1) for n, i in enumerate(ids) if n % 5 == 0 for k in range(3)]
        conn.execute(annotations.insert(), labels)
        manifest = pd.DataFrame({"item_id": ids, "label": [str(n % 10) for n in range(n_items)],
                                 "split": [split_of(i) for i in ids], "source": "weak", "agreement": float("nan"),
                                 "group_id": ids})
        for v in range(n_versions):
            path = f"datasets/v{v}/manifest.parquet"
            store.write(path, manifest.to_parquet(index=False))
            conn.execute(dataset_versions.insert().values(id=f"v{v}", project="digits", manifest_path=path,
                                                          created_at=when + v, counts={"items": n_items}))
        conn.execute(runs.insert().values(id="run-1", kind="train", status="done", dataset_version=f"v{n_versions - 1}",
                                          created_at=when, finished_at=when))
        conn.execute(artifacts.insert().values(name="digits", version=1, path="artifacts/digits/1", run_id="run-1",
                                               manifest_sha256="0" * 64, created_at=when))
        conn.execute(aliases.insert().values(name="digits", alias="production", version=1, updated_at=when, history=[]))
    return ids[0], "digits@1"


def timed(walk, repeats: int) -> float:
    "Median milliseconds of `walk()` over `repeats` runs (after one warm-up)."
    walk()
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        walk()
        seconds.append(time.perf_counter() - start)
    return round(statistics.median(seconds) * 1000, 1)


def measure(n_items: int, n_versions: int, repeats: int) -> dict:
    with tempfile.TemporaryDirectory() as home:
        os.environ["FSML_HOME"] = home
        from fullstack_ml.lineage import lineage
        from fullstack_ml.queue import open_queue
        from fullstack_ml.store import connect, open_files

        engine, store = connect(), open_files()
        item_id, model = fill(engine, store, n_items, n_versions)
        queue = open_queue()
        job_id = queue.put(b"picture")
        queue.complete(queue.claim("bench", 1, 0)[0], {"label": "0", "scores": {"0": 1.0}, "model": model,
                                                       "item": item_id})
        result = {"items": n_items, "annotations": n_items + 3 * len(range(0, n_items, 5)), "versions": n_versions,
                  "item_ms": timed(lambda: lineage(item_id, engine, store), repeats),
                  "model_ms": timed(lambda: lineage(model, engine, store), repeats),
                  "job_ms": timed(lambda: lineage(job_id, engine, store, queue), repeats)}
        engine.dispose()
        return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, nargs="+", default=[2000, 20000], help="store sizes to measure")
    parser.add_argument("--versions", type=int, default=5, help="dataset versions, each holding every item")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", action="store_true", help="print one JSON object per size")
    args = parser.parse_args()
    os.environ.pop("FSML_DB_URL", None)
    os.environ.pop("FSML_STORE_URL", None)
    os.environ.pop("FSML_QUEUE_URL", None)
    for n_items in args.items:
        result = measure(n_items, args.versions, args.repeats)
        print(json.dumps(result) if args.json else
              f"{result['items']} items, {result['annotations']} annotations, {result['versions']} versions: "
              f"item {result['item_ms']} ms, model {result['model_ms']} ms, job {result['job_ms']} ms (medians)")


if __name__ == "__main__":
    main()
