// Drives the site in headless chromium (playwright-core + the system's chromium, no browser download)
// the way a person would: type a prompt, set the sliders, press Edit, then read the canvases.
// Job (JSON on stdin):
//   {"url": "http://127.0.0.1:PORT/", "chromium": "/usr/bin/chromium", "screenshot": PNG or null,
//    "cases": [{"seeds": "1,2", "method": "global"|"mapper", "prompt": ..., "neutral": ..., "alpha": ...,
//               "beta": number|"auto", "min_channels": ..., "mapper": NAME, "strength": ...,
//               "image": PNG to invert (instead of seeds)}, ...],
//    "screenshot_after": case index, "bad_prompts": ["", ...], "loads": N,
//    "live": [{"seeds": "1", "alphas": [1.0, 2.0, ...]}, ...]}
// Prints JSON: load timings and the files fetched by the first edit (1 s after it is drawn: path and body
// bytes), per case the RGBA pixels (base64) of every face before/after and the files it fetched, the messages
// shown for the bad prompts, the live-edit timings and every console error or page exception.
import { readFileSync } from "node:fs";
import { chromium } from "playwright-core";

const job = JSON.parse(readFileSync(0, "utf8"));
const result = { console_errors: [], page_errors: [], cases: [], bad_prompts: [], live: [], loads: [] };
const browser = await chromium.launch({ executablePath: job.chromium, headless: true, args: ["--no-sandbox"] });
let fetched = []; // this page's finished requests so far
const settle = async (ms) => {
  await page.waitForTimeout(ms); // requestfinished handlers read the body sizes asynchronously
  return fetched.slice();
};
let page;
try {
  for (let k = 0; k < (job.loads || 1); k++) { // each load in a fresh context: nothing cached
    if (page) await page.context().close();
    page = await (await browser.newContext({ viewport: { width: 1000, height: 900 } })).newPage();
    fetched = [];
    page.on("requestfinished", async (req) => {
      const sizes = await req.sizes().catch(() => null);
      fetched.push({ path: new URL(req.url()).pathname, bytes: sizes ? sizes.responseBodySize : null });
    });
    page.on("console", (msg) => msg.type() === "error" && result.console_errors.push(msg.text()));
    page.on("pageerror", (err) => result.page_errors.push(String(err)));
    await page.goto(job.url);
    await page.waitForFunction(() => (window.styleclip && (window.styleclip.firstEditAt !== null || window.styleclip.errors.length))
      || document.getElementById("status")?.dataset.state === "error", null, { timeout: 120000 });
    result.load = await page.evaluate(() => ({
      first_edit_ms: window.styleclip?.firstEditAt ?? null, marks: window.styleclip?.marks, backend: window.styleclip?.backend,
      threads: window.styleclip?.threads, errors: window.styleclip?.errors ?? null, started: Boolean(window.styleclip),
      message: document.getElementById("message").textContent, status: document.getElementById("status").textContent,
      isolated: self.crossOriginIsolated,
    }));
    result.load.requests = await settle(1000);
    result.loads.push(result.load);
  }

  const setValue = (sel, v) => page.locator(sel).evaluate((el, value) => {
    if (el.type === "checkbox") el.checked = value; else el.value = value;
    el.dispatchEvent(new Event(el.type === "checkbox" || el.type === "range" ? "input" : "change", { bubbles: true }));
  }, v);
  const idle = () => page.waitForFunction(() => !window.styleclip.busy, null, { timeout: 120000 });
  const pressEdit = async () => {
    await idle();
    const before = await page.evaluate(() => [window.styleclip.timings.length, window.styleclip.errors.length]);
    await page.click("#edit", { timeout: 120000 }); // at 1024 px an edit runs for seconds on the page's thread
    await page.waitForFunction(([t, e]) => !window.styleclip.busy &&
      (window.styleclip.timings.length > t || window.styleclip.errors.length > e), before, { timeout: 120000 });
  };
  const pixels = () => page.evaluate(() => Array.from(document.querySelectorAll("#results figure"), (fig) => {
    const read = (c) => {
      const data = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
      let bin = "";
      for (let i = 0; i < data.length; i += 0x8000) bin += String.fromCharCode(...data.subarray(i, i + 0x8000));
      return btoa(bin);
    };
    const [orig, edited] = fig.querySelectorAll("canvas");
    return { size: orig.width, original: read(orig), edited: read(edited) };
  }));

  const waitForEdit = async (before, action) => {
    await action();
    await page.waitForFunction(([t, e]) => !window.styleclip.busy &&
      (window.styleclip.timings.length > t || window.styleclip.errors.length > e), before, { timeout: 120000 });
  };
  for (const c of job.cases || []) {
    await idle();
    const seen = (await settle(100)).length;
    if (!c.image) {
      await page.fill("#seeds", c.seeds);
      await page.locator("#seeds").dispatchEvent("change");
    }
    await page.check(`input[name=method][value=${c.method}]`);
    if (c.method === "global") {
      await page.fill("#prompt", c.prompt); // typing a tuned prompt fills in its tuned settings
      if (c.neutral !== undefined) await page.fill("#neutral", c.neutral);
      if (c.alpha !== undefined) await setValue("#alpha", String(c.alpha));
      if (c.beta === "auto") {
        await setValue("#auto-beta", true);
        if (c.min_channels !== undefined) await setValue("#min-channels", String(c.min_channels));
      } else if (c.beta !== undefined) {
        await setValue("#auto-beta", false);
        await setValue("#beta", String(c.beta));
      }
    } else {
      await page.selectOption("#mapper", c.mapper);
      if (c.strength !== undefined) await setValue("#strength", String(c.strength));
    }
    if (c.image) { // as dropping a picture on the page: invert, then edit with the controls' settings
      await idle();
      const before = await page.evaluate(() => [window.styleclip.timings.length, window.styleclip.errors.length]);
      await waitForEdit(before, () => page.setInputFiles("#file", c.image));
    } else {
      await pressEdit();
    }
    const shown = await page.evaluate(() => ({ status: document.getElementById("status").textContent,
      message: document.getElementById("message").hidden ? null : document.getElementById("message").textContent }));
    result.cases.push({ ...shown, faces: await pixels(), requests: (await settle(200)).slice(seen) });
    if (job.screenshot && result.cases.length - 1 === (job.screenshot_after ?? 0))
      await page.screenshot({ path: job.screenshot, fullPage: true });
  }
  if (job.screenshot && !(job.cases || []).length) await page.screenshot({ path: job.screenshot, fullPage: true });

  for (const run of job.live || []) { // α slider moves on these seeds, the text direction cached
    await idle();
    await page.check("input[name=method][value=global]");
    await page.fill("#seeds", run.seeds);
    await page.locator("#seeds").dispatchEvent("change");
    await pressEdit();
    const start = await page.evaluate(() => window.styleclip.timings.length);
    for (const alpha of run.alphas) {
      await idle();
      const n = await page.evaluate(() => window.styleclip.timings.length);
      await setValue("#alpha", String(alpha));
      await page.waitForFunction((k) => !window.styleclip.busy && window.styleclip.timings.length > k, n, { timeout: 60000 });
    }
    result.live.push({ seeds: run.seeds, timings: await page.evaluate((k) => window.styleclip.timings.slice(k), start) });
  }

  for (const prompt of job.bad_prompts || []) {
    await idle();
    await page.check("input[name=method][value=global]");
    await page.fill("#prompt", prompt);
    await pressEdit();
    result.bad_prompts.push(await page.evaluate(() => ({
      hidden: document.getElementById("message").hidden, message: document.getElementById("message").textContent,
      state: document.getElementById("status").dataset.state })));
  }
} finally {
  await browser.close();
}
process.stdout.write(JSON.stringify(result));
