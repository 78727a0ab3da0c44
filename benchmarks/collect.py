"""Crawl speed: fullstack_ml's crawler against Scrapy on the bundled demo gallery, in one run.

Both crawl the same site (served by `fsml demo-site`, the gallery, in its own process), with delay 0, the same concurrency
(in all and per host), the same page and depth limits, obeying robots.txt and rel="nofollow". Both download
every image, check it decodes with Pillow and hash it; ours also does all its usual work per image (size, type and
decompression-bomb checks, a decode shrunk to 256 px, pHash and near-duplicate signature and search, weak label,
provenance rows, a content-addressed blob made durable before its row), Scrapy's writes the bytes to a folder.
The script checks that both fetched the same page and image URLs in every run, and reads every blob back.

    python benchmarks/collect.py [--concurrency 8] [--images 1797] [--max-pages 40] [--repeat 3]

Scrapy is a benchmark-only dependency (`pip install scrapy`); without it only our figures are printed.

Target (issue #18): >= 1.5x Scrapy's images/s. Images/s on 2 cores shared with other work moves with the load
(Scrapy's one thread loses more to a busy machine than our eight), so the CPU milliseconds each spends per image
are printed beside it; their ratio moves less with the load, though Scrapy's CPU per image moves too.

Figures (best of 3, 1,819 image fetches, concurrency 8), and what changed them:
- before (issue #18, quiet machine): 340 images/s against Scrapy's 482: 0.71x. Re-measured before the changes
  below (30 Nov 17:32, best of 2, load 4.2): 340 against 224 images/s = 1.52x, CPU per image 2.05 against 2.89 ms
  = 1.41x: under load the images/s ratio mostly measures the load.
- the near-duplicate search moved to the fetching thread (the loop only compares rows added since: it had waited
  1-2 s per crawl to get the interpreter back after each full matrix product), each caption's weak label read once,
  a finished fetch reaching the loop through a queue instead of a wait re-armed on every running future, and pages
  and images fetched through urllib3 directly instead of requests (~0.25 ms less interpreter time per image):
  CPU per image of the crawl alone about 1.8-2.0 -> 1.5 ms; as this script counts it (creating the store too),
  2.05 -> 1.88 ms.
- measured twice on 30 Nov 2026 under the bench lock, on 2 cores with other engineers' work running:
  18:02 UTC, load average 7.5 before and 5.2 after: ours 1,819 images in 3.39 s = 537 images/s (1.88 ms CPU per
  image), Scrapy 1,818 in 5.10 s = 357 images/s (2.80 ms): 1.51x images/s, 1.49x in CPU per image;
  18:20 UTC, load 6.6 before and 5.2 after: ours 491 images/s (1.78 ms), Scrapy 230 (3.49 ms): 2.13x, 1.96x.
  The target (1.5x) is met in both, narrowly in the first. Scrapy's figures move most with the load (its one
  thread loses more to a busy machine than our eight).
- then measured on a quiet machine (30 Nov, load 1.4): ours 504.6 images/s (2.31 ms CPU per image), Scrapy 429.8
  (2.32 ms): 1.17x, MISSED. Where it goes: the gallery's own process takes ~0.2 ms of CPU per image, so the site
  is not the limit; ours is held to about one core of two by the interpreter lock its eight threads share, and
  the image fingerprints were the largest piece of that lock time (py-spy --gil: pHash alone ~17%).
- the fingerprints made cheaper (same results): the signature's 16x16 low frequencies from one product with
  the kept rows of the DCT matrix instead of two scipy transforms over 64x64, pHash's 8x8 the same way with its
  median from one sort (scipy's transform only where a coefficient ties with the median, so pHash stays
  imagehash's bit for bit), and no copies of an image already grey at its size: image_hashes 0.23 -> 0.10 ms,
  describe_image 0.43 -> 0.19 ms per gallery image.
- measured after it, under the bench lock, 30 Nov 2026 (the machine busy with others' work both times):
  18:58 UTC, load 3.8 before and 4.1 after: ours 552 images/s (2.04 ms CPU per image, store creation included),
  Scrapy 394 (2.44 ms): 1.40x images/s, 1.20x CPU per image: MISSED;
  19:00 UTC, load 5.1 before and 6.4 after: ours 629 images/s (1.52 ms), Scrapy 300 (3.15 ms): 2.10x, 2.07x.
  19:06 UTC, quiet (load 0.9 before, 1.0 after): ours 1,819 images in 2.70 s = 673 images/s (1.73 ms CPU per
  image), Scrapy 1,818 in 3.76 s = 484 (2.07 ms): 1.39x images/s, 1.19x CPU per image: MISSED on a quiet
  machine (ours 505 -> 673 images/s quiet, +33%; Scrapy measured 430 and 484 quiet). What is left: the per-image work still runs under one lock
  (HTTP parsing in http.client ~1/3 of it, decode and fingerprints ~1/4). A process pool for describe_image
  was tried outside the code and not kept: its round trip (ProcessPoolExecutor, forked worker) cost ~0.16 ms of
  the crawl process's CPU per gallery image, about what describe_image itself now costs (0.19 ms), so it
  frees no lock time here; it would pay on a site of larger images.
- page parsing and decoding made cheaper (same results): a plain absolute link (`/images/0001.png`) resolves to
  the base's canonical origin plus the path (worked out once per base) instead of two urljoins, two urlsplits
  and quoting, ~50 us a link: parse_page of a 100-image gallery page 5.6 -> 0.4 ms; decode_image opens the bytes
  once instead of twice (check_and_decode: 46 -> 31 us per gallery image); a caption's figure is looked for only
  without alt text; a small plain body is read in one call. Interleaved in-process pairs under load (19:18,
  load 3.4-4.3): the crawl's CPU per image 1.50-1.60 -> 1.29-1.38 ms in three pairs of four.
- measured after it, 30 Nov 2026, after the CI run, nothing else running:
  19:28 UTC, load 1.0 before and 1.2 after: ours 1,819 images in 3.05 s = 597 images/s (1.90 ms CPU per image),
  Scrapy 1,818 in 4.81 s = 378 (2.64 ms): 1.58x images/s, 1.39x CPU per image;
  19:28 UTC, load 1.2 before and 1.4 after: ours 661 images/s (1.75 ms), Scrapy 377 (2.65 ms): 1.75x, 1.52x.
  The 1.5x target is met in both quiet runs, and the CPU-per-image ratio (which moves less with the load) went
  from 1.19x to 1.39-1.52x. Honestly: Scrapy measured 377-378 images/s in these runs against 484 at 19:06 on a
  machine that read as quiet too; against that 484, ours 661 would be 1.37x. A third quiet run after the next CI
  (19:51 UTC, load 0.3 before, 1.2 after), with Scrapy back near its usual speed: ours 667.8 images/s (1.69 ms),
  Scrapy 427.7 (2.34 ms): 1.56x images/s, 1.38x CPU per image: met, by a small margin. What is left: describe_image (the
  records chapter) still calls check_image before decode_image, so each image is opened twice, not once
  (check_and_decode is there for it); the ledger's background writes spend lock time JSON-encoding each row's
  meta; the HTTP parsing in http.client.
- describe_image now opens the bytes once (check_and_decode), and a crawl stopped by an error or Ctrl-C first writes
  what it fetched. Measured after, 30 Nov 2026 21:40 UTC (best of 3, load 5.7 before, 3.8 after, left by a browser
  benchmark just ended): ours 1,819 images in 3.25 s = 560 images/s (1.99 ms CPU per image), Scrapy 1,818 in 5.69 s
  = 320 (3.13 ms): 1.75x images/s, 1.57x CPU per image. Met; Scrapy's one thread loses more to the load that was left.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

from fullstack_ml.collect import CrawlLimits
from fullstack_ml.gallery import DEMO_IMAGES

REPO = Path(__file__).resolve().parents[1]


def scrapy_child(url: str, concurrency: int, max_pages: int, max_depth: int, out_dir: str) -> None:
    "Run in a child process (Twisted's reactor runs once per process): crawl `url` and print JSON stats."
    import hashlib
    import io

    import scrapy
    from PIL import Image
    from scrapy.crawler import CrawlerProcess
    from scrapy.linkextractors import LinkExtractor

    stats = {"pages": 0, "images": 0, "pages_scheduled": 1, "page_urls": [], "image_urls": []}
    links = LinkExtractor()
    host = urlsplit(url).netloc  # stay on the site's host (and port), as ours does

    class Gallery(scrapy.Spider):
        name = "gallery"
        start_urls = (url,)

        def parse(self, response):
            stats["pages"] += 1
            stats["page_urls"].append(response.url)
            for link in links.extract_links(response):
                on_host = urlsplit(link.url).netloc == host
                if on_host and not link.nofollow and stats["pages_scheduled"] < max_pages:
                    stats["pages_scheduled"] += 1
                    yield response.follow(link.url, self.parse)
            for src in response.css("img::attr(src)").getall():
                yield response.follow(src, self.save_image)

        def save_image(self, response):
            data = response.body
            try:
                Image.open(io.BytesIO(data)).load()
            except (OSError, SyntaxError, ValueError):  # not an image, or a broken one
                return
            stats["image_urls"].append(response.url)
            name = hashlib.sha256(data).hexdigest()
            Path(out_dir, name).write_bytes(data)
            stats["images"] += 1

    process = CrawlerProcess(settings={
        "USER_AGENT": "fullstack_ml-benchmark", "ROBOTSTXT_OBEY": True, "DOWNLOAD_DELAY": 0,
        "CONCURRENT_REQUESTS": concurrency, "CONCURRENT_REQUESTS_PER_DOMAIN": concurrency, "DEPTH_LIMIT": max_depth,
        "LOG_LEVEL": "ERROR", "TELNETCONSOLE_ENABLED": False, "HTTPCACHE_ENABLED": False,
        "AUTOTHROTTLE_ENABLED": False, "COOKIES_ENABLED": False, "RETRY_ENABLED": True,
    })
    process.crawl(Gallery)
    began, cpu = time.monotonic(), time.process_time()
    process.start()
    seconds = time.monotonic() - began  # includes fetching robots.txt, as ours does
    print(json.dumps(dict(pages=stats["pages"], images=stats["images"], seconds=seconds,
                          cpu_seconds=time.process_time() - cpu, page_urls=sorted(stats["page_urls"]),
                          image_urls=sorted(stats["image_urls"]))))


def run_ours(url: str, concurrency: int, max_pages: int, max_depth: int) -> dict:
    import sqlalchemy as sa

    from fullstack_ml.collect import crawl
    from fullstack_ml.store import connect, fetches, get_blob, items, open_files

    with tempfile.TemporaryDirectory() as home:
        db_url, store_url = f"sqlite:///{home}/fsml.db", f"{home}/files"
        cpu = time.process_time()
        result = crawl([url], db_url=db_url, store_url=store_url, delay=0,
                       concurrency=concurrency, per_host=concurrency, max_pages=max_pages, max_depth=max_depth)
        cpu = time.process_time() - cpu
        with connect(db_url).connect() as conn:  # what it did, read back from the store
            rows = conn.execute(sa.select(fetches.c.url, fetches.c.kind, fetches.c.outcome, fetches.c.reason)).all()
            item_ids = list(conn.execute(sa.select(items.c.id)).scalars())
        files = open_files(store_url)
        assert all(get_blob(files, item_id) for item_id in item_ids), "an item's blob is missing or corrupt"
    fetched = [r for r in rows if r.outcome in ("stored", "duplicate") or r.reason in SMALLER_THAN_A_GALLERY_IMAGE]
    return dict(pages=result["pages_fetched"], images=result["images_fetched"], seconds=result["seconds"],
                cpu_seconds=cpu, items=len(item_ids), page_urls=sorted(r.url for r in fetched if r.kind == "page"),
                image_urls=sorted(r.url for r in fetched if r.kind == "image"))


SMALLER_THAN_A_GALLERY_IMAGE = ("too small",)  # fetched and decoded by both; only ours refuses to keep icons


def run_scrapy(url: str, concurrency: int, max_pages: int, max_depth: int) -> dict | None:
    try:
        import scrapy  # noqa: F401
    except ImportError:
        return None
    with tempfile.TemporaryDirectory() as out_dir:
        done = subprocess.run([sys.executable, __file__, "--scrapy-child", url, "--concurrency", str(concurrency),
                               "--max-pages", str(max_pages), "--max-depth", str(max_depth), "--out", out_dir],
                              capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--images", type=int, default=DEMO_IMAGES, help="digits in the demo gallery")
    parser.add_argument("--max-pages", type=int, default=CrawlLimits.max_pages)
    parser.add_argument("--max-depth", type=int, default=CrawlLimits.max_depth)
    parser.add_argument("--repeat", type=int, default=3, help="runs of each; the best is reported")
    parser.add_argument("--scrapy-child", metavar="URL")
    parser.add_argument("--out")
    args = parser.parse_args()
    if args.scrapy_child:
        return scrapy_child(args.scrapy_child, args.concurrency, args.max_pages, args.max_depth, args.out)

    sys.path.insert(0, str(REPO / "tests"))
    from conftest import free_port, stop, wait_for_port

    load_before = os.getloadavg()[0]
    port = free_port()
    fsml = Path(sys.executable).parent / "fsml"
    server = subprocess.Popen([str(fsml), "demo-site", "--port", str(port), "--images", str(args.images)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                              env=dict(os.environ, FSML_HOME=tempfile.mkdtemp()))
    try:
        wait_for_port(port, proc=server)
        url = f"http://127.0.0.1:{port}/"
        limits = (url, args.concurrency, args.max_pages, args.max_depth)
        runs = {"fullstack_ml": [], "scrapy": []}
        for _ in range(args.repeat):  # interleaved, so background load hits both alike
            runs["fullstack_ml"].append(run_ours(*limits))
            scrapy_run = run_scrapy(*limits)
            if scrapy_run:
                runs["scrapy"].append(scrapy_run)
    finally:
        stop(server)

    print(f"demo gallery: {args.images} digits; concurrency {args.concurrency}, delay 0, max_pages {args.max_pages}, "
          f"max_depth {args.max_depth}; best of {args.repeat}; load average {load_before:.1f} before, "
          f"{os.getloadavg()[0]:.1f} after, on {os.cpu_count()} cores")
    best = {}
    for name, results in runs.items():
        if not results:
            continue
        run = min(results, key=lambda r: r["seconds"])
        best[name] = dict(run, pages_per_s=run["pages"] / run["seconds"], images_per_s=run["images"] / run["seconds"])
        b = best[name]
        print(f"{name:>13}: {b['pages']:4d} pages, {b['images']:5d} images in {b['seconds']:6.2f}s = "
              f"{b['pages_per_s']:7.1f} pages/s, {b['images_per_s']:7.1f} images/s; "
              f"{1000 * b['cpu_seconds'] / b['images']:.2f} ms CPU per image")
    if "scrapy" not in best:
        print("scrapy is not installed: `pip install scrapy` (benchmark only) to compare")
        return
    for ours, theirs in zip(runs["fullstack_ml"], runs["scrapy"]):  # every run, not only the best
        for kind in ("page_urls", "image_urls"):
            only_ours, only_theirs = set(ours[kind]) - set(theirs[kind]), set(theirs[kind]) - set(ours[kind])
            if only_ours or only_theirs:
                sys.exit(f"the crawlers fetched different {kind.replace('_urls', 's')}: only ours "
                         f"{sorted(only_ours)[:3]} ({len(only_ours)}), only Scrapy's {sorted(only_theirs)[:3]} "
                         f"({len(only_theirs)})")
    print(f"same pages ({len(ours['page_urls'])}) and images ({len(ours['image_urls'])}) fetched by both, "
          f"in every run; ours stored {ours['items']} items, every blob read back and verified")
    ratio = best["fullstack_ml"]["images_per_s"] / best["scrapy"]["images_per_s"]
    print(f"ratio fullstack_ml / scrapy: {ratio:.2f}x images/s, "
          f"{best['fullstack_ml']['pages_per_s'] / best['scrapy']['pages_per_s']:.2f}x pages/s "
          f"({'meets' if ratio >= 1.5 else 'misses'} the 1.5x target); CPU per image, Scrapy's / ours (best runs): "
          f"{(best['scrapy']['cpu_seconds'] / best['scrapy']['images']) / (best['fullstack_ml']['cpu_seconds'] / best['fullstack_ml']['images']):.2f}x")


if __name__ == "__main__":
    main()
