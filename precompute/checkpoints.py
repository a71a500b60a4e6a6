"""Loading and saving model weights: rosinality .pt checkpoints and our safetensors + JSON format.

Torch checkpoints are read with `weights_only=True`; a file that needs a full unpickle (rosinality
training checkpoints carry an argparse Namespace) is refused unless the caller opts in with
`trust_pickle=True`. Every load is strict and every error says which keys or shapes were wrong and
what to do about it.
"""
from __future__ import annotations

import hashlib
import json
import pickle
import re
import warnings
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from runtime.checks import ToolWarning
from runtime.files import atomic_path, check_output, regular_file, sha256_file

from .stylegan2 import Generator, GeneratorConfig, blur_kernel

FORMAT_VERSION = 1
MAX_LISTED = 5
LATENT_AVG_SAMPLES = 4096
RECOMPUTED = f"recomputed: mean of {LATENT_AVG_SAMPLES} mapped samples, seed 0 (the checkpoint had no latent_avg)"


class CheckpointError(ValueError):
    """A model file that cannot be used, with a message that says why and what to do."""


# --- generic file access -------------------------------------------------------------------------
def require_file(path, what: str) -> Path:
    """An existing regular file (not a folder or pipe), else a CheckpointError naming `what` and the path."""
    try:
        return regular_file(path, what)
    except (OSError, ValueError) as err:
        raise CheckpointError(str(err)) from None


def verify_sha256(path, expected: str | None) -> None:
    if expected is not None and (actual := sha256_file(path)) != expected.lower():
        raise CheckpointError(f"{path}: sha256 is {actual}, expected {expected}; the file is corrupted or not the one you meant")


def torch_load(path, what: str, trust_pickle: bool = False, sha256: str | None = None):
    """torch.load with weights_only unless explicitly trusted, turning failures into clear errors."""
    path = require_file(path, what)
    verify_sha256(path, sha256)
    try:
        with warnings.catch_warnings():  # torch's notes on odd pickle protocols would add lines to our one error
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=not trust_pickle)
    except pickle.UnpicklingError as err:
        if found := re.search(r"GLOBAL ([\w.]+)", str(err)):
            raise CheckpointError(
                f"{path} holds Python objects besides tensors ({found.group(1)}; e.g. a training checkpoint with "
                "'args'); loading it would run pickled code. If you trust its source, pass --trust-pickle "
                "(trust_pickle=True), or re-save only its tensors."
            ) from None
        raise CheckpointError(f"{path} is not a readable PyTorch checkpoint (corrupted or another format)") from None
    except Exception as err:  # bytes that are no checkpoint make the unpickler fail in many ways (IndexError, ...)
        raise CheckpointError(f"{path} is not a readable PyTorch checkpoint ({type(err).__name__}: {err})") from None


def check_state_dict(model: torch.nn.Module, state: dict, source: str) -> None:
    """Strict key and shape comparison with a message that names the first mismatching keys."""
    if not isinstance(state, dict):
        raise CheckpointError(f"{source} holds a {type(state).__name__}, not a state dict of tensors")
    if bad := [k for k, v in state.items() if not isinstance(v, torch.Tensor)]:
        raise CheckpointError(f"{source}: {', '.join(map(str, bad[:MAX_LISTED]))} are not tensors; expected a state dict")
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [
        f"{k} {tuple(state[k].shape)} (expected {tuple(v.shape)})"
        for k, v in expected.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    ]
    problems = []
    for label, items in (("missing keys", missing), ("unexpected keys", unexpected), ("wrong shapes", wrong)):
        if items:
            more = f" and {len(items) - MAX_LISTED} more" if len(items) > MAX_LISTED else ""
            problems.append(f"{label}: {', '.join(map(str, items[:MAX_LISTED]))}{more}")  # keys need not be str
    if problems:
        raise CheckpointError(
            f"{source} does not match {type(model).__name__} ({'; '.join(problems)}). "
            "Check that the file is the right model and was saved from the layout this toolkit loads."
        )


def save_model(path, kind: str, config: dict, tensors: dict[str, torch.Tensor],
               dtype: torch.dtype | None = None) -> tuple[Path, Path]:
    """Our format: `<stem>.safetensors` plus `<stem>.json` (kind, config, sha256 of the weights). `dtype` (e.g.
    torch.float16) stores the floating-point tensors in it; loaders copy them into their fp32 models."""
    weights = Path(path).with_suffix(".safetensors")
    for existing in (weights, weights.with_suffix(".json")):  # only our own pair is ever replaced
        check_output(existing, f"{kind} output")
    stored = {k: v.to(dtype) if dtype is not None and v.is_floating_point() else v for k, v in tensors.items()}
    with atomic_path(weights) as tmp:
        save_file({k: v.detach().contiguous().cpu() for k, v in stored.items()}, str(tmp))
    meta = {"kind": kind, "format_version": FORMAT_VERSION, "weights": weights.name, "sha256": sha256_file(weights), "config": config}
    config_path = weights.with_suffix(".json")
    with atomic_path(config_path) as tmp:
        tmp.write_text(json.dumps(meta, indent=2) + "\n")
    return weights, config_path


def load_config_and_state(path, kind: str, section: str, from_dict, what: str):
    """(the architecture from_dict builds out of config[section], the tensors) of a `save_model` pair."""
    config, tensors = load_model(path, kind)
    try:
        return from_dict(config[section]), tensors
    except (KeyError, TypeError, ValueError) as err:
        raise CheckpointError(f"{path}: invalid {what} config ({err})") from None


def load_model(path, kind: str) -> tuple[dict, dict[str, torch.Tensor]]:
    """Read a `save_model` pair (either file's path), verifying the kind and the weights' sha256."""
    config_path = require_file(Path(path).with_suffix(".json"), f"{kind} config")
    try:
        meta = json.loads(config_path.read_bytes().decode("utf-8"))
        if not isinstance(meta, dict):
            raise CheckpointError(f"{config_path} holds a JSON {type(meta).__name__}, not a {kind} config object")
        if meta.get("kind") != kind:
            raise CheckpointError(f"{config_path} describes a {meta.get('kind')!r}, not a {kind!r}")
        version = meta.get("format_version")
        if type(version) is not int or version != FORMAT_VERSION:  # "1" or 1.0 is a different file, not version 1
            raise CheckpointError(f"{config_path} has format version {json.dumps(version)}, this toolkit reads the "
                                  f"integer {FORMAT_VERSION}; re-save the model with this toolkit")
        if not isinstance(meta.get("weights"), str) or Path(meta["weights"]).name != meta["weights"]:
            raise CheckpointError(f"{config_path}: 'weights' must name a file beside it, got {meta.get('weights')!r}")
        weights = require_file(config_path.with_name(meta["weights"]), f"{kind} weights")
        verify_sha256(weights, meta["sha256"])
        if not isinstance(meta.get("config"), dict):
            raise CheckpointError(f"{config_path}: 'config' must be an object, got {meta.get('config')!r}")
    except (KeyError, TypeError, AttributeError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as err:
        raise CheckpointError(f"{config_path} is not a valid {kind} config ({type(err).__name__}: {err})") from None
    try:
        return meta["config"], load_file(str(weights))
    except Exception as err:  # safetensors raises its own SafetensorError (and others) for foreign bytes
        raise CheckpointError(f"{weights} is not a valid safetensors file of {kind} weights "
                              f"({type(err).__name__}: {err})") from None


# --- StyleGAN2 -----------------------------------------------------------------------------------
def _indices(state: dict, pattern: str) -> list[int]:
    rx = re.compile(pattern)
    return sorted(int(m.group(1)) for k in state if (m := rx.fullmatch(k)))


def infer_generator_config(state: dict, source: str = "checkpoint") -> GeneratorConfig:
    """size, style_dim, n_mlp and the channel table, read from a rosinality g_ema state dict."""
    required = ["style.1.weight", "conv1.conv.weight", "to_rgb1.conv.weight"]
    if absent := [k for k in required if k not in state]:
        hint = " It looks like a discriminator." if any(k.startswith("final_linear") for k in state) else ""
        raise CheckpointError(
            f"{source} is not a rosinality StyleGAN2 generator: missing keys {', '.join(absent)}.{hint} "
            "Pass a checkpoint with 'g_ema' (e.g. from rosinality's convert_weight.py or train.py)."
        )
    n_mlp = len(_indices(state, r"style\.(\d+)\.weight"))
    n_blocks = len(_indices(state, r"to_rgbs\.(\d+)\.conv\.weight"))
    size = 2 ** (n_blocks + 2)
    channels = {4: state["conv1.conv.weight"].shape[1]}
    for b in range(n_blocks):
        key = f"convs.{2 * b}.conv.weight"
        if key not in state:
            raise CheckpointError(f"{source}: missing key {key} for the {2 ** (b + 3)}px block")
        channels[2 ** (b + 3)] = state[key].shape[1]
    return GeneratorConfig(size, state["style.1.weight"].shape[1], n_mlp, channels)


def generator_from_state(state: dict, latent_avg=None, source: str = "checkpoint", config=None) -> Generator:
    """Build the generator the weights describe (or `config`, checked against them) and load strictly."""
    if not isinstance(state, dict):
        raise CheckpointError(f"{source} holds a {type(state).__name__}, not a generator state dict")
    state = {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}
    gen = Generator(config or infer_generator_config(state, source))
    check_state_dict(gen, state, source)
    for k, v in state.items():
        if k.endswith(".kernel") and not torch.allclose(v.float(), blur_kernel(4.0)):
            raise CheckpointError(f"{source}: {k} is not the [1,3,3,1] blur kernel this generator implements")
    gen.load_state_dict(state, strict=True)
    gen.latent_avg_source = "checkpoint"
    if latent_avg is None:
        gen.mean_latent(LATENT_AVG_SAMPLES)
        gen.latent_avg_source = RECOMPUTED
        warnings.warn(f"{source} has no latent_avg; using the mean of {LATENT_AVG_SAMPLES} mapped samples (seed 0) "
                      "instead, so truncated (psi < 1) images differ from the original's; the converted file and "
                      "bundles record this as latent_avg_source", ToolWarning, stacklevel=2)
    else:
        latent_avg = torch.as_tensor(latent_avg).reshape(-1)
        if latent_avg.numel() != gen.config.style_dim:
            raise CheckpointError(f"{source}: latent_avg has {latent_avg.numel()} values, expected {gen.config.style_dim}")
        gen.latent_avg.copy_(latent_avg)
    return gen.eval()


def load_rosinality(path, trust_pickle: bool = False, sha256: str | None = None) -> Generator:
    """A rosinality checkpoint {'g_ema', 'latent_avg', ...} (or a bare g_ema state dict), loaded strictly."""
    ckpt = torch_load(path, "StyleGAN2 checkpoint", trust_pickle, sha256)
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"{path} holds a {type(ckpt).__name__}, expected a dict with 'g_ema'")
    if "g_ema" in ckpt:
        return generator_from_state(ckpt["g_ema"], ckpt.get("latent_avg"), f"{path} ['g_ema']")
    if "style.1.weight" in ckpt:
        return generator_from_state(ckpt, None, str(path))
    if "d" in ckpt or any(k.startswith("final_linear") for k in ckpt):
        raise CheckpointError(f"{path} is a discriminator-only checkpoint; pass the file that holds 'g_ema'")
    raise CheckpointError(f"{path} has no generator weights ('g_ema'); its top-level keys are {sorted(ckpt)[:MAX_LISTED]}")


def save_rosinality(gen: Generator, path) -> None:
    """Write {'g_ema', 'latent_avg'} exactly as rosinality's convert_weight.py does."""
    with atomic_path(path) as tmp:
        torch.save({"g_ema": gen.state_dict(), "latent_avg": gen.latent_avg.clone()}, tmp)


def save_generator(gen: Generator, path) -> tuple[Path, Path]:
    tensors = dict(gen.state_dict(), latent_avg=gen.latent_avg)
    config = {**gen.config.to_dict(), "latent_avg_source": latent_avg_source(gen)}
    return save_model(path, "stylegan2-generator", config, tensors)


def latent_avg_source(gen: Generator) -> str:
    """Where the truncation centre came from: "checkpoint", or RECOMPUTED for a file that had none."""
    return getattr(gen, "latent_avg_source", "checkpoint")


def load_generator(path, trust_pickle: bool = False, sha256: str | None = None) -> Generator:
    """Our safetensors/JSON pair, or any rosinality .pt/.pth checkpoint (told apart by suffix); `sha256`
    checks the file given, whatever its format."""
    if Path(path).suffix in (".safetensors", ".json"):
        verify_sha256(require_file(path, "StyleGAN2 generator"), sha256)
        raw_config, tensors = load_model(path, "stylegan2-generator")
        latent_avg = tensors.pop("latent_avg", None)
        try:
            config = GeneratorConfig.from_dict(raw_config)
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise CheckpointError(f"{path}: invalid generator config ({type(err).__name__}: {err})") from None
        gen = generator_from_state(tensors, latent_avg, str(path), config)
        if raw_config.get("latent_avg_source") == RECOMPUTED:
            gen.latent_avg_source = RECOMPUTED  # recorded when it was converted
        return gen
    return load_rosinality(path, trust_pickle, sha256)


def model_digest(module: torch.nn.Module, *extra: torch.Tensor) -> str:
    """sha256 of every tensor of a model (names, shapes, values): which weights a table was made with."""
    h = hashlib.sha256()
    items = sorted(module.state_dict().items()) + [(f"extra{i}", t) for i, t in enumerate(extra)]
    for name, t in items:
        t = t.detach().cpu().contiguous()
        h.update(f"{name}{tuple(t.shape)}{t.dtype}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy() if t.numel() else b"")
    return h.hexdigest()
