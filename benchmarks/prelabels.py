"""Pre-labels and the value order on the digits project, scored against the true labels.

The real path, on a temporary FSML_HOME: store the bundled digits with noisy weak labels (a share `--noise` of
them name a wrong digit, like the gallery's captions), queue them all, train a small network on a dataset
version of the first `--train` items' weak labels, publish and promote it, then `prelabel` the queue. Prints:
pre-labelling speed; how often the suggestion is right (what an annotator pressing the accept key gets);
and where the value order puts the items worth a person's look (the model's wrong suggestions, and the
wrong weak labels) among the first 10% and 20% of the queue, against what random order would give.

    OMP_NUM_THREADS=1 python benchmarks/prelabels.py [--train 600] [--epochs 10] [--noise 0.08] [--json]
"""
import argparse
import json
import time

from _home import throwaway_home  # benchmarks/_home.py: a fresh FSML_HOME per run


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=600, help="items whose weak labels train the model")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--noise", type=float, default=0.08, help="share of weak labels that name a wrong digit")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    with throwaway_home():
        import numpy as np
        import sqlalchemy as sa

        from fullstack_ml.annotate import enqueue, ensure_project
        from fullstack_ml.datasets import add_bundled_items, snapshot
        from fullstack_ml.labels import import_weak_labels
        from fullstack_ml.prelabels import current_prelabels, prelabel
        from fullstack_ml.projects.digits import images
        from fullstack_ml.registry import promote, publish
        from fullstack_ml.store import connect, open_files, tasks
        from fullstack_ml.train import make_config, train

        engine, store = connect(), open_files()
        rng = np.random.default_rng(args.seed)
        truth = [label for _, label in images(1797)]
        wrong = rng.random(len(truth)) < args.noise
        weak = [str((int(t) + rng.integers(1, 10)) % 10) if w else t for t, w in zip(truth, wrong)]
        ensure_project(engine, "digits")
        first = add_bundled_items(engine, store, "digits", range(args.train), weak_labels=weak[:args.train])
        import_weak_labels(engine, "digits")
        run = train(snapshot(engine, store, "digits"), make_config("digits", engine, epochs=args.epochs, seed=args.seed),
                    engine=engine, store=store, progress=False, threads=1)
        release = publish(run["run_id"], engine=engine, store=store)
        promote(release["name"], release["version"], "production", engine, store)
        rest = add_bundled_items(engine, store, "digits", range(args.train, len(truth)), weak_labels=weak[args.train:])
        ids = first + rest
        enqueue(engine, "digits", ids)
        import_weak_labels(engine, "digits")
        started = time.perf_counter()
        report = prelabel(engine, store, "digits", progress=False)
        seconds = time.perf_counter() - started
        suggestions = current_prelabels(engine, "digits")
        with engine.connect() as conn:
            order = list(conn.execute(sa.select(tasks.c.item_id).where(tasks.c.project == "digits")
                                      .order_by(tasks.c.priority.desc(), tasks.c.rank.desc())).scalars())
        true_of = dict(zip(ids, truth))
        weak_of = dict(zip(ids, weak))
        unseen = rest  # items the model never trained on
        model_wrong = {i for i in ids if suggestions[i]["label"] != true_of[i]}
        weak_wrong = {i for i in ids if weak_of[i] != true_of[i]}

        def found(wanted: set, share: float) -> float:
            "Share of `wanted` among the first `share` of the queue."
            head = set(order[:int(round(share * len(order)))])
            return round(len(wanted & head) / max(len(wanted), 1), 3)

        result = {
            "items": len(ids), "train_items": args.train, "epochs": args.epochs, "noise": args.noise,
            "model": report["model"], "validation_accuracy": run.get("val_accuracy"),
            "prelabel_seconds": round(seconds, 2), "items_per_s": round(len(ids) / seconds, 1),
            "suggestion_accuracy_unseen": round(float(np.mean([suggestions[i]["label"] == true_of[i] for i in unseen])), 4),
            "model_wrong": len(model_wrong), "weak_wrong": len(weak_wrong),
            "explored": report["explored"],
            "model_wrong_in_first_10pct": found(model_wrong, 0.1), "model_wrong_in_first_20pct": found(model_wrong, 0.2),
            "weak_wrong_in_first_10pct": found(weak_wrong, 0.1), "weak_wrong_in_first_20pct": found(weak_wrong, 0.2),
            "random_order_expects": {"first_10pct": 0.1, "first_20pct": 0.2},
        }
        engine.dispose()
    if args.json:
        print(json.dumps(result))
        return
    print(f"{result['items']} queued digits, model {result['model']} trained on {args.train} weak labels "
          f"({args.noise:.0%} wrong), {args.epochs} epochs")
    print(f"pre-labelled in {result['prelabel_seconds']} s ({result['items_per_s']} items/s); suggestions right on "
          f"{result['suggestion_accuracy_unseen']:.1%} of the items the model never saw")
    for what in ("model_wrong", "weak_wrong"):
        print(f"{what.replace('_', ' ')} ({result[what]} items): {result[what + '_in_first_10pct']:.0%} in the first 10% "
              f"of the queue, {result[what + '_in_first_20pct']:.0%} in the first 20% (random order: 10%, 20%)")


if __name__ == "__main__":
    main()
