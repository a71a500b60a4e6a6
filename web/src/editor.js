// The page's Editor: runtime/editor.py's edits (sample, styles, global directions, mappers, render)
// with onnxruntime-web on the graphs of one site. Latents and styles are flat Float32Arrays with a
// batch size `n`: W+ is [n, n_latent, style_dim], S is [n, total].

import * as em from "./editmath.js";
import { standardNormal } from "./rng.js";
import { gunzip, SiteError } from "./site.js";
import { TextCleaner } from "./textclean.js";
import { ClipTokenizer } from "./tokenizer.js";

// What the first edit runs (the bundle's first tuned prompt, whose text direction site.json carries): fetched
// and opened at load. Every other graph (text encoder, mappers, encoder) is fetched, checked and opened on first use.
const CORE = ["mapping", "styles", "synthesis"];

export class WebEditor {
  constructor(site, ort, backend, sessions, textTables, tables, createSession) {
    this.createSession = createSession; // name -> promise of a session (fetched, checked and opened on first use)
    this.site = site;
    this.manifest = site.manifest;
    this.ort = ort;
    this.backend = backend;
    this.sessions = sessions;
    this.textTables = textTables; // text_tables.json: the tokenizer's pattern and ftfy's tables
    this.cleaner = new TextCleaner(textTables); // Python's whitespace and strip rules for prompt keys
    this.tokenizerPromise = null; // the BPE vocabulary: with the first prompt that needs the text encoder
    this.tables = tables;
    const gen = this.manifest.generator;
    this.layout = gen.layout;
    this.nLatent = gen.n_latent;
    this.styleDim = gen.style_dim;
    this.total = this.layout.reduce((a, l) => a + l.channels, 0);
    this.conv = em.convIndex(this.layout);
    this.math = this.manifest.edit_math;
    this.cache = new Map(); // text and style directions, by their settings
    const known = this.tables.get("text_directions"); // the tuned prompts', from `cli.py web` (Python runtime)
    if (known) {
      const d = known.shape[1];
      this.manifest.tables.text_directions.keys.forEach(([target, neutral], i) =>
        this.cache.set(JSON.stringify(["dt", target, neutral]), Promise.resolve(known.data.slice(i * d, (i + 1) * d))));
    }
  }

  get hasTextEncoder() {
    return "text_encoder" in this.manifest.graphs;
  }

  /** The tokenizer, its vocabulary fetched and checked on first use. */
  tokenizer() {
    if (!this.tokenizerPromise) {
      const m = this.manifest;
      this.tokenizerPromise = (async () => {
        const merges = new TextDecoder().decode(await gunzip(await this.site.bytes(m.tokenizer.vocab)));
        return new ClipTokenizer(merges, this.textTables, m.clip.context_length, this.cleaner);
      })().catch((err) => { this.tokenizerPromise = null; throw err; });
    }
    return this.tokenizerPromise;
  }

  /** Load, verify and open what the first edit needs, concurrently: the files are fetched and checked while
   * onnxruntime-web (`ortReady`: a promise of {ort, backend}) still loads. `step(name)` reports progress, also
   * of the graphs fetched later, on first use. */
  static async open(site, ortReady, step = () => {}) {
    const m = site.manifest;
    const tableNames = ["latent_avg", ...(m.global_directions ? ["fs3", "s_std"] : []),
      ...("text_directions" in m.tables ? ["text_directions"] : [])];
    const graphNames = Object.keys(m.graphs);
    const fetched = new Map(CORE.map((n) => [n, site.bytes(m.graphs[n].file)])); // the rest when first used
    const textTables = site.json(m.tokenizer.tables);
    const tables = Promise.all(tableNames.map(async (n) => [n, await site.table(n)]));
    const { ort, backend } = await ortReady;
    const options = { executionProviders: [backend], graphOptimizationLevel: "all" };
    const create = async (name) => {
      if (!fetched.has(name)) step(`fetching ${name} (${(site.manifest.files[m.graphs[name].file].size / 1e6).toFixed(1)} MB)`);
      const bytes = await (fetched.get(name) ?? site.bytes(m.graphs[name].file));
      fetched.delete(name); // the session holds the graph now
      const s = await ort.InferenceSession.create(new Uint8Array(bytes), options);
      step(`graph ${name}`);
      return s;
    };
    const sessions = new Map(graphNames.map((n) => [n, CORE.includes(n) ? create(n) : null]));
    await Promise.all([...sessions.values()].filter(Boolean));
    return new WebEditor(site, ort, backend, sessions, await textTables, new Map(await tables), create);
  }

  get mappers() {
    return Object.keys(this.manifest.mappers).sort();
  }

  get hasGlobalDirections() {
    return Boolean(this.manifest.global_directions);
  }

  async run(graph, data, dims, type = "float32") {
    if (!this.sessions.has(graph)) throw new SiteError(`this site has no '${graph}' graph`);
    if (this.sessions.get(graph) === null) {
      const opening = this.createSession(graph);
      this.sessions.set(graph, opening);
      opening.catch(() => this.sessions.set(graph, null)); // a failed fetch is retried by the next edit
    }
    const sess = await this.sessions.get(graph);
    const g = this.manifest.graphs[graph];
    const out = await sess.run({ [g.input.name]: new this.ort.Tensor(type, data, dims) });
    return out[g.output.name].data;
  }

  // --- latents -----------------------------------------------------------------------------------
  /** W+ for integer seeds (strings or BigInts, any size): numpy's z per seed, mapped, truncated. */
  async sample(seeds, truncation = null) {
    if (!seeds.length) throw new em.EditError("give at least one seed (a non-negative integer)");
    const psi = em.checkRange("truncation", truncation ?? this.manifest.defaults.truncation, this.math.truncation_range);
    const d = this.styleDim, n = seeds.length, z = new Float32Array(n * d);
    seeds.forEach((s, i) => z.set(standardNormal(BigInt(s), d), i * d));
    const w = em.truncate(await this.run("mapping", z, [n, d]), this.tables.get("latent_avg").data, psi);
    const wplus = new Float32Array(n * this.nLatent * d);
    for (let i = 0; i < n; i++) for (let r = 0; r < this.nLatent; r++) wplus.set(w.subarray(i * d, (i + 1) * d), (i * this.nLatent + r) * d);
    return wplus;
  }

  async styles(wplus, n) {
    return this.run("styles", wplus, [n, this.nLatent, this.styleDim]);
  }

  /** Flat S -> RGBA images (Uint8ClampedArray per face) and their size. */
  async render(s, n) {
    const images = await this.run("synthesis", s, [n, this.total]);
    const side = Math.round(Math.sqrt(images.length / n / 3));
    return { rgba: em.toRGBA(images, n, side, side), size: side };
  }

  // --- text ----------------------------------------------------------------------------------------
  promptKey(prompt) {
    return prompt.toLowerCase().split(this.cleaner.pySpaceRun).filter(Boolean).join(" ");
  }

  /** The blank check (at once); `checkLength` the token count (it needs the vocabulary). */
  checkPrompt(text, what = "prompt") {
    if (typeof text !== "string" || this.cleaner.isBlank(text))
      throw new em.EditError(`the ${what} is empty; describe the edit, e.g. 'a face with purple hair'`);
    return text;
  }

  async checkLength(text, what) {
    const tokenizer = await this.tokenizer();
    const room = tokenizer.contextLength - 2, n = tokenizer.encode(text).length;
    if (n > room - 8) throw new em.EditError(`the ${what} is too long (${n} tokens); keep it under ${room - 8} tokens`);
  }

  /** Unit CLIP text embeddings [texts.length, D] in one graph call (padding cut where the length is dynamic). */
  async encodeText(texts) {
    let rows = (await this.tokenizer()).tokenize(texts);
    if (this.manifest.graphs.text_encoder.input.shape[1] === "length") {
      let used = 1; // trim_padding: keep up to the batch's last non-padding column (at least 2)
      for (const row of rows) for (let j = used; j < row.length; j++) if (row[j] !== 0) used = j;
      rows = rows.map((row) => row.slice(0, Math.max(2, used + 1)));
    }
    const len = rows[0].length, ids = new BigInt64Array(rows.length * len);
    rows.forEach((row, i) => row.forEach((id, j) => (ids[i * len + j] = BigInt(id))));
    return this.run("text_encoder", ids, [rows.length, len], "int64");
  }

  async memo(key, compute) {
    if (!this.cache.has(key)) this.cache.set(key, compute().catch((err) => { this.cache.delete(key); throw err; }));
    return this.cache.get(key);
  }

  /** dt [D] over the templates (both texts' prompts in one call); cached per (target, neutral). The tuned
   * prompts' come with the site; any other needs the text encoder. */
  async textDirection(target, neutral) {
    this.checkPrompt(target, "target text");
    this.checkPrompt(neutral, "neutral text");
    const templates = this.manifest.templates;
    return this.memo(JSON.stringify(["dt", target, neutral]), async () => {
      if (!this.hasTextEncoder) {
        const tuned = this.manifest.tables.text_directions?.keys.map(([t, n]) => `'${t}' from '${n}'`).join(", ");
        throw new em.EditError(`this site has no text encoder (built with --without text_encoder): it edits only the ` +
          `bundle's tuned prompts with their neutral texts (${tuned || "none"}) and its mappers`);
      }
      await this.checkLength(target, "target text");
      await this.checkLength(neutral, "neutral text");
      const emb = await this.encodeText([...em.templatePrompts(target, templates), ...em.templatePrompts(neutral, templates)]);
      return em.textDirection(emb, templates.length, emb.length / (2 * templates.length));
    });
  }

  /** {ds, beta, kept} of a global-direction edit (beta null = auto); cached. */
  async globalDirection(edit) {
    if (!this.hasGlobalDirections)
      throw new SiteError("this bundle has no global-direction tables (fs3, S std); export it with --fs3/--s-stats");
    return this.memo(JSON.stringify(["ds", edit.target, edit.neutral, edit.beta, edit.minChannels]), async () => {
      const fs3 = this.tables.get("fs3"), std = this.tables.get("s_std").data;
      const r = em.relevance(fs3.data, fs3.shape[0], fs3.shape[1], await this.textDirection(edit.target, edit.neutral));
      const beta = edit.beta === null ? em.autoBeta(r, edit.minChannels) : edit.beta;
      const ds = em.styleDirection(r, beta, std, this.conv, this.total, this.math.beta_range);
      return { ds, beta, kept: ds.reduce((k, x) => k + (x !== 0), 0) };
    });
  }

  // --- edits ---------------------------------------------------------------------------------------
  tunedSettings(prompt) {
    return { ...(this.manifest.edit_settings[this.promptKey(prompt)] || {}) };
  }

  /** A global edit of `target`: each setting given, else the bundle's tuned one, else the default. Without a
   * text encoder a tuned prompt typed in another case or spacing is taken as the tuned prompt itself. */
  globalEdit(target, given = {}) {
    const tuned = this.tunedSettings(target);
    const pick = (k, fallback) => (k in given ? given[k] : k in tuned ? tuned[k] : fallback);
    this.checkPrompt(target, "target text");
    if (!this.hasTextEncoder && this.promptKey(target) in this.manifest.edit_settings) target = this.promptKey(target);
    return { kind: "global", target, neutral: pick("neutral", "a face"),
      alpha: pick("alpha", this.math.alpha), beta: pick("beta", this.math.beta), minChannels: given.minChannels ?? 10 };
  }

  mapperFor(prompt) {
    const strip = (t) => this.cleaner.strip(t).toLowerCase(), key = strip(prompt);
    for (const [name, info] of Object.entries(this.manifest.mappers))
      if (key === name || key === strip(info.prompt)) return name;
    const known = Object.entries(this.manifest.mappers).map(([n, i]) => `${n} ('${i.prompt}')`).join(", ") || "none";
    throw new em.EditError(`no mapper is named or was trained for '${prompt}'; this bundle has: ${known}`);
  }

  mapperEdit(prompt, strength = null) {
    const name = this.mapperFor(prompt);
    strength ??= this.tunedSettings(this.manifest.mappers[name].prompt).strength ?? this.math.strength;
    return { kind: "mapper", name, strength };
  }

  /** The mapper's own output for W+ (strength 1); scale it with editmath.scaleOffset. */
  async mapped(wplus, n, name) {
    return this.run(this.manifest.mappers[name].graph, wplus, [n, this.nLatent, this.styleDim]);
  }

  async applyMapper(wplus, n, edit, mapped = null) {
    em.checkRange("mapper strength", edit.strength, this.math.strength_range);
    return em.scaleOffset(wplus, mapped ?? (await this.mapped(wplus, n, edit.name)), edit.strength);
  }

  /** Flat S after the edits: mapper edits in W+ (in order), then global directions summed in S. */
  async editStyles(wplus, n, edits) {
    const directions = [], alphas = [];
    for (const e of edits) {
      if (e.kind === "mapper") wplus = await this.applyMapper(wplus, n, e);
      else {
        directions.push((await this.globalDirection(e)).ds);
        alphas.push(e.alpha);
      }
    }
    return em.applyEdits(await this.styles(wplus, n), this.total, directions, alphas, this.math.alpha_range);
  }
}
