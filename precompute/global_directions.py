"""Global-direction tables (DESIGN §4.C): S statistics and the channel relevance table fs3.

  statistics  mean/std (ddof 0) of every style channel over mapped samples z ~ N(0, I), truncation 0.7
  fs3 row c   for N fixed latents: s[:, c] = mean_c, f± = unit(E_I(G(s ± alpha·std_c·e_c))),
              d = unit(f+ - f-), row_c = unit(mean_n d); rows in layout.conv_index() order (no ToRGB)

fs3 costs 2·N generator + CLIP passes per channel (FFHQ-1024: 6048 × 200 ≈ 1.2 M), so the channel list
is split into contiguous shards that run as separate processes. Each shard keeps its progress in
`workdir/shard_<i>_of_<n>.npz` (written atomically), resumes from it after a kill and refuses to resume
with other settings; `merge_fs3` checks the shards and joins them.

Official StyleCLIP artifacts import here too: fs3.npy (any conv-layer boundary row count: 5376 for
FFHQ up to 128 px, 6048 for all layers) and the `S_mean_std` pickle (only when explicitly trusted).
"""
from __future__ import annotations

import hashlib
import json
import pickle
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from tqdm import tqdm

from runtime.files import atomic_path, check_output, read_npy, read_npz, sha256_file
from runtime.stylespace import StyleSpaceLayout

from .checkpoints import model_digest

FORMAT_VERSION = 1
PSI = 0.7  # StyleCLIP maps its samples with truncation 0.7 (DESIGN §4.C)
UNIT_TOLERANCE = 1e-2  # the official table is fp16, whose rows are unit to ~1e-3


# --- shared helpers ----------------------------------------------------------------------------------
def sample_z(n: int, dim: int, seed: int, start: int = 0) -> torch.Tensor:
    """z [n, dim] = samples start..start+n of one seeded stream.

    numpy's generator yields the same stream however it is chunked, so the statistics (any batch size)
    and fs3 (the first N samples: StyleCLIP also renders the first samples of its statistics set) agree.
    """
    rng = np.random.default_rng(seed)
    if start:
        rng.standard_normal((start, dim), dtype=np.float32)
    return torch.from_numpy(rng.standard_normal((n, dim), dtype=np.float32))


def _unit(x: torch.Tensor) -> torch.Tensor:
    # eps instead of NaN: a dead channel (std 0) changes nothing and gets a zero row (never selected).
    return x / x.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def _device(module: torch.nn.Module) -> torch.device:
    return next(module.parameters()).device


def _save_npz(path: Path, **arrays) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as f:  # a file object: np.savez would append ".npz"
        np.savez(f, **arrays)


def _json_array(obj) -> np.ndarray:
    return np.array(json.dumps(obj, sort_keys=True))  # a unicode array: loads with allow_pickle=False


# --- S statistics --------------------------------------------------------------------------------------
@torch.no_grad()
def style_statistics(gen, n: int = 100_000, psi: float = PSI, seed: int = 0, batch: int = 4096):
    """Flat (mean, std) float32 [layout.total] over `n` mapped samples (ddof 0).

    Only mapping and the affine layers run (no synthesis), so 100k samples take minutes on a CPU.
    Sums are float64 around the first batch's mean (a shift keeps E[x²] - E[x]² from cancelling).
    """
    if n < 1 or batch < 1:
        raise ValueError(f"need n >= 1 and batch >= 1, got n={n}, batch={batch}")
    rng = np.random.default_rng(seed)
    dim, device = gen.config.style_dim, _device(gen)
    shift = total = sq = None
    for start in range(0, n, batch):
        z = torch.from_numpy(rng.standard_normal((min(batch, n - start), dim), dtype=np.float32))
        s = torch.cat(gen.styles(gen.wplus_from_z(z.to(device), psi)), 1).double()
        if shift is None:
            shift = s.mean(0)
            total, sq = torch.zeros_like(shift), torch.zeros_like(shift)
        s = s - shift
        total += s.sum(0)
        sq += s.square().sum(0)
    mean = total / n
    std = (sq / n - mean.square()).clamp_min(0).sqrt()
    return (mean + shift).float().cpu().numpy(), std.float().cpu().numpy()


def save_style_statistics(path, mean: np.ndarray, std: np.ndarray, meta: dict | None = None) -> Path:
    """`.npz` with flat `mean`, `std` (what export reads) and a JSON `meta` string; atomic."""
    path = Path(path)
    if mean.shape != std.shape or mean.ndim != 1:
        raise ValueError(f"mean and std must be flat arrays of one shape, got {mean.shape} and {std.shape}")
    check_output(path, "S statistics output")  # only our own statistics (they carry 'meta') are replaced
    _save_npz(path, mean=mean.astype(np.float32), std=std.astype(np.float32), meta=_json_array(meta or {}))
    return path


def load_style_statistics(path, layout: StyleSpaceLayout) -> tuple[np.ndarray, np.ndarray]:
    stats = read_npz(path, "S statistics (.npz with 'mean' and 'std', from `cli.py s-stats`)", ("mean", "std"))
    mean, std = stats["mean"].astype(np.float32), stats["std"].astype(np.float32)
    if mean.shape != (layout.total,) or std.shape != (layout.total,):
        raise ValueError(f"S statistics {path} have shapes {mean.shape}/{std.shape}; this generator has {layout.total} channels")
    return mean, std


# --- fs3 -----------------------------------------------------------------------------------------------
def fs3_rows(layout: StyleSpaceLayout, max_resolution: int | None = None) -> int:
    """Rows of a table over the conv layers up to `max_resolution` px (all when None): a layer boundary."""
    if max_resolution is None:
        return layout.conv_channels
    if max_resolution < 4:
        raise ValueError(f"max_resolution must be >= 4 px, got {max_resolution}")
    return sum(l.channels for l in layout.conv_layers if l.resolution <= max_resolution)


def layer_boundaries(layout: StyleSpaceLayout) -> list[int]:
    return np.cumsum([l.channels for l in layout.conv_layers]).tolist()


def shard_range(rows: int, shard: tuple[int, int]) -> tuple[int, int]:
    """Rows [start, end) of shard i of n: a contiguous, near-equal split (np.array_split's rule)."""
    i, n = shard
    if not (isinstance(i, int) and isinstance(n, int) and 0 <= i < n):
        raise ValueError(f"shard must be (i, n) with 0 <= i < n, got {shard!r}")
    if n > rows:
        raise ValueError(f"{n} shards for {rows} channels: at most one shard per channel")
    q, r = divmod(rows, n)
    start = i * q + min(i, r)
    return start, start + q + (i < r)


def shard_path(workdir, shard: tuple[int, int]) -> Path:
    return Path(workdir) / f"shard_{shard[0]}_of_{shard[1]}.npz"


def default_batch(gen, budget_bytes: float | None = None) -> int:
    """Images per generator call that keep the activations near `budget_bytes` (≈4 live fp32 maps per layer).

    CPUs are faster per image with small batches that stay in cache (64 px demo: 10 ms at 8-16 images,
    22 ms at 200); GPUs want large ones.
    """
    if budget_bytes is None:
        budget_bytes = 4e9 if _device(gen).type == "cuda" else 2.5e8
    per_image = sum(4 * 4 * (l.channels * l.resolution**2) for l in gen.layout.conv_layers)
    return int(max(1, min(512, budget_bytes // per_image)))


def _read_shard(path: Path) -> dict:
    with np.load(path, allow_pickle=False) as f:
        return {"rows": f["rows"], "done": int(f["done"]), "config": json.loads(str(f["config"])),
                "shard": tuple(int(v) for v in f["shard"]), "range": tuple(int(v) for v in f["range"]),
                "layout": StyleSpaceLayout.from_list(json.loads(str(f["layout"])))}


def _check_resume(path: Path, saved: dict, config: dict, shard, rng) -> None:
    if saved["config"] != config or saved["shard"] != tuple(shard) or saved["range"] != tuple(rng):
        keys = sorted(k for k in set(config) | set(saved["config"]) if config.get(k) != saved["config"].get(k))
        if saved["shard"] != tuple(shard) or saved["range"] != tuple(rng):
            keys.append("shard")
        raise ValueError(f"{path} was computed with other settings ({', '.join(keys)} differ); "
                         "use another --workdir or delete the file to start over")


@torch.no_grad()
def compute_fs3(gen, clip, mean: np.ndarray, std: np.ndarray, n_images: int = 100, seed: int = 0,
                alpha: float = 5.0, shard: tuple[int, int] = (0, 1), workdir=None, progress: bool = True,
                batch: int | None = None, max_resolution: int | None = None, psi: float = PSI,
                save_every_s: float = 30.0, on_progress: Callable[[int], None] | None = None,
                compile: bool = False) -> np.ndarray:
    """The fs3 rows of one shard, [rows_in_shard, embed_dim] float32.

    `batch`: images per generator/CLIP call (default from the generator's size); as many channels as
    fit are rendered together. With `workdir`, progress is saved every `save_every_s` seconds and at
    the end, and a rerun resumes (or, when complete, just returns the saved rows). `on_progress(done)`
    is called after every channel group (tests use it to simulate a kill). `compile=True` runs the
    generator and CLIP through torch.compile (measured ~2x faster on a CPU, where eager mode spends
    about half its time in unfused element-wise ops; compiling costs a minute or two per process).
    Like `batch`, it changes the rows only at float-rounding level, so it is not part of the settings
    a resume must match.
    """
    layout = gen.layout
    rows = fs3_rows(layout, max_resolution)
    start, end = shard_range(rows, shard)
    channels = layout.conv_index()[start:end]  # flat S positions of this shard's rows
    if n_images < 1 or not np.isfinite(alpha):
        raise ValueError(f"need n_images >= 1 and a finite alpha, got {n_images}, {alpha}")
    if mean.shape != (layout.total,) or std.shape != (layout.total,):
        raise ValueError(f"S statistics have shapes {mean.shape}/{std.shape}; this generator has {layout.total} channels")
    # Everything that changes the numbers (not `batch`/`compile`: they change only float rounding).
    config = {
        "version": FORMAT_VERSION, "generator": model_digest(gen, gen.latent_avg), "clip": model_digest(clip.model),
        "preprocess": clip.preprocess, "preprocess_cfg": clip.preprocess_cfg, "embed_dim": clip.embed_dim,
        "stats": hashlib.sha256(mean.astype(np.float32).tobytes() + std.astype(np.float32).tobytes()).hexdigest(),
        "n_images": int(n_images), "seed": int(seed), "psi": float(psi), "alpha": float(alpha), "rows": rows,
        "max_resolution": max_resolution,
    }
    out = np.zeros((end - start, clip.embed_dim), np.float32)
    done = 0
    path = shard_path(workdir, shard) if workdir is not None else None
    if path is not None and path.is_file():
        saved = _read_shard(path)
        _check_resume(path, saved, config, shard, (start, end))
        out, done = saved["rows"], saved["done"]

    def save():
        if path is not None:
            _save_npz(path, rows=out, done=np.int64(done), config=_json_array(config), shard=np.array(shard),
                      range=np.array([start, end]), channels=channels, layout=_json_array(layout.to_list()))

    device = _device(gen)
    batch = batch or default_batch(gen)
    z = sample_z(n_images, gen.config.style_dim, seed).to(device)
    s0 = torch.cat(gen.styles(gen.wplus_from_z(z, psi)), 1)  # [N, total]
    mean_t, std_t = (torch.as_tensor(a, dtype=s0.dtype, device=device) for a in (mean, std))
    group = max(1, batch // (2 * n_images))  # channels per group
    render, embed = gen.synthesis_flat, clip.encode_image
    if compile:
        render, embed = torch.compile(render, dynamic=False), torch.compile(embed, dynamic=False)

    def embed_images(part):
        k = part.shape[0]
        if compile and k < batch:  # keep one input shape: each new shape would compile again
            part = torch.cat([part, part[-1:].expand(batch - k, -1)])
        return embed(render(part))[:k].to(device)

    bar = tqdm(total=end - start, initial=done, unit="ch", desc=f"fs3 shard {shard[0]}/{shard[1]}",
               disable=not progress, smoothing=0.1)
    last_save = time.monotonic()
    while done < end - start:
        chans = channels[done:done + group]
        # Reset per channel (every group starts from the untouched codes): the official code's shallow
        # copy leaves every earlier channel at its mean, so its rows depend on processing order and a
        # shard could not be computed without replaying all channels before it; the paper's Δi_c is
        # defined on the unmodified codes, which is what this computes.
        s = s0.expand(len(chans), 2, -1, -1).clone()  # [m, ±, N, total]
        for j, c in enumerate(chans):
            s[j, 0, :, c] = mean_t[c] + alpha * std_t[c]  # first set to the mean, then ± alpha·std
            s[j, 1, :, c] = mean_t[c] - alpha * std_t[c]
        flat = s.reshape(-1, layout.total)
        f = torch.cat([embed_images(part) for part in flat.split(batch)])
        f = _unit(f.float()).reshape(len(chans), 2, n_images, -1)
        d = _unit(f[:, 0] - f[:, 1])
        out[done:done + len(chans)] = _unit(d.mean(1)).cpu().numpy()
        done += len(chans)
        bar.update(len(chans))
        if done == end - start or time.monotonic() - last_save >= save_every_s:
            save()
            last_save = time.monotonic()
        if on_progress is not None:
            on_progress(done)
    bar.close()
    return out


def shard_status(workdir, n_shards: int) -> list[tuple[int, int] | None]:
    """(done, total) per shard, None where no file exists yet."""
    status = []
    for i in range(n_shards):
        path = shard_path(workdir, (i, n_shards))
        if path.is_file():
            saved = _read_shard(path)
            status.append((saved["done"], saved["range"][1] - saved["range"][0]))
        else:
            status.append(None)
    return status


def merge_fs3(workdir, n_shards: int, layout: StyleSpaceLayout | None = None, out=None) -> np.ndarray:
    """Join the complete shards of `workdir` into fs3 [rows, D]; with `out`, also write it (save_fs3).

    Shard files record the generator's layout, so `layout` is only checked when given.
    """
    if n_shards < 1:
        raise ValueError(f"need at least one shard, got {n_shards}")
    parts, config, expected_start = [], None, 0
    for i in range(n_shards):
        path = shard_path(workdir, (i, n_shards))
        if not path.is_file():
            raise FileNotFoundError(f"shard {i}/{n_shards} missing: {path} (run `cli.py fs3 --shard {i}/{n_shards}`)")
        saved = _read_shard(path)
        start, end = saved["range"]
        if saved["done"] != end - start:
            raise ValueError(f"shard {i}/{n_shards} is incomplete ({saved['done']}/{end - start} channels); rerun it to resume")
        if layout is None:
            layout = saved["layout"]
        if saved["layout"] != layout:
            raise ValueError(f"shard {i}/{n_shards} was computed for another generator layout")
        if config is None:
            config = saved["config"]
        elif saved["config"] != config:
            raise ValueError(f"shard {i}/{n_shards} was computed with other settings than shard 0")
        if start != expected_start or (start, end) != shard_range(config["rows"], (i, n_shards)):
            raise ValueError(f"shard {i}/{n_shards} covers rows {start}..{end}, which does not continue the table")
        parts.append(saved["rows"])
        expected_start = end
    fs3 = np.concatenate(parts)
    if fs3.shape[0] != config["rows"] or fs3.shape[0] not in layer_boundaries(layout):
        raise ValueError(f"merged table has {fs3.shape[0]} rows; expected {config['rows']} at a conv-layer boundary of this layout")
    if out is not None:
        save_fs3(out, fs3, layout, {"computed": config, "shards": n_shards})
    return fs3


def coverage(layout: StyleSpaceLayout, rows: int) -> dict:
    """Which layers and channels a table of `rows` rows covers (rows follow layout.conv_index())."""
    layers, row = [], 0
    for l in layout.conv_layers:
        covered = row + l.channels <= rows
        layers.append({"name": l.name, "resolution": l.resolution, "channels": l.channels, "s_offset": l.offset,
                       "rows": [row, row + l.channels] if covered else None})
        row += l.channels
    return {"rows": rows, "row_order": "layout.conv_index(): non-ToRGB style channels in layout order",
            "covered_layers": [x["name"] for x in layers if x["rows"]],
            "uncovered_layers": [x["name"] for x in layers if not x["rows"]] + [l.name for l in layout.layers if l.is_torgb],
            "layers": layers}


def save_fs3(path, fs3: np.ndarray, layout: StyleSpaceLayout, meta: dict | None = None) -> tuple[Path, Path]:
    """fs3.npy (float32) and its coverage record fs3.json beside it, both atomically."""
    path = Path(path)
    if path.suffix != ".npy":
        raise ValueError(f"fs3 output must be a .npy file, got {path}")
    if fs3.ndim != 2 or fs3.shape[0] not in layer_boundaries(layout):
        raise ValueError(f"fs3 has shape {fs3.shape}; rows must stop at a conv-layer boundary {layer_boundaries(layout)}")
    for existing in (path, path.with_suffix(".json")):
        check_output(existing, "fs3 output")
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.save(f, fs3.astype(np.float32), allow_pickle=False)
    record = {"format_version": FORMAT_VERSION, "shape": list(fs3.shape), **coverage(layout, fs3.shape[0]), **(meta or {})}
    info = path.with_suffix(".json")
    with atomic_path(info) as tmp:
        tmp.write_text(json.dumps(record, indent=1))
    return path, info


# --- official StyleCLIP artifacts ----------------------------------------------------------------------
def import_official_fs3(path, layout: StyleSpaceLayout, embed_dim: int | None = None) -> np.ndarray:
    """StyleCLIP's fs3.npy -> float32 [rows, D]; rows must stop at a conv-layer boundary (5376, 6048 for FFHQ)."""
    fs3 = read_npy(path, "fs3 table (.npy [rows, embed_dim])")
    bounds = layer_boundaries(layout)
    if fs3.ndim != 2 or fs3.shape[0] not in bounds or (embed_dim is not None and fs3.shape[1] != embed_dim):
        raise ValueError(f"{path} has shape {fs3.shape}; expected [rows, {embed_dim or 'D'}] with rows at a conv-layer "
                         f"boundary of this generator (one of {bounds})")
    if not np.issubdtype(fs3.dtype, np.floating):
        raise ValueError(f"{path} holds {fs3.dtype}, expected floats")
    fs3 = fs3.astype(np.float32)  # the official table may be fp16 (CLIP's fp16 features)
    norms = np.linalg.norm(fs3, axis=1)
    if not np.all(np.isfinite(fs3)) or np.abs(norms - 1).max() > UNIT_TOLERANCE:
        raise ValueError(f"{path}: rows must be finite unit vectors (norms span {norms.min():.4f}..{norms.max():.4f})")
    return fs3


def import_official_s_mean_std(path, layout: StyleSpaceLayout, trust_pickle: bool = False):
    """StyleCLIP's `S_mean_std` pickle [means (one array per style layer), stds] -> flat float32 (mean, std)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"S_mean_std not found: {path}")
    if not trust_pickle:
        raise ValueError(f"{path} is a Python pickle, and loading a pickle can run arbitrary code. Only if you trust "
                         "its source (e.g. downloaded from the StyleCLIP repository yourself), pass --trust-pickle "
                         "(trust_pickle=True); or make the statistics with `cli.py s-stats`")
    try:
        with open(path, "rb") as f:
            data = pickle.load(f, encoding="latin1")  # latin1: also reads numpy arrays pickled by Python 2
    except Exception as err:  # a broken pickle raises almost anything
        raise ValueError(f"{path} is not a readable pickle ({type(err).__name__}: {err})") from None
    if not (isinstance(data, (list, tuple)) and len(data) == 2):
        raise ValueError(f"{path} holds {type(data).__name__}; expected [means, stds]")
    flat = []
    for what, arrays in zip(("means", "stds"), data):
        if not isinstance(arrays, (list, tuple)) or len(arrays) != len(layout):
            raise ValueError(f"{path}: {what} must be a list of {len(layout)} arrays (one per style layer), "
                             f"got {len(arrays) if isinstance(arrays, (list, tuple)) else type(arrays).__name__}")
        parts = []
        for a, l in zip(arrays, layout.layers):
            a = np.asarray(a, dtype=np.float32)
            if a.size != l.channels or a.ndim > 1 and sorted(a.shape)[:-1] != [1] * (a.ndim - 1):
                raise ValueError(f"{path}: {what} for {l.name} has shape {a.shape}, expected [{l.channels}]")
            parts.append(a.reshape(-1))
        flat.append(np.concatenate(parts))
    mean, std = flat
    if not (np.all(np.isfinite(mean)) and np.all(np.isfinite(std)) and std.min() >= 0):
        raise ValueError(f"{path}: means/stds must be finite and stds non-negative")
    return mean, std


def import_styleclip(fs3_path, s_mean_std_path, layout: StyleSpaceLayout, out_dir, trust_pickle: bool = False):
    """Both official files -> out_dir/{fs3.npy, fs3.json, s_stats.npz}; everything is checked before anything is written."""
    fs3 = import_official_fs3(fs3_path, layout)
    mean, std = import_official_s_mean_std(s_mean_std_path, layout, trust_pickle)
    out_dir = Path(out_dir)
    source = {"source": "official StyleCLIP", "fs3_file": str(fs3_path), "fs3_sha256": sha256_file(fs3_path),
              "s_mean_std_file": str(s_mean_std_path), "s_mean_std_sha256": sha256_file(s_mean_std_path)}
    stats = save_style_statistics(out_dir / "s_stats.npz", mean, std, source)
    return (*save_fs3(out_dir / "fs3.npy", fs3, layout, source), stats)
