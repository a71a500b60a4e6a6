"""StyleCLIP's latent mapper (DESIGN §4.B), with the reference's parameter names and quirks.

Three groups of W+ rows (coarse, medium, fine) each get a PixelNorm and four equalized linear layers.
Two quirks are kept on purpose so that official checkpoints load and behave identically:
the coarse group is stored as `course_mapping` (sic), and PixelNorm normalizes over the group's
W+ rows (dim 1), not over features. The edit is `w' = w + 0.1 * strength * M(w)`.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from .checkpoints import CheckpointError, check_state_dict, load_model, save_model, torch_load
from .layers import EqualLinear, PixelNorm

GROUPS = ("coarse", "medium", "fine")
MODULE_NAMES = {"coarse": "course_mapping", "medium": "medium_mapping", "fine": "fine_mapping"}
DELTA_SCALE = 0.1  # hard-coded in the reference


def default_split(n_latent: int) -> tuple[int, int]:
    """Group boundaries: rows 0-3 / 4-7 / 8-17 at 18 rows, split proportionally at other sizes."""
    a = min(max(1, round(n_latent * 4 / 18)), n_latent - 2)
    b = min(max(a + 1, round(n_latent * 8 / 18)), n_latent - 1)
    return a, b


@dataclass
class MapperConfig:
    n_latent: int = 18
    style_dim: int = 512
    split: tuple[int, int] | None = None  # first row of the medium and of the fine group
    enabled: dict[str, bool] = field(default_factory=lambda: dict.fromkeys(GROUPS, True))
    prompt: str = ""

    def __post_init__(self):
        self.split = tuple(self.split) if self.split else default_split(self.n_latent)
        a, b = self.split
        if not 0 < a < b < self.n_latent:
            raise ValueError(f"mapper split {self.split} must satisfy 0 < a < b < n_latent={self.n_latent}")
        if set(self.enabled) != set(GROUPS):
            raise ValueError(f"mapper groups must be exactly {GROUPS}, got {sorted(self.enabled)}")
        if not any(self.enabled.values()):
            raise ValueError("a mapper needs at least one enabled group")

    def rows(self, group: str) -> slice:
        a, b = self.split
        return {"coarse": slice(0, a), "medium": slice(a, b), "fine": slice(b, self.n_latent)}[group]

    def to_dict(self) -> dict:
        return {"n_latent": self.n_latent, "style_dim": self.style_dim, "split": list(self.split),
                "enabled": dict(self.enabled), "prompt": self.prompt}


class GroupMapper(nn.Module):
    """PixelNorm over the group's W+ rows, then 4 EqualLinear(lr_mul 0.01) + leaky ReLU (last one too)."""

    def __init__(self, style_dim: int, n_layers: int = 4):
        super().__init__()
        self.mapping = nn.Sequential(
            PixelNorm(dim=1),
            *[EqualLinear(style_dim, style_dim, lr_mul=0.01, activation=True) for _ in range(n_layers)],
        )

    def forward(self, w):
        return self.mapping(w)


class LatentMapper(nn.Module):
    """W+ [B, n_latent, style_dim] -> M(W+); disabled groups are not built and contribute zero."""

    def __init__(self, config: MapperConfig):
        super().__init__()
        self.config = config
        for group in GROUPS:
            if config.enabled[group]:
                self.add_module(MODULE_NAMES[group], GroupMapper(config.style_dim))

    def forward(self, wplus: torch.Tensor) -> torch.Tensor:
        parts = []
        for group in GROUPS:
            rows = wplus[:, self.config.rows(group)]
            module = getattr(self, MODULE_NAMES[group], None)
            parts.append(module(rows) if module is not None else torch.zeros_like(rows))
        return torch.cat(parts, dim=1)

    def edit(self, wplus: torch.Tensor, strength: float = 1.0) -> torch.Tensor:
        return wplus + DELTA_SCALE * strength * self(wplus)


def save_mapper(mapper: LatentMapper, path):
    return save_model(path, "latent-mapper", mapper.config.to_dict(), mapper.state_dict())


def mapper_from_state(state: dict, config: MapperConfig, source: str) -> LatentMapper:
    mapper = LatentMapper(config)
    check_state_dict(mapper, state, source)
    mapper.load_state_dict(state, strict=True)
    return mapper.eval()


def load_mapper(path) -> LatentMapper:
    config, tensors = load_model(path, "latent-mapper")
    try:
        config = MapperConfig(**config)
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"{path}: invalid mapper config ({err})") from None
    return mapper_from_state(tensors, config, str(path))


OFFICIAL_SPLIT = (4, 8)  # StyleCLIP's LevelsMapper: rows [:4], [4:8], [8:] whatever the generator's size


def import_official_mapper(path, n_latent: int | None = None, trust_pickle: bool = False,
                           prompt: str | None = None) -> LatentMapper:
    """An official StyleCLIP mapper checkpoint {'state_dict': {mapper.*, decoder.*}, 'opts'}.

    The decoder (a full generator copy) is dropped; which groups exist is read from the keys, the
    number of W+ rows from opts['stylegan_size'] unless given. The rows each group edits are the
    reference's fixed OFFICIAL_SPLIT at every size (our own mappers record their split instead).
    The mapper's prompt is `prompt`, else StyleCLIP's opts['description'] (its short text, e.g. "purple hair").
    """
    ckpt = torch_load(path, "StyleCLIP mapper checkpoint", trust_pickle)
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("state_dict"), dict):
        raise CheckpointError(f"{path} is not a StyleCLIP mapper checkpoint (expected a dict with 'state_dict')")
    state = {k[len("mapper."):]: v for k, v in ckpt["state_dict"].items() if isinstance(k, str) and k.startswith("mapper.")}
    if not state:
        prefixes = sorted({str(k).split(".")[0] for k in ckpt["state_dict"]})
        hint = " (it looks like an e4e/pSp encoder checkpoint)" if "encoder" in prefixes else ""
        raise CheckpointError(f"{path} has no 'mapper.*' weights{hint}; its keys start with {prefixes}")
    if any(k.startswith("mapping.") for k in state):
        raise CheckpointError(f"{path} is a StyleCLIP SingleMapper (one mapper for all rows); only the LevelsMapper "
                              "(course/medium/fine_mapping) is supported")
    opts = ckpt.get("opts") if isinstance(ckpt.get("opts"), dict) else {}
    enabled = {g: any(k.startswith(MODULE_NAMES[g] + ".") for k in state) for g in GROUPS}
    first = next((k for k, v in state.items() if k.endswith(".weight") and isinstance(v, torch.Tensor) and v.ndim == 2), None)
    if first is None:
        raise CheckpointError(f"{path} has no mapper weight matrices under 'mapper.*'")
    if n_latent is None:
        try:
            n_latent = 2 * (int(opts.get("stylegan_size", 1024)).bit_length() - 1) - 2
        except (TypeError, ValueError):
            raise CheckpointError(f"{path}: opts['stylegan_size'] is {opts.get('stylegan_size')!r}, not a size") from None
    if n_latent <= OFFICIAL_SPLIT[1]:
        raise CheckpointError(f"{path}: StyleCLIP's mapper edits rows 0-3, 4-7 and 8+, so it needs a generator with "
                              f"more than {OFFICIAL_SPLIT[1]} W+ rows (64 px or larger), got {n_latent}")
    prompt = str(opts.get("description") or "").strip() if prompt is None else prompt.strip()
    mapper = mapper_from_state(state, MapperConfig(n_latent, state[first].shape[1], OFFICIAL_SPLIT, enabled, prompt),
                               str(path))
    if not prompt:
        raise CheckpointError(f"{path} records no description (opts['description']) of the edit it was trained for; "
                              "pass the prompt with --prompt (prompt=...)")
    return mapper
