// The page: controls -> WebEditor -> canvases. Every error a user can cause (or a tampered file)
// ends up as a message on the page, never as an uncaught exception.

import { applyEdits, EditError, scaleOffset } from "./editmath.js";
import { WebEditor } from "./editor.js";
import { hasEncoder, invertImage } from "./invert.js";
import { Site, SiteError } from "./site.js";

const $ = (id) => document.getElementById(id);
// What tests and benchmarks read: readiness, per-edit timings (ms) and when the first edit was drawn.
const probe = (window.styleclip = {
  ready: false, busy: false, backend: null, threads: 1, timings: [], firstEditAt: null, errors: [], marks: {} });
const mark = (name) => (probe.marks[name] = performance.now()); // ms since navigation start
const state = { editor: null, faces: null, running: false, again: false };

function showMessage(text) {
  $("message").textContent = text;
  $("message").hidden = false;
}

function clearMessage() {
  $("message").hidden = true;
  $("message").textContent = "";
}

function setStatus(stateName, text) {
  $("status").dataset.state = stateName;
  $("status").textContent = text;
}

function report(err) {
  const known = err instanceof EditError || err instanceof SiteError;
  const text = known ? err.message : `unexpected error: ${err?.message ?? err}`;
  probe.errors.push(text);
  showMessage(text);
  setStatus("error", "Stopped: see the message above.");
}

window.addEventListener("unhandledrejection", (ev) => { ev.preventDefault(); report(ev.reason); });

// --- backend ---------------------------------------------------------------------------------------
async function chooseBackend() {
  const want = new URLSearchParams(location.search).get("ep");
  if (want !== "wasm" && navigator.gpu) {
    try {
      if (await navigator.gpu.requestAdapter()) return "webgpu";
    } catch { /* no adapter: WebAssembly */ }
  }
  return "wasm";
}

async function loadOrt(site, backend) {
  const { module, wasm } = site.manifest.ort[backend];
  const [ort, binary] = await Promise.all([import(new URL(`../${module}`, import.meta.url).href), site.bytes(wasm)]);
  ort.env.wasm.wasmBinary = binary; // checked against its sha256 above; onnxruntime-web then fetches nothing
  // onnxruntime-web's default: half the cores, at most 4 (the page's own work needs one), and threads only
  // where the server sends cross-origin isolation headers (`cli.py web --serve` does); ?threads=N overrides.
  const asked = Number(new URLSearchParams(location.search).get("threads"));
  const cores = navigator.hardwareConcurrency || 1;
  ort.env.wasm.numThreads = self.crossOriginIsolated ? Math.min(asked || Math.min(4, Math.ceil(cores / 2)), cores) : 1;
  probe.threads = ort.env.wasm.numThreads;
  return ort;
}

// --- controls --------------------------------------------------------------------------------------
const method = () => document.querySelector("input[name=method]:checked").value;

function bindSlider(id, [lo, hi], value) {
  const el = $(id);
  el.min = lo;
  el.max = hi;
  el.value = value;
  const show = () => ($(`${id}-value`).textContent = Number(el.value).toFixed(el.step < 0.1 ? 2 : 1));
  el.addEventListener("input", show);
  show();
}

function setSlider(id, value) {
  $(id).value = value;
  $(id).dispatchEvent(new Event("input"));
}

/** The controls show what `cli.py edit` would use: the bundle's tuned settings for a prompt, else defaults. */
function applyTuned(editor) {
  const prompt = $("prompt").value;
  const tuned = editor.tunedSettings(prompt), math = editor.math;
  if (!Object.keys(tuned).length) return;
  $("neutral").value = tuned.neutral ?? "a face";
  setSlider("alpha", tuned.alpha ?? math.alpha);
  setSlider("beta", tuned.beta ?? math.beta);
  $("auto-beta").checked = false;
  try {
    const name = editor.mapperFor(prompt);
    $("mapper").value = name;
    setSlider("strength", tuned.strength ?? math.strength);
  } catch { /* no mapper for this prompt */ }
}

function setupControls(editor) {
  const m = editor.manifest, math = editor.math;
  bindSlider("alpha", math.alpha_range, math.alpha);
  bindSlider("beta", math.beta_range, math.beta);
  bindSlider("strength", math.strength_range, math.strength);
  bindSlider("truncation", math.truncation_range, m.defaults.truncation);
  $("neutral").value = "a face";
  for (const prompt of Object.keys(m.edit_settings)) $("prompts").append(new Option(prompt));
  for (const name of editor.mappers) $("mapper").append(new Option(m.mappers[name].prompt, name));
  const params = new URLSearchParams(location.search); // ?prompt=...&seeds=... start with those
  $("prompt").value = params.get("prompt") ?? Object.keys(m.edit_settings)[0] ?? "a face with purple hair";
  if (params.get("seeds")) $("seeds").value = params.get("seeds");
  const radios = document.querySelectorAll("input[name=method]");
  const showMethod = () => {
    $("global-controls").hidden = method() !== "global";
    $("mapper-controls").hidden = method() !== "mapper";
  };
  radios.forEach((r) => r.addEventListener("change", showMethod));
  if (!editor.hasGlobalDirections) document.querySelector("input[value=mapper]").checked = true;
  if (!editor.mappers.length) document.querySelector("input[value=mapper]").disabled = true;
  showMethod();
  applyTuned(editor);
  $("prompt").addEventListener("input", () => applyTuned(editor));
  $("mapper").addEventListener("change", () => {
    const tuned = editor.tunedSettings(m.mappers[$("mapper").value].prompt);
    setSlider("strength", tuned.strength ?? math.strength);
  });
  $("controls").addEventListener("submit", (ev) => { ev.preventDefault(); edit(); });
  // sliders re-edit at once: the text direction, styles and mapper outputs are cached
  for (const id of ["alpha", "beta", "strength", "auto-beta", "min-channels"])
    $(id).addEventListener(id === "min-channels" ? "change" : "input", () => state.faces && edit({ live: true }));
  $("truncation").addEventListener("change", () => { state.faces = null; edit(); });
  $("seeds").addEventListener("change", () => (state.faces = null));
  if (hasEncoder(editor)) setupDrop(editor);
  $("edit").disabled = false;
}

function setupDrop(editor) {
  const drop = $("drop"), file = $("file");
  drop.hidden = false;
  const invert = async (f) => {
    if (!f) return;
    try {
      clearMessage();
      setStatus("busy", `Inverting ${f.name}…`);
      state.faces = { key: `image:${f.name}:${f.lastModified}`, labels: [f.name], wplus: await invertImage(editor, f), n: 1 };
      await edit();
    } catch (err) {
      report(err);
    }
  };
  drop.addEventListener("click", () => file.click());
  drop.addEventListener("keydown", (ev) => (ev.key === "Enter" || ev.key === " ") && file.click());
  file.addEventListener("change", () => invert(file.files[0]));
  drop.addEventListener("dragover", (ev) => { ev.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (ev) => { ev.preventDefault(); drop.classList.remove("over"); invert(ev.dataTransfer.files[0]); });
}

function parseSeeds(text) {
  const parts = text.split(",").map((s) => s.trim()).filter(Boolean);
  if (!parts.length || parts.some((s) => !/^[0-9]+$/.test(s)))
    throw new EditError(`seeds must be non-negative integers separated by commas, e.g. 1,2,3; got '${text}'`);
  if (parts.length > 16) throw new EditError(`at most 16 seeds at a time, got ${parts.length}`);
  return parts;
}

// --- faces and edits ---------------------------------------------------------------------------------
function draw(canvas, rgba, size) {
  canvas.width = size;
  canvas.height = size;
  canvas.getContext("2d").putImageData(new ImageData(rgba, size, size), 0, 0);
}

async function currentFaces(editor) {
  let faces = state.faces;
  if (!faces || faces.key.startsWith("seeds:")) {
    const seeds = parseSeeds($("seeds").value), psi = Number($("truncation").value);
    const key = `seeds:${seeds.join(",")}:${psi}`;
    if (!faces || faces.key !== key)
      faces = { key, labels: seeds.map((s) => `seed ${s}`), seeds, wplus: await editor.sample(seeds, psi), n: seeds.length };
  }
  if (!faces.s) {
    faces.s = await editor.styles(faces.wplus, faces.n);
    faces.original = await editor.render(faces.s, faces.n);
    faces.mapped = new Map();
    const results = $("results");
    results.replaceChildren();
    faces.labels.forEach((label, i) => {
      const fig = document.createElement("figure");
      fig.className = "face";
      fig.dataset.index = i;
      fig.innerHTML = `<figcaption>${label.replace(/[&<>]/g, "")}</figcaption><div class="pair">` +
        `<div><canvas class="original"></canvas>original</div><div><canvas class="edited"></canvas>edited</div></div>`;
      draw(fig.querySelector(".original"), faces.original.rgba[i], faces.original.size);
      results.append(fig);
    });
  }
  state.faces = faces;
  return faces;
}

function currentEdit(editor) {
  if (method() === "mapper") return editor.mapperEdit($("mapper").value, Number($("strength").value));
  const auto = $("auto-beta").checked;
  return editor.globalEdit($("prompt").value, {
    neutral: $("neutral").value, alpha: Number($("alpha").value), beta: auto ? null : Number($("beta").value),
    minChannels: Number($("min-channels").value),
  });
}

/** Edit the current faces with the controls' settings; calls while one runs coalesce into one rerun. */
async function edit({ live = false } = {}) {
  if (state.running) { state.again = true; return; }
  state.running = probe.busy = true;
  try {
    do {
      state.again = false;
      await editOnce(live);
    } while (state.again);
  } catch (err) {
    report(err);
  } finally {
    state.running = probe.busy = false;
  }
}

async function editOnce(live) {
  const editor = state.editor, t0 = performance.now();
  clearMessage();
  if (!live) setStatus("busy", "Editing…");
  const first = probe.firstEditAt === null, step = (name) => first && mark(`first edit: ${name}`);
  const faces = await currentFaces(editor);
  step("faces");
  const e = currentEdit(editor);
  let s, detail, textCached = false;
  if (e.kind === "global") {
    textCached = editor.cache.has(JSON.stringify(["dt", e.target, e.neutral]));
    const dir = await editor.globalDirection(e);
    step("direction");
    s = applyEdits(faces.s, editor.total, [dir.ds], [e.alpha], editor.math.alpha_range);
    detail = `'${e.target}' from '${e.neutral}', α ${e.alpha}, β ${e.beta === null ? `auto (${dir.beta.toFixed(3)})` : e.beta}, ${dir.kept} channels`;
  } else {
    if (!faces.mapped.has(e.name)) faces.mapped.set(e.name, await editor.mapped(faces.wplus, faces.n, e.name));
    const w = await editor.applyMapper(faces.wplus, faces.n, e, faces.mapped.get(e.name));
    s = await editor.styles(w, faces.n);
    detail = `mapper '${editor.manifest.mappers[e.name].prompt}', strength ${e.strength}`;
  }
  const { rgba, size } = await editor.render(s, faces.n);
  document.querySelectorAll("#results figure").forEach((fig, i) => draw(fig.querySelector(".edited"), rgba[i], size));
  const ms = performance.now() - t0;
  probe.timings.push({ kind: e.kind, live, textCached, faces: faces.n, ms });
  probe.firstEditAt ??= performance.now();
  setStatus("done", `Edited ${faces.n} face${faces.n > 1 ? "s" : ""} in ${ms.toFixed(0)} ms: ${detail}.`);
}

async function main() {
  try {
    const site = await Site.open(new URL("./", location.href), document.querySelector("meta[name=site-sha256]").content);
    mark("site");
    setStatus("loading", "Checking and loading the models…");
    const ortReady = (async () => {
      const backend = await chooseBackend();
      probe.backend = backend;
      mark("backend");
      const ort = await loadOrt(site, backend);
      mark("onnxruntime");
      $("backend").textContent = `${backend === "webgpu" ? "WebGPU" : "WebAssembly"}${probe.threads > 1 ? `, ${probe.threads} threads` : ""}`;
      return { ort, backend };
    })();
    let loaded = 0;
    state.editor = await WebEditor.open(site, ortReady, (what) => {
      mark(what);
      if (!probe.ready) setStatus("loading", `Loaded ${++loaded}: ${what}…`);
      else if (what.startsWith("fetching")) setStatus("busy", `First use: ${what}…`); // the graphs fetched on first use
    });
    mark("models");
    setupControls(state.editor);
    probe.ready = true;
    await edit(); // the first edit: the bundle's first tuned prompt on the default seeds
  } catch (err) {
    report(err);
  }
}

main();
