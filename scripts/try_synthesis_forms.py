"""Which form of the synthesis graph does onnxruntime run fastest? (docs/benchmarks.md, issue 17)

Exports one random-weight generator's synthesis (S -> image) in several forms and times them in
onnxruntime interleaved, batch 1, with the runtime's session options (arena on, no memory pattern):

  plain              the generator exported as it is (ConvTranspose, ToRGB as Mul + 1x1 Conv)
  plain, no arena    the same with the previous round's session options (arena off)
  transposed         the export-time rewrite keeping ConvTranspose (what --openvino writes)
  phases+d2s         the rewrite with the phases interleaved by DepthToSpace (DCR)
  phases+stack       ... by stacking along a new last axis, then along rows (two Concats)
  rewrite            the shipped rewrite: phases stacked behind the channels + Col2Im

and prints each form's PSNR against PyTorch, median wall time (p10-p90) and, with --profile,
onnxruntime's kernel time per op type.

    python scripts/try_synthesis_forms.py                         # FFHQ-1024 config-f (~3 GB RAM, minutes)
    python scripts/try_synthesis_forms.py --top-layers --profile  # FFHQ's 256-1024 px layers, 128 ch below
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from export import synthesis_graph as sg  # noqa: E402
from export.bench import format_profile, ort_profile  # noqa: E402
from export.converters import export_onnx  # noqa: E402
from export.graphs import GraphSpec, _Call  # noqa: E402
from precompute.stylegan2 import Generator, GeneratorConfig  # noqa: E402


def d2s_interleave(phases):
    x = torch.cat(phases, 1)
    b, c4, h, w = x.shape
    if torch.onnx.is_in_onnx_export():
        return torch.onnx.ops.symbolic("DepthToSpace", (x,), {"blocksize": 2, "mode": "DCR"}, dtype=x.dtype,
                                       shape=(b, c4 // 4, 2 * h, 2 * w), version=13)
    return x.reshape(b, 2, 2, c4 // 4, h, w).permute(0, 3, 4, 1, 5, 2).reshape(b, c4 // 4, 2 * h, 2 * w)


def stack_interleave(phases):
    rows = [torch.stack(phases[2 * r: 2 * r + 2], -1).flatten(-2) for r in (0, 1)]
    return torch.stack(rows, -2).flatten(-3, -2)


def export_forms(gen: Generator, example: np.ndarray, folder: Path) -> dict[str, Path]:
    forms = {"plain": (_Call(gen, "synthesis_flat"), None), "transposed": (sg.ExportSynthesis(gen, upsample="transposed"), None),
             "phases+d2s": (sg.ExportSynthesis(gen), d2s_interleave), "phases+stack": (sg.ExportSynthesis(gen), stack_interleave),
             "rewrite": (sg.ExportSynthesis(gen), None)}
    paths, shipped = {}, sg.interleave
    for name, (module, interleave) in forms.items():
        sg.interleave = interleave or shipped
        try:
            paths[name] = folder / f"{name.replace('+', '_')}.onnx"
            export_onnx(GraphSpec(name, module, "styles", "image", "image", None), example, paths[name])
        finally:
            sg.interleave = shipped
        print(f"exported {name}", flush=True)
    return paths


def session_options(threads: int, arena: bool = True):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads, options.log_severity_level = threads, 3
    options.enable_cpu_mem_arena, options.enable_mem_pattern = arena, False
    return options


def main() -> None:
    import onnxruntime as ort

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--top-layers", action="store_true", help="FFHQ's channels from 256 px up, 128 below (faster).")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=8)
    ap.add_argument("--profile", action="store_true")
    args = ap.parse_args()
    torch.manual_seed(0)
    config = GeneratorConfig.rosinality(1024, 512, 8, 2)
    if args.top_layers:
        config = GeneratorConfig(1024, 512, 2, {**{r: 128 for r in (4, 8, 16, 32, 64, 128, 256)}, 512: 64, 1024: 32})
    gen = Generator(config).eval()
    with torch.no_grad():
        s = torch.cat(gen.styles(gen.wplus_from_z(torch.randn(2, config.style_dim), 0.7)), 1).numpy()
        ref = gen.synthesis_flat(torch.from_numpy(s[:1])).numpy()
    with tempfile.TemporaryDirectory() as tmp:
        paths = export_forms(gen, s, Path(tmp))
        runs = {name: (path, True) for name, path in paths.items()}
        runs = {"plain, no arena": (paths["plain"], False), **runs}
        sessions = {k: ort.InferenceSession(str(p), session_options(args.threads, arena), providers=["CPUExecutionProvider"])
                    for k, (p, arena) in runs.items()}
        x = {"styles": s[:1]}
        times = {k: [] for k in sessions}
        for k, sess in sessions.items():
            out = sess.run(None, x)[0]
            print(f"{k:16s} PSNR vs PyTorch {10 * np.log10(4 / np.mean((out.astype(np.float64) - ref) ** 2)):.1f} dB")
        for r in range(args.repeats):
            for k in (list(sessions) if r % 2 == 0 else list(sessions)[::-1]):
                time.sleep(0.01)
                t0 = time.perf_counter()
                sessions[k].run(None, x)
                times[k].append(time.perf_counter() - t0)
        print(f"\n{args.threads} thread(s), batch 1, {args.repeats} interleaved repeats:")
        for k, v in times.items():
            ms = np.asarray(v) * 1e3
            print(f"{k:16s} {np.median(ms):8.1f} ms  (p10 {np.percentile(ms, 10):.1f}, p90 {np.percentile(ms, 90):.1f})")
        if args.profile:
            for k, (p, arena) in runs.items():
                print(format_profile(k, 1, ort_profile(p, session_options(args.threads, arena), ["CPUExecutionProvider"], s[:1])))


if __name__ == "__main__":
    main()
