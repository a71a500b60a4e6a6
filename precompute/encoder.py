"""e4e (encoder4editing, Tov et al. 2021): a picture -> W+, with e4e's parameter names (DESIGN §10).

The architecture is data (`EncoderConfig`): an IR-SE backbone (precompute/irse.py: input layer, four
stages of bottleneck units with squeeze-excite), a small feature pyramid over the ends of stages 2-4,
and one "gradual style block" per W+ row (stride-2 convs down to 1x1, then an equalized linear). The official encoder is
IR-SE-50 at 256 px with 18 rows (`EncoderConfig.official`); the demo encoder is the same class at 64 px
with fewer, narrower units.

Output: row 0 is w0, read from the coarsest features; row i is w0 + delta_i, where delta_i comes from
the coarse (rows < 3), medium (< 7) or fine pyramid level; then `latent_avg` is added. e4e adds
latent_avg outside its encoder (pSp.forward, when trained with start_from_latent_avg); ours holds it as
a buffer so the module's output is always a complete W+.

Official checkpoints (`{'state_dict': {'encoder.*', 'decoder.*'}, 'opts', 'latent_avg'}`) load strictly
(`import_e4e`); our format is `save_encoder` / `load_encoder`.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from .checkpoints import CheckpointError, check_state_dict, load_config_and_state, save_model, torch_load
from .irse import check_stages, irse_backbone
from .layers import EqualLinear

KIND = "e4e-encoder"
E4E_TYPE = "Encoder4Editing"  # opts['encoder_type'] of e4e checkpoints
# How e4e's inputs are prepared (torchvision Resize((256, 256)) on a PIL image, ToTensor, Normalize(0.5, 0.5)):
# the bundle records this and the runtime applies it.
NORMALIZATION = {"mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5], "range": [-1.0, 1.0]}
RESIZE = "bilinear"  # PIL's bilinear (antialiased when shrinking), torchvision's default for PIL images


@dataclass(frozen=True)
class EncoderConfig:
    input_size: int = 256
    units: tuple[int, ...] = (3, 4, 14, 3)  # bottleneck units per stage (IR-SE-50)
    widths: tuple[int, ...] = (64, 128, 256, 512)  # channels per stage; the input layer has widths[0]
    n_latent: int = 18
    style_dim: int = 512
    se_reduction: int = 16
    coarse: int = 3  # rows [0, coarse) read the coarsest pyramid level, [coarse, medium) the middle one
    medium: int = 7

    def __post_init__(self):
        object.__setattr__(self, "units", tuple(int(u) for u in self.units))
        object.__setattr__(self, "widths", tuple(int(w) for w in self.widths))
        s = self.input_size
        check_stages(self.units, self.widths, self.se_reduction, "an e4e encoder")
        if s < 32 or s & (s - 1):
            raise ValueError(f"input_size must be a power of two >= 32 (4 stride-2 stages), got {s}")
        if not 0 < self.coarse < self.medium <= self.n_latent - 1 or self.n_latent < 3:
            raise ValueError(f"need 0 < coarse < medium < n_latent, got {self.coarse}, {self.medium}, {self.n_latent}")

    @classmethod
    def official(cls, n_latent: int = 18) -> "EncoderConfig":
        """e4e's encoder: IR-SE-50 at 256 px, 512-dim styles, n_latent = 2 * log2(stylegan_size) - 2 rows."""
        return cls(n_latent=n_latent)

    @property
    def level_sizes(self) -> tuple[int, int, int]:
        """Spatial size of the coarse, medium and fine pyramid levels (ends of stages 4, 3, 2)."""
        return self.input_size // 16, self.input_size // 8, self.input_size // 4

    def to_dict(self) -> dict:
        d = asdict(self)
        return dict(d, units=list(self.units), widths=list(self.widths))

    @classmethod
    def from_dict(cls, d: dict) -> "EncoderConfig":
        return cls(**d)


# --- building blocks (names as in e4e's models/encoders/psp_encoders.py, so state dicts match) -----------
class GradualStyleBlock(nn.Module):
    """Features [B, C, s, s] -> one style [B, out]: log2(s) stride-2 3x3 convs with leaky ReLU (0.01),
    then an equalized linear (lr_mul 1)."""

    def __init__(self, in_ch: int, out_ch: int, spatial: int):
        super().__init__()
        layers = []
        for i in range(max(1, int(math.log2(spatial)))):
            layers += [nn.Conv2d(in_ch if i == 0 else out_ch, out_ch, 3, 2, 1), nn.LeakyReLU()]
        self.convs = nn.Sequential(*layers)
        self.linear = EqualLinear(out_ch, out_ch)

    def forward(self, x):
        return self.linear(self.convs(x).flatten(1))


def upsample_add(x, lateral):
    """The pyramid's top-down step: bilinear (align_corners=True) to the lateral's size, plus it."""
    return F.interpolate(x, size=lateral.shape[-2:], mode="bilinear", align_corners=True) + lateral


class Encoder4Editing(nn.Module):
    """float images [B, 3, S, S] in [-1, 1] -> W+ [B, n_latent, style_dim], latent_avg included."""

    def __init__(self, config: EncoderConfig = EncoderConfig()):
        super().__init__()
        self.config = c = config
        self.input_layer, self.body = irse_backbone(c.units, c.widths, c.se_reduction)
        ends = [sum(c.units[: i + 1]) - 1 for i in range(4)]
        self.taps = (ends[1], ends[2], ends[3])  # fine, medium, coarse features: e4e's c1, c2, c3
        top = c.widths[3]
        coarse_s, medium_s, fine_s = c.level_sizes
        self.styles = nn.ModuleList(
            GradualStyleBlock(top, c.style_dim, coarse_s if i < c.coarse else medium_s if i < c.medium else fine_s)
            for i in range(c.n_latent))
        self.latlayer1 = nn.Conv2d(c.widths[2], top, 1)
        self.latlayer2 = nn.Conv2d(c.widths[1], top, 1)
        self.register_buffer("latent_avg", torch.zeros(c.n_latent, c.style_dim))

    @property
    def n_latent(self) -> int:
        return self.config.n_latent

    def features(self, x):
        """(fine, medium, coarse) backbone features at input/4, /8, /16."""
        x = self.input_layer(x)
        taps = []
        for i, unit in enumerate(self.body):
            x = unit(x)
            if i in self.taps:
                taps.append(x)
        return tuple(taps)

    def codes(self, x):
        """W+ without latent_avg: w0 on every row, plus each row's delta (the form e4e regularizes)."""
        c = self.config
        fine, medium, coarse = self.features(x)
        w0 = self.styles[0](coarse)
        rows = [w0] + [w0 + self.styles[i](coarse) for i in range(1, c.coarse)]
        p2 = upsample_add(coarse, self.latlayer1(medium))
        rows += [w0 + self.styles[i](p2) for i in range(c.coarse, c.medium)]
        p1 = upsample_add(p2, self.latlayer2(fine))
        rows += [w0 + self.styles[i](p1) for i in range(c.medium, c.n_latent)]
        return torch.stack(rows, 1)

    def forward(self, x):
        size = self.config.input_size
        if x.ndim != 4 or tuple(x.shape[1:]) != (3, size, size):
            raise ValueError(f"the encoder takes images [B, 3, {size}, {size}] in [-1, 1], got {tuple(x.shape)}")
        return self.codes(x) + self.latent_avg


# --- files ----------------------------------------------------------------------------------------------
def save_encoder(encoder: Encoder4Editing, path, extra: dict | None = None,
                 dtype: torch.dtype | None = None) -> tuple[Path, Path]:
    """Our format (`<stem>.safetensors` + `<stem>.json`); `extra` (training settings, metrics) is recorded
    for people and ignored when loading. `dtype=torch.float16` stores the floating-point tensors in half
    precision (half the file); loading copies them into the fp32 model."""
    config = {"encoder": encoder.config.to_dict(), "normalization": NORMALIZATION, "resize": RESIZE,
              "stored_dtype": str(dtype or torch.float32).removeprefix("torch."), **(extra or {})}
    return save_model(path, KIND, config, encoder.state_dict(), dtype)


def encoder_from_state(state: dict, config: EncoderConfig, source: str) -> Encoder4Editing:
    # Built without storage and given the loaded tensors themselves: at FFHQ size a randomly initialised copy
    # (1 GB) beside the checkpoint's would double the load's peak memory.
    with torch.device("meta"):
        encoder = Encoder4Editing(config)
    check_state_dict(encoder, state, source)
    state = {k: (v.float() if v.is_floating_point() else v).contiguous() for k, v in state.items()}  # fp16 files too
    encoder.load_state_dict(state, strict=True, assign=True)
    return encoder.eval()


def latent_avg_rows(latent_avg, n_latent: int, style_dim: int, source: str) -> torch.Tensor:
    """e4e's latent_avg as [n_latent, style_dim]: saved repeated per row, or one generator w [style_dim]."""
    t = torch.as_tensor(latent_avg).detach().float().cpu()
    if t.shape in ((style_dim,), (1, style_dim)):
        return t.reshape(1, style_dim).repeat(n_latent, 1)
    if t.shape == (n_latent, style_dim):
        return t.clone()
    raise CheckpointError(f"{source}: latent_avg has shape {tuple(t.shape)}, expected [{n_latent}, {style_dim}] "
                          f"or [{style_dim}]")


E4E_UNITS = (3, 4, 14, 3)  # e4e always builds IR-SE-50 (pSp.set_encoder: Encoder4Editing(50, 'ir_se'))


def _shape(state: dict, key: str, source: str) -> tuple:
    if key not in state:
        raise CheckpointError(f"{source} does not match Encoder4Editing (missing keys: {key}); check that the file "
                              "is an e4e checkpoint")
    return tuple(state[key].shape)


def infer_e4e_config(state: dict, opts: dict, source: str) -> EncoderConfig:
    """The architecture an e4e state dict describes: IR-SE-50's units, with the widths, style size, input
    size (from the coarse style block's conv count: input / 16 = 2^convs) and W+ rows its tensors have;
    opts['stylegan_size'], when present, must give the same rows. The official file gives
    `EncoderConfig.official()`; every tensor is then checked strictly against it."""
    starts = [sum(E4E_UNITS[:i]) for i in range(4)]
    widths = [_shape(state, f"body.{i}.res_layer.1.weight", source)[0] for i in starts]
    style_dim = _shape(state, "styles.0.linear.weight", source)[0]
    reduction = widths[0] // _shape(state, "body.0.res_layer.5.fc1.weight", source)[0]
    convs = len({k.split(".")[3] for k in state if k.startswith("styles.0.convs.") and k.endswith(".weight")})
    rows = 1 + max(int(k.split(".")[1]) for k in state if k.startswith("styles.") and k.split(".")[1].isdigit())
    if "stylegan_size" in opts:
        size = int(opts["stylegan_size"])
        expected = 2 * int(math.log2(size)) - 2 if size >= 4 and not size & (size - 1) else None
        if expected != rows:
            raise CheckpointError(f"{source}: opts['stylegan_size'] {size} means {expected} W+ rows, but the "
                                  f"encoder has {rows} style blocks")
    try:
        return EncoderConfig(16 * 2 ** max(convs, 1), E4E_UNITS, tuple(widths), rows, style_dim, reduction)
    except ValueError as err:
        raise CheckpointError(f"{source}: not an e4e encoder layout ({err})") from None


def import_e4e(path, trust_pickle: bool = False) -> Encoder4Editing:
    """An official e4e checkpoint (or one from e4e's training coach) loaded strictly onto the CPU.

    Kept: `encoder.*` (e4e's names), `latent_avg` ([n_latent, 512] as e4e writes it, or a generator's
    [512]), opts['stylegan_size'] (the number of W+ rows). Dropped: the decoder copy and training state.
    """
    ckpt = torch_load(path, "e4e checkpoint", trust_pickle)
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("state_dict"), dict):
        hint = ""
        if isinstance(ckpt, dict) and ("g_ema" in ckpt or "style.1.weight" in ckpt):
            hint = " It is a StyleGAN2 generator checkpoint; pass it as --generator."
        raise CheckpointError(f"{path} is not an e4e checkpoint (expected a dict with 'state_dict' holding "
                              f"'encoder.*' weights).{hint}")
    opts = ckpt.get("opts")
    opts = vars(opts) if hasattr(opts, "__dict__") else opts if isinstance(opts, dict) else {}  # a Namespace (trusted)
    kind = opts.get("encoder_type", E4E_TYPE)
    if kind != E4E_TYPE:
        family = "pSp" if kind == "GradualStyleEncoder" else "ReStyle" if "Backbone" in str(kind) else "another encoder"
        raise CheckpointError(f"{path} holds a {kind!r} encoder ({family}), not e4e's {E4E_TYPE!r}; this toolkit "
                              "imports e4e (encoder4editing) checkpoints only")
    full = ckpt["state_dict"]
    state = {k[len("encoder."):]: v for k, v in full.items() if k.startswith("encoder.")}
    if not state:
        prefixes = sorted({k.split(".")[0] for k in full})
        hint = " It looks like a StyleCLIP mapper; use import-mapper." if "mapper" in prefixes else ""
        raise CheckpointError(f"{path} has no 'encoder.*' weights; its state_dict keys start with {prefixes}.{hint}")
    if "input_layer.0.weight" in state and state["input_layer.0.weight"].shape[1] != 3:
        raise CheckpointError(f"{path}: the encoder takes {state['input_layer.0.weight'].shape[1]} input channels "
                              "(ReStyle feeds image + reconstruction); e4e takes 3")
    source = f"{path} ['state_dict'] encoder.*"
    config = infer_e4e_config(state, opts, source)
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    if opts.get("start_from_latent_avg", "latent_avg" in ckpt):
        if ckpt.get("latent_avg") is None:
            raise CheckpointError(f"{path} was trained from the average latent (opts['start_from_latent_avg']) but "
                                  "carries no 'latent_avg'; e4e's coach always saves it, so the file is incomplete")
        state["latent_avg"] = latent_avg_rows(ckpt["latent_avg"], config.n_latent, config.style_dim, str(path))
    else:  # e4e then feeds the encoder's codes to the generator as they are
        state["latent_avg"] = torch.zeros(config.n_latent, config.style_dim)
    return encoder_from_state(state, config, source)


def load_encoder(path, trust_pickle: bool = False) -> Encoder4Editing:
    """Our `.json`/`.safetensors` pair, or an official e4e `.pt` checkpoint (told apart by suffix)."""
    if Path(path).suffix in (".json", ".safetensors"):
        cfg, tensors = load_config_and_state(path, KIND, "encoder", EncoderConfig.from_dict, "encoder")
        return encoder_from_state(tensors, cfg, str(path))
    return import_e4e(path, trust_pickle)
