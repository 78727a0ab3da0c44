"""Serving end to end with real processes: API -> queue -> workers on SQLite and Redis, crashes, poison jobs,
hot swaps under load, hostile inputs, roles, a full queue, a paused Redis."""
import asyncio
import io
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import uuid
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from conftest import free_port, stop, wait_for_port
from serve_helpers import blank_image, digit_png, letters_project, publish_untrained

from fullstack_ml.queue import open_queue
from fullstack_ml.registry import promote


def run_on_own_loop(coroutine_function):
    "Run a coroutine on a fresh event loop in its own thread (the session's Playwright keeps one in this thread)."
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine_function()).result()


FSML = str(Path(sys.executable).parent / "fsml")


@pytest.fixture(params=["sqlite", "redis"])
def queue_url(request, fsml_home, monkeypatch):
    "FSML_QUEUE_URL for one test on each backend, with short leases so redelivery is quick."
    if request.param == "sqlite":
        url = f"sqlite:///{fsml_home}/queue.db?lease_s=1.5&max_deliveries=2"
    else:
        url = f"{request.getfixturevalue('redis_url')}?prefix=t{uuid.uuid4().hex[:8]}&lease_s=1.5&max_deliveries=2"
    monkeypatch.setenv("FSML_QUEUE_URL", url)
    return url


@pytest.fixture
def sqlite_queue_url(fsml_home, monkeypatch):
    url = f"sqlite:///{fsml_home}/queue.db?lease_s=1.5&max_deliveries=2"
    monkeypatch.setenv("FSML_QUEUE_URL", url)
    return url


class Servers:
    "API and worker processes of one test, stopped at the end."

    def __init__(self):
        self.procs = []

    def api(self, token: str | None = None, *args) -> str:
        port = free_port()
        env = {**os.environ, **({"FSML_TOKEN": token} if token else {})}
        # a busy machine may take more than the default 10 s to start a worker: wait longer (a later --wait-s wins)
        proc = subprocess.Popen([FSML, "serve", "api", "--port", str(port), "--wait-s", "60", *args], env=env,
                                start_new_session=True,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.procs.append(proc)
        wait_for_port(port, timeout=60, proc=proc)
        return f"http://127.0.0.1:{port}"

    def worker(self, *args) -> subprocess.Popen:
        proc = subprocess.Popen([FSML, "serve", "worker", "--json", *args], start_new_session=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.procs.append(proc)
        return proc

    def stop_all(self):
        for proc in self.procs:
            stop(proc)


@pytest.fixture
def servers():
    running = Servers()
    yield running
    running.stop_all()


def wait_until(condition, timeout: float = 30.0, what: str = "condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise TimeoutError(f"{what} not reached within {timeout}s")


def test_api_queue_worker_end_to_end(queue_url, servers):
    publish_untrained(seed=1)
    api = servers.api(None, "--wait-s", "60")
    servers.worker("--batch-size", "8", "--max-delay-ms", "20")
    with ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(lambda i: requests.post(f"{api}/v1/predict", data=digit_png(i), timeout=60),
                                  range(24)))
    assert [r.status_code for r in responses] == [200] * 24
    bodies = [r.json() for r in responses]
    assert {b["model"] for b in bodies} == {"digits@1"}
    assert all(b["label"] in b["scores"] and abs(sum(b["scores"].values()) - 1) < 1e-3 for b in bodies)
    multipart = requests.post(f"{api}/v1/predict", files={"file": ("7.png", digit_png(7), "image/png")}, timeout=60)
    assert multipart.status_code == 200 and multipart.json()["model"] == "digits@1"
    job = requests.get(f"{api}/v1/jobs/{bodies[0]['job_id']}", timeout=10).json()
    assert job["status"] == "done" and job["result"]["model"] == "digits@1"
    assert requests.get(f"{api}/v1/jobs/nope", timeout=10).json()["error"]["code"] == "unknown_job"
    assert requests.get(f"{api}/healthz", timeout=10).json()["model"] == "digits@1"
    metrics = requests.get(f"{api}/metrics", timeout=10).text
    assert "fsml_batch_size_count 25.0" in metrics and "fsml_queue_wait_seconds_bucket" in metrics


def test_one_worker_serves_two_projects_each_request_by_its_own_model_and_labels(queue_url, servers):
    "POST /v1/predict?model=NAME: one worker (not told which) answers digits and letters, each with its own labels."
    from fullstack_ml.projects.digits import PROJECT as DIGITS

    publish_untrained(seed=1)
    publish_untrained(seed=2, project=letters_project())
    api = servers.api(None, "--wait-s", "60")
    servers.worker("--batch-size", "8", "--max-delay-ms", "20")
    labels = {"digits": DIGITS.label_names, "letters": ["alpha", "beta", "gamma"]}
    asked = [name for name in labels for _ in range(6)]
    with ThreadPoolExecutor(6) as pool:  # both models' jobs interleaved in the queue, batched together
        responses = list(pool.map(lambda pair: requests.post(f"{api}/v1/predict?model={pair[1]}",
                                                             data=digit_png(pair[0]), timeout=90), enumerate(asked)))
    assert [r.status_code for r in responses] == [200] * len(asked), [r.text for r in responses]
    for name, response in zip(asked, responses):
        body = response.json()
        assert body["model"] == f"{name}@1"
        assert sorted(body["scores"]) == sorted(labels[name]) and body["label"] in labels[name]
        job = requests.get(f"{api}/v1/jobs/{body['job_id']}", timeout=10).json()
        assert job["result"]["model"] == f"{name}@1"
    unnamed = requests.post(f"{api}/v1/predict", data=digit_png(0), timeout=10)
    assert (unnamed.status_code, unnamed.json()["error"]["code"]) == (400, "model_required")
    assert "(digits, letters)" in unnamed.json()["error"]["message"]
    unknown = requests.post(f"{api}/v1/predict?model=cats", data=digit_png(0), timeout=10)
    assert (unknown.status_code, unknown.json()["error"]["code"]) == (404, "unknown_model")
    assert "digits, letters" in unknown.json()["error"]["message"]
    assert requests.get(f"{api}/healthz", timeout=10).json()["models"] == ["digits@1", "letters@1"]


def test_a_worker_restricted_to_one_model_never_claims_another_models_job(queue_url, fsml_home):
    from fullstack_ml.worker import Worker

    publish_untrained(seed=1)
    publish_untrained(seed=2, project=letters_project())
    worker = Worker(open_queue(), "letters", batch_size=8, max_delay_ms=0)
    queue = worker.queue
    digit_job, letter_job = queue.put(digit_png(1), {"model": "digits"}), queue.put(digit_png(2), {"model": "letters"})
    assert worker.run(max_batches=1)["done"] == 1
    assert queue.status(letter_job)["result"]["model"] == "letters@1"
    assert queue.status(digit_job)["status"] == "queued" and queue.status(digit_job)["deliveries"] == 0
    assert queue.claim("other", max_jobs=8, max_delay_ms=0, block_ms=100, models=["digits"])[0].id == digit_job


def test_a_worker_killed_mid_batch_loses_no_job_and_none_is_done_twice(queue_url, servers):
    publish_untrained(seed=1)
    api = servers.api(None, "--wait-s", "60")  # workers start slowly on a busy machine
    queue = open_queue()
    # a long fill window holds the claimed batch open: the jobs are leased to this worker, unfinished
    doomed = servers.worker("--batch-size", "16", "--max-delay-ms", "60000")
    with ThreadPoolExecutor(6) as pool:
        futures = [pool.submit(requests.post, f"{api}/v1/predict", data=digit_png(i), timeout=60) for i in range(6)]
        wait_until(lambda: queue.stats()["running"] == 6, what="6 jobs leased to the first worker")
        os.killpg(doomed.pid, signal.SIGKILL)
        doomed.wait(10)
        rescuer = servers.worker("--batch-size", "16", "--max-delay-ms", "5")
        responses = [f.result() for f in futures]
    assert [r.status_code for r in responses] == [200] * 6
    job_ids = [r.json()["job_id"] for r in responses]
    results = queue.results(job_ids)
    assert len(results) == 6 and {r["deliveries"] for r in results.values()} == {2}  # redelivered once each
    assert len({r["worker"] for r in results.values()}) == 1
    stop(rescuer)
    counts = json.loads(rescuer.stdout.read().strip().splitlines()[-1])
    assert counts["done"] == 6 and counts["duplicates"] == 0


def test_a_poison_job_is_dead_lettered_and_its_status_says_why(queue_url, servers):
    publish_untrained(seed=1)
    api = servers.api()
    servers.worker("--batch-size", "4", "--max-delay-ms", "5")
    queue = open_queue()
    poison = queue.put(b"GIF89a" + b"\x00" * 40)  # looks like a GIF, decodes as nothing
    good = queue.put(digit_png(1))
    wait_until(lambda: (queue.status(poison) or {}).get("status") == "failed", what="the poison job failing")
    status = requests.get(f"{api}/v1/jobs/{poison}", timeout=10).json()
    assert status["status"] == "failed" and "bad_image" in status["error"]
    assert status["deliveries"] == 1  # refused images fail for good: a second worker would refuse it again
    assert [d["id"] for d in queue.dead_letters()] == [poison]
    assert queue.results([poison])[poison]["failed"]  # a waiting client learns of the failure at once
    wait_until(lambda: queue.status(good)["status"] == "done", what="the good job")
    assert requests.post(f"{api}/v1/predict", data=digit_png(2), timeout=60).status_code == 200  # still serving


def test_sigterm_lets_the_worker_finish_its_batch(sqlite_queue_url, servers):
    publish_untrained(seed=1)
    queue = open_queue()
    worker = servers.worker("--batch-size", "8", "--max-delay-ms", "3000")
    job_ids = [queue.put(digit_png(i)) for i in range(3)]
    wait_until(lambda: queue.stats()["running"] == 3, what="3 jobs claimed")
    os.killpg(worker.pid, signal.SIGTERM)
    assert worker.wait(30) == 0
    assert [queue.status(i)["status"] for i in job_ids] == ["done"] * 3
    assert {r["deliveries"] for r in queue.results(job_ids).values()} == {1}


def test_promotion_swaps_versions_without_a_failed_request_under_load(sqlite_queue_url, servers):
    publish_untrained(seed=1)
    second = publish_untrained(seed=2, promote_to=None)
    api = servers.api()
    servers.worker("--batch-size", "8", "--max-delay-ms", "5", "--reload-s", "0.2")
    outcomes, stop_at = [], time.time() + 30

    def client(i):
        while time.time() < stop_at:
            response = requests.post(f"{api}/v1/predict", data=digit_png(i), timeout=60)
            outcomes.append((time.time(), response.status_code, response.json().get("model")))

    threads = [threading.Thread(target=client, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    wait_until(lambda: len(outcomes) >= 20, what="traffic on version 1")
    promote("digits", second["version"])
    promoted_at = time.time()
    wait_until(lambda: any(m == "digits@2" for _, _, m in outcomes), what="version 2 serving")
    swapped_at = time.time()
    wait_until(lambda: sum(t > swapped_at + 1 for t, _, _ in outcomes) >= 10, what="traffic after the swap")
    stop_at = 0
    for thread in threads:
        thread.join()
    assert {status for _, status, _ in outcomes} == {200}
    assert {model for _, _, model in outcomes} == {"digits@1", "digits@2"}
    assert swapped_at - promoted_at < 10
    assert {m for t, _, m in outcomes if t > swapped_at + 1} == {"digits@2"}


def png_header_bomb(width: int = 20000, height: int = 20000) -> bytes:
    "A valid-looking PNG that claims width x height pixels (the decompression-bomb shape) in a few bytes."
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00" * 4096)) + \
        chunk(b"IEND", b"")


def test_bad_inputs_get_their_4xx_and_the_next_good_request_succeeds(sqlite_queue_url, servers):
    publish_untrained(seed=1)
    token = "t0ken-" + uuid.uuid4().hex
    api = servers.api(token)
    servers.worker("--batch-size", "4", "--max-delay-ms", "5")
    auth = {"Authorization": f"Bearer {token}"}
    good = digit_png(3)
    truncated = io.BytesIO()
    from PIL import Image
    Image.effect_noise((64, 64), 64).convert("L").save(truncated, format="PNG")
    cases = [
        ("missing token", {}, good, 401, "unauthorized"),
        ("wrong token", {"Authorization": "Bearer nope"}, good, 403, "forbidden"),
        ("empty body", auth, b"", 400, "empty_body"),
        ("text", {**auth, "Content-Type": "image/png"}, b"hello, I am not an image", 415, "unsupported_type"),
        ("truncated PNG", auth, truncated.getvalue()[:1000], 400, "bad_image"),
        ("30 MB upload", auth, b"\x89PNG\r\n\x1a\n" + os.urandom(30 * 2**20), 413, "body_too_large"),
        ("20000x20000 bomb", auth, png_header_bomb(), 413, "image_too_large"),
        ("65536x256 PNG (17 KB)", auth, blank_image((65536, 256)), 413, "image_too_large"),
        ("256x65536 PNG", auth, blank_image((256, 65536)), 413, "image_too_large"),
        ("4000x4000 pixel bomb", auth, blank_image((4000, 4001), "PNG", mode="1"), 413, "image_too_large"),
        ("2000x60 needle", auth, blank_image((2000, 60)), 422, "image_refused"),
        ("50-frame GIF", auth, blank_image((64, 64), "GIF", frames=50), 422, "image_refused"),
        ("30-frame APNG", auth, blank_image((64, 64), "PNG", frames=30), 422, "image_refused"),
    ]
    for what, headers, body, status, code in cases:
        response = requests.post(f"{api}/v1/predict", data=body, headers=headers, timeout=60)
        assert (response.status_code, response.json()["error"]["code"]) == (status, code), what
        assert response.json()["error"]["message"], what
        after = requests.post(f"{api}/v1/predict", data=good, headers=auth, timeout=60)
        assert after.status_code == 200 and after.json()["model"] == "digits@1", what
        assert [p.poll() for p in servers.procs] == [None, None], f"a process died after {what}"
    assert requests.get(f"{api}/healthz", timeout=10).status_code == 401


def test_the_api_refuses_to_listen_beyond_loopback_without_a_token(fsml_home):
    done = subprocess.run([FSML, "serve", "api", "--host", "0.0.0.0", "--port", str(free_port())],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 1 and "FSML_TOKEN" in done.stderr


def test_the_run_promotes_only_a_better_model_and_serves_it_over_http(fsml_home):
    from serve_helpers import make_dataset_version, make_run

    from fullstack_ml.serve import publish_if_better, run_serve
    from fullstack_ml.store import connect, open_files

    engine, store = connect(), open_files()
    version = make_dataset_version(engine, store, n=80)
    make_run(engine, store, seed=3, dataset_version=version)
    first = run_serve(n_requests=30, concurrency=4)
    assert first["published"] == "digits@1" and first["promoted"] and first["production"] == "digits@1"
    assert first["ok"] == 30 and first["served_by"] == ["digits@1"] and first["p99_ms"] > 0
    make_run(engine, store, seed=3, dataset_version=version)  # the same weights: not better, so not promoted
    second = publish_if_better()
    assert second["published"] == "digits@2" and not second["promoted"] and second["production"] == "digits@1"
    assert second["accuracy"]["candidate"] == second["accuracy"]["production"]



def test_a_queue_that_cannot_take_jobs_gives_503_json_not_a_crash(fsml_home):
    from fastapi.testclient import TestClient

    from fullstack_ml.serve import create_app

    publish_untrained(seed=1)  # a model to ask for: only the queue fails
    app = create_app()

    def broken_put(*args, **kwargs):
        raise OSError("disk gone")

    app.state.queue.put = app.state.queue.put_many = broken_put  # every write fails, one or many jobs
    response = TestClient(app).post("/v1/predict", content=digit_png(1))
    assert response.status_code == 503 and response.json()["error"]["code"] == "queue_unavailable"


def test_a_pinned_worker_ignores_promotions_and_a_following_one_swaps_only_to_a_sound_artifact(fsml_home):
    from fullstack_ml.worker import Worker
    from fullstack_ml.store import open_files

    publish_untrained(seed=1)
    second = publish_untrained(seed=2, promote_to=None)
    pinned = Worker(open_queue(), "digits@1", reload_s=0)
    following = Worker(open_queue(), "digits@production", reload_s=0)
    store = open_files()
    name = f"{second['path']}/weights.safetensors"
    good = store.read(name)
    promote("digits", 2)  # promote verifies; the file is damaged afterwards (a disk, a bad copy, an attacker)
    store.write(name, good[:-1] + bytes([good[-1] ^ 1]))
    pinned.follow_alias()
    following.follow_alias()
    assert (pinned.model.ref, following.model.ref) == ("digits@1", "digits@1")  # refused: v1 keeps serving
    store.write(name, good)
    following.follow_alias()
    assert following.model.ref == "digits@2"


def test_roles_decide_who_may_predict_and_a_revoked_token_stops_working(sqlite_queue_url, servers, monkeypatch):
    from fullstack_ml import auth
    from fullstack_ml.store import connect

    publish_untrained(seed=1)
    engine = connect()
    tokens = {role: auth.add_user(engine, f"u-{role}", role) for role in ("api", "demo", "annotator", "reviewer")}
    api = servers.api()  # no FSML_TOKEN: the users table decides
    servers.worker("--batch-size", "4", "--max-delay-ms", "5")

    def predict(token):
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return requests.post(f"{api}/v1/predict", data=digit_png(1), headers=headers, timeout=60)

    assert {role: predict(token).status_code for role, token in tokens.items()} == \
        {"api": 200, "demo": 200, "annotator": 403, "reviewer": 200}
    assert predict(None).status_code == 401 and predict("fsml_nope_nope").status_code == 403
    assert "may not predict" in predict(tokens["annotator"]).json()["error"]["message"]
    auth.revoke_user(engine, "u-api")
    wait_until(lambda: predict(tokens["api"]).status_code == 403, timeout=15, what="the revocation taking effect")
    assert predict(tokens["demo"]).status_code == 200


def test_a_chunked_multipart_upload_is_refused_while_it_streams_not_after(sqlite_queue_url, servers):
    "The old API parsed the whole form (to disk) before any size check: it never answered an unfinished upload."
    publish_untrained(seed=1)
    port = int(servers.api().rsplit(":", 1)[1])
    boundary, replies = "fsmlboundary", []
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:

        def read_reply():  # the head and the JSON body may come in separate segments
            data = b""
            try:
                while not (b"\r\n\r\n" in data and data.endswith(b"}")):
                    chunk = sock.recv(65536)
                    if not chunk:
                        break
                    data += chunk
            except OSError:
                pass
            replies.append(data)

        reader = threading.Thread(target=read_reply, daemon=True)
        reader.start()
        sock.sendall((f"POST /v1/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n"
                      f"Content-Type: multipart/form-data; boundary={boundary}\r\n\r\n").encode())
        part = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.png\"\r\n"
                "Content-Type: image/png\r\n\r\n\x89PNG\r\n\x1a\n").encode()
        try:
            for block in [part] + [b"\0" * 65536] * 160:  # 10 MB, and never the closing chunk
                sock.sendall(f"{len(block):x}\r\n".encode() + block + b"\r\n")
                if replies:
                    break
        except OSError:  # the server stopped reading once it had refused
            pass
        reader.join(20)
    assert replies and replies[0].startswith(b"HTTP/1.1 413"), replies
    assert b"body_too_large" in replies[0]  # answered although the upload never finished


def test_the_worst_image_the_api_accepts_costs_a_worker_little_memory(sqlite_queue_url, fsml_home):
    "Peak RSS of a worker over its baseline while it handles the largest accepted canvas, and hostile jobs."
    publish_untrained(seed=1)
    worst = blank_image((4000, 4000), "PNG", mode="RGBA")  # 16 Mpixels at 4 bytes: the limits' largest canvas
    script = """
import json, resource, sys
from fullstack_ml.queue import open_queue
from fullstack_ml.worker import Worker
from serve_helpers import blank_image, digit_png

def peak_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

worker = Worker(open_queue(), "digits@1", batch_size=1, max_delay_ms=0)
queue = worker.queue
queue.put(digit_png(1))
worker.run(max_batches=1)  # warm: the model has run once
baseline = peak_mb()
worst = queue.put(open(sys.argv[1], "rb").read())
hostile = [queue.put(blank_image(size)) for size in ((65536, 256), (256, 65536))]  # past the API, straight in
counts = worker.run(max_batches=4)
print(json.dumps({"baseline_mb": baseline, "peak_mb": peak_mb(), "counts": counts,
                  "worst": queue.status(worst), "hostile": [queue.status(i) for i in hostile]}))
"""
    image_path = fsml_home.parent / "worst.png"
    image_path.write_bytes(worst)
    done = subprocess.run([sys.executable, "-c", script, str(image_path)], capture_output=True, text=True, timeout=300,
                          check=False,
                          cwd=Path(__file__).parent, env={**os.environ, "PYTHONPATH": str(Path(__file__).parent)})
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"worker peak RSS: baseline {report['baseline_mb']:.0f} MB, peak {report['peak_mb']:.0f} MB, "
          f"+{report['peak_mb'] - report['baseline_mb']:.0f} MB for a {len(worst)}-byte 4000x4000 RGBA PNG")
    assert report["worst"]["status"] == "done"
    assert [h["status"] for h in report["hostile"]] == ["failed", "failed"]
    assert all("side_too_long" in h["error"] for h in report["hostile"])
    assert report["peak_mb"] - report["baseline_mb"] < 150


def test_a_full_queue_answers_503_with_retry_after_and_recovers_once_drained(queue_url, servers, monkeypatch):
    publish_untrained(seed=1)
    monkeypatch.setenv("FSML_QUEUE_URL", f"{queue_url}&max_depth=3")
    api = servers.api(None, "--wait-s", "0.2")  # no worker yet: jobs wait
    accepted = [requests.post(f"{api}/v1/predict", data=digit_png(i), timeout=60) for i in range(3)]
    assert [r.status_code for r in accepted] == [202] * 3
    full = requests.post(f"{api}/v1/predict", data=digit_png(9), timeout=60)
    assert (full.status_code, full.json()["error"]["code"]) == (503, "queue_full")
    assert int(full.headers["Retry-After"]) > 0
    servers.worker("--batch-size", "8", "--max-delay-ms", "5")
    queue = open_queue()
    wait_until(lambda: all(queue.status(r.json()["job_id"])["status"] == "done" for r in accepted), timeout=90,
               what="the queue drained")
    again = requests.post(f"{api}/v1/predict", data=digit_png(9), timeout=60)
    assert again.status_code in (200, 202), again.text  # accepted again


def test_the_result_waiter_keeps_the_event_loop_free_while_redis_is_paused(redis_url):
    import redis

    from fullstack_ml.serve import ResultWaiter

    queue = open_queue(f"{redis_url}?prefix=t{uuid.uuid4().hex[:8]}")
    waiter = ResultWaiter(queue)
    job_id = queue.put(digit_png(1))  # no worker: nobody finishes it
    admin = redis.Redis.from_url(redis_url)

    async def main():
        gaps, last = [], time.monotonic()

        async def ticker():  # what every other request on this event loop would feel
            nonlocal last
            for _ in range(30):
                await asyncio.sleep(0.05)
                gaps.append(time.monotonic() - last)
                last = time.monotonic()

        admin.client_pause(1500)  # every Redis command of every client waits 1.5 s
        result, _ = await asyncio.gather(waiter.wait(job_id, 2.5), ticker())
        return result, max(gaps)

    try:
        result, worst_gap = run_on_own_loop(main)
    finally:
        admin.client_unpause()
    assert result is None
    assert worst_gap < 0.5, f"the event loop stalled for {worst_gap:.2f} s"


def test_a_worker_keeps_the_leases_of_a_batch_slower_than_the_lease(fsml_home):
    "A real slow batch (twelve of the largest accepted images) outlives the lease; no other worker may take its jobs."
    from fullstack_ml.worker import Worker

    publish_untrained(seed=1)
    url = f"sqlite:///{fsml_home}/queue.db?lease_s=0.5"
    worker = Worker(open_queue(url), "digits@1", batch_size=12, max_delay_ms=0)
    big = blank_image((4000, 4000), "PNG", mode="RGBA")
    ids = [worker.queue.put(big) for _ in range(12)]
    thief, stolen = open_queue(url), []
    started = time.monotonic()
    running = threading.Thread(target=worker.run, kwargs={"max_batches": 1})
    running.start()
    wait_until(lambda: thief.stats()["running"] == 12 or not running.is_alive(), what="the worker's claim")
    while running.is_alive():  # now try to take its jobs, as a second worker would
        stolen += thief.claim("thief", max_jobs=12, max_delay_ms=0, block_ms=20)
    took = time.monotonic() - started
    assert took > 1.0, f"the batch took {took:.2f} s, not two leases: the test proves nothing"
    assert stolen == []
    assert [thief.status(i)["deliveries"] for i in ids] == [1] * 12
    assert {thief.status(i)["status"] for i in ids} == {"done"}


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
def test_every_waiting_client_gets_its_result_while_jobs_finish_all_the_time(backend, tmp_path, request):
    "Clients join while the waiter is reading the log of finished jobs; none may be missed (a 202 after wait_s)."
    from fullstack_ml.serve import ResultWaiter

    url = f"sqlite:///{tmp_path}/queue.db" if backend == "sqlite" else \
        f"{request.getfixturevalue('redis_url')}?prefix=t{uuid.uuid4().hex[:8]}"
    api_queue, worker_queue, stop_working = open_queue(url), open_queue(url), threading.Event()

    def work():  # a worker finishing jobs as fast as they arrive
        while not stop_working.is_set():
            jobs = worker_queue.claim("w", max_jobs=8, max_delay_ms=0, block_ms=20)
            if jobs:
                worker_queue.complete_many([(job, {"id": job.id}) for job in jobs])

    async def client(i: int, waiter: ResultWaiter):
        await asyncio.sleep(i * 0.001)
        job_id = await asyncio.to_thread(api_queue.put, b"x")
        return job_id, await waiter.wait(job_id, 10)

    async def clients():
        waiter = ResultWaiter(api_queue)
        return await asyncio.gather(*(client(i, waiter) for i in range(1000)))

    working = threading.Thread(target=work)
    working.start()
    try:
        answers = run_on_own_loop(clients)
    finally:
        stop_working.set()
        working.join()
    missed = [job_id for job_id, result in answers if result is None]
    assert missed == [], f"{len(missed)} of 1000 clients never got their result"
    assert all(result == {"id": job_id} for job_id, result in answers)
