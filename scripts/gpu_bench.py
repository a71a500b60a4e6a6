"""The GPU table (issue 17): FFHQ-1024 global-direction edit latency in PyTorch on CUDA, eager vs TorchScript,
fp32 and fp16, for our generator and for its export-time rewrite (export/synthesis_graph.py).

Needs torch (and numpy) only, as the GPU machines have; weights are random (FFHQ config-f compute). One
edit = W+ -> styles -> s + alpha * ds (a cached global direction) -> synthesis -> uint8 image on the host.
Candidates run interleaved (alternating order) after warm-up, each call synchronised; medians and
p10-p90 in ms, images/s, and each candidate's PSNR against fp32 eager of our generator.

    python scripts/gpu_bench.py --device cuda --out build/gpu_bench.md           # the table
    python scripts/gpu_bench.py --device cpu --tiny --repeats 2                   # what the test suite runs

StyleCLIP reports 72 ms per global-direction edit on GPU; the goal here is <= 7 ms.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from export.synthesis_graph import ExportSynthesis  # noqa: E402
from precompute.stylegan2 import Generator, GeneratorConfig  # noqa: E402

TINY = GeneratorConfig(32, 64, 2, {4: 32, 8: 32, 16: 16, 32: 16})
ALPHA, CHANNELS = 4.1, 30  # a typical edit: alpha 4.1 on a few dozen style channels


class Edit(torch.nn.Module):
    """W+ -> edited image [B, H, W, 3] uint8 (on the device), Δs and alpha fixed: what a cached GD edit runs."""

    def __init__(self, gen: Generator, synthesis: torch.nn.Module, ds: torch.Tensor):
        super().__init__()
        self.affine = torch.nn.ModuleList(m.modulation for m in gen.modulated)
        self.rows = [layer.wplus_index for layer in gen.layout.layers]
        self.synthesis = synthesis
        self.register_buffer("ds", ds)

    def forward(self, wplus: torch.Tensor) -> torch.Tensor:
        s = torch.cat([a(wplus[:, r]) for a, r in zip(self.affine, self.rows)], 1) + ALPHA * self.ds
        image = self.synthesis(s.to(self.ds.dtype))
        return ((image.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1)


class _Flat(torch.nn.Module):
    def __init__(self, gen):
        super().__init__()
        self.gen = gen

    def forward(self, s):
        return self.gen.synthesis_flat(s)


def build(config: GeneratorConfig, device: str, seed: int = 0):
    torch.manual_seed(seed)
    gen = Generator(config).eval()
    gen.mean_latent(1024)
    ds = torch.zeros(gen.layout.total)
    conv = torch.from_numpy(gen.layout.conv_index())
    ds[conv[torch.randperm(len(conv))[:CHANNELS]]] = torch.randn(CHANNELS)
    return gen.to(device), ds.to(device)


def candidates(gen, ds, wplus, device):
    """name -> (callable, model family) for every form x precision x execution mode."""
    out = {}
    forms = {"generator": lambda g: _Flat(g), "rewrite": lambda g: ExportSynthesis(g)}
    for form, make in forms.items():
        for precision, dtype in (("fp32", torch.float32), ("fp16", torch.float16)):
            g = gen if dtype == torch.float32 else _half_copy(gen, device)
            edit = Edit(g, make(g).to(device), ds.to(dtype)).eval()  # styles in fp32 (as the runtime), synthesis in dtype
            w = wplus
            out[f"{form} eager {precision}"] = (lambda e=edit, w=w: e(w))
            with warnings.catch_warnings(), torch.inference_mode():
                warnings.simplefilter("ignore")  # torch.jit deprecation, tracer warnings on shape checks
                traced = torch.jit.freeze(torch.jit.trace(edit, (w,), check_trace=False))
            out[f"{form} torchscript {precision}"] = (lambda t=traced, w=w: t(w))
    return out


def _half_copy(gen, device):
    import copy

    g = copy.deepcopy(gen).to(device)
    g.half()
    for m in g.modulated:
        m.modulation.float()
    return g


def sync(device):
    if device == "cuda":
        torch.cuda.synchronize()


def time_all(cands: dict, device: str, repeats: int, warmup: int) -> dict[str, list[float]]:
    names = list(cands)
    with torch.inference_mode():
        for _ in range(warmup):
            for n in names:
                cands[n]()
        sync(device)
        times = {n: [] for n in names}
        for r in range(repeats):
            for n in (names if r % 2 == 0 else names[::-1]):
                sync(device)
                t0 = time.perf_counter()
                cands[n]().cpu()  # the image on the host, as an app receives it
                times[n].append(time.perf_counter() - t0)
    return times


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse))


def run(device: str, tiny: bool, batch: int, repeats: int, warmup: int) -> dict:
    if device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: torch sees no CUDA device here")
    torch.backends.cudnn.benchmark = True
    config = TINY if tiny else GeneratorConfig.rosinality(1024, 512, 8, 2)
    gen, ds = build(config, device)
    with torch.inference_mode():
        wplus = gen.wplus_from_z(torch.randn(batch, gen.config.style_dim, device=device), 0.7).contiguous()
        cands = candidates(gen, ds, wplus, device)
        images = {n: f().cpu().numpy() for n, f in cands.items()}
    times = time_all(cands, device, repeats, warmup)
    rows = []
    for name, t in times.items():
        form, mode, precision = name.split()
        ms = np.asarray(t) * 1e3
        rows.append({"candidate": name, "median_ms": float(np.median(ms)), "p10_ms": float(np.percentile(ms, 10)),
                     "p90_ms": float(np.percentile(ms, 90)), "images_per_s": batch / float(np.median(ms)) * 1e3,
                     "psnr_vs_fp32_eager": psnr(images["generator eager fp32"], images[name])})
    gpu = torch.cuda.get_device_name(0) if device == "cuda" else platform.processor() or platform.machine()
    return {"device": device, "gpu": gpu, "torch": torch.__version__, "size": config.size, "batch": batch,
            "repeats": repeats, "rows": rows}


def markdown(result: dict) -> str:
    lines = [f"GD edit (cached direction) on {result['gpu']} ({result['device']}), generator {result['size']} px, "
             f"batch {result['batch']}, torch {result['torch']}, {result['repeats']} interleaved repeats",
             "", "| candidate | ms (p10-p90) | images/s | PSNR vs fp32 eager |", "|---|---|---|---|"]
    for r in result["rows"]:
        lines.append(f"| {r['candidate']} | {r['median_ms']:.2f} ({r['p10_ms']:.2f}-{r['p90_ms']:.2f}) | "
                     f"{r['images_per_s']:.1f} | {r['psnr_vs_fp32_eager']:.1f} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    parser.add_argument("--tiny", action="store_true", help="A 32 px generator (for testing the script on a CPU).")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--out", type=Path, help="Also write the table (.md) or the raw result (.json) here.")
    args = parser.parse_args()
    if args.batch < 1 or args.repeats < 1 or args.warmup < 0:
        raise SystemExit("--batch and --repeats must be >= 1, --warmup >= 0")
    result = run(args.device, args.tiny, args.batch, args.repeats, args.warmup)
    text = markdown(result)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) if args.out.suffix == ".json" else text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
