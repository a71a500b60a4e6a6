// Inverting a dropped picture to W+ with the bundle's encoder (e4e; manifest section "encoder": its graph,
// input_size and normalization), as runtime/photos.py prepares one: transparency over white, the largest
// centred square (Python asks for crop="center"; a page has nobody to ask), resized to the input size
// (the browser's high-quality filter; Python uses PIL's bilinear, so only a picture already at the input
// size gives the Python runtime's W+ exactly), then e4e's Normalize(0.5, 0.5): x / 127.5 - 1.

import { EditError } from "./editmath.js";

const f32 = Math.fround;

export function hasEncoder(editor) {
  return Boolean(editor.manifest.encoder);
}

function encoderSpec(editor) {
  const info = editor.manifest.encoder;
  const norm = info.normalization || {};
  const mean = norm.mean ?? [0.5, 0.5, 0.5], std = norm.std ?? [0.5, 0.5, 0.5];
  if (!Number.isInteger(info.input_size)) throw new EditError("the bundle's encoder does not state its input size");
  return { graph: info.graph ?? "encoder", size: info.input_size, mean, std };
}

/** float32 [3, S, S] from RGBA bytes, normalized as the encoder was trained. */
export function encoderInput(rgba, size, mean, std) {
  const plane = size * size, x = new Float32Array(3 * plane);
  const e4e = mean.every((m) => m === 0.5) && std.every((s) => s === 0.5);
  for (let p = 0; p < plane; p++)
    for (let c = 0; c < 3; c++) {
      const v = rgba[p * 4 + c];
      x[c * plane + p] = e4e ? f32(f32(v / 127.5) - 1) : f32(f32(f32(v / 255) - mean[c]) / std[c]);
    }
  return x;
}

/** W+ [1, n_latent, style_dim] of an image file. */
export async function invertImage(editor, file) {
  let bitmap;
  try {
    bitmap = await createImageBitmap(file);
  } catch {
    throw new EditError(`${file.name || "that file"} is not an image the browser can read (use a PNG or JPEG)`);
  }
  if (Math.min(bitmap.width, bitmap.height) < 16) throw new EditError(`${file.name} is too small (${bitmap.width}x${bitmap.height})`);
  const { graph, size, mean, std } = encoderSpec(editor);
  const side = Math.min(bitmap.width, bitmap.height);
  const canvas = new OffscreenCanvas(size, size), ctx = canvas.getContext("2d", { willReadFrequently: true });
  ctx.fillStyle = "#fff";
  ctx.fillRect(0, 0, size, size);
  ctx.imageSmoothingQuality = "high";
  ctx.drawImage(bitmap, (bitmap.width - side) / 2, (bitmap.height - side) / 2, side, side, 0, 0, size, size);
  const x = encoderInput(ctx.getImageData(0, 0, size, size).data, size, mean, std);
  return editor.run(graph, x, [1, 3, size, size]);
}
