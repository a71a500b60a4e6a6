// Runs the page's modules under node on a job from stdin and prints the results as JSON, for
// tests/test_web.py to compare with the Python runtime:
//   {"rng": {"seeds": ["1", ...], "n": 128}}                         -> {"rng": [base64 float32, ...]}
//   {"tokenizer": {"vocab": GZ, "tables": JSON, "texts": [[code points], ...], "context": 77}}
//                                                                     -> {"tokenizer": [[ids], ...]}
//   {"log1pf": [base64 float32 inputs]}                              -> {"log1pf": base64 float32}
//   {"edit_math": {tables and settings, base64 float32}}              -> each step's result (see below)
import { readFileSync } from "node:fs";
import { gunzipSync } from "node:zlib";
import * as em from "../src/editmath.js";
import { log1pf, standardNormal } from "../src/rng.js";
import { ClipTokenizer } from "../src/tokenizer.js";

const job = JSON.parse(readFileSync(0, "utf8"));
const out = {};
const b64 = (typed) => Buffer.from(typed.buffer, typed.byteOffset, typed.byteLength).toString("base64");
const f32s = (text) => { const b = Buffer.from(text, "base64"); return new Float32Array(b.buffer, b.byteOffset, b.byteLength / 4).slice(); };
const attempt = (fn) => { try { return fn(); } catch (err) { return { error: err.message, type: err.constructor.name }; } };

if (job.rng) out.rng = job.rng.seeds.map((s) => b64(standardNormal(BigInt(s), job.rng.n)));

if (job.tokenizer) {
  const t = job.tokenizer;
  const merges = gunzipSync(readFileSync(t.vocab)).toString("utf8");
  const tok = new ClipTokenizer(merges, JSON.parse(readFileSync(t.tables, "utf8")), t.context);
  out.tokenizer = tok.tokenize(t.texts.map((cps) => String.fromCodePoint(...cps)));
}

if (job.log1pf) out.log1pf = b64(f32s(job.log1pf).map(log1pf));

if (job.edit_math) {
  const j = job.edit_math, m = j.math;
  const emb = f32s(j.emb), fs3 = f32s(j.fs3), std = f32s(j.std), conv = em.convIndex(j.layout);
  const dt = em.textDirection(emb, j.templates, j.dim);
  const r = em.relevance(fs3, j.rows, j.dim, dt);
  const directions = j.betas.map((beta) => attempt(() => b64(em.styleDirection(r, beta, std, conv, j.total, m.beta_range))));
  const ds = em.styleDirection(r, j.betas[0], std, conv, j.total, m.beta_range);
  out.edit_math = {
    conv: Array.from(conv), dt: b64(dt), r: b64(r), directions,
    auto_betas: j.min_channels.map((k) => attempt(() => em.autoBeta(r, k))),
    edited: attempt(() => b64(em.applyEdits(f32s(j.s), j.total, [ds, ds], j.alphas, m.alpha_range))),
    bad_alpha: attempt(() => em.applyEdits(f32s(j.s), j.total, [ds], [j.bad_alpha], m.alpha_range)),
    scaled: b64(em.scaleOffset(f32s(j.w), f32s(j.mapped), j.strength)),
    truncated: b64(em.truncate(f32s(j.w_mapped), f32s(j.avg), j.psi)),
    rgba: em.toRGBA(f32s(j.images), j.n, j.h, j.w_px).map((a) => b64(new Uint8Array(a.buffer))),
    templates: em.templatePrompts(j.template_text, j.template_list),
  };
}

process.stdout.write(JSON.stringify(out));
