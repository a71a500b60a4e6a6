"""The identity network of methods A and B and of the evaluation (DESIGN §14): ArcFace IR-SE-50.

The architecture is TreB1eN's InsightFace port as StyleCLIP, e4e and pSp build it
(`Backbone(input_size=112, num_layers=50, mode='ir_se', drop_ratio=0.6)`): an IR-SE backbone
(precompute/irse.py, shared with e4e's encoder), then BN2d, dropout, flatten, a linear layer to the
embedding and BN1d, L2-normalized. `IdentityConfig` makes it data, so a smaller network of the same family
can be trained for the demo world; the official one is the default. `crop=False` (the demo world's network)
skips the face crop: the demo's 64 px faces fill their frame, and the crop would cut the hair and outline,
which carry the geometry that is their identity there.

`IdentityNetwork.forward` is StyleCLIP's `IDLoss.extract_feats`: images of any square size in [-1, 1]
are average-pooled to 256 px (unless they are 256 px), cropped to the face (rows 35:223, columns 32:220,
FFHQ's alignment), pooled to the input size and embedded.

Files: the official `model_ir_se50.pth` (a plain state dict of the Backbone; a dict that wraps it as
{'state_dict': ...} is accepted too) loads strictly with `load_identity`, which also reads our
safetensors + JSON pair (`save_identity`).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from .checkpoints import CheckpointError, check_state_dict, load_config_and_state, save_model, torch_load
from .irse import check_stages, irse_backbone

KIND = "identity-irse"
POOL_SIZE = 256  # StyleCLIP pools every image to 256 px before cropping
CROP = (35, 223, 32, 220)  # rows, then columns, of the 256 px image: the face in FFHQ's alignment
DROP_RATIO = 0.6  # the Backbone's dropout (inactive in eval mode, kept so the layer indices match)


@dataclass(frozen=True)
class IdentityConfig:
    units: tuple[int, ...] = (3, 4, 14, 3)  # IR-SE-50
    widths: tuple[int, ...] = (64, 128, 256, 512)
    embedding: int = 512
    input_size: int = 112  # the backbone's input; its last features are input_size / 16 px square
    se_reduction: int = 16
    crop: bool = True  # StyleCLIP's face crop of the 256 px image (FFHQ's alignment); False: the whole image

    def __post_init__(self):
        object.__setattr__(self, "units", tuple(int(u) for u in self.units))
        object.__setattr__(self, "widths", tuple(int(w) for w in self.widths))
        check_stages(self.units, self.widths, self.se_reduction, "an IR-SE identity network")
        if self.input_size < 16 or self.input_size % 16:
            raise ValueError(f"input_size must be a positive multiple of 16 (4 stride-2 stages), got {self.input_size}")
        if self.embedding < 1:
            raise ValueError(f"embedding must be >= 1, got {self.embedding}")
        if not isinstance(self.crop, bool):
            raise ValueError(f"crop must be true or false, got {self.crop!r}")

    def to_dict(self) -> dict:
        return dict(asdict(self), units=list(self.units), widths=list(self.widths))

    @classmethod
    def from_dict(cls, d: dict) -> "IdentityConfig":
        return cls(**d)


def face_crop(images: torch.Tensor, size: int, crop: bool = True) -> torch.Tensor:
    """StyleCLIP's IDLoss preprocessing: [N, 3, S, S] -> the face region pooled to [N, 3, size, size] (the whole
    image without `crop`, through the same 256 px pool)."""
    if images.ndim != 4 or images.shape[1] != 3 or images.shape[2] != images.shape[3]:
        raise ValueError(f"the identity network takes square RGB images [N, 3, S, S] in [-1, 1], got "
                         f"{tuple(images.shape)}")
    if not crop and images.shape[2] == size and POOL_SIZE % size == 0:
        return images  # pooled up to 256 px (each pixel copied) and back down: the same image, so skip it
    if images.shape[2] != POOL_SIZE:
        images = F.adaptive_avg_pool2d(images, POOL_SIZE)
    if not crop:
        return F.adaptive_avg_pool2d(images, size)
    top, bottom, left, right = CROP
    return F.adaptive_avg_pool2d(images[:, :, top:bottom, left:right], size)


class IdentityNetwork(nn.Module):
    """images [N, 3, S, S] in [-1, 1], any S -> unit identity features [N, embedding] (StyleCLIP's
    `IDLoss.extract_feats`); parameter names are the Backbone's, so its state dict loads as it is."""

    def __init__(self, config: IdentityConfig = IdentityConfig()):
        super().__init__()
        self.config = c = config
        self.input_layer, self.body = irse_backbone(c.units, c.widths, c.se_reduction)
        side = c.input_size // 16
        self.output_layer = nn.Sequential(nn.BatchNorm2d(c.widths[3]), nn.Dropout(DROP_RATIO), nn.Flatten(),
                                          nn.Linear(c.widths[3] * side * side, c.embedding), nn.BatchNorm1d(c.embedding))

    def embed(self, faces: torch.Tensor) -> torch.Tensor:
        """The Backbone alone: aligned faces [N, 3, input_size, input_size] -> unit features."""
        return F.normalize(self.output_layer(self.body(self.input_layer(faces))), dim=1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.embed(face_crop(images, self.config.input_size, self.config.crop))


# --- files ----------------------------------------------------------------------------------------------
def save_identity(net: IdentityNetwork, path, extra: dict | None = None,
                  dtype: torch.dtype | None = None) -> tuple[Path, Path]:
    """Our format (`<stem>.safetensors` + `<stem>.json`); `extra` is recorded for people, ignored on load.
    `dtype=torch.float16` stores the floating-point tensors in half precision; loading copies them into fp32."""
    crop = list(CROP) if net.config.crop else None
    config = {"identity": net.config.to_dict(), "preprocess": {"pool": POOL_SIZE, "crop": crop},
              "stored_dtype": str(dtype or torch.float32).removeprefix("torch."), **(extra or {})}
    return save_model(path, KIND, config, net.state_dict(), dtype)


def identity_from_state(state: dict, config: IdentityConfig, source: str) -> IdentityNetwork:
    """Strictly loaded, in eval mode and frozen (it only ever scores images)."""
    net = IdentityNetwork(config)
    check_state_dict(net, state, source)
    net.load_state_dict(state, strict=True)
    return net.eval().requires_grad_(False)


def import_official_identity(path, trust_pickle: bool = False) -> IdentityNetwork:
    """`model_ir_se50.pth`: TreB1eN's Backbone state dict, checked strictly against IR-SE-50."""
    state = torch_load(path, "identity network (model_ir_se50.pth)", trust_pickle)
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]  # training scripts often wrap the weights this way
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} holds a {type(state).__name__}, not the state dict of an ArcFace IR-SE-50 "
                              "(model_ir_se50.pth)")
    if "g_ema" in state or any(str(k).startswith(("encoder.", "decoder.", "mapper.")) for k in state):
        raise CheckpointError(f"{path} is a StyleGAN2, e4e or mapper checkpoint, not an identity network; pass "
                              "ArcFace's model_ir_se50.pth (the file StyleCLIP, e4e and pSp use)")
    if not any(str(k).endswith("num_batches_tracked") for k in state):
        # files saved by torch < 0.4.1 lack BN's step counter; eval mode never reads it
        with torch.device("meta"):  # the names only, without allocating IR-SE-50
            names = [k for k in IdentityNetwork().state_dict() if k.endswith("num_batches_tracked")]
        state = dict(state, **{k: torch.tensor(0) for k in names})
    state = {k: v.float() if isinstance(v, torch.Tensor) and v.is_floating_point() else v for k, v in state.items()}
    return identity_from_state(state, IdentityConfig(), str(path))


def load_identity(path, trust_pickle: bool = False) -> IdentityNetwork:
    """Our `.json`/`.safetensors` pair, or the official `model_ir_se50.pth` (told apart by suffix)."""
    if Path(path).suffix in (".json", ".safetensors"):
        cfg, tensors = load_config_and_state(path, KIND, "identity", IdentityConfig.from_dict, "identity network")
        return identity_from_state(tensors, cfg, str(path))
    return import_official_identity(path, trust_pickle)
