"""Does onnxruntime's transformer optimizer speed up a bundle's text encoder? (docs/benchmarks.md)

Fuses the bundle's fp32 text encoder with `onnxruntime.transformers.optimizer` (model type clip), prints
which fusions matched, checks the outputs are equal and times both graphs interleaved on the prompts of
one global-direction text direction (padding cut as the runtime does), batch 1 and 158.

    python scripts/try_text_fusion.py build/bench/ffhq/bundle --heads 8 --width 512
"""
import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
from onnxruntime.transformers.optimizer import optimize_model

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from runtime.bundle import read_manifest, text_tokens  # noqa: E402
from runtime.edit_math import TEMPLATES  # noqa: E402
from runtime.tokenizer import ClipTokenizer  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("bundle", type=Path)
    ap.add_argument("--heads", type=int, required=True)
    ap.add_argument("--width", type=int, required=True)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    manifest = read_manifest(args.bundle)
    plain = args.bundle / manifest["graphs"]["text_encoder"]["variants"]["fp32"]["file"]
    fused_model = optimize_model(str(plain), model_type="clip", num_heads=args.heads, hidden_size=args.width, opt_level=0)
    print("fusions:", fused_model.get_fused_operator_statistics())
    tokenizer = ClipTokenizer(args.bundle / manifest["clip"]["tokenizer"]["file"], manifest["clip"]["context_length"])
    prompts = [t.format(p) for p in ("a face with purple hair", "a face") for t in TEMPLATES]
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = args.threads
    opts.enable_cpu_mem_arena = False
    with tempfile.TemporaryDirectory() as tmp:
        fused_path = Path(tmp) / "fused.onnx"
        fused_model.save_model_to_file(str(fused_path))
        sessions = {"plain": ort.InferenceSession(str(plain), opts, providers=["CPUExecutionProvider"]),
                    "fused": ort.InferenceSession(str(fused_path), opts, providers=["CPUExecutionProvider"])}
        for n, repeats in ((1, 30), (158, 6)):
            x = text_tokens(manifest, tokenizer(prompts[:n]))
            outs = {k: s.run(None, {"tokens": x})[0] for k, s in sessions.items()}
            times = {k: [] for k in sessions}
            for r in range(repeats):
                for k in (list(sessions) if r % 2 == 0 else list(sessions)[::-1]):
                    t0 = time.perf_counter()
                    sessions[k].run(None, {"tokens": x})
                    times[k].append(time.perf_counter() - t0)
            print(f"batch {n} ({x.shape[1]} tokens): max |diff| {np.abs(outs['plain'] - outs['fused']).max():.2e}; "
                  + ", ".join(f"{k} {np.median(v) * 1e3:.1f} ms" for k, v in times.items()))


if __name__ == "__main__":
    main()
