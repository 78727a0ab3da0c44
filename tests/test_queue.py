"""The job queue on both backends: batching, leases and redelivery, first-result-wins, dead letters, TTL, depth,
heartbeats, and fencing of stale workers."""
import threading
import time
import uuid

import pytest

from fullstack_ml.queue import QueueFull, open_queue


@pytest.fixture(params=["sqlite", "redis"])
def queue_url(request, tmp_path):
    "A fresh queue URL on each backend (Redis: a unique key prefix on the session's server)."
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/queue.db"
    redis_url = request.getfixturevalue("redis_url")
    return f"{redis_url}?prefix=t{uuid.uuid4().hex[:8]}"


def test_claims_batches_up_to_max_jobs_and_waits_at_most_max_delay(queue_url):
    q = open_queue(queue_url)
    ids = [q.put(f"img{i}".encode(), {"i": i}) for i in range(5)]
    batch = q.claim("w1", max_jobs=4, max_delay_ms=20, block_ms=200)
    assert [j.id for j in batch] == ids[:4]
    assert [j.meta["i"] for j in batch] == [0, 1, 2, 3]
    start = time.monotonic()
    rest = q.claim("w1", max_jobs=4, max_delay_ms=50, block_ms=200)  # one job: waits ~max_delay to fill, no more
    took = time.monotonic() - start
    assert [j.id for j in rest] == ids[4:]
    assert 0.04 <= took < 0.5, took
    start = time.monotonic()
    assert q.claim("w1", max_jobs=4, max_delay_ms=10, block_ms=100) == []
    assert time.monotonic() - start < 0.6


def test_a_lost_lease_redelivers_to_another_worker_and_the_first_result_wins(queue_url):
    q = open_queue(queue_url, lease_s=0.3)
    ids = [q.put(b"x") for _ in range(3)]
    dead_worker = q.claim("w1", max_jobs=3, max_delay_ms=0, block_ms=200)
    assert len(dead_worker) == 3
    assert q.claim("w2", max_jobs=3, max_delay_ms=0, block_ms=50) == []  # leased to w1
    assert q.status(ids[0])["status"] == "running"
    time.sleep(0.4)
    again = q.claim("w2", max_jobs=3, max_delay_ms=0, block_ms=500)
    assert sorted(j.id for j in again) == sorted(ids)
    assert {j.deliveries for j in again} == {2}
    assert q.complete_many([(j, {"by": "w2"}) for j in again]) == [True, True, True]
    assert q.complete(dead_worker[0], {"by": "w1"}) is False  # a late duplicate changes nothing
    assert q.results(ids) == {i: {"by": "w2"} for i in ids}
    assert q.status(ids[0]) == {"id": ids[0], "status": "done", "deliveries": 2, "result": {"by": "w2"}}


def test_a_poison_job_is_dead_lettered_with_its_reason(queue_url):
    q = open_queue(queue_url, max_deliveries=3)
    good, poison = q.put(b"fine"), q.put(b"poison")
    states = []
    for _ in range(5):
        for job in q.claim("w", max_jobs=8, max_delay_ms=0, block_ms=200):
            if job.payload == b"poison":
                states.append(q.fail(job, "cannot decode image: not a PNG"))
            else:
                q.complete(job, {"ok": True})
    assert states == ["queued", "queued", "failed"]
    status = q.status(poison)
    assert status["status"] == "failed" and "cannot decode image" in status["error"]
    assert [d["id"] for d in q.dead_letters()] == [poison]
    assert q.status(good)["status"] == "done"


def test_a_job_whose_workers_keep_dying_ends_failed(queue_url):
    q = open_queue(queue_url, lease_s=0.1, max_deliveries=2)
    job_id = q.put(b"kills the worker")
    for _ in range(2):  # two workers take it and die without a word
        assert len(q.claim("w", max_jobs=1, max_delay_ms=0, block_ms=500)) == 1
        time.sleep(0.15)
    q._reclaimed_at = 0  # (Redis) look for expired leases now
    assert q.claim("w", max_jobs=1, max_delay_ms=0, block_ms=100) == []
    assert q.status(job_id)["status"] == "failed"
    assert "did the workers crash" in q.status(job_id)["error"]


def test_results_expire_after_their_time_to_live(queue_url):
    q = open_queue(queue_url, result_ttl_s=1)
    job_id = q.put(b"x")
    q.complete(q.claim("w", max_jobs=1, block_ms=200)[0], {"label": "1"})
    assert q.results([job_id]) == {job_id: {"label": "1"}}
    time.sleep(2.1)
    assert q.results([job_id]) == {}


def test_a_fill_window_longer_than_the_lease_keeps_its_jobs(queue_url):
    q = open_queue(queue_url, lease_s=0.3, max_deliveries=2)
    first = q.put(b"first")
    late = []
    timer = threading.Timer(0.8, lambda: late.append(q.put(b"late")))
    timer.start()
    batch = q.claim("w1", max_jobs=2, max_delay_ms=1500, block_ms=200)  # the window spans five leases
    timer.join()
    assert [j.id for j in batch] == [first, late[0]]
    assert [j.deliveries for j in batch] == [1, 1]
    assert q.claim("w2", max_jobs=2, max_delay_ms=0, block_ms=50) == []  # still leased to w1


def test_waiting_apis_read_only_what_finished_since_their_last_look(queue_url):
    q = open_queue(queue_url, max_deliveries=1)
    cursor = q.results_cursor()
    ids = [q.put(b"a"), q.put(b"b"), q.put(b"poison")]
    jobs = q.claim("w", max_jobs=3, max_delay_ms=0, block_ms=200)
    q.complete_many([(j, {"label": j.payload.decode()}) for j in jobs[:2]])
    q.fail(jobs[2], "bad_image: cannot decode")  # a failure is a result too: its waiter learns at once
    cursor, found = q.finished_since(cursor, {ids[0], ids[2]})  # only what is asked for
    failed = {"failed": True, "error": "bad_image: cannot decode (after 1 deliveries)"}
    assert found == {ids[0]: {"label": "a"}, ids[2]: failed}
    assert q.finished_since(cursor, set(ids)) == (cursor, {})  # nothing new since


def test_redis_short_waits_keep_to_the_millisecond_not_to_redis_s_100_ms_clock(redis_url):
    q = open_queue(f"{redis_url}?prefix=t{uuid.uuid4().hex[:8]}")
    took = []
    for _ in range(5):
        start = time.monotonic()
        assert q._read_new("w", 8, 0.01) == []  # an empty stream: a BLOCK 10 would take ~100 ms
        took.append(time.monotonic() - start)
    assert sorted(took)[2] < 0.06, took


def test_a_full_queue_refuses_and_takes_jobs_again_once_drained(queue_url):
    q = open_queue(queue_url, max_depth=3)
    ids = [q.put(b"x") for _ in range(3)]
    with pytest.raises(QueueFull, match="max_depth"):
        q.put(b"one too many")
    running = q.claim("w", max_jobs=2, block_ms=200)  # running jobs count too: they are not done
    with pytest.raises(QueueFull):
        q.put(b"still full")
    q.complete_many([(j, {"ok": True}) for j in running])
    assert q.put(b"room for two") and q.put(b"again")
    with pytest.raises(QueueFull):
        q.put(b"full again")
    assert q.status(ids[0])["status"] == "done"


def test_a_job_that_waited_past_its_time_to_live_fails_as_expired_and_never_runs(queue_url):
    q = open_queue(queue_url, job_ttl_s=0.3)
    old = q.put(b"old")
    time.sleep(0.4)
    fresh = q.put(b"fresh")
    q._reclaimed_at = time.monotonic()  # (Redis) no reclaim scan needed
    assert [j.id for j in q.claim("w", max_jobs=4, max_delay_ms=0, block_ms=200)] == [fresh]
    status = q.status(old)
    assert status["status"] == "failed" and status["error"].startswith("expired")
    assert q.results([old])[old]["failed"]  # its waiting client learns at once


def test_a_heartbeat_keeps_a_batch_longer_than_the_lease(queue_url):
    holder, other = open_queue(queue_url, lease_s=0.3), open_queue(queue_url, lease_s=0.3)
    job_id = holder.put(b"slow")
    batch = holder.claim("w1", max_jobs=1, block_ms=200)
    with holder.keep_leases("w1", batch):
        for _ in range(4):  # 1.2 s: four leases
            time.sleep(0.3)
            other._reclaimed_at = 0  # (Redis) look for expired leases now
            assert other.claim("w2", max_jobs=1, max_delay_ms=0, block_ms=10) == []
    assert holder.complete(batch[0], {"label": "1"}) is True
    assert holder.status(job_id)["deliveries"] == 1


def test_a_stale_worker_can_neither_complete_nor_retry_nor_renew_a_job_another_worker_holds(queue_url):
    stale_queue, current_queue = open_queue(queue_url, lease_s=0.3), open_queue(queue_url, lease_s=0.3)
    job_id = stale_queue.put(b"x")
    stale = stale_queue.claim("w1", max_jobs=1, block_ms=200)[0]
    time.sleep(0.4)  # w1 stalls past its lease
    current_queue._reclaimed_at = 0
    current = current_queue.claim("w2", max_jobs=1, max_delay_ms=0, block_ms=200)[0]
    assert (current.id, current.deliveries) == (job_id, 2)
    assert stale_queue.complete(stale, {"by": "w1"}) is False
    assert stale_queue.fail(stale, "w1: model error") == "stale"
    assert stale_queue.fail(stale, "w1: bad image", retry=False) == "stale"
    stale_queue.renew("w1", [stale])  # must not take the lease back from w2
    assert current_queue.status(job_id)["status"] == "running" and current_queue.results([job_id]) == {}
    assert current_queue.complete(current, {"by": "w2"}) is True
    assert current_queue.results([job_id]) == {job_id: {"by": "w2"}}
    assert current_queue.dead_letters() == []
    assert current_queue.stats()["running"] == 0


def test_the_wake_up_folder_is_removed_when_its_last_listener_ends_even_after_a_killed_one(tmp_path):
    "Each SQLite queue's listeners bind sockets in a folder of /tmp: it must not outlive them (a crash included)."
    import signal
    import subprocess
    import sys

    from fullstack_ml.queue import WakeUp

    listen = ("import sys, time; from fullstack_ml.queue import SQLiteQueue; q = SQLiteQueue(sys.argv[1]); "
              "q.workers.wait(0); q.waiters.wait(0); print('listening', flush=True); time.sleep(float(sys.argv[2]))")
    path = str(tmp_path / "queue.db")
    folder = WakeUp(path, "worker").dir
    killed = subprocess.Popen([sys.executable, "-c", listen, path, "60"], stdout=subprocess.PIPE, text=True)
    assert killed.stdout.readline().strip() == "listening"
    assert len(list(folder.iterdir())) == 2
    killed.send_signal(signal.SIGKILL)  # no atexit: its sockets stay behind
    killed.wait()
    subprocess.run([sys.executable, "-c", listen, path, "0"], check=True, capture_output=True)
    assert not folder.exists(), sorted(p.name for p in folder.iterdir())
