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
