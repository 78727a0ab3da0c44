// The edge demo: the model runs in this browser with onnxruntime-web; no request leaves for another origin.
// Upload, or draw where the project's images are drawn (drawing_canvas.js, the same canvas as the demo app);
// preprocess.js mirrors the Python Preprocessing exactly for the manifest's image spec; model.onnx is the
// network plus softmax; model.json says which artifact it is, its labels and its preprocessing.
import canvasWidget from "./drawing_canvas.js";
import { inputShape, preprocess } from "./preprocess.js";

const $ = (id) => document.getElementById(id);
const timing = { modelReadyMs: null, firstPredictionMs: null, lastPredictionMs: null, predictions: 0 };
window.fsmlTiming = timing;  // read by tests and benchmarks
window.fsmlViolations = [];  // requests the Content-Security-Policy blocked (there should be none)
document.addEventListener("securitypolicyviolation", (event) => window.fsmlViolations.push(event.blockedURI));

function setStatus(text, kind = "info") {
  $("status").textContent = text;
  $("status").className = `status ${kind}`;
}

async function loadModel() {
  const info = await (await fetch("model.json")).json();
  $("model-info").textContent = `model ${info.name} version ${info.version} (${info.ref}) · manifest sha256 ` +
    `${info.manifest_sha256} · weights sha256 ${info.weights_sha256} · model.onnx sha256 ${info.onnx_sha256} · ` +
    `onnxruntime-web ${info.runtime.version}`;
  ort.env.wasm.wasmPaths = new URL("ort/", window.location.href).href;  // the runtime shipped with the site
  ort.env.wasm.numThreads = 1;  // threads need cross-origin isolation, which a plain static host does not give
  const session = await ort.InferenceSession.create("model.onnx", { executionProviders: ["wasm"] });
  timing.modelReadyMs = performance.now();  // since navigation started
  if (info.drawable) {
    canvasWidget.render({ model: canvasModel, el: $("canvas") });
    setStatus("Draw, or upload an image. Clear with Esc, the c key or the button.");
  } else {
    setStatus("Upload an image.");
  }
  return { info, session };
}

async function pixelsOf(blob) {
  // decode as is (no colour management), on white, like the Python side composites transparency on white
  const bitmap = await createImageBitmap(blob, { colorSpaceConversion: "none", premultiplyAlpha: "none" });
  const canvas = document.createElement("canvas");
  canvas.width = bitmap.width;
  canvas.height = bitmap.height;
  const context = canvas.getContext("2d", { willReadFrequently: true });
  context.fillStyle = "#ffffff";
  context.fillRect(0, 0, bitmap.width, bitmap.height);
  context.drawImage(bitmap, 0, 0);
  const preview = $("preview").getContext("2d");
  preview.fillStyle = "#ffffff";
  preview.fillRect(0, 0, 112, 112);
  const scale = 112 / Math.max(bitmap.width, bitmap.height);  // the whole picture, its proportions kept
  const [w, h] = [bitmap.width * scale, bitmap.height * scale];
  preview.drawImage(bitmap, (112 - w) / 2, (112 - h) / 2, w, h);
  return { rgba: context.getImageData(0, 0, bitmap.width, bitmap.height).data, width: bitmap.width,
           height: bitmap.height };
}

function showScores(labels, scores, top) {
  $("scores").replaceChildren(...labels.map((label, i) => {
    const row = document.createElement("div");
    row.className = label === top ? "bar top" : "bar";
    row.dataset.label = label;
    const name = document.createElement("span");
    name.textContent = label;
    const fill = document.createElement("span");
    fill.className = "fill";
    fill.style.width = `${Math.max(scores[i], 0) * 200}px`;
    const value = document.createElement("span");
    value.textContent = scores[i].toFixed(3);
    row.append(name, fill, value);
    return row;
  }));
}

async function classify(blob) {
  // image bytes -> {label, scores, ms}: decode, preprocess, run; shown by predict(), used alone by benchmarks
  const { info, session } = await ready;
  const start = performance.now();
  const { rgba, width, height } = await pixelsOf(blob);
  const input = preprocess(rgba, width, height, info.preprocessing);  // (channels, side, side)
  const output = await session.run({ image: new ort.Tensor("float32", input, [1, ...inputShape(info.preprocessing)]) });
  const scores = Array.from(output.scores.data);
  return { label: info.labels[scores.indexOf(Math.max(...scores))], scores, ms: performance.now() - start };
}
window.fsmlClassify = classify;

async function predict(blob) {
  try {
    const { info } = await ready;
    const { label, scores, ms } = await classify(blob);
    timing.lastPredictionMs = ms;
    timing.predictions += 1;
    if (timing.firstPredictionMs === null) timing.firstPredictionMs = ms;
    $("label").textContent = label;
    $("label").dataset.label = label;
    showScores(info.labels, scores, label);
    $("timing").textContent = `model ready ${timing.modelReadyMs.toFixed(0)} ms after the page opened; ` +
      `this prediction took ${ms.toFixed(1)} ms, in this browser`;
    setStatus(info.drawable ? "Done. Clear with Esc, the c key or the button, then draw again."
      : "Done. Upload another image to ask again.");
  } catch (error) {
    setStatus(`Could not run the model here: ${error.message || error}`, "error");
  }
}

function clearResult() {
  $("label").textContent = "–";
  delete $("label").dataset.label;
  $("scores").replaceChildren();
  $("timing").textContent = "";
}

const settings = { size: 280, line_width: 22, delay_ms: 300 };
const canvasModel = {  // what drawing_canvas.js needs from anywidget's model, answered in the page
  listeners: {},
  get: (name) => settings[name],
  on(event, listener) { (this.listeners[event] ||= []).push(listener); },
  send(content, callbacks, buffers) {
    if (content.type === "image") predict(new Blob([buffers[0]], { type: "image/png" }));
    if (content.type === "clear") clearResult();
  },
};

const ready = loadModel();
ready.catch((error) => setStatus(window.location.protocol === "file:"
  ? "Browsers do not run this page from a file: serve its folder with any static web server, for example " +
    "`python -m http.server -d DIR`, and open it there."
  : `The model could not be loaded: ${error.message || error}`, "error"));


$("upload").addEventListener("change", (event) => {
  const file = event.target.files[0];
  if (file) predict(file);
  event.target.value = "";  // so the same file can be chosen again
});
