#!/usr/bin/env python3
"""Build the course as a static site: every chapter executed at the smoke profile, rendered to HTML, one index.

    python tools/build_docs.py [--out _site] [--run-dir DIR] [--workers 2]

1. A throw-away FSML_HOME gets one `fsml pipeline --profile smoke` run (or `--run-dir` reuses a finished run).
2. Stage chapters (pipeline.STAGES) are the run's executed notebooks, with the plots and tables the run drew.
3. Library-only chapters are executed here with nbclient, in their own folder, skipping the cells nbdev-test
   skips (`#| eval: false`, `#| notest`), on the same throw-away home.
4. Each is rendered with nbconvert's HTMLExporter (images embedded) into OUT, with a navigation bar, and
   OUT/index.html lists them by job. The build fails when a stage chapter shows no figure or table, or a
   chapter's execution failed (its page is still written, with the error, so the reason is one click away).

Why nbconvert: it is already installed with papermill and nbdev, builds offline (nbdev's Quarto downloads a
binary while it installs), and renders exactly what papermill executed.
"""
import argparse
import html
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import nbformat

REPO = Path(__file__).resolve().parents[1]
NBS = REPO / "nbs"
JOBS = {"01": "1 Frame", "projects": "1 Frame", "core": "The house (library)", "02": "2 Collect", "03": "3 Annotate",
        "04": "4 Version and load", "05": "5 Train", "06": "6 Evaluate", "07": "7 Serve", "08": "7 Serve",
        "09": "7 Serve"}
SKIPPED = re.compile(r"^#\|\s*(eval:\s*false|notest)\b", re.MULTILINE)  # cells nbdev-test does not run


def chapters() -> list[Path]:
    "Every chapter, in course order: the frame and its project, the house (core/), then the jobs by number."
    numbered = sorted(p for p in NBS.glob("[0-9]*.ipynb"))
    return [NBS / "index.ipynb", *sorted((NBS / "projects").glob("*.ipynb")), *sorted((NBS / "core").glob("*.ipynb")),
            *numbered]


def page_name(chapter: Path) -> str:
    "core/settings.ipynb -> core-settings.html; index.ipynb (the frame) -> 01_frame.html."
    relative = chapter.relative_to(NBS)
    return "01_frame.html" if relative.as_posix() == "index.ipynb" else relative.with_suffix(".html").as_posix().replace("/", "-")


def job_of(chapter: Path) -> str:
    folder = chapter.parent.name
    return JOBS[folder] if folder in ("core", "projects") else JOBS.get(page_name(chapter)[:2], "other")


def describe(notebook) -> dict:
    "Title, subtitle and module of a chapter, from its first markdown cell and its `#| default_exp`."
    title, subtitle, module = "", "", ""
    for cell in notebook.cells:
        if cell.cell_type == "markdown" and not title:
            lines = cell.source.strip().splitlines()
            title = lines[0].lstrip("# ").strip() if lines else ""
            subtitle = next((line.lstrip("> ").strip() for line in lines[1:] if line.startswith(">")), "")
        found = re.search(r"^#\|\s*default_exp\s+(\S+)", cell.source, re.MULTILINE) if cell.cell_type == "code" else None
        if found and not module:
            module = f"fullstack_ml.{found.group(1)}"
    return dict(title=title, subtitle=subtitle, module=module)


def run_smoke_pipeline(home: Path) -> Path:
    "One smoke run of every stage on `home`; return its run folder."
    fsml = Path(sys.executable).parent / "fsml"
    result = subprocess.run([str(fsml), "pipeline", "--profile", "smoke", "--json"], capture_output=True,
                            text=True, cwd=home)
    if result.returncode != 0:
        sys.exit(f"build_docs: the smoke pipeline failed, so the stage chapters have nothing to show:\n"
                 f"{result.stderr[-3000:]}")
    return Path(json.loads(result.stdout)["run_dir"])


def execute(chapter: str) -> tuple[str, str, str]:
    "Execute a library chapter in its own folder; return (chapter, executed notebook JSON, error or '')."
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    path = Path(chapter)
    notebook = nbformat.read(path, as_version=4)
    for cell in notebook.cells:
        if cell.cell_type == "code" and SKIPPED.search(cell.source):
            cell.metadata.setdefault("tags", []).append("skip-execution")
    client = NotebookClient(notebook, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    error = ""
    try:
        client.execute()
    except CellExecutionError as failure:
        error = str(failure).strip().splitlines()[-1][:300]
    except Exception as failure:  # a kernel that died or timed out
        error = f"{type(failure).__name__}: {failure}"[:300]
    return chapter, nbformat.writes(notebook), error


def render(notebook_text: str, out_path: Path, nav: str) -> str:
    "Render an executed notebook to `out_path` with the navigation bar; return the HTML."
    from nbconvert import HTMLExporter

    body, _ = HTMLExporter(template_name="lab", embed_images=True).from_notebook_node(
        nbformat.reads(notebook_text, as_version=4))
    body = re.sub(r"(<body[^>]*>)", lambda m: m.group(1) + nav, body, count=1)
    out_path.write_text(body, encoding="utf-8")
    return body


def shows_a_result(page: str) -> bool:
    "Does the page show a figure or a table produced by running the chapter (an output, not the source)?"
    outputs = page.split('class="jp-OutputArea', 1)[-1] if 'class="jp-OutputArea' in page else ""
    return "<img" in outputs or "<table" in outputs


def navigation(pages: list[dict], position: int) -> str:
    links = ['<a href="index.html">the course</a>']
    if position > 0:
        links.append(f'<a href="{pages[position - 1]["page"]}">← {html.escape(pages[position - 1]["title"])}</a>')
    if position + 1 < len(pages):
        links.append(f'<a href="{pages[position + 1]["page"]}">{html.escape(pages[position + 1]["title"])} →</a>')
    return ('<nav style="font-family: system-ui, sans-serif; padding: 0.6em 1em; border-bottom: 1px solid #ddd">'
            + " · ".join(links) + "</nav>")


def build(out: Path, run_dir: Path | None, workers: int) -> int:
    from fullstack_ml.pipeline import STAGES, html_page
    from fullstack_ml.settings import child_env

    home = Path(tempfile.mkdtemp(prefix="fsml-docs-home-"))
    os.environ.update(child_env({"FSML_HOME": str(home)}))
    for key in ("FSML_DB_URL", "FSML_STORE_URL", "FSML_QUEUE_URL", "FSML_TOKEN", "FSML_API_URL"):
        os.environ.pop(key, None)  # a throw-away embedded store, never the learner's or a server
    try:
        started = time.time()
        run_dir = Path(run_dir) if run_dir else run_smoke_pipeline(home)
        print(f"stage chapters: {run_dir} ({time.time() - started:.0f} s)", flush=True)
        stage_of = {notebook: stage for stage, notebook in STAGES}
        pages, library = [], []
        for chapter in chapters():
            notebook = nbformat.read(chapter, as_version=4)
            name = chapter.relative_to(NBS).as_posix()
            page = dict(chapter=name, page=page_name(chapter), job=job_of(chapter), stage=stage_of.get(name),
                        **describe(notebook))
            if page["stage"]:
                executed = run_dir / name
                page["text"] = executed.read_text() if executed.exists() else nbformat.writes(notebook)
                page["error"] = "" if executed.exists() else f"the smoke run has no executed {name}"
            else:
                library.append(str(chapter))
            pages.append(page)
        started = time.time()
        with ProcessPoolExecutor(max_workers=workers) as pool:
            executed = {chapter: (text, error) for chapter, text, error in pool.map(execute, library)}
        print(f"library chapters: {len(library)} executed ({time.time() - started:.0f} s)", flush=True)
        for page in pages:
            if not page["stage"]:
                page["text"], page["error"] = executed[str(NBS / page["chapter"])]
        out.mkdir(parents=True, exist_ok=True)
        problems = []
        for position, page in enumerate(pages):
            body = render(page.pop("text"), out / page["page"], navigation(pages, position))
            if page["error"]:
                problems.append(f"{page['chapter']}: {page['error']}")
            elif page["stage"] and not shows_a_result(body):
                problems.append(f"{page['chapter']}: the executed stage chapter shows no figure or table")
        rows = "".join(
            f"<tr><td>{html.escape(p['job'])}</td><td><a href=\"{p['page']}\">{html.escape(p['title'])}</a>"
            f"<div class=\"note\">{html.escape(p['subtitle'])}</div></td><td><code>{html.escape(p['chapter'])}</code></td>"
            f"<td><code>{html.escape(p['module'])}</code></td>"
            f"<td class=\"{'failed' if p['error'] else 'done'}\">"
            f"{html.escape(p['error'] or ('stage, run by the pipeline' if p['stage'] else 'library, executed'))}</td></tr>"
            for p in pages)
        table = ("<table><tr><th>job</th><th>chapter</th><th>notebook</th><th>module</th><th>executed</th></tr>"
                 + rows + "</table>")
        for name, copy in (("run.json", "run.json"), ("index.html", "run.html")):  # its links are our pages
            if (run_dir / name).exists():
                shutil.copy(run_dir / name, out / copy)
        intro = ("<p>Every chapter of the course, executed on a throw-away store at the <code>smoke</code> profile: "
                 "the stage chapters are the executed notebooks of one <code>fsml pipeline --profile smoke</code> "
                 "run (<a href=\"run.html\">its report</a>: status and seconds per stage), the library chapters "
                 "ran their own checks.</p>")
        (out / "index.html").write_text(html_page("fullstack_ml: the course", intro, table), encoding="utf-8")
        (out / "chapters.json").write_text(json.dumps(pages, indent=1))
        print(f"built {len(pages)} chapter pages into {out}")
        if problems:
            print("problems:\n  " + "\n  ".join(problems), file=sys.stderr)
        return 1 if problems else 0
    finally:
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(REPO / "_site"), help="where the site goes (default: _site)")
    parser.add_argument("--run-dir", help="a finished smoke pipeline run to take the stage chapters from")
    parser.add_argument("--workers", type=int, default=2, help="library chapters executed at once")
    args = parser.parse_args()
    sys.exit(build(Path(args.out).resolve(), args.run_dir, args.workers))
