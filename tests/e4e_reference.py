"""An independent, from-the-spec e4e: the parameter list of e4e's encoder (models/encoders/psp_encoders.py,
helpers.py: IR-SE-50 units, GradualStyleBlock, latlayers) and a functional forward pass over a plain state
dict, plus official-format checkpoints built from it (random weights, e4e's key names and dict layout).

Nothing here imports precompute.encoder: it is what that module is tested against.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

UNITS = (3, 4, 14, 3)  # IR-SE-50: get_blocks(50)


def unit_plan(stem: int, widths) -> list[tuple[int, int, int]]:
    """(in_channel, depth, stride) of each bottleneck unit, as get_blocks builds them."""
    plan, cin = [], stem
    for n, depth in zip(UNITS, widths):
        plan += [(cin, depth, 2)] + [(depth, depth, 1)] * (n - 1)
        cin = depth
    return plan


def bn_shapes(prefix: str, c: int) -> dict:
    return {f"{prefix}.weight": (c,), f"{prefix}.bias": (c,), f"{prefix}.running_mean": (c,),
            f"{prefix}.running_var": (c,), f"{prefix}.num_batches_tracked": ()}


def backbone_shapes(widths=(64, 128, 256, 512), reduction=16) -> dict:
    """The IR-SE-50 backbone's tensors (input_layer.*, body.*), shared by e4e and ArcFace (TreB1eN's names)."""
    stem = widths[0]
    shapes = {"input_layer.0.weight": (stem, 3, 3, 3), **bn_shapes("input_layer.1", stem), "input_layer.2.weight": (stem,)}
    for i, (cin, depth, _) in enumerate(unit_plan(stem, widths)):
        p = f"body.{i}"
        if cin != depth:
            shapes[f"{p}.shortcut_layer.0.weight"] = (depth, cin, 1, 1)
            shapes.update(bn_shapes(f"{p}.shortcut_layer.1", depth))
        shapes.update(bn_shapes(f"{p}.res_layer.0", cin))
        shapes[f"{p}.res_layer.1.weight"] = (depth, cin, 3, 3)
        shapes[f"{p}.res_layer.2.weight"] = (depth,)
        shapes[f"{p}.res_layer.3.weight"] = (depth, depth, 3, 3)
        shapes.update(bn_shapes(f"{p}.res_layer.4", depth))
        shapes[f"{p}.res_layer.5.fc1.weight"] = (depth // reduction, depth, 1, 1)
        shapes[f"{p}.res_layer.5.fc2.weight"] = (depth, depth // reduction, 1, 1)
    return shapes


def parameter_shapes(widths=(64, 128, 256, 512), style_dim=512, n_styles=18, input_size=256, reduction=16) -> dict:
    """Every tensor of e4e's Encoder4Editing state dict, by name, with its shape."""
    shapes = backbone_shapes(widths, reduction)
    top = widths[3]
    for i in range(n_styles):
        spatial = input_size // (16 if i < 3 else 8 if i < 7 else 4)
        for k in range(int(math.log2(spatial))):
            shapes[f"styles.{i}.convs.{2 * k}.weight"] = (style_dim, top if k == 0 else style_dim, 3, 3)
            shapes[f"styles.{i}.convs.{2 * k}.bias"] = (style_dim,)
        shapes[f"styles.{i}.linear.weight"] = (style_dim, style_dim)
        shapes[f"styles.{i}.linear.bias"] = (style_dim,)
    shapes.update({"latlayer1.weight": (top, widths[2], 1, 1), "latlayer1.bias": (top,),
                   "latlayer2.weight": (top, widths[1], 1, 1), "latlayer2.bias": (top,)})
    return shapes


def random_state(shapes: dict, seed: int = 0) -> dict:
    """Random weights at scales that keep activations O(1) through 24 residual units."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for name, shape in shapes.items():
        if name.endswith("num_batches_tracked"):
            state[name] = torch.tensor(7)
        elif name.endswith("running_mean"):
            state[name] = 0.1 * torch.randn(shape, generator=g)
        elif name.endswith("running_var"):
            state[name] = 0.5 + torch.rand(shape, generator=g)
        elif len(shape) == 4:
            fan_in = shape[1] * shape[2] * shape[3]
            gain = 0.5 if ".res_layer." in name else 1.0  # residual branches small, as trained nets have them
            state[name] = gain * torch.randn(shape, generator=g) / math.sqrt(fan_in)
        elif name.endswith("linear.weight"):
            state[name] = torch.randn(shape, generator=g)  # EqualLinear scales by 1/sqrt(in) at run time
        elif ".2.weight" in name and len(shape) == 1:  # PReLU slopes
            state[name] = 0.25 + 0.05 * torch.randn(shape, generator=g)
        elif name.endswith(".weight"):  # BatchNorm gains
            state[name] = 1 + 0.1 * torch.randn(shape, generator=g)
        else:  # biases
            state[name] = 0.1 * torch.randn(shape, generator=g)
    return state


# --- the forward pass, from the spec --------------------------------------------------------------------
def bn_ref(sd, p, x):
    return F.batch_norm(x, sd[f"{p}.running_mean"], sd[f"{p}.running_var"], sd[f"{p}.weight"], sd[f"{p}.bias"],
                        False, 0.0, 1e-5)


def input_layer_ref(sd, x):
    """The backbone's stem: 3x3 conv (no bias), BN, PReLU."""
    return F.prelu(bn_ref(sd, "input_layer.1", F.conv2d(x, sd["input_layer.0.weight"], padding=1)), sd["input_layer.2.weight"])


def irse_ref(sd, p, x, cin, depth, stride):
    """bottleneck_IR_SE: res = SE(BN(conv3x3_s(PReLU(conv3x3(BN(x)))))); shortcut = subsample or conv1x1+BN."""
    r = bn_ref(sd, f"{p}.res_layer.0", x)
    r = F.conv2d(r, sd[f"{p}.res_layer.1.weight"], padding=1)
    r = F.prelu(r, sd[f"{p}.res_layer.2.weight"])
    r = F.conv2d(r, sd[f"{p}.res_layer.3.weight"], stride=stride, padding=1)
    r = bn_ref(sd, f"{p}.res_layer.4", r)
    s = r.mean((2, 3), keepdim=True)
    s = torch.sigmoid(F.conv2d(F.relu(F.conv2d(s, sd[f"{p}.res_layer.5.fc1.weight"])), sd[f"{p}.res_layer.5.fc2.weight"]))
    r = r * s
    if cin == depth:
        short = x[:, :, ::stride, ::stride]  # MaxPool2d(kernel 1, stride)
    else:
        short = bn_ref(sd, f"{p}.shortcut_layer.1", F.conv2d(x, sd[f"{p}.shortcut_layer.0.weight"], stride=stride))
    return r + short


def style_ref(sd, i, x):
    """GradualStyleBlock: stride-2 3x3 convs + LeakyReLU(0.01) down to 1x1, flatten, EqualLinear(lr_mul 1)."""
    k = 0
    while f"styles.{i}.convs.{k}.weight" in sd:
        x = F.leaky_relu(F.conv2d(x, sd[f"styles.{i}.convs.{k}.weight"], sd[f"styles.{i}.convs.{k}.bias"], 2, 1), 0.01)
        k += 2
    w = sd[f"styles.{i}.linear.weight"]
    return F.linear(x.reshape(x.shape[0], -1), w / math.sqrt(w.shape[1]), sd[f"styles.{i}.linear.bias"])


def e4e_ref(sd, x, n_styles: int, latent_avg=None):
    """Encoder4Editing.forward at ProgressiveStage.Inference (every delta), then pSp's `+ latent_avg`."""
    widths = [sd[f"body.{i}.res_layer.1.weight"].shape[0] for i in (0, 3, 7, 21)]
    x = input_layer_ref(sd, x)
    for i, (cin, depth, stride) in enumerate(unit_plan(widths[0], widths)):
        x = irse_ref(sd, f"body.{i}", x, cin, depth, stride)
        if i == 6:
            c1 = x
        elif i == 20:
            c2 = x
        elif i == 23:
            c3 = x

    def up_add(a, b):
        return F.interpolate(a, size=b.shape[-2:], mode="bilinear", align_corners=True) + b

    w0 = style_ref(sd, 0, c3)
    w = w0[:, None].repeat(1, n_styles, 1)
    features = c3
    for i in range(1, n_styles):
        if i == 3:
            p2 = up_add(c3, F.conv2d(c2, sd["latlayer1.weight"], sd["latlayer1.bias"]))
            features = p2
        elif i == 7:
            features = up_add(p2, F.conv2d(c1, sd["latlayer2.weight"], sd["latlayer2.bias"]))
        w[:, i] = w[:, i] + style_ref(sd, i, features)
    if latent_avg is not None:
        w = w + latent_avg.reshape(-1, w.shape[2]).expand(n_styles, -1)[None]
    return w


# --- official-format checkpoints --------------------------------------------------------------------------
SMALL = dict(widths=(16, 24, 32, 48), style_dim=64, n_styles=8, input_size=64, reduction=8)  # stylegan_size 32


def official_checkpoint(path, decoder_state: dict, arch: dict = SMALL, seed: int = 0, latent_avg_rows: bool = True,
                        opts_extra: dict | None = None, training_state: bool = False):
    """Write a checkpoint laid out as e4e's coach saves it; returns (encoder state, latent_avg)."""
    state = random_state(parameter_shapes(**arch), seed)
    g = torch.Generator().manual_seed(seed + 1)
    avg = 0.3 * torch.randn(arch["style_dim"], generator=g)
    stylegan_size = 2 ** ((arch["n_styles"] + 2) // 2)
    opts = {"encoder_type": "Encoder4Editing", "stylegan_size": stylegan_size, "start_from_latent_avg": True,
            "lpips_lambda": 0.8, "id_lambda": 0.1, "delta_norm": 2, "delta_norm_lambda": 2e-4,
            "progressive_steps": [0, 20000, 22000], "checkpoint_path": None, "exp_dir": "experiment/e4e",
            **(opts_extra or {})}
    ckpt = {"state_dict": {**{f"encoder.{k}": v for k, v in state.items()},
                           **{f"decoder.{k}": v for k, v in decoder_state.items()}},
            "opts": opts,
            "latent_avg": avg.repeat(arch["n_styles"], 1) if latent_avg_rows else avg}
    if training_state:
        ckpt.update(global_step=1234, optimizer={"state": {}, "param_groups": [{"lr": 1e-4, "params": [0, 1]}]},
                    best_val_loss=0.5)
    torch.save(ckpt, path)
    return state, avg
