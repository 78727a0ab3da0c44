"""The bundled gallery serves any bundled project: `fsml gallery --project NAME` on loopback, crawled like a real site."""
import subprocess
import sys
from pathlib import Path

import requests
import sqlalchemy as sa

from conftest import free_port, stop, wait_for_port
from fullstack_ml.collect import crawl
from fullstack_ml.gallery import DemoSite, gallery_truth
from fullstack_ml.project import bundled_project
from fullstack_ml.store import sha256_hex

FSML = Path(sys.executable).parent / "fsml"


def test_fsml_gallery_serves_the_named_project(tmp_path):
    port = free_port()
    server = subprocess.Popen([FSML, "gallery", "--project", "shapes", "--port", str(port), "--images", "40"],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_for_port(port, proc=server)
        page = requests.get(f"http://127.0.0.1:{port}/gallery/page-1.html", timeout=10).text
        assert "<title>Shapes, page 1 of 1</title>" in page and page.count("<figure>") == 40
        picture = requests.get(f"http://127.0.0.1:{port}/images/0000.png", timeout=10).content
        assert gallery_truth("shapes", 40)[sha256_hex(picture)] in bundled_project("shapes").label_names
    finally:
        stop(server)
    unknown = subprocess.run([FSML, "gallery", "--project", "nope"], capture_output=True, text=True, timeout=120)
    assert unknown.returncode != 0 and "digits" in unknown.stderr and "shapes" in unknown.stderr


def test_a_crawl_of_the_shapes_gallery_reads_word_labels_from_noisy_captions(tmp_path):
    labels = bundled_project("shapes").label_names
    with DemoSite(0, 100, project="shapes") as site:
        report = crawl([site.url], db_url=f"sqlite:///{tmp_path / 'fsml.db'}", store_url=str(tmp_path / "files"),
                       labels=labels, synonyms=site.synonyms, delay=0, max_pages=4)
    assert report["items_total"] == 110 and report["near_duplicates"] >= 8  # 100 pictures, 10 JPEG re-encodes
    with sa.create_engine(f"sqlite:///{tmp_path / 'fsml.db'}").connect() as conn:
        rows = conn.execute(sa.text("select id, weak_label from items")).all()
    truth = gallery_truth("shapes", 100)
    assert {label for _, label in rows} == set(labels)  # synonyms read: every caption names a shape
    wrong = sum(label != truth[item] for item, label in rows)
    assert 0 < wrong < 0.2 * len(rows)  # noisy, but mostly right
