// Inverting a dropped picture to W+ with the bundle's `encoder` graph (issue 16's e4e export): the
// image is centre-cropped to a square, resized to the encoder's input size by the browser's
// high-quality filter, normalized as the manifest says (e4e: (x / 255 - 0.5) / 0.5, so [-1, 1]) and
// encoded. The Python runtime's Editor.invert resizes with its own filter, so inversions of an image
// that is not already at the input size can differ slightly between the two.

import { EditError } from "./editmath.js";

export function hasEncoder(editor) {
  return "encoder" in editor.manifest.graphs;
}

function encoderSpec(editor) {
  const info = editor.manifest.encoder || {};
  const shape = editor.manifest.graphs.encoder.input.shape;
  const size = info.input_size ?? info.size ?? shape[shape.length - 1];
  const norm = info.normalization || info.normalize || {};
  const mean = norm.mean ?? [0.5, 0.5, 0.5], std = norm.std ?? [0.5, 0.5, 0.5];
  if (!Number.isInteger(size)) throw new EditError("the bundle's encoder does not state its input size");
  return { size, mean, std };
}

/** W+ [1, n_latent, style_dim] of an image (a File, Blob or ImageBitmap source). */
export async function invertImage(editor, source) {
  let bitmap;
  try {
    bitmap = source instanceof ImageBitmap ? source : await createImageBitmap(source);
  } catch {
    throw new EditError("that file is not an image the browser can read (use a PNG or JPEG)");
  }
  const { size, mean, std } = encoderSpec(editor);
  const side = Math.min(bitmap.width, bitmap.height);
  const canvas = new OffscreenCanvas(size, size), ctx = canvas.getContext("2d", { willReadFrequently: true });
  ctx.imageSmoothingQuality = "high";
  ctx.drawImage(bitmap, (bitmap.width - side) / 2, (bitmap.height - side) / 2, side, side, 0, 0, size, size);
  const { data } = ctx.getImageData(0, 0, size, size), plane = size * size, x = new Float32Array(3 * plane);
  for (let p = 0; p < plane; p++) for (let c = 0; c < 3; c++) x[c * plane + p] = (data[p * 4 + c] / 255 - mean[c]) / std[c];
  return editor.run("encoder", x, [1, 3, size, size]);
}
