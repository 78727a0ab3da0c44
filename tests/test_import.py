"""The import door (`fsml items import`): folders with class sub-folders, manifests of paths and of URLs.

Real SQLite (and one case on PostgreSQL), a real file store, a real HTTP server on loopback for the URLs,
and the real `fsml` command in a subprocess for the end-to-end cases.
"""
import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import sqlalchemy as sa
from conftest import fsml, stored_and_fetched
from PIL import Image

from fullstack_ml.importer import import_items
from fullstack_ml.project import Project, save_project
from fullstack_ml.store import connect, fetches, get_blob, item_sources, items, open_files


def picture(seed: int, size=(48, 40), fmt="PNG", quality=90) -> bytes:
    "A distinct picture per seed (a gradient turned and tinted), encoded as `fmt`."
    image = Image.linear_gradient("L").rotate(seed * 37).resize(size)
    rgb = Image.merge("RGB", (image, image.point(lambda v: (v * (seed + 3)) % 256), image.transpose(0)))
    buffer = io.BytesIO()
    rgb.save(buffer, fmt, **({"quality": quality} if fmt == "JPEG" else {}))
    return buffer.getvalue()


def reencode(data: bytes, quality: int = 70) -> bytes:
    buffer = io.BytesIO()
    Image.open(io.BytesIO(data)).convert("RGB").save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _env(home: Path) -> dict:
    import os
    env = {k: v for k, v in os.environ.items() if not k.startswith("FSML_")}
    return dict(env, FSML_HOME=str(home))


def _store_state(db_url: str) -> tuple:
    "Everything the import writes: item rows and source rows (ids and provenance)."
    with connect(db_url).connect() as conn:
        item_rows = sorted(tuple(r) for r in conn.execute(sa.select(
            items.c.id, items.c.weak_label, items.c.weak_label_source, items.c.group_id, items.c.source_url,
            items.c.origin, items.c.licence)))
        source_rows = sorted(tuple(r) for r in conn.execute(sa.select(item_sources.c.item_id, item_sources.c.source_url)))
    return item_rows, source_rows


@pytest.fixture
def pets(tmp_path):
    "A folder as people keep them: class sub-folders, a copy in two places, a re-saved JPEG, a broken file."
    root = tmp_path / "pets"
    for name in ("cat", "dog", "unsorted"):
        (root / name).mkdir(parents=True)
    files = {
        "cat/c1.png": picture(1), "cat/c2.png": picture(2), "dog/d1.png": picture(3), "dog/d2.png": picture(4),
        "dog/c1-again.png": picture(1),  # the same bytes as cat/c1.png, filed under another class
        "cat/c2-resaved.jpg": reencode(picture(2)),  # a near duplicate of cat/c2.png
        "cat/broken.png": picture(5)[:60],  # a truncated download
        "dog/notes.png": b"these are not pixels",
        "unsorted/u1.png": picture(6), "top.png": picture(7),
    }
    for name, data in files.items():
        (root / name).write_bytes(data)
    (root / "README.txt").write_text("photos of the pets")
    return root


def test_folders_with_class_subfolders_a_corrupt_file_a_duplicate_and_a_rerun(fsml_home, pets):
    db_url = f"sqlite:///{fsml_home / 'fsml.db'}"
    save_project(connect(db_url), Project("pets", labels=("cat", "dog", "unsorted")))
    report = json.loads(fsml("items", "import", str(pets), "--licence", "CC-BY-4.0", "--json",
                             env=_env(fsml_home)).stdout)
    # 8 readable pictures: 7 distinct sha256 (one exact copy), of which one near copy
    assert (report["imported"], report["duplicates"], report["near_duplicates"]) == (7, 1, 1)
    reasons = {Path(r["source"]).name: r["reason"] for r in report["refused"]}
    assert reasons == {"broken.png": "corrupt", "notes.png": "not an image"}
    assert [Path(p).name for p in report["ignored"]] == ["README.txt"]
    assert report["weak_labels"] == {"cat": 3, "dog": 2, "unsorted": 1}
    engine = connect(db_url)
    with engine.connect() as conn:
        rows = {r.id: r for r in conn.execute(sa.select(items))}
        sources = Counter(r.item_id for r in conn.execute(sa.select(item_sources)))
    c1, c2, resaved = sha(picture(1)), sha(picture(2)), sha(reencode(picture(2)))
    assert rows[c1].weak_label == "cat" and rows[c1].weak_label_source == "folder"  # the first source's label
    assert rows[c1].meta["import"]["folder"] == str((pets / "cat").resolve())
    assert rows[c1].source_url == (pets / "cat" / "c1.png").resolve().as_uri()
    assert rows[sha(picture(7))].weak_label is None  # directly in the folder named: no class
    assert sources[c1] == 2  # one item, both places it was found
    assert rows[resaved].group_id == rows[c2].group_id == resaved  # one group (c2-resaved.jpg sorts first)
    assert {r.origin for r in rows.values()} == {"import"} and {r.licence for r in rows.values()} == {"CC-BY-4.0"}
    files = open_files(str(fsml_home / "files"))
    assert all(get_blob(files, item_id) for item_id in rows)  # every row's bytes are there, intact

    before = _store_state(db_url)
    again = json.loads(fsml("items", "import", str(pets), "--json", env=_env(fsml_home)).stdout)
    assert (again["imported"], again["duplicates"], again["unchanged"], again["items_total"]) == (0, 0, 8, 7)
    assert len(again["refused"]) == 2
    assert _store_state(db_url) == before  # a re-run writes nothing

    listed = [json.loads(line) for line in fsml("items", "--json", env=_env(fsml_home)).stdout.splitlines()]
    assert len(listed) == 7 and {r["origin"] for r in listed} == {"import"}  # `fsml items` still lists
    text = fsml("items", "import", str(pets), env=_env(fsml_home)).stdout
    assert "refused" in text and "broken.png: corrupt" in text


def test_labels_outside_the_project_are_reported_and_their_images_refused(fsml_home, pets):
    db_url = f"sqlite:///{fsml_home / 'fsml.db'}"
    save_project(connect(db_url), Project("pets", labels=("Cat", "dog")))
    report = import_items([pets], db_url=db_url, store_url=str(fsml_home / "files"))
    assert report["unknown_labels"] == {"unsorted": 1}
    assert {r["reason"] for r in report["refused"]} >= {"unknown label 'unsorted'"}
    assert report["weak_labels"] == {"Cat": 3, "dog": 2}  # cat/ takes the project's spelling
    with connect(db_url).connect() as conn:
        assert sha(picture(6)) not in set(conn.execute(sa.select(items.c.id)).scalars())


def test_weak_labels_need_a_project_unless_none_are_read(fsml_home, pets):
    bad = fsml("items", "import", str(pets), env=_env(fsml_home), check=False)
    assert bad.returncode == 1 and "no project" in bad.stderr and "--labels-from none" in bad.stderr
    assert "Traceback" not in bad.stderr
    report = json.loads(fsml("items", "import", str(pets), "--labels-from", "none", "--json", env=_env(fsml_home)).stdout)
    assert report["imported"] == 7 and report["weak_labels"] == {}


def test_a_csv_of_paths_with_labels_licences_and_bad_rows(fsml_home, tmp_path):
    db_url = f"sqlite:///{fsml_home / 'fsml.db'}"
    save_project(connect(db_url), Project("pets", labels=("cat", "dog")))
    (tmp_path / "images").mkdir()
    for i in range(3):
        (tmp_path / "images" / f"{i}.png").write_bytes(picture(10 + i))
    manifest = tmp_path / "labels.csv"
    manifest.write_text("path,label,licence\n"
                        "images/0.png,cat,CC0-1.0\n"
                        f"{tmp_path / 'images' / '1.png'},dog,\n"  # absolute paths work too
                        "images/2.png,,\n"  # no label: imported without one
                        "images/missing.png,cat,\n"
                        ",dog,\n")
    report = import_items([manifest], db_url=db_url, store_url=str(fsml_home / "files"), licence="all rights ours")
    assert report["imported"] == 3 and report["weak_labels"] == {"cat": 1, "dog": 1}
    assert sorted((r["line"], r["reason"]) for r in report["refused"]) == [
        (5, "missing file"), (6, "no path or url or file or image or src column")]
    with connect(db_url).connect() as conn:
        row = conn.execute(sa.select(items).where(items.c.id == sha(picture(10)))).one()
        other = conn.execute(sa.select(items).where(items.c.id == sha(picture(11)))).one()
    assert (row.weak_label, row.weak_label_source, row.licence) == ("cat", "csv", "CC0-1.0")
    assert other.licence == "all rights ours"  # the row's own licence wins, else the one given
    assert row.meta["import"]["manifest"] == str(manifest.resolve()) and row.meta["import"]["line"] == 2
    assert import_items([manifest], db_url=db_url, store_url=str(fsml_home / "files"))["unchanged"] == 3


class Site(BaseHTTPRequestHandler):
    "Images with ETags; robots.txt keeps /private/ out; one missing image, one page that is not an image."

    def do_GET(self):
        self.server.hits[self.path] += 1
        self.server.agents.add(self.headers.get("User-Agent"))
        if hook := self.server.hooks.get(self.path):  # a test's own answer for this path
            return hook(self)
        if self.path == "/robots.txt":
            return self.reply(200, b"User-agent: *\nDisallow: /private/\n", "text/plain")
        body = self.server.images.get(self.path)
        if body is None:
            return self.reply(404, b"not here", "text/plain")
        etag = f'"{sha(body)[:16]}"'
        if self.headers.get("If-None-Match") == etag:
            return self.reply(304, b"", "image/png", etag)
        self.reply(200, body, "image/png", etag)

    def reply(self, status, body, content_type, etag=None):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        if etag:
            self.send_header("ETag", etag)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def site():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Site)
    server.daemon_threads = True
    server.hits, server.agents, server.hooks = Counter(), set(), {}
    server.images = {f"/img/{i}.png": picture(20 + i) for i in range(4)}
    server.images["/private/secret.png"] = picture(30)
    server.images["/page.html"] = b"<html><body>hello</body></html>"
    server.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_a_jsonl_of_urls_is_fetched_politely_and_refetched_conditionally(fsml_home, tmp_path, site):
    db_url = f"sqlite:///{fsml_home / 'fsml.db'}"
    save_project(connect(db_url), Project("pets", labels=("cat", "dog")))
    manifest = tmp_path / "urls.jsonl"
    lines = [dict(url=f"{site.url}/img/{i}.png", label=["cat", "dog"][i % 2]) for i in range(4)]
    lines += [dict(url=f"{site.url}/private/secret.png", label="cat"), dict(url=f"{site.url}/gone.png"),
              dict(url=f"{site.url}/page.html"), dict(url="ftp://example.org/x.png")]
    manifest.write_text("\n".join(json.dumps(line) for line in lines) + "\n{broken\n")
    report = json.loads(fsml("items", "import", str(manifest), "--delay", "0", "--json", env=_env(fsml_home)).stdout)
    assert report["imported"] == 4 and report["weak_labels"] == {"cat": 2, "dog": 2}
    reasons = sorted((r["line"], r["reason"]) for r in report["refused"])
    assert reasons == [(5, "robots.txt"), (6, "http 404"), (7, "not an image"), (8, "not an http(s) URL"),
                       (9, "unreadable line")]
    assert site.hits["/private/secret.png"] == 0 and site.hits["/robots.txt"] == 1  # robots.txt kept
    assert len(site.agents) == 1 and next(iter(site.agents)).startswith("fullstack_ml-collect/")
    with connect(db_url).connect() as conn:
        row = conn.execute(sa.select(items).where(items.c.id == sha(picture(21)))).one()
        remembered = conn.execute(sa.select(fetches.c.etag).where(fetches.c.url == f"{site.url}/img/1.png")).scalar()
    assert (row.source_url, row.weak_label, row.weak_label_source, row.origin) == (
        f"{site.url}/img/1.png", "dog", "jsonl", "import")
    assert row.meta["http_status"] == 200 and remembered

    before = _store_state(db_url)
    again = json.loads(fsml("items", "import", str(manifest), "--delay", "0", "--json", env=_env(fsml_home)).stdout)
    assert (again["imported"], again["unchanged"]) == (0, 4)
    assert _store_state(db_url) == before
    assert all(site.hits[f"/img/{i}.png"] == 2 for i in range(4))  # asked again, answered 304


def test_ctrl_c_mid_import_keeps_every_image_loaded_before_it(fsml_home, tmp_path, site):
    "Ctrl-C stops `fsml items import` promptly; the images it fetched are in the store with their provenance."
    save_project(connect(f"sqlite:///{fsml_home / 'fsml.db'}"), Project("pets", labels=("cat", "dog")))
    pictures = {f"/many/{i}.png": picture(40 + i) for i in range(12)}
    site.images.update(pictures)
    late = "/many/7.png"

    def stop_during(h):  # one thread: every image before this one is fetched and recorded, its rows not yet written
        time.sleep(0.2)
        os.kill(h.server.importer_pid, signal.SIGINT)
        time.sleep(0.2)  # this image is still in flight when the import stops
        h.reply(200, pictures[late], "image/png")

    site.hooks[late] = stop_during
    manifest = tmp_path / "urls.csv"
    manifest.write_text("url,label,licence\n" + "".join(
        f"{site.url}{path},{['cat', 'dog'][i % 2]},CC-BY-{i}\n" for i, path in enumerate(pictures)))
    exe = Path(sys.executable).parent / "fsml"
    proc = subprocess.Popen([str(exe), "items", "import", str(manifest), "--delay", "0", "--concurrency", "1", "--json"],
                            env=_env(fsml_home), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    site.importer_pid = proc.pid
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 1 and "Aborted" in err and out == "", (proc.returncode, err)  # the stop went on up
    before = list(pictures)[:8]  # up to the one in flight at the stop
    assert [site.hits[path] for path in pictures if path not in before] == [0] * 4  # prompt: the rest never loaded
    stored, fetched = stored_and_fetched(fsml_home, site.url)
    assert set(stored) == set(before)  # the one in flight at the stop too
    files = open_files(str(fsml_home / "files"))
    for i, path in enumerate(before):
        item = stored[path]
        assert (item.weak_label, item.weak_label_source, item.licence, item.origin) == (
            ["cat", "dog"][i % 2], "csv", f"CC-BY-{i}", "import")
        assert item.meta["import"]["line"] == i + 2 and get_blob(files, item.id) == pictures[path]
        assert (fetched[path].outcome, fetched[path].item_id, fetched[path].http_status) == ("stored", item.id, 200)


def test_a_folder_import_into_postgres(postgres_db, tmp_path, pets):
    save_project(connect(postgres_db), Project("pets", labels=("cat", "dog", "unsorted")))
    store_url = str(tmp_path / "files")
    first = import_items([pets], db_url=postgres_db, store_url=store_url)
    again = import_items([pets], db_url=postgres_db, store_url=store_url)
    assert (first["imported"], first["duplicates"], first["near_duplicates"]) == (7, 1, 1)
    assert (again["imported"], again["unchanged"], again["items_total"]) == (0, 8, 7)
