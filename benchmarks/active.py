"""Active learning on the digits: labels needed to reach 95% and 98% true accuracy, model-uncertainty order vs random.

A simulated annotator answers with the true labels (the bundled project's own images and labels, as the gallery
serves them). A fixed held-out set of true labels (`--held-out` random items chosen once, or with `--split writers`
the second half of scikit-learn's digits, written by other people; the same for every seed and order) measures
accuracy; the rest is the pool to label. Both orders start from the same `--start` random labels, then:
- uncertainty order: after each retrain, the `--step` unlabelled pool items the model is least sure of
  (`fullstack_ml.prelabels.uncertainty`, 1 - margin, the value the annotation queue orders by) are labelled next;
- random order: the next `--step` items of a seeded shuffle of the pool.
Every `--step` labels a fresh network is trained from scratch with the product's recipe (`make_config`, `build_model`,
`fit`: the digits' small CNN, its augmentation and schedule), with at least `--min-steps` optimizer steps so that
a few dozen labels still get trained; its last epoch is scored on the held-out set (nothing is chosen by it).
An order stops when it first reaches the highest target (or the pool is spent).
The script checks that both orders share seed and training: their first round (same labels, same seed) must give
identical held-out predictions.

    OMP_NUM_THREADS=1 python benchmarks/active.py [--split random|writers] [--seeds 0 1] [--start 20] [--step 20]
        [--epochs 15] [--plot FILE] [--json]

Prints labels needed per target and order, and the ratio uncertainty / random (target: <= 0.5 at 98%).

Measured 2026-11-30 on the shared, loaded 2-core machine (the digits' recipe at 8 px, one thread), first crossings:
random split, seeds 0-2: 95% after 60 vs 87 labels (ratio 0.69), 98% after 87 vs 153 (0.57; per seed 0.71, 0.44,
0.57), 8 min; `--split writers --start 50 --step 50`, seeds 0-1: 95% 125 vs 150 (0.83), 98% 325 vs 450 (0.72).
"""
import argparse
import json
import math
import os
import sys
import time

import numpy as np
import torch

TARGETS = (0.95, 0.98)


def predict(model, images: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    "Class probabilities of a trained model for a batch of preprocessed images (n, classes)."
    model.eval()
    with torch.inference_mode():
        return torch.cat([model(images[i:i + batch_size]).softmax(1) for i in range(0, len(images), batch_size)])


def train_round(config: dict, seed: int, labelled: tuple, min_steps: int) -> torch.nn.Module:
    "A fresh network trained on the labelled (images, targets) with the product's recipe; its last epoch."
    from fullstack_ml.model import build_model
    from fullstack_ml.train import fit

    steps_per_epoch = math.ceil(len(labelled[1]) / config["batch_size"])
    config = {**config, "seed": seed, "epochs": max(config["epochs"], math.ceil(min_steps / steps_per_epoch))}
    torch.manual_seed(seed)
    model = build_model(config)
    fit(model, config, labelled, progress=False, device="cpu")
    return model


def first_reaching(curve: list, target: float) -> int | None:
    "Labels at the first retrain whose held-out accuracy reaches `target` (None: never)."
    return next((labels for labels, accuracy in curve if accuracy >= target), None)


def run_order(order: str, seed: int, pool: tuple, held_out: tuple, config: dict, initial: np.ndarray,
              shuffled: np.ndarray, step: int, min_steps: int, max_labels: int) -> dict:
    "Label the pool in `order` (uncertainty or random), retraining every `step` labels; the accuracy curve."
    from fullstack_ml.prelabels import uncertainty

    labelled, curve, first_predictions, started = list(initial), [], None, time.perf_counter()
    while True:
        model = train_round(config, seed, (pool[0][labelled], pool[1][labelled]), min_steps)
        predicted = predict(model, held_out[0]).argmax(1)
        first_predictions = predicted if first_predictions is None else first_predictions
        curve.append((len(labelled), float((predicted == held_out[1]).float().mean())))
        print(f"  seed {seed} {order}: {curve[-1][0]} labels, held-out accuracy {curve[-1][1]:.4f}", file=sys.stderr,
              flush=True)
        if curve[-1][1] >= max(TARGETS) or len(labelled) >= min(max_labels, len(pool[1])):
            break
        taken = np.zeros(len(pool[1]), bool)
        taken[labelled] = True
        if order == "uncertainty":  # the most uncertain unlabelled items first, as the queue orders them
            unlabelled = np.flatnonzero(~taken)
            value = uncertainty(predict(model, pool[0][unlabelled]).numpy())
            chosen = unlabelled[np.argsort(-value, kind="stable")[:step]]
        else:
            chosen = [i for i in shuffled if not taken[i]][:step]
        labelled += [int(i) for i in chosen]
    return {"order": order, "seed": seed, "curve": curve, "wall_s": round(time.perf_counter() - started, 1),
            **{f"labels_to_{round(t * 100)}": first_reaching(curve, t) for t in TARGETS},
            "first_predictions": first_predictions}


def ratio(uncertain: float | None, random: float | None) -> float | None:
    return round(uncertain / random, 3) if uncertain is not None and random is not None else None


def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--split", choices=("random", "writers"), default="random",
                        help="held-out set: `--held-out` random digits (as the product's hash splits), or "
                             "scikit-learn's second half (other writers, the benchmark chapter's test half)")
    parser.add_argument("--held-out", type=int, default=600, help="true labels kept aside (--split random)")
    parser.add_argument("--start", type=int, default=20, help="random labels both orders start from")
    parser.add_argument("--step", type=int, default=20, help="labels between retrains")
    parser.add_argument("--epochs", type=int, default=15, help="passes over the labelled items per retrain")
    parser.add_argument("--min-steps", type=int, default=150, help="optimizer steps at least, per retrain")
    parser.add_argument("--max-labels", type=int, default=None, help="stop an order here (default: the whole pool)")
    parser.add_argument("--plot", default=None, help="also save the curves to this PNG file")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    args = parser.parse_args()

    from fullstack_ml.benchmark import benchmark_data
    from fullstack_ml.project import bundled_project
    from fullstack_ml.train import make_config, set_threads

    threads, started, load_before = set_threads(), time.perf_counter(), os.getloadavg()[0]
    project = bundled_project("digits")
    config = make_config(project, epochs=args.epochs)
    halves = benchmark_data(project)  # every image through the project's preprocessing, with its true label
    if args.split == "writers":  # the benchmark chapter's split: the second half (other writers) held out
        pool, held_out = halves
    else:
        images, targets = torch.cat([halves[0][0], halves[1][0]]), torch.cat([halves[0][1], halves[1][1]])
        positions = np.random.default_rng(12345).permutation(len(targets))  # one fixed held-out set for every run
        held_out = (images[positions[:args.held_out]], targets[positions[:args.held_out]])
        pool = (images[positions[args.held_out:]], targets[positions[args.held_out:]])
    max_labels = args.max_labels or len(pool[1])

    runs = []
    for seed in args.seeds:
        rng = np.random.default_rng(seed)
        shuffled = rng.permutation(len(pool[1]))
        initial = shuffled[:args.start]  # both orders start here; random order goes on along `shuffled`
        pair = [run_order(order, seed, pool, held_out, config, initial, shuffled, args.step, args.min_steps,
                          max_labels) for order in ("uncertainty", "random")]
        same = torch.equal(pair[0].pop("first_predictions"), pair[1].pop("first_predictions"))
        if not same or pair[0]["curve"][0] != pair[1]["curve"][0]:
            raise RuntimeError(f"seed {seed}: the two orders' first retrains differ on the same labels; "
                               "training is not the same for both orders (non-deterministic threads?)")
        runs += pair
        if not args.json:
            for run in pair:
                print(f"seed {seed} {run['order']:11s} " + " ".join(f"{n}:{a:.3f}" for n, a in run["curve"]),
                      flush=True)

    summary = {}
    for target in TARGETS:
        key = f"labels_to_{round(target * 100)}"
        per_order = {}
        for order in ("uncertainty", "random"):
            values = [run[key] for run in runs if run["order"] == order]
            per_order[order] = {"per_seed": values,
                                "mean": float(np.mean(values)) if None not in values else None}
        per_seed_ratios = [ratio(u, r) for u, r in zip(per_order["uncertainty"]["per_seed"],
                                                       per_order["random"]["per_seed"])]
        summary[key] = {**per_order, "ratio": ratio(per_order["uncertainty"]["mean"], per_order["random"]["mean"]),
                        "ratio_per_seed": per_seed_ratios}
    result = {"project": "digits", "split": args.split, "seeds": args.seeds, "held_out": len(held_out[1]),
              "pool": len(pool[1]),
              "start": args.start, "step": args.step, "epochs": args.epochs, "min_steps": args.min_steps,
              "model": config["model"], "threads": threads, "same_training_checked": True,
              "targets": list(TARGETS), "summary": summary, "runs": runs, "target_ratio_at_98": 0.5,
              "wall_s": round(time.perf_counter() - started, 1),
              "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)]}
    if args.plot:
        plot_curves(runs, args.plot)
    if args.json:
        print(json.dumps(result))
        return result
    print(f"pool {len(pool[1])} items, held-out {len(held_out[1])} true labels ({args.split} split); "
          f"start {args.start}, "
          f"retrain every {args.step} labels; seeds {args.seeds}; same first retrain for both orders: checked")
    for target in TARGETS:
        entry = summary[f"labels_to_{round(target * 100)}"]
        shown = {order: entry[order]["mean"] if entry[order]["mean"] is not None
                 else f"not reached within {max_labels} ({entry[order]['per_seed']})"
                 for order in ("uncertainty", "random")}
        print(f"{target:.0%}: uncertainty {shown['uncertainty']} labels {entry['uncertainty']['per_seed']}, "
              f"random {shown['random']} labels {entry['random']['per_seed']}; "
              f"ratio {entry['ratio']} (per seed {entry['ratio_per_seed']})")
    at_98 = summary["labels_to_98"]["ratio"]
    if at_98 is not None:
        print(f"uncertainty / random at 98%: {at_98} = {at_98 / 0.5:.2f}x the 0.5 target "
              f"({'met' if at_98 <= 0.5 else 'not met'}); wall {result['wall_s']} s")
    return result


def plot_curves(runs: list, path: str) -> None:
    "Held-out accuracy against labels, one line per order and seed."
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6, 3.5))
    for run in runs:
        labels, accuracy = zip(*run["curve"])
        axis.plot(labels, accuracy, marker=".", color="C0" if run["order"] == "uncertainty" else "C1",
                  label=f"{run['order']} (seed {run['seed']})", alpha=0.8)
    for target in TARGETS:
        axis.axhline(target, color="grey", linewidth=0.7, linestyle="--")
    axis.set(xlabel="labels", ylabel="held-out accuracy (true labels)", ylim=(0.8, 1.0))
    axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=100)


if __name__ == "__main__":
    main()
