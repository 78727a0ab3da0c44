"""Label-error detection on a bundled project's gallery captions (noisy), scored against the gallery's true labels.

The real path, on a temporary FSML_HOME: crawl the bundled demo site, import the captions as weak labels, snapshot a
dataset version, then run the evaluation stage's confident learning (cross-validated on the training split) over the
version. A suspect is right when its caption label differs from the gallery's truth (`gallery_truth()`, read only here).
Prints precision and recall (target: both >= 0.8), overall and per split.

    python benchmarks/label_issues.py [--project digits|shapes] [--images N] [--folds 5] [--method prune_by_noise_rate]
"""
import argparse
import os
import tempfile
import time


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--project", default="digits", help="bundled project whose gallery is crawled")
    parser.add_argument("--images", type=int, default=None, help="gallery size (default: the project's N_IMAGES)")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--method", default="prune_by_noise_rate")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as home:
        os.environ["FSML_HOME"] = home
        for key in ("FSML_DB_URL", "FSML_STORE_URL"):
            os.environ.pop(key, None)
        from fullstack_ml.collect import crawl
        from fullstack_ml.datasets import read_manifest, snapshot
        from fullstack_ml.eval import dataset_label_issues, image_features
        from fullstack_ml.gallery import DemoSite, gallery_truth
        from fullstack_ml.labels import run_annotate
        from fullstack_ml.preprocessing import Preprocessing
        from fullstack_ml.project import bundled_project
        from fullstack_ml.store import connect, open_files

        started = time.perf_counter()
        project = bundled_project(args.project)
        with DemoSite(0, args.images, project=args.project) as site:  # our own loopback site
            crawl([site.url], labels=project.label_names, synonyms=site.synonyms, max_pages=60, delay=0.0,
                  concurrency=8, per_host=8)
        run_annotate(args.project, show=False)
        engine, store = connect(), open_files()
        version = snapshot(engine, store, args.project, allow_unlabeled=True)
        manifest = read_manifest(version, engine, store).astype({"label": str})
        prepared = time.perf_counter()
        features = image_features(store, manifest["item_id"].tolist(), Preprocessing.from_spec(project.image))
        issues = dataset_label_issues(manifest, features, project.label_names, folds=args.folds, method=args.method)
        searched = time.perf_counter()

    truth = gallery_truth(args.project)
    manifest["true"] = manifest["item_id"].map(truth)
    manifest = manifest[manifest["true"].notna()]
    noisy = set(manifest.loc[manifest["label"] != manifest["true"], "item_id"])
    suspects = {issue["item"] for issue in issues}
    print(f"items {len(manifest)}, wrong caption labels {len(noisy)} ({len(noisy) / len(manifest):.1%}), "
          f"suspects {len(suspects)}; method {args.method}, {args.folds} folds")
    scores = {}
    for split in ("train", "valid", "test", "all"):
        members = set(manifest["item_id"]) if split == "all" else set(manifest.loc[manifest["split"] == split, "item_id"])
        found, wrong = suspects & members, noisy & members
        hits = len(found & wrong)
        scores[split] = (hits / len(found) if found else float("nan"), hits / len(wrong) if wrong else float("nan"))
        print(f"  {split:5s}  items {len(members):5d}  wrong {len(wrong):4d}  suspects {len(found):4d}  "
              f"precision {scores[split][0]:.3f}  recall {scores[split][1]:.3f}")
    suggested_right = sum(truth.get(issue["item"]) == issue["suggested"] for issue in issues if issue["item"] in noisy)
    print(f"suggested label equals the truth for {suggested_right} of {len(suspects & noisy)} true suspects")
    print(f"crawl+annotate+snapshot {prepared - started:.1f}s, label-error search {searched - prepared:.1f}s")
    precision, recall = scores["all"]
    print(f"precision {precision:.3f} = {precision / 0.8:.2f}x the 0.8 target; recall {recall:.3f} = {recall / 0.8:.2f}x")


if __name__ == "__main__":
    main()
