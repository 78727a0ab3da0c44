"""Lineage end to end: crawl the bundled gallery, label, snapshot, publish, serve one crawled picture through the
real API and a worker, then walk back from the job id to the page the picture was crawled from, on SQLite and on
PostgreSQL (`fsml lineage` and `GET /v1/lineage/{id}`)."""
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from conftest import free_port, fsml, stop, wait_for_port
from serve_helpers import make_run

FSML = str(Path(sys.executable).parent / "fsml")


@pytest.fixture(params=["sqlite", "postgres"])
def served(request, fsml_home, monkeypatch):
    "A home (database on SQLite or PostgreSQL) with a crawled, labelled, snapshotted, published project and an API."
    yield from serve_a_crawled_project(request, fsml_home, monkeypatch)


@pytest.fixture(params=["sqlite", "postgres"])
def served_briefly(request, fsml_home, monkeypatch):
    "The same, behind a queue that keeps each result for 3 seconds only."
    yield from serve_a_crawled_project(request, fsml_home, monkeypatch, "?result_ttl_s=3")


def serve_a_crawled_project(request, fsml_home, monkeypatch, queue_options=""):
    from fullstack_ml.annotate import enqueue, ensure_project, submit
    from fullstack_ml.collect import crawl
    from fullstack_ml.datasets import snapshot
    from fullstack_ml.gallery import DemoSite
    from fullstack_ml.labels import import_weak_labels
    from fullstack_ml.registry import promote, publish
    from fullstack_ml.store import connect, item_sources, open_files
    import sqlalchemy as sa

    if request.param == "postgres":
        monkeypatch.setenv("FSML_DB_URL", request.getfixturevalue("postgres_db"))
    monkeypatch.setenv("FSML_QUEUE_URL", f"sqlite:///{fsml_home}/queue.db{queue_options}")
    engine, store = connect(), open_files()
    ensure_project(engine, "digits")
    with DemoSite(0, 30) as site:
        crawl([site.url], delay=0, max_pages=2)
    import_weak_labels(engine, "digits")
    with engine.connect() as conn:
        item_id, page_url = conn.execute(sa.select(item_sources.c.item_id, item_sources.c.page_url)
                                         .where(item_sources.c.page_url.is_not(None))
                                         .order_by(item_sources.c.item_id)).first()
    enqueue(engine, "digits", [item_id])
    submit(engine, "digits", item_id, "ann", "4")  # one person's label: consensus takes it over the caption's
    version = snapshot(engine, store, "digits")
    run_id = make_run(engine, store, dataset_version=version)
    row = publish(run_id, engine=engine, store=store)
    promote(row["name"], row["version"], "production", engine)
    port = free_port()
    procs = [subprocess.Popen([FSML, "serve", "api", "--port", str(port), "--wait-s", "60"], start_new_session=True,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
             subprocess.Popen([FSML, "serve", "worker"], start_new_session=True,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    try:
        wait_for_port(port, timeout=60, proc=procs[0])
        yield dict(url=f"http://127.0.0.1:{port}", item_id=item_id, page_url=page_url, site_url=site.url,
                   version=version, run_id=run_id, model=f"{row['name']}@{row['version']}", store=store)
    finally:
        for proc in procs:
            stop(proc)


def test_a_served_job_walks_back_to_the_crawl_page_of_its_image(served):
    from fullstack_ml.store import get_blob

    url, item_id = served["url"], served["item_id"]
    answer = requests.post(f"{url}/v1/predict", data=get_blob(served["store"], item_id), timeout=90)
    assert answer.status_code == 200, answer.text
    job_id = answer.json()["job_id"]

    walk = json.loads(fsml("lineage", job_id, "--json").stdout)
    assert walk["kind"] == "job" and walk["job"]["item"] == item_id and walk["job"]["model"] == served["model"]
    model = walk["model"]
    assert (model["model"], model["run"]["id"], model["dataset"]["id"]) == (served["model"], served["run_id"],
                                                                           served["version"])
    assert model["aliases"] == ["production"]
    item = walk["item"]
    assert item["known"] and item["sources"], "the picture is the crawled item, with its sources"
    source = item["sources"][0]
    assert source["page_url"] == served["page_url"] and source["page_url"].startswith(served["site_url"])
    assert source["image_url"].startswith(served["site_url"]) and source["fetched"] and source["page_fetched"]
    votes = {(a["annotator"], a["kind"]): (a["label"], a["verdict"]) for a in item["labels"]}
    assert votes[("ann", "label")] == ("4", "agreed")
    weak = [v for (who, kind), v in votes.items() if kind == "weak"]
    assert weak and all(verdict == ("agreed" if label == "4" else "overruled") for label, verdict in weak)
    [membership] = item["datasets"]
    assert membership["dataset_version"] == served["version"] and membership["label"] == "4"
    assert membership["models"] == [served["model"]]

    text = fsml("lineage", job_id).stdout
    assert served["page_url"] in text and served["model"] in text and "ann" in text

    record = requests.get(f"{url}/v1/jobs/{job_id}", timeout=30).json()
    assert record["lineage"] == f"/v1/lineage/{job_id}"
    over_http = requests.get(f"{url}{record['lineage']}", timeout=60)
    assert over_http.status_code == 200 and over_http.json()["item"]["sources"][0]["page_url"] == served["page_url"]
    unknown = requests.get(f"{url}/v1/lineage/{'0' * 32}", timeout=60)
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "unknown_ref"

    by_item = json.loads(fsml("lineage", item_id[:12], "--json").stdout)
    assert by_item["kind"] == "item" and by_item["item"]["id"] == item_id
    assert by_item["item"]["sources"][0]["page_url"] == served["page_url"]
    by_model = json.loads(fsml("lineage", served["model"], "--json").stdout)
    assert by_model["kind"] == "model" and by_model["model"]["run"]["id"] == served["run_id"]
    assert by_model["model"]["dataset"]["id"] == served["version"]

    for ref, says in (("not-a-ref", "no job, item or model matches 'not-a-ref'"),
                      ("digits@99", "no model 'digits@99' in the registry")):
        failed = fsml("lineage", ref, check=False)
        assert failed.returncode == 1 and failed.stderr.startswith("fsml: error: ") and says in failed.stderr
        assert "Traceback" not in failed.stderr


def test_a_job_whose_queue_result_expired_still_walks_back_to_its_crawl_page(served_briefly):
    "The queue forgets a result after its result_ttl_s; the worker kept what answered the job in the store."
    from fullstack_ml.store import get_blob

    served, item_id = served_briefly, served_briefly["item_id"]
    answer = requests.post(f"{served['url']}/v1/predict", data=get_blob(served["store"], item_id), timeout=90)
    assert answer.status_code == 200, answer.text
    job_id, answered_at = answer.json()["job_id"], time.monotonic()
    time.sleep(max(0.0, answered_at + 3.5 - time.monotonic()))  # past the queue's result_ttl_s
    record = requests.get(f"{served['url']}/v1/jobs/{job_id}", timeout=30)
    assert record.status_code == 404 or "result" not in record.json(), record.text  # the queue has forgotten

    walk = json.loads(fsml("lineage", job_id, "--json").stdout)
    job = walk["job"]
    assert (walk["kind"], job["kept_in"], job["status"]) == ("job", "store", "done")
    assert (job["item"], job["model"], job["label"]) == (item_id, served["model"], answer.json()["label"])
    assert walk["model"]["run"]["id"] == served["run_id"] and walk["model"]["dataset"]["id"] == served["version"]
    source = walk["item"]["sources"][0]
    assert source["page_url"] == served["page_url"] and source["page_fetched"]
    assert "kept in the store" in fsml("lineage", job_id).stdout
    over_http = requests.get(f"{served['url']}/v1/lineage/{job_id}", timeout=60)
    assert over_http.status_code == 200 and over_http.json()["item"]["sources"][0]["page_url"] == served["page_url"]


def test_a_lineage_needs_the_evaluate_permission(fsml_home, monkeypatch):
    "The walk names annotators and pages: an api client may read its job record but not its lineage; a reviewer may."
    from fullstack_ml.auth import add_user
    from fullstack_ml.store import connect

    monkeypatch.setenv("FSML_QUEUE_URL", f"sqlite:///{fsml_home}/queue.db")
    engine = connect()
    client, reviewer = add_user(engine, "client", "api"), add_user(engine, "rita", "reviewer")
    port = free_port()
    api = subprocess.Popen([FSML, "serve", "api", "--port", str(port)], start_new_session=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port, timeout=60, proc=api)
        url, ref = f"http://127.0.0.1:{port}", "0" * 32

        def get(path, token):
            return requests.get(f"{url}{path}", headers={"Authorization": f"Bearer {token}"}, timeout=30)

        assert get(f"/v1/jobs/{ref}", client).status_code == 404  # allowed, just unknown
        refused = get(f"/v1/lineage/{ref}", client)
        assert refused.status_code == 403 and refused.json()["error"]["code"] == "forbidden"
        allowed = get(f"/v1/lineage/{ref}", reviewer)
        assert allowed.status_code == 404 and allowed.json()["error"]["code"] == "unknown_ref"
        assert requests.get(f"{url}/v1/lineage/{ref}", timeout=30).status_code == 401
    finally:
        stop(api)


def png_bytes() -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("L", (28, 28), 255).save(buffer, format="PNG")
    return buffer.getvalue()


def kept_jobs(engine, job_ids) -> set:
    "The ids of `job_ids` whose lineage row is in the store's served_jobs."
    import sqlalchemy as sa

    from fullstack_ml.store import served_jobs

    with engine.connect() as conn:
        return set(conn.execute(sa.select(served_jobs.c.job_id).where(served_jobs.c.job_id.in_(job_ids))).scalars())


def wait_until(check, timeout: float):
    "Poll `check` until it returns something true, or `timeout` seconds pass; its last value."
    deadline = time.monotonic() + timeout
    while not (value := check()) and time.monotonic() < deadline:
        time.sleep(0.05)
    return value


def test_a_worker_keeps_answering_while_the_store_is_write_locked(fsml_home, monkeypatch):
    "Serving never waits on the lineage write: jobs are answered while another connection holds the store's write lock."
    import sqlite3
    import threading

    from serve_helpers import publish_untrained

    from fullstack_ml.queue import open_queue
    from fullstack_ml.store import connect
    from fullstack_ml.worker import Worker

    monkeypatch.setenv("FSML_QUEUE_URL", f"sqlite:///{fsml_home}/queue.db")
    publish_untrained()
    engine, queue = connect(), open_queue()
    worker = Worker(queue, batch_size=4, max_delay_ms=0, reload_s=3600)
    serving = threading.Thread(target=worker.run, daemon=True)
    serving.start()
    first = queue.put(png_bytes())
    assert wait_until(lambda: (queue.status(first) or {}).get("result"), 30), "the worker answers at all"

    holder = sqlite3.connect(fsml_home / "fsml.db", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # a pipeline stage, an export, annotators: the store's write lock is taken
    try:
        locked_at = time.monotonic()
        during = [queue.put(png_bytes()) for _ in range(6)]
        answered = wait_until(lambda: all((queue.status(j) or {}).get("result") for j in during), 3.0)
        answered_s = time.monotonic() - locked_at
        time.sleep(max(0.0, locked_at + 4.0 - time.monotonic()))  # hold the lock a while longer
        assert not kept_jobs(engine, during), "the lock was held: nothing could be written meanwhile"
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert answered, f"jobs put while the store was locked were not answered within 3 s ({answered_s:.1f} s)"
    assert wait_until(lambda: kept_jobs(engine, [first, *during]) == {first, *during}, 5.0), \
        "their lineage rows are written once the lock is released"

    last = queue.put(png_bytes())  # answered, then the worker is stopped at once: a clean stop keeps its lineage
    assert wait_until(lambda: (queue.status(last) or {}).get("result"), 10)
    worker.stop()  # what SIGTERM does
    serving.join(timeout=30)
    assert not serving.is_alive()
    assert kept_jobs(engine, [last]) == {last}


@pytest.fixture(params=["sqlite", "postgres"])
def store_engine(request, fsml_home, monkeypatch):
    "The store's engine, on SQLite or PostgreSQL, with a queue beside it."
    from fullstack_ml.store import connect

    if request.param == "postgres":
        monkeypatch.setenv("FSML_DB_URL", request.getfixturevalue("postgres_db"))
    monkeypatch.setenv("FSML_QUEUE_URL", f"sqlite:///{fsml_home}/queue.db")
    return connect()


def test_retention_prunes_only_rows_older_than_keep_days_in_small_batches(store_engine, monkeypatch):
    "served_jobs keeps keep_days of answers; older rows are deleted a few at a time, and lineage says they were pruned."
    import sqlalchemy as sa

    from fullstack_ml.lineage import UnknownRef, lineage
    from fullstack_ml.queue import new_job_id
    from fullstack_ml.store import now, served_jobs
    from fullstack_ml.worker import LineageWriter, prune_served_jobs

    ages = [400, 200, 95, 90.1, 89.9, 30, 1, 0]  # days since each job was answered
    ids = [new_job_id(at=now() - age * 86400) for age in ages]  # a job id says when it was made (a UUIDv7)
    assert sorted(ids) == ids
    with store_engine.begin() as conn:
        conn.execute(served_jobs.insert(), [{"job_id": job_id, "model": "digits@1", "item_id": "ab" * 32, "label": "1",
                                             "score": 0.5, "worker": "w", "answered_at": now() - age * 86400}
                                            for job_id, age in zip(ids, ages)])

    def kept() -> list:
        with store_engine.connect() as conn:
            return sorted(conn.execute(sa.select(served_jobs.c.job_id)).scalars())

    assert prune_served_jobs(store_engine, 90, rows=2) == 2  # one transaction deletes at most `rows`, the oldest
    assert kept() == ids[2:]
    writer = LineageWriter(store_engine, keep_days=90, prune_rows=1)  # the worker's thread prunes the rest at start
    writer.start()
    assert wait_until(lambda: kept() == ids[4:], 10), kept()
    time.sleep(0.3)
    assert kept() == ids[4:], "rows younger than keep_days stay"

    with pytest.raises(UnknownRef, match="its lineage was pruned"):
        lineage(ids[3])
    failed = fsml("lineage", ids[3], check=False)
    assert failed.returncode == 1 and "keeps what answered each job for 90 days" in failed.stderr, failed.stderr

    monkeypatch.setenv("FSML_LINEAGE_KEEP_DAYS", "20")  # the setting, as `fsml serve worker` reads it
    LineageWriter(store_engine).start()
    assert wait_until(lambda: kept() == ids[6:], 10), kept()
