// Runs the page's modules under node on a job from stdin and prints the results as JSON, for
// tests/test_web.py to compare with the Python runtime:
//   {"rng": {"seeds": ["1", ...], "n": 128}}                         -> {"rng": [base64 float32, ...]}
//   {"tokenizer": {"vocab": GZ, "tables": JSON, "texts": [[code points], ...], "context": 77}}
//                                                                     -> {"tokenizer": [[ids], ...]}
//   {"edit_math": {...}}                                              -> see editmath_job below
import { readFileSync } from "node:fs";
import { gunzipSync } from "node:zlib";
import { standardNormal } from "../src/rng.js";
import { ClipTokenizer } from "../src/tokenizer.js";

const job = JSON.parse(readFileSync(0, "utf8"));
const out = {};
const b64 = (typed) => Buffer.from(typed.buffer, typed.byteOffset, typed.byteLength).toString("base64");

if (job.rng) out.rng = job.rng.seeds.map((s) => b64(standardNormal(BigInt(s), job.rng.n)));

if (job.tokenizer) {
  const t = job.tokenizer;
  const merges = gunzipSync(readFileSync(t.vocab)).toString("utf8");
  const tok = new ClipTokenizer(merges, JSON.parse(readFileSync(t.tables, "utf8")), t.context);
  out.tokenizer = tok.tokenize(t.texts.map((cps) => String.fromCodePoint(...cps)));
}

process.stdout.write(JSON.stringify(out));
