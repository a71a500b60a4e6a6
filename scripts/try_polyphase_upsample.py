"""Would the upsampling convolutions run faster as a 2x2 convolution + pixel shuffle? (docs/benchmarks.md)

The generator's stride-2 3x3 transposed convolution equals a 2x2 convolution with 4x the output
channels on the input grid (zero padding 1) followed by a pixel shuffle (one extra zero row and
column). This script checks the equality and times both forms, exported to ONNX (onnxruntime, 2
threads) and in PyTorch eager, at three FFHQ-1024 layer shapes, batch 1.

    python scripts/try_polyphase_upsample.py
"""
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from torch.nn import functional as F

TAPS = ((2, 0), (None, 1))  # per output phase (even, odd): the 3x3 taps seen through a 2-tap window


def transposed(x, w):
    return F.conv_transpose2d(x, w.transpose(0, 1), stride=2)


def polyphase(x, w):
    zero = w.new_zeros(w.shape[:2])
    phases = [torch.stack([torch.stack([zero if a is None or b is None else w[:, :, a, b] for b in TAPS[c]], -1)
                           for a in TAPS[r]], -2) for r in range(2) for c in range(2)]
    weight = torch.stack(phases, 1).reshape(4 * w.shape[0], w.shape[1], 2, 2)
    return F.pixel_shuffle(F.conv2d(F.pad(x, (1, 1, 1, 1)), weight), 2)


class Layer(torch.nn.Module):
    def __init__(self, w, fn):
        super().__init__()
        self.w, self.fn = torch.nn.Parameter(w), fn

    def forward(self, x):
        return self.fn(x, self.w)


def median_ms(fn, repeats=5):
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times)) * 1e3


def main() -> None:
    torch.set_num_threads(2)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    for cin, cout, size in ((512, 512, 64), (256, 128, 256), (64, 32, 512)):
        x, w = torch.randn(1, cin, size, size), torch.randn(cout, cin, 3, 3) / 30
        diff = (transposed(x, w) - polyphase(x, w)[..., :-1, :-1]).abs().max().item()
        row = []
        for name, fn in (("ConvTranspose", transposed), ("2x2 conv + shuffle", polyphase)):
            with tempfile.TemporaryDirectory() as tmp:
                path = str(Path(tmp) / "layer.onnx")
                torch.onnx.export(Layer(w, fn).eval(), (x,), dynamo=True, optimize=True).save(path, external_data=False)
                sess = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
                feed = {sess.get_inputs()[0].name: x.numpy()}
                rt = median_ms(lambda: sess.run(None, feed))
            with torch.inference_mode():
                pt = median_ms(lambda: fn(x, w))
            row.append(f"{name}: onnxruntime {rt:.1f} ms, PyTorch {pt:.1f} ms")
        print(f"{cin}->{cout} channels, {size}->{2 * size} px (max |diff| {diff:.1e}): " + "; ".join(row))


if __name__ == "__main__":
    main()
