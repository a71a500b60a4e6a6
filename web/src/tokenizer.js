// CLIP's byte-level BPE tokenizer, giving the ids of runtime/tokenizer.py (and so open_clip's):
// clean (textclean.js) -> split into pieces -> UTF-8 bytes as 256 stand-in characters -> BPE merges
// -> [SOT, ids, EOT] zero-padded to the context length (too-long texts keep EOT last).

import { TextCleaner } from "./textclean.js";

export const SOT = "<start_of_text>";
export const EOT = "<end_of_text>";
const END = "</w>";
const N_MERGES = 49152 - 256 - 2; // the merges file's first line is a header
const UTF8 = new TextEncoder();

function byteAlphabet() {
  const printable = [];
  for (let b = 0x21; b <= 0x7e; b++) printable.push(b);
  for (let b = 0xa1; b <= 0xac; b++) printable.push(b);
  for (let b = 0xae; b <= 0xff; b++) printable.push(b);
  const chars = new Array(256);
  printable.forEach((b) => (chars[b] = String.fromCharCode(b)));
  let k = 0;
  const others = [];
  for (let b = 0; b < 256; b++) if (chars[b] === undefined) { chars[b] = String.fromCharCode(256 + k++); others.push(b); }
  return { vocabOrder: printable.concat(others).map((b) => chars[b]), byValue: chars };
}

export class ClipTokenizer {
  /** `merges`: the text of bpe_simple_vocab_16e6.txt; `tables`: the site's text_tables.json; `cleaner`: a
   * TextCleaner already made from them. */
  constructor(merges, tables, contextLength = 77, cleaner = new TextCleaner(tables)) {
    if (contextLength < 2) throw new Error(`context length must be at least 2 (SOT and EOT), got ${contextLength}`);
    this.contextLength = contextLength;
    this.cleaner = cleaner;
    const lines = merges.split("\n");
    if (lines.length < N_MERGES + 1) throw new Error(`the BPE vocabulary has ${lines.length - 1} merge lines, expected ${N_MERGES}`);
    const pairs = lines.slice(1, N_MERGES + 1).map((line, n) => {
      const pair = line.split(this.cleaner.pySpaceRun).filter(Boolean);
      if (pair.length !== 2) throw new Error(`the BPE vocabulary's line ${n + 2} is not a pair of symbols`);
      return pair;
    });
    const { vocabOrder, byValue } = byteAlphabet();
    this.byteChars = byValue;
    const vocab = vocabOrder.concat(vocabOrder.map((c) => c + END), pairs.map(([a, b]) => a + b), [SOT, EOT]);
    this.encoder = new Map();
    vocab.forEach((tok, i) => this.encoder.set(tok, i)); // a later duplicate wins, as in Python's dict
    this.ranks = new Map(pairs.map(([a, b], r) => [a + " " + b, r]));
    this.sot = this.encoder.get(SOT);
    this.eot = this.encoder.get(EOT);
    this.specials = new Map([[SOT, [this.sot]], [EOT, [this.eot]]]);
    // runtime/tokenizer.py's split pattern, with the classes the `regex` module matches (web_text.py)
    this.pattern = new RegExp(tables.tokenizer_pattern, "gu");
    this.cache = new Map();
  }

  bpe(piece) {
    const hit = this.cache.get(piece) ?? this.specials.get(piece);
    if (hit) return hit;
    let word = Array.from(piece);
    word[word.length - 1] += END;
    while (word.length > 1) {
      let best = -1, bestRank = Infinity;
      for (let i = 0; i < word.length - 1; i++) {
        const r = this.ranks.get(word[i] + " " + word[i + 1]);
        if (r !== undefined && r < bestRank) { bestRank = r; best = i; }
      }
      if (best < 0) break;
      const first = word[best], second = word[best + 1], merged = first + second, out = [];
      for (let i = 0; i < word.length;) {
        if (i < word.length - 1 && word[i] === first && word[i + 1] === second) { out.push(merged); i += 2; }
        else out.push(word[i++]);
      }
      word = out;
    }
    const ids = word.map((sym) => this.encoder.get(sym));
    if (this.cache.size >= 100000) this.cache.clear();
    this.cache.set(piece, ids);
    return ids;
  }

  /** BPE ids of `text` after CLIP's cleaning, without SOT/EOT (stops once `limit` ids are reached). */
  encode(text, limit = Infinity) {
    const out = [];
    for (const m of this.cleaner.clean(text).matchAll(this.pattern)) {
      let piece = "";
      for (const b of UTF8.encode(m[0])) piece += this.byteChars[b];
      out.push(...this.bpe(piece));
      if (out.length >= limit) break;
    }
    return out;
  }

  /** Token rows [texts.length][contextLength]: SOT, ids, EOT, zero padding. */
  tokenize(texts, contextLength = this.contextLength) {
    return texts.map((text) => {
      const ids = this.encode(text, contextLength - 1).slice(0, contextLength - 2);
      const row = new Array(contextLength).fill(0);
      row[0] = this.sot;
      ids.forEach((id, i) => (row[i + 1] = id));
      row[ids.length + 1] = this.eot;
      return row;
    });
  }
}
