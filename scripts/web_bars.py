"""The web page's bars (issue 18) on a bundle, measured in headless chromium (WebAssembly backend).

    python scripts/web_bars.py [--bundle artifacts/bundles/demo] [--loads 5] [--moves 30] [--threads N]
                               [--without encoder,text_encoder] [--weights auto|fp32|fp16] [--seeds 1,2,3]

Builds the site (`cli.py web`), serves it on 127.0.0.1 and drives Debian's chromium with playwright-core
(web/test/drive.mjs): each page load in a fresh browser context (nothing cached) until the page's first
edit is drawn (3 faces, seeds 1,2,3, or --seeds: `--seeds 1` at 1024 px, where a face takes seconds): with the bundle's first tuned prompt (its text direction comes in
the site, computed by `cli.py web`) and with a new prompt (`?prompt=`: the page's tokenizer and text
encoder run first). Then α-slider moves with the text direction cached on 1 and on 3 faces (from the
slider's input event to the edited canvases drawn). Reports medians, the load's stages, the bytes the
browser fetched before (and 1 s after) the first edit and the site's size; exit status 1 if a bar is missed.
The timing bars are the demo world's (64 px); the first-visit bar is 25 MB there and 150 MB at 1024 px
(issue 26). Needs `npm ci --prefix web` and chromium (`make web-deps`).
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
BARS = {"first_edit_s": (3.0, "<="), "cached_gd_edit_ms_1_face": (50.0, "<=")}  # the demo world's
FIRST_VISIT_MB = {64: 25.0, 1024: 150.0}  # generator size -> first-visit bar
NEW_PROMPT = "a face with red hair"


def drive(job: dict) -> dict:
    res = subprocess.run(["node", str(ROOT / "web" / "test" / "drive.mjs")], input=json.dumps(job),
                         capture_output=True, text=True, timeout=1200, cwd=ROOT)
    if res.returncode:
        sys.exit(f"error: the browser run failed:\n{res.stderr[-3000:]}")
    out = json.loads(res.stdout)
    if out["page_errors"] or any(load["errors"] for load in out["loads"]):
        sys.exit(f"error: the page reported errors: {out['page_errors']} {[l['errors'] for l in out['loads']]}")
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", default=str(ROOT / "artifacts" / "bundles" / "demo"))
    ap.add_argument("--loads", type=int, default=5, help="page loads (fresh contexts) for the first-edit time")
    ap.add_argument("--moves", type=int, default=30, help="α slider moves per face count")
    ap.add_argument("--threads", type=int, help="WebAssembly threads the page may use [the page's choice: up to 4]")
    ap.add_argument("--without", default="", help="`cli.py web --without`: parts the site leaves out")
    ap.add_argument("--weights", default="auto", help="`cli.py web --weights`: auto, fp32 or fp16")
    ap.add_argument("--seeds", default="1,2,3", help="the faces of the first edit and of the slider moves (and seed 1 alone)")
    args = ap.parse_args()

    from runtime.bundle import read_manifest
    from runtime.web_site import build_site, make_server, site_size

    px = read_manifest(args.bundle)["generator"].get("size")

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if not chromium or not shutil.which("node"):
        sys.exit("error: needs node and chromium; run `make web-deps`")
    with tempfile.TemporaryDirectory() as tmp:
        site = Path(tmp) / "site"
        build_site(args.bundle, site, without=args.without.split(","), weights=args.weights)
        size = site_size(site)
        server = make_server(site, 0)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        alphas = [round(-4 + 8 * k / max(1, args.moves - 1), 1) for k in range(args.moves)]
        url = (f"http://127.0.0.1:{server.server_address[1]}/?ep=wasm&seeds={args.seeds}"
               + (f"&threads={args.threads}" if args.threads else ""))
        try:
            out = drive({"url": url, "chromium": chromium, "loads": args.loads,
                         "live": [{"seeds": s, "alphas": alphas} for s in dict.fromkeys(["1", args.seeds])]})
            new = None if "text_encoder" in args.without else drive(  # a site without it edits tuned prompts only
                {"url": url + "&prompt=" + NEW_PROMPT.replace(" ", "%20"), "chromium": chromium, "loads": args.loads})
        finally:
            server.shutdown()
            server.server_close()
    loads = out["loads"]
    live = {run["seeds"]: [t["ms"] for t in run["timings"] if t["live"] and t["textCached"]] for run in out["live"]}
    fetched = [sum(r["bytes"] for r in load["requests"]) / 1e6 for load in loads]
    figures = {
        "first_visit_mb": statistics.median(fetched),
        "first_edit_s": statistics.median(load["first_edit_ms"] / 1000 for load in loads),
        "first_edit_new_prompt_s": statistics.median(load["first_edit_ms"] / 1000 for load in new["loads"]) if new else None,
        "cached_gd_edit_ms_1_face": statistics.median(live["1"]),
        f"cached_gd_edit_ms_{len(args.seeds.split(','))}_faces": statistics.median(live[args.seeds]),
    }
    print(f"backend {loads[0]['backend']}, {loads[0]['threads']} threads (cross-origin isolated: {loads[0]['isolated']})")
    for what, runs in (("tuned prompt", loads), *([(f"new prompt {NEW_PROMPT!r}", new["loads"])] if new else [])):
        first = [load["first_edit_ms"] / 1000 for load in runs]
        stages = {k: statistics.median(load["marks"].get(k, 0) for load in runs) / 1000 for k in runs[0]["marks"]}
        print(f"first edit drawn after page load, {what}: median {statistics.median(first):.2f} s over {len(first)} loads "
              f"(min {min(first):.2f}, max {max(first):.2f}); stages (median, s since navigation): "
              + ", ".join(f"{k} {v:.2f}" for k, v in sorted(stages.items(), key=lambda kv: kv[1])))
    for seeds, ms in live.items():
        print(f"GD edit, text direction cached, {len(seeds.split(','))} face(s): median {statistics.median(ms):.1f} ms "
              f"(min {min(ms):.1f}, max {max(ms):.1f}, n {len(ms)})")
    print(f"first visit, fetched by the browser until 1 s after the first edit ({loads[0]['backend']}): median "
          f"{statistics.median(fetched):.1f} MB over {len(fetched)} loads (min {min(fetched):.1f}, max {max(fetched):.1f}), "
          f"{len(loads[0]['requests'])} files; the largest: " + ", ".join(
              f"{r['path']} {r['bytes'] / 1e6:.1f} MB" for r in sorted(loads[0]["requests"], key=lambda r: -r["bytes"])[:4]))
    print(f"site: {size['total'] / 1e6:.1f} MB on disk; the first visit downloads "
          + ", ".join(f"{b} {v / 1e6:.1f} MB" for b, v in size["first_visit"].items()) + "; a visit using every graph "
          + ", ".join(f"{b} {v / 1e6:.1f} MB" for b, v in size["per_visit"].items()))
    bars = {"first_visit_mb": (FIRST_VISIT_MB.get(px, FIRST_VISIT_MB[1024]), "<="), **(BARS if px == 64 else {})}
    missed = [k for k, (bar, op) in bars.items() if not (figures[k] <= bar if op == "<=" else figures[k] >= bar)]
    for k, (bar, op) in bars.items():
        print(f"  {k}: {figures[k]:.3g} (bar {op} {bar}) {'MISSED' if k in missed else 'ok'}")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
