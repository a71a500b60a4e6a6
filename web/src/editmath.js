// Global-direction edit math (DESIGN §4.C) exactly as runtime/edit_math.py computes it: the same
// formulas in the same float32/float64 steps, so the page's Δs equals the Python runtime's.
//
//   text direction  dt = unit(class(target) - class(neutral)), class(t) = unit(mean_k unit(E_T(template_k(t))))
//   relevance       r  = fs3 @ dt                  (one row of fs3 per non-ToRGB style channel)
//   threshold       r_c = 0 where |r_c| < beta
//   direction       ds = r / max|r| * std           (ToRGB channels and channels past fs3's rows get 0)
//   edit            s' = s + sum_i alpha_i * ds_i
// Ranges and defaults come from the site manifest (written from runtime/edit_math.py).

const f32 = Math.fround;

export class EditError extends Error {}
export class NoChannelError extends EditError {}

/** Python's str() of a float ("10.0", "0.15"), so messages read as the CLI's do. */
export const pyFloat = (x) => (Number.isInteger(x) ? x.toFixed(1) : String(x));
/** Python's format(x, "g"). */
export const pyG = (x) => {
  if (x === 0) return "0";
  const exp = Math.floor(Math.log10(Math.abs(x)));
  if (exp < -4 || exp >= 6) return x.toExponential(5).replace(/\.?0+e/, "e").replace(/e([+-])(\d)$/, "e$10$2");
  return String(Number(x.toPrecision(6)));
};

export function checkRange(name, value, [lo, hi]) {
  if (!Number.isFinite(value) || value < lo || value > hi)
    throw new EditError(`${name} must be a number in [${pyFloat(lo)}, ${pyFloat(hi)}], got ${typeof value === "number" ? pyFloat(value) : value}`);
  return value;
}

function unit64(v) {
  let ss = 0;
  for (const x of v) ss += x * x;
  const n = Math.max(Math.sqrt(ss), 1e-12);
  return v.map((x) => x / n);
}

/** Per-template embeddings (rows of a Float32Array [T, D]) -> unit class embedding, float64 [D]. */
export function classEmbedding(emb, rows, dim, first = 0) {
  const mean = new Float64Array(dim);
  for (let t = first; t < first + rows; t++) {
    const u = unit64(Float64Array.from(emb.subarray(t * dim, (t + 1) * dim)));
    for (let d = 0; d < dim; d++) mean[d] += u[d];
  }
  return unit64(mean.map((x) => x / rows));
}

/** dt (Float32Array [D]) from the embeddings of target's then neutral's templates (2T rows). */
export function textDirection(emb, nTemplates, dim) {
  const t = classEmbedding(emb, nTemplates, dim, 0), n = classEmbedding(emb, nTemplates, dim, nTemplates);
  return Float32Array.from(unit64(t.map((x, d) => x - n[d])));
}

export function templatePrompts(text, templates) {
  return templates.map((tpl) => tpl.replace("{}", text)); // str.format of a one-field template
}

/** r [rows] = fs3 [rows, D] @ dt [D]. */
export function relevance(fs3, rows, dim, dt) {
  const r = new Float32Array(rows);
  for (let i = 0; i < rows; i++) {
    let acc = 0;
    for (let d = 0, o = i * dim; d < dim; d++) acc += fs3[o + d] * dt[d];
    r[i] = acc;
  }
  return r;
}

/** A beta midway between the K-th and (K+1)-th largest |r| (keeps the K most relevant channels). */
export function autoBeta(r, minChannels) {
  if (!(Number.isInteger(minChannels) && minChannels >= 1 && minChannels <= r.length))
    throw new EditError(`min_channels must be in 1..${r.length}, got ${minChannels}`);
  const ranked = Float32Array.from(r, Math.abs).sort().reverse();
  const below = minChannels < r.length ? ranked[minChannels] : 0;
  return f32(f32(ranked[minChannels - 1] + below) / 2);
}

/** Positions in flat S of the non-ToRGB channels, in layout order (fs3's row order). */
export function convIndex(layout) {
  const idx = [];
  for (const l of layout) if (!l.is_torgb) for (let c = 0; c < l.channels; c++) idx.push(l.offset + c);
  return Int32Array.from(idx);
}

/** Flat Δs [total] for relevance r (rows in convIndex order, possibly fewer). */
export function styleDirection(r, beta, std, conv, total, betaRange) {
  checkRange("beta", beta, betaRange);
  if (r.length > conv.length)
    throw new EditError(`relevance has ${r.length} rows; the generator has ${conv.length} non-ToRGB channels`);
  const b32 = f32(beta); // numpy compares float32 |r| with beta cast to float32
  const kept = r.map((x) => (Math.abs(x) >= b32 ? x : 0));
  let peak = 0, strongest = 0;
  for (let i = 0; i < r.length; i++) {
    peak = Math.max(peak, Math.abs(kept[i]));
    strongest = Math.max(strongest, Math.abs(r[i]));
  }
  if (peak === 0) {
    throw new NoChannelError(
      `no style channel reaches beta=${pyG(beta)} (the strongest has |r|=${strongest.toFixed(3)}); ` +
      `use beta <= ${(Math.floor(strongest * 1000) / 1000).toFixed(3)} or auto-beta`);
  }
  const ds = new Float32Array(total);
  for (let i = 0; i < r.length; i++) ds[conv[i]] = f32(f32(kept[i] / peak) * std[conv[i]]);
  return ds;
}

/** s [B, total] + sum_i alpha_i * ds_i (a new Float32Array). */
export function applyEdits(s, total, directions, alphas, alphaRange) {
  const out = Float32Array.from(s);
  directions.forEach((ds, k) => {
    const a = f32(checkRange("alpha", alphas[k], alphaRange));
    for (let b = 0; b < out.length; b += total)
      for (let c = 0; c < total; c++) out[b + c] = f32(out[b + c] + f32(a * ds[c]));
  });
  return out;
}

/** w + strength * (mapped - w): a mapper's W+ offset scaled (Editor.apply_mapper). */
export function scaleOffset(w, mapped, strength) {
  const s = f32(strength);
  return w.map((x, i) => f32(x + f32(s * f32(mapped[i] - x))));
}

/** latent_avg + psi * (w - latent_avg) per row of w [N, D] (Editor.sample's truncation). */
export function truncate(w, avg, psi) {
  const p = f32(psi), d = avg.length;
  return w.map((x, i) => f32(avg[i % d] + f32(p * f32(x - avg[i % d]))));
}

/** numpy's round (half to even). */
function rint(x) {
  const fl = Math.floor(x), frac = x - fl;
  return frac > 0.5 ? fl + 1 : frac < 0.5 ? fl : fl % 2 === 0 ? fl : fl + 1;
}

/** Images [N, 3, H, W] about [-1, 1] -> RGBA bytes per image (Editor.to_uint8, alpha 255). */
export function toRGBA(images, n, h, w) {
  const out = [], plane = h * w;
  for (let k = 0; k < n; k++) {
    const rgba = new Uint8ClampedArray(plane * 4), base = k * 3 * plane;
    for (let p = 0; p < plane; p++) {
      for (let c = 0; c < 3; c++) {
        const v = Math.min(1, Math.max(-1, images[base + c * plane + p]));
        rgba[p * 4 + c] = rint(f32(f32(v + 1) * 127.5));
      }
      rgba[p * 4 + 3] = 255;
    }
    out.push(rgba);
  }
  return out;
}
