"""Export and validate random-weight models of real size or demo size, and print the figures.

--preset ffhq: FFHQ-1024 config-f StyleGAN2 + ViT-B-32 (real weights are not available here; random
weights have exactly the real compute, file sizes and numerics paths). --preset demo: the demo
world's architectures (64 px generator, small open_clip) with random weights. Writes the models, the
bundle and its report under --work and prints export time, file sizes and the validation table.

    python scripts/real_size_export.py --preset ffhq --work build/real_size --fp16
    python scripts/real_size_export.py --preset demo --work build/demo_size --fp16
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from export.bundle import ExportOptions, export_bundle  # noqa: E402
from export.presets import PRESETS, write_models  # noqa: E402
from export.validate import Validator, format_table  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--preset", choices=PRESETS, default="ffhq")
    ap.add_argument("--work", type=Path, default=Path("build/real_size"))
    ap.add_argument("--fp16", action="store_true", help="also export and validate fp16 variants")
    ap.add_argument("--batches", default="1,4")
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    src = write_models(args.work, args.preset)
    bundle = args.work / "bundle"
    start = time.perf_counter()
    manifest = export_bundle(bundle, src, ExportOptions(fp16=args.fp16))
    export_s = time.perf_counter() - start
    print(f"\nexport: {export_s:.1f} s, torch {torch.__version__}, opset {manifest['producer']['opset']}")
    for rel, entry in sorted(manifest["files"].items()):
        print(f"  {rel:<40} {entry['size'] / 1e6:9.1f} MB")
    start = time.perf_counter()
    checks = Validator(bundle, [int(b) for b in args.batches.split(",")]).run()
    print(f"\nvalidate: {time.perf_counter() - start:.1f} s\n{format_table(checks)}")
    print(f"report: {bundle / 'report' / 'index.html'}")
    sys.exit(0 if all(c.passed for c in checks) else 1)


if __name__ == "__main__":
    main()
