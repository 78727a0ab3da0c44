"""The edge demo: `fsml demo static` from a real registry artifact; ONNX agrees with PyTorch, the page's JavaScript
preprocessing equals the Python one bit for bit, and in Chromium the page predicts (upload, drawing, then the whole
test split through the page's own decode -> preprocess.js -> onnxruntime-web path, against PyTorch) with no request
to any other origin. Writes test-artifacts/edge_demo.png and edge_demo.json (site size, time to first prediction)."""
import base64
import io
import json
import os
import shutil
import subprocess
import sys
import time
from urllib.parse import urlparse

import numpy as np
import pytest
from conftest import fsml, free_port, stop, wait_for_port
from demo_support import digit_splits, publish_quick_model

pytestmark = pytest.mark.slow
ENV_KEYS = ("FSML_DB_URL", "FSML_STORE_URL", "FSML_QUEUE_URL", "FSML_TOKEN", "FSML_API_URL")


@pytest.fixture(scope="module")
def edge_site(tmp_path_factory):
    "A quickly trained model published as digits@production, and the site `fsml demo static` builds from it."
    if shutil.which("npm") is None:
        pytest.skip("npm is needed to fetch onnxruntime-web") if not os.environ.get("CI") else pytest.fail("no npm")
    root = tmp_path_factory.mktemp("edge")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FSML_HOME", str(root / "home"))
        for key in ENV_KEYS:
            patch.delenv(key, raising=False)
        model = publish_quick_model()
        start = time.time()
        done = fsml("demo", "static", "--out", root / "site", "--json", env=dict(os.environ))
        report = {**json.loads(done.stdout), "build_s": round(time.time() - start, 2)}
        yield {"dir": root / "site", "model": model, "report": report, "home": root / "home"}


def test_site_is_self_contained_and_names_its_model(edge_site):
    site, report = edge_site["dir"], edge_site["report"]
    for name in ("index.html", "app.js", "preprocess.js", "drawing_canvas.js", "model.onnx", "model.json",
                 "ort/ort.wasm.min.js", "ort/ort-wasm-simd-threaded.mjs", "ort/ort-wasm-simd-threaded.wasm"):
        assert (site / name).is_file(), name
    info = json.loads((site / "model.json").read_text())
    assert info["ref"] == f"digits@{edge_site['model']['version']}" == report["model"]
    assert len(info["manifest_sha256"]) == len(info["weights_sha256"]) == 64
    assert "default-src 'self'" in (site / "index.html").read_text()
    for text_file in ("index.html", "app.js", "preprocess.js", "drawing_canvas.js"):
        assert "://" not in (site / text_file).read_text().replace("http-equiv", ""), text_file


def test_onnx_and_pytorch_agree_on_the_whole_test_split(edge_site):
    import onnxruntime

    from fullstack_ml import registry

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FSML_HOME", str(edge_site["home"]))
        predictor = registry.load(edge_site["report"]["model"]).predictor
    test = digit_splits()["test"]
    batch = predictor.preprocessing.batch([png for _, png, _ in test])  # (n, 1, 8, 8)
    torch_scores = predictor.predict_proba(batch).numpy()
    session = onnxruntime.InferenceSession(str(edge_site["dir"] / "model.onnx"), providers=["CPUExecutionProvider"])
    onnx_scores = session.run(None, {"image": batch.numpy()})[0]
    assert len(test) > 200
    assert (onnx_scores.argmax(1) == torch_scores.argmax(1)).all()
    assert np.abs(onnx_scores - torch_scores).max() < 1e-4
    print(f"ONNX vs PyTorch on {len(test)} test digits: same top label on all, max score difference "
          f"{np.abs(onnx_scores - torch_scores).max():.2e}")


def js_preprocess(script, images: list, config: dict) -> np.ndarray:
    "preprocess.js (`script`) under node on the RGBA pixels a browser decodes from each image: (n, values)."
    from PIL import Image

    cases = []
    for data in images:
        image = Image.open(io.BytesIO(data)).convert("RGBA")
        cases.append({"w": image.width, "h": image.height, "rgba": np.asarray(image).ravel().tolist()})
    program = ("import { preprocess } from %s;\nlet text = '';\nprocess.stdin.on('data', (d) => text += d);\n"
               "process.stdin.on('end', () => { const {cases, config} = JSON.parse(text);\n"
               "  console.log(JSON.stringify(cases.map((c) => Array.from(preprocess(Uint8ClampedArray.from(c.rgba), "
               "c.w, c.h, config))))); });" % json.dumps(script.as_uri()))
    done = subprocess.run(["node", "--input-type=module", "-e", program], input=json.dumps(
        {"cases": cases, "config": config}), capture_output=True, text=True, timeout=300, check=True)
    return np.asarray(json.loads(done.stdout), dtype=np.float32)


def drawn_png() -> bytes:
    "A canvas drawing: an anti-aliased stroke, off centre, dark on white."
    from PIL import Image, ImageDraw

    drawn = Image.new("RGB", (280, 280), "white")
    ImageDraw.Draw(drawn).line([(60, 30), (150, 240), (200, 90)], fill="black", width=22)
    buffer = io.BytesIO()
    drawn.save(buffer, "PNG")
    return buffer.getvalue()


def photos(seed: int = 0) -> list:
    "Colour pictures of odd sizes (wide, tall, smaller than the side, a JPEG, a light and a dark background)."
    from PIL import Image, ImageDraw

    rng, out = np.random.default_rng(seed), []
    for width, height, background, kind in [(50, 30, (230, 225, 210), "PNG"), (31, 64, (20, 30, 60), "PNG"),
                                            (20, 20, (250, 250, 250), "PNG"), (97, 61, (120, 160, 90), "JPEG"),
                                            (64, 64, (245, 240, 235), "PNG"), (8, 40, (0, 0, 0), "PNG")]:
        pixels = np.clip(np.asarray(background) + rng.normal(0, 12, (height, width, 3)), 0, 255).astype(np.uint8)
        image = Image.fromarray(pixels)
        ImageDraw.Draw(image).ellipse([width // 5, height // 4, width * 3 // 4, height * 4 // 5],
                                      fill=tuple(int(v) for v in rng.integers(0, 255, 3)))
        buffer = io.BytesIO()
        image.save(buffer, kind)
        out.append(buffer.getvalue())
    return out


SPECS = {  # the digits project's spec and colour specs of every fit, inversion and normalisation
    "digits": None,
    "rgb-letterbox-normalised": dict(side=32, colour="rgb", fit="letterbox", mean=(0.5, 0.45, 0.4), std=(0.25, 0.24, 0.26)),
    "rgb-resize-auto-invert": dict(side=24, colour="rgb", fit="resize", invert="auto"),
    "rgb-box": dict(side=16, colour="rgb", fit="box", invert="auto"),
    "gray-letterbox-normalised": dict(side=12, colour="gray", fit="letterbox", mean=(0.3,), std=(0.2,)),
}


@pytest.mark.parametrize("spec", SPECS)
def test_page_preprocessing_equals_python_for_every_spec(spec):
    "nbs/assets/edge_preprocess.js against fullstack_ml.preprocessing.Preprocessing, bit for bit, per image spec."
    if shutil.which("node") is None:
        pytest.skip("node is not installed")
    from fullstack_ml.apps import asset_path
    from fullstack_ml.preprocessing import Preprocessing
    from fullstack_ml.project import ImageSpec, bundled_project

    image_spec = bundled_project("digits").image if SPECS[spec] is None else ImageSpec(**SPECS[spec])
    config = json.loads(json.dumps(Preprocessing.from_spec(image_spec).config))  # as the manifest carries it
    images = [png for _, png, _ in digit_splits()["test"][:40]] + [drawn_png()] + photos()
    from_js = js_preprocess(asset_path("edge_preprocess.js"), images, config)
    from_python = Preprocessing.from_config(config).batch(images).numpy()
    assert from_python.shape == (len(images), image_spec.channels, image_spec.side, image_spec.side)
    assert from_js.shape == (len(images), from_python[0].size)
    assert np.array_equal(from_js, from_python.reshape(len(images), -1))


def test_page_preprocessing_equals_python_bit_for_bit(edge_site):
    "The site's preprocess.js with its model.json config, on the whole test split and a drawing, against Python."
    if shutil.which("node") is None:
        pytest.skip("node is not installed")
    from fullstack_ml.preprocessing import Preprocessing

    images = [png for _, png, _ in digit_splits()["test"]] + [drawn_png()]
    config = json.loads((edge_site["dir"] / "model.json").read_text())["preprocessing"]
    from_js = js_preprocess(edge_site["dir"] / "preprocess.js", images, config)
    from_python = Preprocessing.from_config(config).batch(images).numpy().reshape(len(images), -1)
    assert from_js.shape == from_python.shape
    assert np.array_equal(from_js, from_python)


def test_page_predicts_in_the_browser_with_no_request_elsewhere(edge_site, browser, artifacts_dir):
    site = edge_site["dir"]
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1",
                               "--directory", str(site)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    origin = f"http://127.0.0.1:{port}"
    page = browser.new_page(viewport={"width": 1000, "height": 760})
    requests, problems = [], []
    page.on("request", lambda request: requests.append(request.url))
    page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.on("response", lambda response: problems.append(f"{response.status} {response.url}")
            if response.status >= 400 else None)
    try:
        wait_for_port(port, proc=server)
        opened = time.time()
        page.goto(origin + "/")
        page.wait_for_function("() => window.fsmlTiming && window.fsmlTiming.modelReadyMs !== null", timeout=60_000)
        info = json.loads((site / "model.json").read_text())
        footer = page.text_content("#model-info")
        assert info["ref"] in footer and info["manifest_sha256"] in footer and info["weights_sha256"] in footer

        index, png, label = next(case for case in digit_splits()["test"] if case[2] == "3")
        upload = site.parent / "upload.png"
        upload.write_bytes(png)
        page.set_input_files("#upload", str(upload))
        page.wait_for_function("() => window.fsmlTiming.predictions >= 1", timeout=30_000)
        first_prediction_s = time.time() - opened
        assert page.get_attribute("#label", "data-label") == label
        assert page.locator("#scores .bar").count() == 10

        box = page.locator("canvas.fsml-canvas").bounding_box()
        page.mouse.move(box["x"] + 140, box["y"] + 40)
        page.mouse.down()
        page.mouse.move(box["x"] + 140, box["y"] + 240, steps=12)
        page.mouse.up()
        page.wait_for_function("() => window.fsmlTiming.predictions >= 2", timeout=30_000)
        assert page.get_attribute("#label", "data-label") in info["labels"]
        timing = page.evaluate("window.fsmlTiming")

        # the whole test split through the page's own path (browser decode, preprocess.js, onnxruntime-web)
        test = digit_splits()["test"]
        start = time.time()
        in_browser = page.evaluate("""async (images) => {
            const out = [];
            for (const data of images) {
                const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
                out.push((await window.fsmlClassify(new Blob([bytes], { type: "image/png" }))).scores);
            }
            return out; }""", [base64.b64encode(png).decode() for _, png, _ in test])
        browser_s = time.time() - start
        violations = page.evaluate("window.fsmlViolations")
        page.screenshot(path=str(artifacts_dir / "edge_demo.png"), full_page=True)
    finally:
        page.close()
        stop(server)
    assert not problems, problems
    assert not violations, violations
    elsewhere = [url for url in requests if urlparse(url).scheme not in ("data", "blob")
                 and not url.startswith(origin + "/")]
    assert not elsewhere, f"requests left for other origins: {elsewhere}"
    from fullstack_ml import registry

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FSML_HOME", str(edge_site["home"]))
        predictor = registry.load(edge_site["report"]["model"]).predictor
    torch_scores = predictor.predict_proba(predictor.preprocessing.batch([png for _, png, _ in test])).numpy()
    in_browser = np.asarray(in_browser, dtype=np.float32)
    assert (in_browser.argmax(1) == torch_scores.argmax(1)).all()
    assert np.abs(in_browser - torch_scores).max() < 1e-4
    truth = np.asarray([predictor.labels.index(label) for _, _, label in test])
    size = sum(p.stat().st_size for p in site.rglob("*") if p.is_file() and p.name != "upload.png")
    figures = {"site_bytes": size, "site_mb": round(size / 1e6, 2), "files": len(edge_site["report"]["files"]),
               "build_s": edge_site["report"]["build_s"], "model_ready_ms": round(timing["modelReadyMs"], 1),
               "first_inference_ms": round(timing["firstPredictionMs"], 2),
               "time_to_first_prediction_ms": round(timing["modelReadyMs"] + timing["firstPredictionMs"], 1),
               "open_to_first_upload_prediction_s": round(first_prediction_s, 2), "requests": len(requests),
               "test_split_in_browser": {"images": len(test), "seconds": round(browser_s, 2),
                                         "same_top_label_as_pytorch": 1.0,
                                         "max_score_difference": float(np.abs(in_browser - torch_scores).max()),
                                         "accuracy": float((in_browser.argmax(1) == truth).mean())}}
    (artifacts_dir / "edge_demo.json").write_text(json.dumps(figures, indent=2))
    print("edge demo:", json.dumps(figures))


def test_page_for_a_photo_project_offers_upload_only_and_agrees_with_python(browser, tmp_path):
    "An RGB letterbox project (not drawn): the site has no canvas, and its in-browser scores equal PyTorch's."
    if shutil.which("npm") is None:
        pytest.skip("npm is needed to fetch onnxruntime-web") if not os.environ.get("CI") else pytest.fail("no npm")
    from types import SimpleNamespace

    import torch

    from fullstack_ml.edge import export_onnx, fetch_onnxruntime_web, write_site
    from fullstack_ml.preprocessing import Preprocessing
    from fullstack_ml.project import ImageSpec

    spec = ImageSpec(side=32, colour="rgb", fit="letterbox", mean=(0.5, 0.45, 0.4), std=(0.25, 0.24, 0.26))
    torch.manual_seed(0)
    network = torch.nn.Sequential(torch.nn.Conv2d(3, 6, 3, padding=1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(2),
                                  torch.nn.Flatten(), torch.nn.Linear(24, 5)).eval()
    labels = ["circle", "cross", "square", "star", "triangle"]
    predictor = SimpleNamespace(model=network, preprocessing=Preprocessing.from_spec(spec), labels=labels)
    info = {"name": "shapes", "version": 1, "ref": "shapes@1", "manifest_sha256": "0" * 64, "weights_sha256": "0" * 64,
            "project": "shapes", "drawable": False, "labels": labels, "preprocessing": predictor.preprocessing.config}
    site = tmp_path / "site"
    write_site(site, export_onnx(predictor), info, fetch_onnxruntime_web(tmp_path / "npm"))
    pictures = [data for data in photos(seed=3) if data.startswith(b"\x89PNG")]  # the browser's JPEG decoder may differ
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1",
                               "--directory", str(site)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    page = browser.new_page()
    problems = []
    page.on("pageerror", lambda error: problems.append(str(error)))
    try:
        wait_for_port(port, proc=server)
        page.goto(f"http://127.0.0.1:{port}/")
        page.wait_for_function("() => window.fsmlTiming && window.fsmlTiming.modelReadyMs !== null", timeout=60_000)
        assert page.locator("canvas.fsml-canvas").count() == 0 and page.text_content("#status") == "Upload an image."
        upload = tmp_path / "photo.png"
        upload.write_bytes(pictures[0])
        page.set_input_files("#upload", str(upload))
        page.wait_for_function("() => window.fsmlTiming.predictions >= 1", timeout=30_000)
        assert page.locator("#scores .bar").count() == len(labels)
        assert page.get_attribute("#label", "data-label") in labels
        in_browser = page.evaluate("""async (images) => {
            const out = [];
            for (const data of images) {
                const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
                out.push((await window.fsmlClassify(new Blob([bytes], { type: "image/png" }))).scores);
            }
            return out; }""", [base64.b64encode(data).decode() for data in pictures])
    finally:
        page.close()
        stop(server)
    assert not problems, problems
    with torch.no_grad():
        expected = torch.softmax(network(predictor.preprocessing.batch(pictures)), dim=1).numpy()
    in_browser = np.asarray(in_browser, dtype=np.float32)
    assert in_browser.shape == expected.shape == (len(pictures), len(labels))
    assert np.abs(in_browser - expected).max() < 1e-5
