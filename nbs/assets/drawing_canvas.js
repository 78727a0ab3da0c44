// A drawing canvas (for projects whose images are drawn), shared by the demo app (as an anywidget) and the static edge page.
// Strokes stay in the browser; when the pen has rested for `delay_ms` the bitmap is sent once, as PNG,
// with model.send({type: "image"}, undefined, [png]). Clear with the button, Escape or the "c" key.
// `model` is anywidget's model or any object with get(name), send(content, callbacks, buffers) and on(event, fn).

function render({ model, el }) {
  const size = model.get("size") || 280;
  const root = document.createElement("div");
  root.className = "fsml-canvas-box";
  const canvas = document.createElement("canvas");
  canvas.width = size;
  canvas.height = size;
  canvas.tabIndex = 0;
  canvas.className = "fsml-canvas";
  canvas.setAttribute("aria-label", "drawing area");
  const clearButton = document.createElement("button");
  clearButton.type = "button";
  clearButton.className = "fsml-clear";
  clearButton.textContent = "Clear (Esc)";
  root.append(canvas, clearButton);
  el.append(root);

  const ctx = canvas.getContext("2d");
  let drawing = false;
  let last = null;
  let timer = null;

  function blank() {
    ctx.fillStyle = "#ffffff";  // dark ink on white paper, like a scanned drawing
    ctx.fillRect(0, 0, size, size);
  }
  function point(event) {
    const box = canvas.getBoundingClientRect();
    return [(event.clientX - box.left) * size / box.width, (event.clientY - box.top) * size / box.height];
  }
  function segment(from, to) {
    ctx.strokeStyle = "#000000";
    ctx.lineWidth = model.get("line_width") || size / 12;
    ctx.lineCap = "round";
    ctx.lineJoin = "round";
    ctx.beginPath();
    ctx.moveTo(from[0], from[1]);
    ctx.lineTo(to[0], to[1]);
    ctx.stroke();
  }
  function sendBitmap() {  // once per drawing pause, never per stroke point
    canvas.toBlob(async (blob) => {
      const png = await blob.arrayBuffer();
      model.send({ type: "image", width: size, height: size }, undefined, [png]);
    }, "image/png");
  }
  function clear(notify) {
    clearTimeout(timer);
    blank();
    if (notify) model.send({ type: "clear" });
  }

  canvas.addEventListener("pointerdown", (event) => {
    event.preventDefault();
    clearTimeout(timer);
    drawing = true;
    canvas.setPointerCapture(event.pointerId);
    last = point(event);
    segment(last, last);
    canvas.focus();
  });
  canvas.addEventListener("pointermove", (event) => {
    if (!drawing) return;
    const next = point(event);
    segment(last, next);
    last = next;
  });
  const finish = () => {
    if (!drawing) return;
    drawing = false;
    clearTimeout(timer);
    timer = setTimeout(sendBitmap, model.get("delay_ms") ?? 300);
  };
  canvas.addEventListener("pointerup", finish);
  canvas.addEventListener("pointercancel", finish);
  clearButton.addEventListener("click", () => clear(true));
  const onKey = (event) => {
    const typing = event.target && ["INPUT", "TEXTAREA", "SELECT"].includes(event.target.tagName);
    if (event.key === "Escape" || (!typing && (event.key === "c" || event.key === "C"))) clear(true);
  };
  document.addEventListener("keydown", onKey);
  model.on("msg:custom", (message) => {
    if (message && message.type === "clear") clear(false);
  });
  blank();
  return () => document.removeEventListener("keydown", onKey);
}

export default { render };
