"""Label-error detection on a bundled project's gallery captions (noisy), scored against the gallery's true labels.

The real path, on a temporary FSML_HOME: crawl the project's bundled gallery site, import the captions as weak labels,
snapshot a dataset version, train the project's network on it (`train`, the project's recipe), then run the evaluation
stage (`evaluate`): it picks the judge that works for the project on the validation split (the pixel SVM, or the
project's network cross-validated on the training split) and searches the whole version by confident learning. For
comparison, the pixel SVM's search alone (the judge before the choice existed) is scored on the same version.
A suspect is right when its caption label differs from the gallery's truth (`gallery_truth()`, read only here).
Prints precision and recall (target: both >= 0.8), overall and per split, for both searches.

    python benchmarks/label_issues.py [--project digits|shapes] [--images N] [--epochs N] [--recipe JSON]
                                      [--no-pixel-svm] [--folds 5] [--json]
"""
import argparse
import json
import time

from _home import throwaway_home  # benchmarks/_home.py: a fresh FSML_HOME per run


def scores(manifest, noisy: set, suspects: set) -> dict:
    "Precision and recall of `suspects` against the `noisy` items, per split and overall."
    result = {}
    for split in ("train", "valid", "test", "all"):
        members = set(manifest["item_id"]) if split == "all" else set(manifest.loc[manifest["split"] == split, "item_id"])
        found, wrong = suspects & members, noisy & members
        hits = len(found & wrong)
        result[split] = {"items": len(members), "wrong": len(wrong), "suspects": len(found),
                         "precision": round(hits / len(found), 3) if found else None,
                         "recall": round(hits / len(wrong), 3) if wrong else None}
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--project", default="digits", help="bundled project whose gallery is crawled")
    parser.add_argument("--images", type=int, default=None, help="gallery size (default: the project's N_IMAGES)")
    parser.add_argument("--epochs", type=int, default=None, help="epochs of the trained network (default: the recipe's)")
    parser.add_argument("--recipe", default="{}", help='training overrides as JSON, e.g. \'{"width": 8}\'')
    parser.add_argument("--no-pixel-svm", action="store_true", help="skip the pixel SVM's search on its own")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    with throwaway_home():
        from fullstack_ml.collect import crawl
        from fullstack_ml.datasets import read_manifest, snapshot
        from fullstack_ml.eval import dataset_label_issues, evaluate, image_features
        from fullstack_ml.gallery import DemoSite, gallery_truth
        from fullstack_ml.labels import run_annotate
        from fullstack_ml.preprocessing import Preprocessing
        from fullstack_ml.project import bundled_project
        from fullstack_ml.store import connect, open_files
        from fullstack_ml.train import make_config, train

        started = time.perf_counter()
        project = bundled_project(args.project)
        with DemoSite(0, args.images, project=args.project) as site:  # our own loopback site
            crawl([site.url], labels=project.label_names, synonyms=site.synonyms, max_pages=200, delay=0.0,
                  concurrency=8, per_host=8)
        run_annotate(args.project, show=False)
        engine, store = connect(), open_files()
        version = snapshot(engine, store, args.project, allow_unlabeled=True)
        manifest = read_manifest(version, engine, store).astype({"label": str})
        prepared = time.perf_counter()
        pixel_issues = None
        if not args.no_pixel_svm:
            features = image_features(store, manifest["item_id"].tolist(), Preprocessing.from_spec(project.image))
            pixel_issues = dataset_label_issues(manifest, features, project.label_names, folds=args.folds)
        searched = time.perf_counter()
        config = make_config(args.project, engine, **json.loads(args.recipe),
                             **({"epochs": args.epochs} if args.epochs else {}))
        run = train(version, config, progress=False)
        trained = time.perf_counter()
        result = evaluate(run["run_id"], version, queue=False, folds=args.folds)
        evaluated = time.perf_counter()

    truth = gallery_truth(args.project, args.images)
    manifest["true"] = manifest["item_id"].map(truth)
    manifest = manifest[manifest["true"].notna()]
    noisy = set(manifest.loc[manifest["label"] != manifest["true"], "item_id"])
    report = {"project": args.project, "items": len(manifest), "wrong": len(noisy), "folds": args.folds,
              "pixel_svm": scores(manifest, noisy, {i["item"] for i in pixel_issues}) if pixel_issues is not None else None,
              "stage": scores(manifest, noisy, {issue["item"] for issue in result["label_issues"]}),
              "judge": result["judge"], "network_epochs": config["epochs"], "network_model": config["model"]["arch"],
              "network_test_accuracy_vs_given": round(result["accuracy"], 4),
              "suggested_right": sum(truth.get(i["item"]) == i["suggested"] for i in result["label_issues"]
                                     if i["item"] in noisy),
              "seconds": {"crawl_annotate_snapshot": round(prepared - started, 1),
                          "pixel_svm_search": round(searched - prepared, 1), "train": round(trained - searched, 1),
                          "evaluate_with_search": round(evaluated - trained, 1)}}
    if args.json:
        print(json.dumps(report))
        return report
    print(f"{args.project}: items {report['items']}, wrong caption labels {len(noisy)} "
          f"({len(noisy) / len(manifest):.1%}); judge chosen by the stage: {report['judge']}")
    for name in ("pixel_svm", "stage") if pixel_issues is not None else ("stage",):
        print(f"{name}:")
        for split, row in report[name].items():
            print(f"  {split:5s}  items {row['items']:5d}  wrong {row['wrong']:4d}  suspects {row['suspects']:4d}  "
                  f"precision {row['precision']}  recall {row['recall']}")
    print(f"seconds: {report['seconds']}")
    return report


if __name__ == "__main__":
    main()
