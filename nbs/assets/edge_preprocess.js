// fullstack_ml.model.Preprocessing, mirrored step by step for the browser (the edge demo).
// Input: RGBA pixels already composited on white (draw the image on a white canvas first).
// Output: Float32Array(size * size), the network's input, equal bit for bit to the Python object's output
// for the same pixels: float32 arithmetic where NumPy uses float32, Pillow's BOX resampling in doubles.
// tests/test_edge.py runs this file under node against the Python Preprocessing.

const f32 = Math.fround;

export function toGray(rgba, width, height) {
  // Pillow's "L" conversion: L = (R*19595 + G*38470 + B*7471 + 0x8000) >> 16, then / 255 as float32
  const gray = new Float32Array(width * height);
  for (let i = 0; i < width * height; i++) {
    const r = rgba[4 * i], g = rgba[4 * i + 1], b = rgba[4 * i + 2];
    gray[i] = f32(((r * 19595 + g * 38470 + b * 7471 + 0x8000) >>> 16) / 255);
  }
  return { data: gray, width, height };
}

function borderMedian({ data, width, height }) {
  // np.median of [first row, last row, first column, last column] (corners twice), in float32
  const border = [];
  for (let x = 0; x < width; x++) border.push(data[x]);
  for (let x = 0; x < width; x++) border.push(data[(height - 1) * width + x]);
  for (let y = 0; y < height; y++) border.push(data[y * width]);
  for (let y = 0; y < height; y++) border.push(data[y * width + width - 1]);
  border.sort((a, b) => a - b);
  const mid = border.length >> 1;
  return border.length % 2 ? border[mid] : f32(f32(border[mid - 1] + border[mid]) / 2);
}

function fitBox(image, threshold = 0.1) {
  const cut = f32(threshold);  // NumPy compares a float32 array with the threshold as float32
  // crop to the ink's bounding box and centre it in a zero-padded square
  const { data, width, height } = image;
  let top = height, bottom = -1, left = width, right = -1;
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      if (data[y * width + x] > cut) {
        top = Math.min(top, y); bottom = Math.max(bottom, y);
        left = Math.min(left, x); right = Math.max(right, x);
      }
    }
  }
  if (bottom < 0) return image;  // blank: unchanged
  const h = bottom - top + 1, w = right - left + 1, side = Math.max(h, w);
  const offY = (side - h) >> 1, offX = (side - w) >> 1;
  const out = new Float32Array(side * side);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) out[(y + offY) * side + x + offX] = data[(y + top) * width + x + left];
  }
  return { data: out, width: side, height: side };
}

function padSquare({ data, width, height }) {
  const side = Math.max(width, height);
  const out = new Float32Array(side * side);
  for (let y = 0; y < height; y++) for (let x = 0; x < width; x++) out[y * side + x] = data[y * width + x];
  return { data: out, width: side, height: side };
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

function boxResize({ data, width, height }, size) {
  // Image.fromarray(a, "F").resize((size, size), BOX): horizontal pass, then vertical; float32 between passes
  if (width === size && height === size) return Float32Array.from(data);
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

export function preprocess(rgba, width, height, config) {
  // config: the artifact's preprocessing, e.g. {image_size: 8, invert: "auto", fit: "box"}
  const size = config.image_size, invert = config.invert || "auto", fit = config.fit || "box";
  let image = toGray(rgba, width, height);
  if (invert === "always" || (invert === "auto" && borderMedian(image) > 0.5)) {
    image = { ...image, data: image.data.map((v) => f32(1.0 - v)) };
  }
  if (fit === "box") image = fitBox(image);
  if (image.width !== image.height) image = padSquare(image);
  return boxResize(image, size).map((v) => Math.min(Math.max(v, 0.0), 1.0));
}
