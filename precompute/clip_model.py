"""CLIP for StyleCLIP (DESIGN §3): open_clip models with local weights, the BPE tokenizer, two preprocessings.

Weights always come from a local file; nothing is downloaded. Accepted: an open_clip state dict (.pt/.pth/.bin,
possibly nested under 'state_dict' or saved from DistributedDataParallel), a plain .safetensors state dict,
OpenAI's TorchScript archive (e.g. ViT-B-32.pt) or an OpenAI state dict, and our safetensors + JSON pair
(`save_clip`), which records the config and the preprocessing so it loads with no other arguments.
The architecture comes from an open_clip model name ("ViT-B-32") or a custom config dict (the demo CLIP).
"""
from __future__ import annotations

import copy
import functools
import warnings
import zipfile
from dataclasses import asdict
from pathlib import Path

import open_clip
import torch
import torch.nn.functional as F
from open_clip.tokenizer import SimpleTokenizer, default_bpe
from open_clip.transformer import text_global_pool
from open_clip.transform import PreprocessCfg
from safetensors import SafetensorError
from safetensors.torch import load_file

from runtime.checks import ToolWarning
from runtime.tokenizer import trim_padding

from .checkpoints import CheckpointError, check_state_dict, load_model, require_file, save_model, torch_load

KIND = "open-clip"
PREPROCESSINGS = ("styleclip", "normalized")
UPSAMPLE = 7  # StyleCLIP: Upsample(scale_factor=7), then AvgPool2d(kernel=size // 32) ...
STYLECLIP_SIZE = 32 * UPSAMPLE  # ... which always lands on 224 px
# OpenAI's archives carry these as tensors; they are architecture facts, not weights.
OPENAI_EXTRA_KEYS = ("input_resolution", "context_length", "vocab_size")
WEIGHTS_WHAT = (
    "CLIP weights (OpenAI's TorchScript file such as ViT-B-32.pt, an open_clip .pt/.bin/.safetensors state dict, "
    "or a save_clip .safetensors/.json pair)"
)


# --- image preprocessing (differentiable: methods A and B backprop through it) ---------------------
def _square_size(images: torch.Tensor) -> int:
    if images.ndim != 4 or images.shape[1] != 3 or images.shape[2] != images.shape[3]:
        raise ValueError(f"expected square RGB images [N, 3, H, H], got shape {tuple(images.shape)}")
    return images.shape[2]


@functools.lru_cache(maxsize=16)
def styleclip_matrix(size: int, dtype: torch.dtype = torch.float32, device=None) -> torch.Tensor:
    """A [224, size] with `A @ x @ A.T` == avg_pool(upsample_nearest(x, 7), size // 32), exactly.

    Row i averages the upsampled pixels [k*i, k*i + k); input pixel j covers [7j, 7j + 7) after the
    upsampling, so its weight is the length of the overlap over k. This never builds the (7*size)^2
    intermediate (617 MB per 1024 px image in fp32, kept again for backward).
    """
    k = size // 32
    start = torch.arange(size * UPSAMPLE // k, dtype=torch.float64)[:, None] * k
    pixel = torch.arange(size, dtype=torch.float64)[None, :] * UPSAMPLE
    overlap = (torch.minimum(pixel + UPSAMPLE, start + k) - torch.maximum(pixel, start)).clamp(min=0)
    return (overlap / k).to(dtype=dtype, device=device)


def styleclip_preprocess(images: torch.Tensor, image_size: int = STYLECLIP_SIZE) -> torch.Tensor:
    """StyleCLIP's CLIP-loss input: nearest x7 then average pool by size // 32 on the raw output.

    No clamp, no rescale, no CLIP mean/std: that is StyleCLIP's (buggy) choice its loss weights were tuned
    with, kept to reproduce it with OpenAI weights.
    """
    size = _square_size(images)
    if size % 32:
        raise ValueError(f"StyleCLIP's preprocessing needs an image size divisible by 32, got {size}px")
    if image_size != STYLECLIP_SIZE:
        raise ValueError(
            f"StyleCLIP's preprocessing always gives {STYLECLIP_SIZE}px images but this CLIP expects {image_size}px; "
            "use preprocess='normalized'"
        )
    a = styleclip_matrix(size, images.dtype, images.device)
    return a @ images @ a.T


def normalized_preprocess(images, image_size: int, mean=open_clip.OPENAI_DATASET_MEAN,
                          std=open_clip.OPENAI_DATASET_STD, interpolation: str = "bicubic") -> torch.Tensor:
    """The correct CLIP input: clamp to [-1, 1], rescale to [0, 1], resize, CLIP mean/std."""
    size = _square_size(images)
    if interpolation not in ("bicubic", "bilinear"):
        raise ValueError(f"interpolation must be 'bicubic' or 'bilinear', got {interpolation!r}")
    x = (images.clamp(-1, 1) + 1) / 2
    if size != image_size:
        # CLIP was trained on PIL bicubic resizes (open_clip's default), which low-pass when shrinking;
        # torch's antialias=True reproduces that, where plain bicubic would alias 1024 -> 224 badly.
        x = F.interpolate(x, size=(image_size, image_size), mode=interpolation, antialias=True, align_corners=False)
        x = x.clamp(0, 1)  # PIL resizes 8-bit images, which saturates bicubic overshoot
    mean = torch.as_tensor(mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    std = torch.as_tensor(std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    return (x - mean) / std


def _check_preprocess(choice: str, image_size: int) -> str:
    if choice not in PREPROCESSINGS:
        raise ValueError(f"preprocess must be one of {PREPROCESSINGS}, got {choice!r}")
    if choice == "styleclip" and image_size != STYLECLIP_SIZE:
        raise ValueError(f"preprocess='styleclip' needs a {STYLECLIP_SIZE}px CLIP, this one takes {image_size}px")
    return choice


# --- the model wrapper ------------------------------------------------------------------------------
@functools.lru_cache(maxsize=4)
def _tokenizer(context_length: int) -> SimpleTokenizer:
    # Shared: building one parses the 49k-merge vocabulary.
    return SimpleTokenizer(context_length=context_length)


def _side(size) -> int:
    h, w = (size, size) if isinstance(size, int) else size
    if h != w:
        raise ValueError(f"only square CLIP inputs are supported, this model takes {h}x{w}")
    return int(h)


def trims_tokens(model) -> bool:
    """See `Clip.trims_tokens`: open_clip's CLIP class with a causal mask and end-of-text pooling."""
    return (isinstance(model, open_clip.CLIP) and model.attn_mask is not None
            and model.text_pool_type == "argmax")


def text_embedding(model, tokens: torch.Tensor) -> torch.Tensor:
    """open_clip's `encode_text(tokens, normalize=True)`; when `trims_tokens(model)`, `tokens` may be
    shorter than the context (positions and causal mask are cut to match) with the same result."""
    if not trims_tokens(model):
        return model.encode_text(tokens, normalize=True)
    n, cast = tokens.shape[1], model.transformer.get_cast_dtype()
    x = model.token_embedding(tokens).to(cast) + model.positional_embedding[:n].to(cast)
    x = model.transformer(x, attn_mask=model.attn_mask[:n, :n])
    x = text_global_pool(model.ln_final(x), tokens, model.text_pool_type)
    x = model.text_projection(x) if isinstance(model.text_projection, torch.nn.Linear) else x @ model.text_projection
    return F.normalize(x, dim=-1)


class Clip(torch.nn.Module):
    """A frozen open_clip model with the tokenizer and preprocessing our methods use.

    Parameters never need gradients (CLIP is fixed), but encode_image stays differentiable in its input.
    """

    def __init__(self, model, model_cfg: dict, *, name: str | None = None, preprocess_cfg: dict | None = None,
                 preprocess: str = "normalized", activation_source: str = "the model config"):
        super().__init__()
        self.model = model.eval().requires_grad_(False)
        self.name = name
        self.model_cfg = copy.deepcopy(model_cfg)
        self.activation_source = activation_source  # how the activation was chosen (a file may not tell)
        self.embed_dim = int(model_cfg["embed_dim"])
        self.context_length = int(model.context_length)
        self.image_size = _side(model.visual.image_size)
        self.vocab_path = default_bpe()  # the BPE merges shipped inside open_clip; bundles carry a copy
        self.tokenizer = _tokenizer(self.context_length)
        pp = asdict(PreprocessCfg())
        pp.update(preprocess_cfg or {})
        self.preprocess_cfg = {"mean": [float(v) for v in pp["mean"]], "std": [float(v) for v in pp["std"]],
                               "interpolation": pp["interpolation"]}
        self.preprocess = _check_preprocess(preprocess, self.image_size)

    @property
    def activation(self) -> str:
        """The transformers' activation: OpenAI's CLIPs were trained with QuickGELU, open_clip's own with GELU."""
        return "QuickGELU" if self.model_cfg.get("quick_gelu") else "GELU"

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def tokenize(self, texts) -> torch.Tensor:
        """open_clip's BPE ids [N, context_length]; long texts keep end-of-text as the last token."""
        return self.tokenizer([texts] if isinstance(texts, str) else list(texts))

    @property
    def trims_tokens(self) -> bool:
        """Whether ids may be cut after the last non-padding column (`runtime.tokenizer.trim_padding`)
        without changing the embedding: a causal CLIP text tower pooled at end-of-text."""
        return trims_tokens(self.model)

    def encode_text(self, texts) -> torch.Tensor:
        """Strings or token ids [N, context_length] -> L2-normalized embeddings [N, embed_dim]."""
        tokens = texts if isinstance(texts, torch.Tensor) else self.tokenize(texts)
        if tokens.ndim != 2 or tokens.shape[1] != self.context_length:
            raise ValueError(f"token ids must be [N, {self.context_length}], got {tuple(tokens.shape)}")
        if self.trims_tokens:
            tokens = trim_padding(tokens.cpu())
        return text_embedding(self.model, tokens.long().to(self.device))

    def preprocess_images(self, images: torch.Tensor, preprocess: str | None = None) -> torch.Tensor:
        if _check_preprocess(preprocess or self.preprocess, self.image_size) == "styleclip":
            return styleclip_preprocess(images, self.image_size)
        cfg = self.preprocess_cfg
        return normalized_preprocess(images, self.image_size, cfg["mean"], cfg["std"], cfg["interpolation"])

    def encode_image(self, images: torch.Tensor, preprocess: str | None = None) -> torch.Tensor:
        """Raw generator output [N, 3, H, H] (about [-1, 1]) -> L2-normalized embeddings [N, embed_dim]."""
        return self.model.encode_image(self.preprocess_images(images.to(self.device), preprocess), normalize=True)

    forward = encode_image


# --- building ---------------------------------------------------------------------------------------
def resolve_config(name: str | None = None, config: dict | None = None) -> tuple[str | None, dict, dict]:
    """(name, open_clip model config, preprocess overrides) from a registered name or a custom dict.

    `config` is an open_clip model config ({"embed_dim", "vision_cfg", "text_cfg", ...}) or open_clip's
    file layout {"model_cfg": ..., "preprocess_cfg": {"mean", "std", ...}}.
    """
    if (name is None) == (config is None):
        raise ValueError("pass exactly one of name= (an open_clip model name such as 'ViT-B-32') or config= (a dict)")
    if name is not None:
        if name.startswith(("hf-hub:", "local-dir:")):
            raise ValueError(f"{name!r}: schemas fetch from the hub or a folder; pass a registered name and weights=")
        name = name.replace("/", "-")  # OpenAI spells it "ViT-B/32"
        model_cfg, pp = open_clip.get_model_config(name), {}  # a copy of the JSON bundled with open_clip
        if model_cfg is None:
            raise ValueError(f"unknown open_clip model {name!r}; known: {', '.join(open_clip.list_models())}")
    else:
        config = copy.deepcopy(dict(config))
        model_cfg, pp = (config["model_cfg"], config.get("preprocess_cfg", {})) if "model_cfg" in config else (config, {})
    text, vision = model_cfg.get("text_cfg", {}), model_cfg.get("vision_cfg", {})
    if {"hf_model_name", "hf_tokenizer_name", "tokenizer_kwargs"} & set(text):
        raise ValueError("only CLIP's BPE tokenizer and text transformer are supported (the runtime re-implements them)")
    if "timm_model_name" in vision or "multimodal_cfg" in model_cfg:
        raise ValueError("timm vision towers and CoCa models are not supported; use a ViT/ResNet open_clip config")
    return name, model_cfg, pp


def _build(model_cfg: dict) -> torch.nn.Module:
    cfg = copy.deepcopy(model_cfg)
    cls = open_clip.CustomTextCLIP if cfg.pop("custom_text", False) else open_clip.CLIP
    try:
        return cls(**cfg)
    except (TypeError, KeyError, ValueError, AssertionError) as err:
        raise ValueError(f"invalid open_clip model config ({type(err).__name__}: {err})") from None


def new_clip(config: dict, *, preprocess: str = "normalized", seed: int | None = None) -> Clip:
    """A randomly initialized model of a custom `config` (see resolve_config), e.g. the demo CLIP to train.

    Clip freezes its model; a training loop unfreezes `clip.model` (train(), requires_grad_(True)) itself.
    """
    name, model_cfg, pp = resolve_config(config=config)
    if seed is not None:
        torch.manual_seed(seed)
    return Clip(_build(model_cfg), model_cfg, name=name, preprocess_cfg=pp, preprocess=preprocess)


def _is_torchscript(path: Path) -> bool:
    # torch's own test: TorchScript zips hold constants.pkl, torch.save zips do not.
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as z:
        return any(n.endswith("/constants.pkl") for n in z.namelist())


def _read_raw(path: Path, trust_pickle: bool):
    if path.suffix == ".safetensors":
        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError) as err:
            raise CheckpointError(f"{path} is not a readable safetensors file ({err})") from None
    if _is_torchscript(path):
        # OpenAI's release format. TorchScript's loader has its own restricted unpickler (no arbitrary
        # Python objects), and only the tensors are used; weights_only torch.load refuses these archives.
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)
                return dict(torch.jit.load(str(path), map_location="cpu").state_dict())
        except RuntimeError as err:
            raise CheckpointError(f"{path} is not a readable TorchScript archive ({err})") from None
    return torch_load(path, "CLIP weights", trust_pickle)


def read_clip_state(path, trust_pickle: bool = False) -> tuple[dict[str, torch.Tensor], bool]:
    """The tensors of a CLIP weights file and whether they are OpenAI's (trained with QuickGELU)."""
    path = require_file(path, WEIGHTS_WHAT)
    state = _read_raw(path, trust_pickle)
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]  # open_clip training checkpoints nest the weights
    if not isinstance(state, dict) or not (state := {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}):
        raise CheckpointError(f"{path} holds no tensors; expected a CLIP state dict")
    if all(k.startswith("module.") for k in state):  # saved from DistributedDataParallel
        state = {k[len("module."):]: v for k, v in state.items()}
    openai = _is_torchscript(path) or any(k in state for k in OPENAI_EXTRA_KEYS)
    return {k: v for k, v in state.items() if k not in OPENAI_EXTRA_KEYS}, openai


def _load_weights(model, state: dict, source: str) -> None:
    """Strict load; only layout details that carry no weights are adapted."""
    if isinstance(model, open_clip.CustomTextCLIP):
        state = open_clip.model.convert_to_custom_text_state_dict(state)  # OpenAI/CLIP layout -> text.*
    expected = model.state_dict()
    # Buffers the model recomputes (the causal text mask) appear in traced archives but are no weights.
    recomputed = {n for n, _ in model.named_buffers()} - set(expected)
    state = {k: v for k, v in state.items() if k not in recomputed}
    for key in ("logit_scale", "logit_bias"):  # scalar vs [1] differs between open_clip versions
        if key in state and key in expected and state[key].numel() == expected[key].numel():
            state[key] = state[key].reshape(expected[key].shape)
    check_state_dict(model, state, source)
    model.load_state_dict(state, strict=True)  # copies fp16 (OpenAI) into our fp32 parameters


def _is_ours(path: Path) -> bool:
    return path.suffix == ".json" or (path.suffix == ".safetensors" and path.with_suffix(".json").is_file())


def _load_ours(path: Path, name, config, preprocess, device) -> Clip:
    saved, tensors = load_model(path, KIND)
    try:
        model_cfg, saved_name, pp = saved["model_cfg"], saved["name"], saved["preprocess_cfg"]
        preprocess = preprocess or saved["preprocess"]
        context_length = saved["context_length"]
    except (KeyError, TypeError) as err:
        raise CheckpointError(f"{path}: invalid {KIND} config (missing {err})") from None
    if config is not None:
        raise ValueError(f"{path} records its own model config; pass only the path")
    if name is not None and name.replace("/", "-") != saved_name:
        raise ValueError(f"{path} holds {saved_name or 'a custom config'}, not {name!r}")
    model = _build(model_cfg)
    _load_weights(model, tensors, str(path))
    if model.context_length != context_length:
        raise CheckpointError(f"{path}: context length {context_length} does not match its config ({model.context_length})")
    return Clip(model.to(device), model_cfg, name=saved_name, preprocess_cfg=pp, preprocess=preprocess,
                activation_source=f"recorded in {path.with_suffix('.json').name}")


def load_clip(name: str | None = None, weights=None, config: dict | None = None, *, preprocess: str | None = None,
              trust_pickle: bool = False, quick_gelu: bool | None = None, device="cpu") -> Clip:
    """Build an open_clip model by `name` or `config` and load `weights` (required, local) strictly.

    A `save_clip` file needs no name/config. `quick_gelu=None` means: on for OpenAI files (detected by their
    TorchScript format or extra keys; every OpenAI CLIP was trained with QuickGELU), else the config's
    value; pass it for an OpenAI state dict without those keys, or use e.g. "ViT-B-32-quickgelu".
    `preprocess=None` picks "styleclip" for a registered 224 px model (StyleCLIP reproduction with OpenAI
    weights) and "normalized" for custom configs such as the demo CLIP, which was trained with normalization.
    """
    if weights is None:
        raise CheckpointError(f"{WEIGHTS_WHAT} are required and nothing is downloaded: pass weights=<path>")
    path = require_file(weights, WEIGHTS_WHAT)
    if _is_ours(path):
        return _load_ours(path, name, config, preprocess, device)
    name, model_cfg, pp = resolve_config(name, config)
    state, openai = read_clip_state(path, trust_pickle)
    source = activation_source(path, name, quick_gelu, openai)
    if quick_gelu is not None or openai:
        model_cfg["quick_gelu"] = openai if quick_gelu is None else quick_gelu
    model = _build(model_cfg)
    _load_weights(model, state, str(path))
    if preprocess is None:
        preprocess = "styleclip" if name and _side(model.visual.image_size) == STYLECLIP_SIZE else "normalized"
    return Clip(model.to(device), model_cfg, name=name, preprocess_cfg=pp, preprocess=preprocess,
                activation_source=source)


def activation_source(path: Path, name: str | None, quick_gelu: bool | None, openai: bool) -> str:
    """How a weights file's activation is chosen, said aloud where the file cannot tell: OpenAI's TorchScript
    archives and state dicts with their extra keys are QuickGELU; a plain state dict follows open_clip's
    naming ("ViT-B-32" = GELU, "ViT-B-32-quickgelu" = QuickGELU), with a warning where the name is the
    ambiguous one, because OpenAI's weights under it would silently run with the wrong activation."""
    if quick_gelu is not None:
        return "given (quick_gelu argument)"
    if openai:
        return "detected: an OpenAI file (" + ("TorchScript archive" if _is_torchscript(path) else "its extra keys") + ")"
    if name is None:
        return "the model config"
    if not name.endswith("-quickgelu") and f"{name}-quickgelu" in open_clip.list_models():
        warnings.warn(f"{path} is a state dict, which does not say which activation its weights were trained with; "
                      f"following open_clip's naming, {name} means GELU (open_clip's own training). OpenAI's weights "
                      f"need QuickGELU: pass --clip-name {name}-quickgelu for them", ToolWarning, stacklevel=3)
        return f"open_clip's naming: {name} = GELU (the file cannot tell)"
    return f"open_clip's naming: {name}"


def save_clip(clip: Clip, path, dtype: torch.dtype | None = None, extra: dict | None = None) -> tuple[Path, Path]:
    """Our format: everything load_clip needs (architecture, preprocessing, context length) is recorded.

    `dtype=torch.float16` stores the floating-point weights in half precision (half the file; the demo
    CLIP's 49,408-row token embedding dominates it); loading copies them into the fp32 model. `extra`
    (e.g. training settings, metrics) is recorded in the JSON for people; loading ignores it.
    """
    config = {
        "name": clip.name,
        "model_cfg": clip.model_cfg,
        "preprocess_cfg": clip.preprocess_cfg,
        "preprocess": clip.preprocess,
        "context_length": clip.context_length,
        "image_size": clip.image_size,
        "embed_dim": clip.embed_dim,
    }
    if dtype is not None:
        config["weights_dtype"] = str(dtype).removeprefix("torch.")
    for key, value in (extra or {}).items():
        if key in config:
            raise ValueError(f"extra key {key!r} would overwrite the model record")
        config[key] = value
    return save_model(path, KIND, config, clip.model.state_dict(), dtype)
