"""Many annotators on one machine (issue 18): N annotator pages at once, in headless Chromium, against one Voila server.

Each page is a person with their own credential (so their own kernel), who looks at the image for a while (a human
pace: `--pace` seconds on average, uniformly 0.5x to 1.5x), presses a label key, and goes on until everyone has
arrived, then `--labels` more, so that for the last stretch all N pages are at work at once. People arrive at random,
`--ramp` seconds apart on average (a Poisson process, seeded), as they do in the morning, not all in the same second. The script prints:
- key -> next image painted, p50/p95/max over every key of every page, measured in the page: `performance.now()` at
  the keydown, then an animation frame and a message (it runs once the frame showing the new image is painted:
  `window.__fsmlPainted`); beside it the older measure, the second animation frame (`__fsmlPaints`, up to a frame
  later), and the p95 of the keys pressed after the last page opened (no kernel starting). Target p95 <= 50 ms.
- how often a key found the page's local queue empty (the kernel had fallen behind: the person waits);
- labels pressed, acknowledged by the kernels (the label the store holds, read back), refused, and counted in the
  store: the fast path must store exactly what the screens showed as done;
- the resident memory of each annotation kernel (mean and max; target <= 80 MB) and of the Voila server;
- page load (open -> first image) p50 and max, and the load average (before, min/max during, after), since the
  machine may be shared;
- pages that never showed an image within `--load-timeout` seconds, and what they said instead.

Run from the repo root:  python benchmarks/annotate_pages.py [--pages 50] [--labels 10] [--pace 1.5] [--ramp 3]
On a loaded machine run it at a smaller --pages and say so: the figures are per page and per kernel.

Measured (2 cores shared with four other engineers; one run under the benchmark lock, 18:21 UTC, 2026-11-30):
`--pages 50 --labels 10 --ramp 3`, load average 5.0 before, 5.0-25.4 during, 18.3 after. All 50 pages showed an
image (open -> first image p50 18.9 s, max 71.3 s). Key -> next image painted over 2,583 keys: p50 16.3 ms,
p95 188.5 ms (target 50 ms: missed, ratio 3.77), max 1,757 ms; the older two-frame measure p95 232.3 ms; after the
last page opened (539 keys, all 50 at work, no kernel starting) p95 21.2 ms; 45 keys found the local queue empty.
Labels: 2,583 pressed, 2,581 acknowledged as stored, 1 refused, 0 unacknowledged; 2,582 in the store (one page
showed an item twice, re-sent after a `ready`, and its second label was refused; the page now never queues an item
it has decided). Kernels
77.3 MB mean, 77.5 max (target 80); server 150.5 MB. An earlier run (18:09, people leaving after 10 labels, so only
a few at work at once, --ramp 4, load 3.5-9.5): 50 of 50 loaded (p50 4.6 s, max 8.6 s), p95 23.2 ms, max 52.9 ms,
500 of 500 acknowledged and stored, 76.8 MB a kernel. Again after the decided-items fix (18:34, same arguments,
load 2.5 before, 4.0-28.9 during): 50 of 50 loaded (p50 15.9 s, max 63.7 s); 2,963 pressed, 2,963 acknowledged,
0 refused, 2,963 in the store; p50 13.3 ms, p95 207.3 ms (missed, ratio 4.15), max 5,060 ms, two-frame p95 233 ms,
p95 31.3 ms over the 531 keys after the last page opened; 88 keys on an empty queue; 77.3 MB a kernel (77.6 max).
Before (people 2 s apart in a line, all 10 labels each, load 7-9): p50 16.7 ms, p95 238 ms, max 2.5 s, 133 s
median to the first image, 2 of 50 pages never loaded, 76.7 MB a kernel. What changed: the key swaps in the next
item's own decoded <img> and sends the label after the swap (the kernel acks the label it stored); the measure is
the paint (rAF + message) instead of two rAFs; page kernels run at nice 10 below the Voila server; Voila's 60 s
kernel start and kernel_info timeouts are 600 s; arrivals are random. The tail left is the arrivals: while
kernels start, keys wait for a core and some kernels fall behind their prefetch.
With no other work on the machine the same arguments gave (18:47 UTC; load 5.6 before from the runs just ended,
4.6-16.2 during from the 50 browsers and kernels themselves): 50 of 50 loaded (p50 8.0 s, max 50.2 s); 3,025 pressed, acknowledged
and stored, 0 refused; p50 13.9 ms, p95 95.3 ms over all keys (missed, ratio 1.91), p95 26 ms over the 547 keys
after the last page opened (all 50 at work at once: met); 102 keys on an empty queue; 77.3 MB a kernel.

Session 5 (2026-11-30, same arguments, each run under the benchmark lock; the script now also splits the keys over
50 ms by what the page had, nothing queued or the next image ready, and counts a key whose next image never came as
the 300 s the person waited). Four runs, in order:
- 20:37, as it was (load 4.5 before, 5.2-26.8 during): 50/50 loaded (p50 13.7 s, max 78.3 s); 2,840 keys: p50 11.8 ms,
  p95 193.7 ms (missed, 3.87), max 1.8 s; 610 keys over 50 ms, only 68 of them on an empty queue: the page's CPU, not
  the kernel's refill, made most of the tail; p95 of the keys with the next image ready 148.9 ms; 31.4 ms after the
  last page opened; 77.3 MB a kernel. Why: Linux shares the CPU first between sessions (autogroups) and only then by
  nice within one; jupyter_client starts each kernel in a session of its own, so the nice-10 kernels were not below
  anything: each starting kernel took as large a share as all 50 Chromium pages together (one session).
- 20:43, the kernels' groups at nice 10 for good (load 3.4 before, 3.5-53.5 during, another engineer's tests running
  too): p95 791.8 ms, max 48 s, 211 keys on an empty queue: the serving kernels starved behind everything else. Not
  kept. (A few kernels of this run may have started with the deeper prefetch below: it was exported for ~20 s.)
- 20:51, the group at nice 10 only while Voila builds the page, back at 0 once built (load 2.2 before, 0.0-36.3
  during): p95 151.7 ms, p50 15.3 ms, max 3.3 s; 841 keys over 50 ms, 40 on an empty queue; 1 page of 50 never showed
  an image ("loading…" for 600 s; its kernel claimed 4 items and heard nothing after), so the others labelled on for
  10 minutes and the 3,900 items ran out: the figure is over more keys with everyone in, so flatters this run.
  A 21:05 run was stopped: a starting kernel died on "Address already in use" (a TCP port race under load), so its
  page would have waited 600 s; kernels now use Unix sockets (--KernelManager.transport=ipc).
- 21:14, all of it: kernel groups yield while starting, ipc, PREFETCH 4 with REFILL_BELOW 3 (the page holds the item on
  screen and 4 more, one lease more per person; a label searches the queue once per 3 labels as before, but with two in
  reserve, not none) (load 4.7 before, 5.0-41.0 during, a test suite of another engineer's running too): 50/50 loaded
  (p50 14.9 s, max 110.9 s); 3,850 keys: p50 17.3 ms, p95 118.9 ms (missed, ratio 2.38), max 454 ms; 0 keys on an
  empty queue (the kernel side is gone from the tail); all 868 keys over 50 ms had their next image ready; after the
  last page opened p95 25.3 ms (404 keys); 3,900 acknowledged and stored, 0 refused (the items ran out at the end:
  each page's last key showed "all done" and is not measured); 76.7 MB a kernel (76.9 max); server 155 MB.
- 21:24, the same code again, with less else on the machine (load 3.0 before, 2.6-19.0 during, 13.7 after): 50/50
  loaded (p50 6.6 s, max 53.5 s); 3,603 keys: p50 12.7 ms, **p95 48.9 ms over all keys, arrivals included (target
  50 ms: met, ratio 0.98, by a small margin)**, max 102.9 ms; two-frame p95 52.1 ms; 0 keys on an empty queue; 172
  keys over 50 ms, all with the next image ready; p95 25.8 ms after the last page opened (548 keys); 3,603 pressed,
  acknowledged and stored, 0 refused; 76.7 MB a kernel (76.9 max; target 80: met); server 152.8 MB. Met here,
  missed (118.9 ms) ten minutes earlier with another engineer's test suite on the same cores: the margin is thin.
- 21:33, the same code, the lead's run with nothing else on the machine (load 2.0 before, 1.8-26.5 during, 19.7
  after): 50/50 loaded (p50 5.7 s, max 57.2 s); 3,485 keys: p50 12.7 ms, **p95 59.5 ms over all keys (missed, ratio
  1.19)**, max 195 ms; 0 keys on an empty queue; 288 keys over 50 ms, all with the next image ready; p95 31.5 ms after
  the last page opened (549 keys); 3,485 pressed, acknowledged and stored, 0 refused; 76.6 MB a kernel (76.8 max);
  server 151 MB. So on a quiet machine the same code gives 48.9 and 59.5 ms: around the target, not safely under it.
- 21:42, a trial not kept: a headless Chromium for each person (as people have: their own compositor and network
  process) instead of 50 tabs of one browser. On these 2 cores 50 browsers cost far more than one (load up to 142):
  p95 192.5 ms, p50 15.1 ms, page open -> first image max 324 s. The benchmark keeps the one shared browser.
- Voila's loading spinner stands still (the app server's own spinner.macro.html.j2 first on the template path). Its
  60 frames a second cost a browser without a GPU ~6% of a core per page still loading (8 loading tabs: 0.49 CPU-s
  a second spinning, 0.01 still), and with people arriving several pages are loading at once. Two runs, nothing else
  on the machine, same arguments: 21:57 UTC (load 1.8 before, 1.8-12.5 during, from 1.8-26.5 in the run at 21:33):
  50/50 loaded (p50 5.1 s, max 18.5 s, from 57.2 s); 3,304 keys: p50 10.6 ms, **p95 33.9 ms over all keys,
  arrivals included (target 50 ms: met, ratio 0.68)**, max 100 ms; 43 keys over 50 ms (from 288), 0 on an empty
  queue; p95 20.3 ms after the last page opened; 3,304 pressed, acknowledged and stored, 0 refused; 76.6 MB a kernel
  (76.8 max); server 151 MB. 22:02 UTC (load 3.0 before, 2.5-10.1 during): 50/50 loaded (p50 5.5 s, max 22.0 s);
  3,302 keys: p50 9.9 ms, **p95 31.2 ms (met, 0.62)**, max 113 ms; 39 keys over 50 ms; 3,302 pressed, acknowledged
  and stored; 76.6 MB a kernel (76.9 max).
What was left before it is the browsers' own CPU while people arrive (every slow key had its next image ready): each new page's load (Voila's JavaScript, the widget
manager) runs at the same priority as the 50 open pages, in the same session, on the same 2 cores, and the server
renders each arriving page; a kernel now costs ~1 CPU-second and yields. Real annotators bring their own browser; on
this machine the 50 browsers are the load. A pool of pre-started kernels was not tried: with kernels yielding it
would not take the browsers' CPU off the arrivals, and binding the person to a pooled kernel needs care (Voila's
/voila/query websocket that hands a pooled kernel its request has no authentication).
"""
import argparse
import asyncio
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path


from annotate import CHROMIUM_ARGS, free_port, kernel_rss_mb, make_items  # the one-page benchmark's helpers

from _home import STORE_KEYS, throwaway_home  # benchmarks/_home.py: a fresh FSML_HOME per run

BROWSER_ARGS = [*CHROMIUM_ARGS, "--disable-background-networking", "--disable-component-update"]
ROOT = ".fsml-annotate"
SHOWN = ".fsml-annotate[data-item]:not([data-item=''])"
NEXT = ("(before) => { const root = document.querySelector('.fsml-annotate');"
        " const empty = document.querySelector('.fsml-empty');"
        " return (root.dataset.item && root.dataset.item !== before) || empty.textContent.startsWith('all done'); }")


def percentile(values: list, q: float) -> float:
    ordered = sorted(values)
    return round(ordered[int(q * (len(ordered) - 1))], 1)


async def annotator(browser, url: str, labels: int, pace_s: float, seed: int, delay_s: float,
                    load_timeout_s: float, opened: list, arrived: list, everyone: int) -> dict:
    "One person: open the page, then look for a while and press a key until all have arrived and `labels` more."
    from playwright.async_api import TimeoutError as PlaywrightTimeout

    rng = random.Random(seed)
    await asyncio.sleep(delay_s)
    context = await browser.new_context(viewport={"width": 900, "height": 760})
    page = await context.new_page()
    started = time.perf_counter()
    step = "Voila's page never finished loading"
    try:
        await page.goto(url, timeout=load_timeout_s * 1000)
        step = "the page loaded but showed no item"
        await page.wait_for_selector(SHOWN, timeout=load_timeout_s * 1000)
    except PlaywrightTimeout:  # counted and described, not fatal: the others' figures still stand
        said = " ".join((await page.inner_text("body")).split())[:200]
        said += " " + await page.evaluate("JSON.stringify((document.querySelector('.fsml-annotate') || {}).dataset)")
        arrived.append(time.time())
        await context.close()
        return {"failed": f"no image after {load_timeout_s} s ({step}); the page said: {said!r}"}
    load_s = time.perf_counter() - started
    opened.append(time.time())
    arrived.append(time.time())
    on_empty, pressed_at, given, stuck = [], [], 0, None
    while len(arrived) < everyone or given < labels:  # all at work at once: on until the last has arrived
        given += len(arrived) == everyone
        await asyncio.sleep(pace_s * rng.uniform(0.5, 1.5))  # a person looks, then decides
        # no next image waiting in the page: this key will wait for the kernel
        on_empty.append(await page.get_attribute(ROOT, "data-queued") == "0")
        before = await page.get_attribute(ROOT, "data-item")
        if not before:
            on_empty.pop()
            break
        pressed_at.append(time.time())
        await page.keyboard.press(str(rng.randrange(10)))
        try:
            await page.wait_for_function(NEXT, arg=before, timeout=300_000)
        except PlaywrightTimeout:  # this person gives up; what the page showed is kept, the others go on
            stuck = await page.evaluate("JSON.stringify(document.querySelector('.fsml-annotate').dataset)")
            stuck += " " + " ".join((await page.inner_text("body")).split())[:200]
            break
    try:  # every label acknowledged by the kernel (stored, read back) before the person leaves
        await page.wait_for_selector(f"{ROOT}[data-saving='0']", timeout=120_000)
    except PlaywrightTimeout:
        pass
    await asyncio.sleep(0.2)  # the last key's two animation frames
    measured = await page.evaluate("[window.__fsmlPainted, window.__fsmlPaints]")
    if stuck:  # the key that never showed its next image counts, as the 300 s the person waited
        measured = [[*measured[0], 300_000.0], [*measured[1], 300_000.0]]
    counts = await page.evaluate("(() => { const d = document.querySelector('.fsml-annotate').dataset;"
                                 " return [Number(d.done), Number(d.saving), Number(d.refused || 0)]; })()")
    await context.close()
    return {"load_s": load_s, "painted_ms": measured[0], "paints_ms": measured[1], "on_empty": on_empty,
            "pressed_at": pressed_at, "stuck": stuck, "done": counts[0], "saving": counts[1], "refused": counts[2]}


def arrivals(pages: int, ramp_s: float) -> list:
    "Seconds after the start at which each person opens the page: random, `ramp_s` apart on average (Poisson)."
    rng, delays, at = random.Random(pages), [], 0.0
    for _ in range(pages):
        delays.append(at)
        at += rng.expovariate(1 / ramp_s) if ramp_s > 0 else 0
    return delays


async def drive(port: int, tokens: list, labels: int, pace_s: float, delays: list, load_timeout_s: float) -> list:
    "All annotators at once in one headless Chromium (Debian's, not a downloaded one)."
    from playwright.async_api import async_playwright

    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=executable, headless=True, args=BROWSER_ARGS)
        opened, arrived = [], []
        people = [annotator(browser, f"http://127.0.0.1:{port}/?token={token}", labels, pace_s, seed, delay,
                            load_timeout_s, opened, arrived, len(tokens))
                  for seed, (token, delay) in enumerate(zip(tokens, delays))]
        results = await asyncio.gather(*people)
        await browser.close()
    return results, opened


def sample_load(samples: list, stop: threading.Event) -> None:
    "The 1-minute load average every 5 s while the pages run (the machine may be shared)."
    while not stop.wait(5):
        samples.append(os.getloadavg()[0])


def stored_labels() -> int:
    "Label rows in the store, none undone (the benchmark never undoes): what the kernels wrote."
    import sqlalchemy as sa

    from fullstack_ml.store import annotations, connect

    with connect().connect() as conn:
        return conn.execute(sa.select(sa.func.count()).where(annotations.c.kind == "label")).scalar()


def rss_mb(pid: int) -> float:
    return round(int(Path(f"/proc/{pid}/status").read_text().split("VmRSS:")[1].split()[0]) / 1024, 1)


def run(pages: int, labels: int, pace_s: float, ramp_s: float, load_timeout_s: float = 600) -> dict:
    "Set up a store with `pages` annotators and enough items, serve the app, drive the pages, measure."
    from fullstack_ml.auth import add_user
    from fullstack_ml.store import connect

    delays = arrivals(pages, ramp_s)
    waiting = sum(delays[-1] - delay for delay in delays) / pace_s  # labels given while others still arrive
    # each page holds its item and 4 prefetched ones (PREFETCH); make_items draws at most 3,920 distinct images
    make_items(min(3900, int(pages * (labels + 6) + 1.5 * waiting) + 20))
    tokens = [add_user(connect(), f"annotator-{i:02d}", "annotator") for i in range(pages)]
    port = free_port()
    fsml = Path(sys.executable).parent / "fsml"
    log_path = Path(os.environ["FSML_HOME"]) / "voila.log"
    with open(log_path, "w") as log:
        server = subprocess.Popen([str(fsml), "annotate", "app", "--port", str(port), "--cull-idle", "3600"],
                                  stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    load_before = os.getloadavg()[0]
    try:
        for _ in range(1200):
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.1)
        started = time.time()
        load_samples, sampling = [], threading.Event()
        sampler = threading.Thread(target=sample_load, args=(load_samples, sampling), daemon=True)
        sampler.start()
        results, opened = asyncio.run(drive(port, tokens, labels, pace_s, delays, load_timeout_s))
        sampling.set()
        elapsed = time.time() - started
        kernels = kernel_rss_mb(server.pid)  # after the labels: the kernels as they run, not as they start
        server_mb = rss_mb(server.pid)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(30)
        shutil.copy(log_path, Path(tempfile.gettempdir()) / "annotate_pages_voila.log")  # outlives the home
    stored = stored_labels()
    failed = [result["failed"] for result in results if "failed" in result]
    results = [result for result in results if "failed" not in result]
    painted = [ms for result in results for ms in result["painted_ms"]]
    paints = [ms for result in results for ms in result["paints_ms"]]
    all_open = max(opened) if len(opened) == pages else float("inf")  # after this, no kernel was starting
    steady = [ms for result in results for at, ms in zip(result["pressed_at"], result["painted_ms"]) if at > all_open]
    loads = [result["load_s"] for result in results]
    # the slow keys split by what the page had: nothing queued (the kernel side) or the next image ready (the page's CPU)
    keyed = [(empty, ms) for result in results for empty, ms in zip(result["on_empty"], result["painted_ms"])]
    ready = [ms for empty, ms in keyed if not empty]
    return {
        "pages": pages, "pages_failed": len(failed), "failures": sorted(set(failed))[:3], "labels_after_all": labels,
        "pace_s": pace_s, "ramp_s": ramp_s, "keys": len(painted),
        "paint_p50_ms": percentile(painted, 0.5), "paint_p95_ms": percentile(painted, 0.95),
        "paint_max_ms": round(max(painted), 1),
        "two_frames_p50_ms": percentile(paints, 0.5), "two_frames_p95_ms": percentile(paints, 0.95),
        "steady_keys": len(steady), "steady_p95_ms": percentile(steady, 0.95) if steady else None,
        "acknowledged": sum(r["done"] for r in results), "unacknowledged": sum(r["saving"] for r in results),
        "refused": sum(r["refused"] for r in results), "stored": stored,
        "keys_on_empty_queue": sum(empty for empty, _ in keyed),
        "stuck": [r["stuck"] for r in results if r["stuck"]],
        "slow_keys": sum(ms > 50 for _, ms in keyed), "slow_keys_on_empty_queue": sum(ms > 50 for e, ms in keyed if e),
        "ready_p95_ms": percentile(ready, 0.95) if ready else None,
        "kernels": len(kernels), "kernel_rss_mean_mb": round(statistics.mean(kernels), 1) if kernels else None,
        "kernel_rss_max_mb": max(kernels, default=None), "server_rss_mb": server_mb,
        "page_load_p50_s": round(statistics.median(loads), 1), "page_load_max_s": round(max(loads), 1),
        "seconds": round(elapsed, 1), "labels_per_s": round(len(paints) / elapsed, 1),
        "cores": os.cpu_count(), "load_average_before": round(load_before, 1),
        "load_average_during": [round(min(load_samples), 1), round(max(load_samples), 1)] if load_samples else None,
        "load_average_after": round(os.getloadavg()[0], 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=50, help="annotator pages open at once")
    parser.add_argument("--labels", type=int, default=10, help="labels each gives once all have arrived")
    parser.add_argument("--pace", type=float, default=1.5, help="mean seconds a person looks before a key")
    parser.add_argument("--ramp", type=float, default=3.0,
                        help="mean seconds between two people opening the page (random arrivals)")
    parser.add_argument("--load-timeout", type=float, default=600, help="seconds a page may take to show an image")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    with throwaway_home((*STORE_KEYS, "FSML_TOKEN")):
        result = run(args.pages, args.labels, args.pace, args.ramp, args.load_timeout)
    if args.json:
        print(json.dumps(result))
        return
    print(f"{result['pages']} annotator pages on one Voila server, labelling at ~"
          f"{result['pace_s']} s per label, arriving {result['ramp_s']} s apart on average, each on until "
          f"all have arrived and {result['labels_after_all']} labels more ({result['cores']} cores, "
          f"load average {result['load_average_before']} before, {result['load_average_during']} during (min, max), "
          f"{result['load_average_after']} after; shared machine)")
    print(f"key -> next image painted over {result['keys']} keys: p50 {result['paint_p50_ms']} ms, p95 "
          f"{result['paint_p95_ms']} ms, max {result['paint_max_ms']} ms; target p95 <= 50 ms: ratio "
          f"{result['paint_p95_ms'] / 50:.2f}; keys that found the page's queue empty: {result['keys_on_empty_queue']}")
    print(f"  keys over 50 ms: {result['slow_keys']}, of which {result['slow_keys_on_empty_queue']} found the queue "
          f"empty (waited for the kernel); p95 of the keys that had the next image ready: {result['ready_p95_ms']} ms")
    print(f"  the same keys to the second animation frame (the older measure): p50 {result['two_frames_p50_ms']} ms, "
          f"p95 {result['two_frames_p95_ms']} ms; after the last page opened ({result['steady_keys']} keys): p95 "
          f"{result['steady_p95_ms']} ms")
    print(f"labels: {result['keys']} pressed, {result['acknowledged']} acknowledged by the kernels as stored, "
          f"{result['unacknowledged']} still unacknowledged, {result['refused']} refused; {result['stored']} in the "
          f"store")
    print(f"memory per annotation kernel ({result['kernels']} kernels): mean {result['kernel_rss_mean_mb']} MB, max "
          f"{result['kernel_rss_max_mb']} MB (target <= 80 MB); the Voila server {result['server_rss_mb']} MB")
    if result["stuck"]:
        print(f"{len(result['stuck'])} pages waited 300 s for their next image after a key, and gave up: "
              f"{result['stuck'][:3]}")
    if result["pages_failed"]:
        print(f"{result['pages_failed']} of {result['pages']} pages never showed an image: {result['failures']}")
    print(f"page open -> first image: p50 {result['page_load_p50_s']} s, max {result['page_load_max_s']} s; "
          f"{result['labels_per_s']} labels/s in all over {result['seconds']} s")


if __name__ == "__main__":
    main()
