#!/usr/bin/env python3
"""Fail when nbdev-export or nbdev-clean would change a file, or a notebook carries outputs.

The notebooks are the source of truth: a module edited by hand (so that export would rewrite it), a notebook
committed with outputs or unclean metadata, or an export that was never run all show up here.
Usage: python tools/check_notebooks.py [REPO]   (exit 1 and a list of files when anything would change)
"""
import hashlib
import json
import subprocess
import sys
from pathlib import Path


def fingerprint(repo: Path) -> dict[str, str]:
    files = [*repo.glob("fullstack_ml/**/*.py"), *repo.glob("nbs/**/*.ipynb")]
    return {str(p.relative_to(repo)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in files if ".ipynb_checkpoints" not in p.parts}


def notebooks_with_outputs(repo: Path) -> list[str]:
    dirty = []
    for nb in sorted(repo.glob("nbs/**/*.ipynb")):
        cells = json.loads(nb.read_text())["cells"]
        if any(c.get("outputs") or c.get("execution_count") for c in cells if c["cell_type"] == "code"):
            dirty.append(str(nb.relative_to(repo)))
    return dirty


def main(repo: Path) -> int:
    bin_dir = Path(sys.executable).parent
    with_outputs = notebooks_with_outputs(repo)
    before = fingerprint(repo)
    for tool in ("nbdev-export", "nbdev-clean"):
        subprocess.run([str(bin_dir / tool)], cwd=repo, check=True)
    after = fingerprint(repo)
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    if with_outputs:
        print("notebooks with outputs (run nbdev-clean and commit):\n  " + "\n  ".join(with_outputs), file=sys.stderr)
    if changed:
        print("nbdev-export / nbdev-clean changed these files (edit notebooks, not fullstack_ml/; then run "
              "nbdev-export and nbdev-clean and commit):\n  " + "\n  ".join(changed), file=sys.stderr)
    if with_outputs or changed:
        return 1
    print("notebooks clean; exported modules match the notebooks")
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1] if len(sys.argv) > 1 else ".").resolve()))
