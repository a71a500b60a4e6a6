"""The export-time rewrites (export/synthesis_graph.py, export/text_graph.py) against the PyTorch models.

Each rewrite is compared with the module it replaces in PyTorch and, exported, in onnxruntime at batch
1 and > 1; the pieces that carry the risk (phase kernels and their order, the skip upsampling, the
attention node) are checked on their own so a wrong order or tap fails here, not only as a lower PSNR.
"""
import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F

from export import synthesis_graph as sg
from export.converters import export_onnx
from export.graphs import GraphSpec, _Call, _TextEncoder
from export.text_graph import ExportTextEncoder, supports
from precompute.clip_model import Clip, text_embedding
from precompute.stylegan2 import Upsample, blur_kernel
from tests.conftest import make_generator
from tests.test_clip import TINY, tiny_model


def run_onnx(path, x):
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


def ops(path) -> set[str]:
    return {n.op_type for n in onnx.load(str(path)).graph.node}


# --- synthesis ---------------------------------------------------------------------------------------
def test_phase_convolutions_equal_the_transposed_convolution():
    torch.manual_seed(0)
    x, w = torch.randn(2, 5, 6, 7), torch.randn(4, 5, 3, 3)
    ref = F.pad(F.conv_transpose2d(x, w.transpose(0, 1), stride=2), (1, 0, 1, 0))  # outputs -1 .. 2H
    phases = [F.conv2d(F.pad(x, pad), pw) for pw, pad in sg.phase_weights(w)]
    assert [p.shape[-2:] for p in phases] == [torch.Size([7, 8])] * 4
    out = sg.interleave(phases)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    for order in ([1, 0, 2, 3], [2, 1, 0, 3], [0, 1, 3, 2]):  # any other phase order is a different image
        assert (sg.interleave([phases[i] for i in order]) - ref).abs().max() > 0.1


def test_interleave_puts_phase_r_c_at_pixel_2h_plus_r_2w_plus_c():
    phases = [torch.full((1, 2, 3, 4), float(i)) + torch.arange(12.0).reshape(3, 4) * 10 for i in range(4)]
    out = sg.interleave(phases)
    for i, (r, c) in enumerate(sg.PHASES):
        assert torch.equal(out[:, :, r::2, c::2], phases[i])


def test_skip_upsampling_as_a_grouped_conv_equals_upfirdn():
    torch.manual_seed(1)
    x = torch.randn(2, 3, 5, 6)
    kernel = blur_kernel(4.0) * torch.linspace(0.5, 1.5, 4)  # asymmetric: a flipped tap would show
    up = Upsample(3)
    up.kernel.copy_(kernel)
    out = F.pixel_shuffle(F.conv2d(x, sg.skip_upsample_weight(kernel), padding=1, groups=3), 2)
    torch.testing.assert_close(out, up(x), atol=1e-5, rtol=1e-5)


@pytest.fixture(scope="module")
def gen():
    return make_generator()


def styles(gen, batch, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        w = gen.wplus_from_z(torch.randn(batch, gen.config.style_dim, generator=g), 0.7)
        w = w + 0.3 * torch.randn(w.shape, generator=g)
        return w, torch.cat(gen.styles(w), 1)


def test_rewritten_synthesis_equals_the_generator_in_pytorch(gen):
    w, s = styles(gen, 3)
    s[:, :40] *= -1  # negative styles: the sqrt(2) gain may only move through positive factors
    with torch.no_grad():
        torch.testing.assert_close(sg.ExportSynthesis(gen)(s), gen.synthesis_flat(s), atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(sg.ExportSynthesis(gen, upsample="transposed")(s), gen.synthesis_flat(s),
                                   atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="upsample must be one of phases, transposed"):
        sg.ExportSynthesis(gen, upsample="nearest")


def test_exported_rewrite_equals_the_generator_at_batch_1_and_3(gen, tmp_path):
    module = sg.ExportSynthesis(gen)
    reference = _Call(gen, "synthesis_flat")
    _, s = styles(gen, 2)
    path = tmp_path / "synthesis.onnx"
    export_onnx(GraphSpec("synthesis", reference, "styles", "image", "image", None, onnx_module=module), s.numpy(), path)
    graph_ops = ops(path)
    assert "ConvTranspose" not in graph_ops and {"Col2Im", "Conv", "MatMul"} <= graph_ops
    for batch in (1, 3):
        x = styles(gen, batch, seed=batch)[1].numpy()
        with torch.no_grad():
            ref = reference(torch.from_numpy(x)).numpy()
        out = run_onnx(path, x)
        psnr = 10 * np.log10(4 / np.mean((out.astype(np.float64) - ref) ** 2))
        assert out.shape == ref.shape and psnr >= 60, psnr


# --- text encoder --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def clip():
    torch.manual_seed(0)
    return Clip(tiny_model(), TINY)


def test_fused_text_encoder_equals_open_clip(clip, tmp_path):
    assert supports(clip)
    texts = ["a face with purple hair", "a smiling face with glasses on a green background", "a face"]
    tokens = clip.tokenize(texts)
    with torch.no_grad():
        torch.testing.assert_close(ExportTextEncoder(clip)(tokens), text_embedding(clip.model, tokens))
    path = tmp_path / "text.onnx"
    spec = GraphSpec("text_encoder", _TextEncoder(clip), "tokens", "text_embedding", "embedding", None,
                     {1: ("length", 2, clip.context_length)}, onnx_module=ExportTextEncoder(clip))
    export_onnx(spec, tokens[:2, :20].numpy(), path)
    graph = onnx.load(str(path)).graph
    attention = [n for n in graph.node if n.op_type == "Attention"]
    assert len(attention) == len(clip.model.transformer.resblocks) and "Transpose" not in ops(path)
    assert all(n.domain == "com.microsoft" for n in attention)
    with torch.no_grad():
        full = clip.model.encode_text(tokens, normalize=True).numpy()
    for batch, length in ((1, 8), (3, 12), (3, clip.context_length)):  # any token length, any batch
        out = run_onnx(path, tokens[:batch, :length].numpy())
        cosine = (out * full[:batch]).sum(-1)
        assert cosine.min() >= 0.99999, cosine


def test_other_text_towers_are_not_rewritten(clip):
    import copy

    bidirectional = copy.deepcopy(clip)
    bidirectional.model.attn_mask = None  # no causal mask: padding cannot be cut, the attention is not causal
    assert not supports(bidirectional)
