// fullstack_ml.preprocessing.Preprocessing, mirrored step by step for the browser (the edge demo).
// Input: RGBA pixels already composited on white (draw the image on a white canvas first) and the artifact's
// preprocessing config {side, colour: gray|rgb, fit: box|letterbox|resize, invert: auto|never, mean, std}.
// Output: Float32Array(channels * side * side), channels first, the network's input, equal bit for bit to the
// Python object's output for the same pixels: float32 arithmetic where NumPy uses float32, Pillow's BOX
// resampling in doubles. tests/test_edge.py runs this file under node against the Python Preprocessing.

const f32 = Math.fround;

export function readConfig(config) {
  // the artifact's config; one from before projects ({image_size, invert, fit}) is the drawn digits' one
  if (!("colour" in config)) {
    const fit = config.fit === "none" ? "letterbox" : config.fit || "box";
    return { side: config.image_size || 8, colour: "gray", fit, invert: config.invert || "auto", mean: [], std: [] };
  }
  return { mean: [], std: [], invert: "never", ...config };
}

export function inputShape(config) {
  // [channels, side, side] of the network's input
  const { side, colour } = readConfig(config);
  return [colour === "gray" ? 1 : 3, side, side];
}

export function toArray(rgba, width, height, colour) {
  // Pillow's "L" conversion for gray: L = (R*19595 + G*38470 + B*7471 + 0x8000) >> 16; then / 255 as float32.
  // rgb: the three channels / 255, interleaved (height, width, 3) like the NumPy array
  const channels = colour === "gray" ? 1 : 3;
  const data = new Float32Array(width * height * channels);
  for (let i = 0; i < width * height; i++) {
    const r = rgba[4 * i], g = rgba[4 * i + 1], b = rgba[4 * i + 2];
    if (channels === 1) data[i] = f32(((r * 19595 + g * 38470 + b * 7471 + 0x8000) >>> 16) / 255);
    else [data[3 * i], data[3 * i + 1], data[3 * i + 2]] = [f32(r / 255), f32(g / 255), f32(b / 255)];
  }
  return { data, width, height, channels };
}

function grayPlane({ data, width, height, channels }) {
  // array.mean(axis=-1) in float32 for colour: ((r + g) + b) / 3; the array itself for gray
  if (channels === 1) return data;
  const gray = new Float32Array(width * height);
  for (let i = 0; i < width * height; i++) gray[i] = f32(f32(f32(data[3 * i] + data[3 * i + 1]) + data[3 * i + 2]) / 3);
  return gray;
}

function borderMedian(gray, width, height) {
  // np.median of [first row, last row, first column, last column] (corners twice), in float32
  const border = [];
  for (let x = 0; x < width; x++) border.push(gray[x]);
  for (let x = 0; x < width; x++) border.push(gray[(height - 1) * width + x]);
  for (let y = 0; y < height; y++) border.push(gray[y * width]);
  for (let y = 0; y < height; y++) border.push(gray[y * width + width - 1]);
  border.sort((a, b) => a - b);
  const mid = border.length >> 1;
  return border.length % 2 ? border[mid] : f32(f32(border[mid - 1] + border[mid]) / 2);
}

function crop(image, top, left, h, w) {
  const { data, width, channels } = image;
  const out = new Float32Array(h * w * channels);
  for (let y = 0; y < h; y++) {
    const from = ((y + top) * width + left) * channels;
    out.set(data.subarray(from, from + w * channels), y * w * channels);
  }
  return { data: out, width: w, height: h, channels };
}

function cropToInk(image, threshold = 0.1) {
  // the bounding box of the ink (gray, or the channel mean, above the threshold); a blank image as it is
  const cut = f32(threshold);  // NumPy compares a float32 array with the threshold as float32
  const { width, height } = image;
  const ink = grayPlane(image);
  let top = height, bottom = -1, left = width, right = -1;
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      if (ink[y * width + x] > cut) {
        top = Math.min(top, y); bottom = Math.max(bottom, y);
        left = Math.min(left, x); right = Math.max(right, x);
      }
    }
  }
  return bottom < 0 ? image : crop(image, top, left, bottom - top + 1, right - left + 1);
}

function padSquare({ data, width, height, channels }) {
  // zeros around a centred copy
  const side = Math.max(width, height), top = (side - height) >> 1, left = (side - width) >> 1;
  const out = new Float32Array(side * side * channels);
  for (let y = 0; y < height; y++) {
    out.set(data.subarray(y * width * channels, (y + 1) * width * channels), ((y + top) * side + left) * channels);
  }
  return { data: out, width: side, height: side, channels };
}

function boxCoefficients(inSize, outSize) {
  // Pillow's precompute_coeffs with the box filter (support 0.5), in doubles
  const scale = inSize / outSize, filterscale = Math.max(scale, 1.0), support = 0.5 * filterscale;
  const rows = [];
  for (let xx = 0; xx < outSize; xx++) {
    const center = (xx + 0.5) * scale, ss = 1.0 / filterscale;
    const xmin = Math.max(Math.trunc(center - support + 0.5), 0);
    const count = Math.min(Math.trunc(center + support + 0.5), inSize) - xmin;
    const weights = [];
    let total = 0.0;
    for (let x = 0; x < count; x++) {
      const v = (x + xmin - center + 0.5) * ss;
      const w = v > -0.5 && v <= 0.5 ? 1.0 : 0.0;
      weights.push(w);
      total += w;
    }
    rows.push({ min: xmin, weights: weights.map((w) => (total !== 0 ? w / total : w)) });
  }
  return rows;
}

function twoPasses(data, width, height, size) {
  // horizontal pass (only the rows the vertical pass reads), then vertical; float32 between, doubles within
  const horizontal = boxCoefficients(width, size), vertical = boxCoefficients(height, size);
  const first = vertical[0].min, last = vertical[size - 1].min + vertical[size - 1].weights.length;
  const temp = new Float32Array((last - first) * size);
  for (let y = 0; y < last - first; y++) {
    for (let xx = 0; xx < size; xx++) {
      const { min, weights } = horizontal[xx];
      let sum = 0.0;
      for (let x = 0; x < weights.length; x++) sum += data[(y + first) * width + x + min] * weights[x];
      temp[y * size + xx] = sum;
    }
  }
  const out = new Float32Array(size * size);
  for (let yy = 0; yy < size; yy++) {
    const { min, weights } = vertical[yy];
    for (let xx = 0; xx < size; xx++) {
      let sum = 0.0;
      for (let y = 0; y < weights.length; y++) sum += temp[(min - first + y) * size + xx] * weights[y];
      out[yy * size + xx] = sum;
    }
  }
  return out;
}

function transpose(data, width, height) {
  const out = new Float32Array(width * height);
  for (let y = 0; y < height; y++) for (let x = 0; x < width; x++) out[x * height + y] = data[y * width + x];
  return out;
}

function boxResize(data, width, height, size) {
  // one plane: Image.fromarray(a, "F").resize((size, size), BOX). Pillow 13 resamples the vertical axis first
  // when height + size > 2 * width (a tall picture shrunk to a square; found by measuring, checked by
  // tests/test_edge.py), otherwise the horizontal one; the order changes the float32 rounding between passes.
  // Earlier Pillows always went horizontal first: there, tall pictures of a "resize" spec differ by one rounding
  if (width === size && height === size) return Float32Array.from(data);
  if (height + size > 2 * width) return transpose(twoPasses(transpose(data, width, height), height, width, size), size, size);
  return twoPasses(data, width, height, size);
}

export function preprocess(rgba, width, height, config) {
  // RGBA pixels -> Float32Array (channels, side, side): invert, fit, resize each channel, clip, normalise
  const { side, colour, fit, invert, mean, std } = readConfig(config);
  let image = toArray(rgba, width, height, colour);
  if (invert === "always" || (invert === "auto" && borderMedian(grayPlane(image), width, height) > 0.5)) {
    image = { ...image, data: image.data.map((v) => f32(1.0 - v)) };
  }
  if (fit === "box") image = cropToInk(image);
  if (fit !== "resize") image = padSquare(image);
  const { data, channels } = image;
  const out = new Float32Array(channels * side * side);
  for (let c = 0; c < channels; c++) {
    const plane = new Float32Array(image.width * image.height);
    for (let i = 0; i < plane.length; i++) plane[i] = data[i * channels + c];
    const resized = boxResize(plane, image.width, image.height, side);
    const m = mean.length ? f32(mean[c]) : 0, s = std.length ? f32(std[c]) : 1;
    for (let i = 0; i < side * side; i++) {
      const v = Math.min(Math.max(resized[i], 0.0), 1.0);
      out[c * side * side + i] = mean.length ? f32(f32(v - m) / s) : v;
    }
  }
  return out;
}
