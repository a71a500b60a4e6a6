"""Global-direction tables (DESIGN §4.C): S statistics and the channel relevance table fs3.

  statistics  mean/std (ddof 0) of every style channel over mapped samples z ~ N(0, I), truncation 0.7
  fs3 row c   for N fixed latents: s[:, c] = mean_c, f± = unit(E_I(G(s ± alpha·std_c·e_c))),
              d = unit(f+ - f-), row_c = unit(mean_n d); rows in layout.conv_index() order (no ToRGB)

fs3 costs 2·N generator + CLIP passes per channel (FFHQ-1024: 6048 × 200 ≈ 1.2 M), so the channel list
is split, either into contiguous shards that run as separate processes (`workdir/shard_<i>_of_<n>.npz`,
joined by `merge_fs3`) or into units of (layer, channel range) that a pool of workers computes
(`workdir/rows_<start>_<end>.npz`, joined by `merge_units`; precompute/distributed.py runs them on Ray).
Each part file is written atomically, resumes after a kill and refuses to resume with other settings.
Channels are rendered in groups on a fixed grid (from each layer's first channel), so a unit whose
bounds lie on that grid makes exactly the generator calls of an unsplit run: the same rows, bit for bit.

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
SKIP_CHUNK = 4096
CPU_BATCH_BYTES, GPU_BATCH_BYTES = 2.5e8, 4e9  # activation budget of one generator call (default_batch)


# --- shared helpers ----------------------------------------------------------------------------------
def sample_z(n: int, dim: int, seed: int, start: int = 0) -> torch.Tensor:
    """z [n, dim] = samples start..start+n of one seeded stream.

    numpy's generator yields the same stream however it is chunked, so the statistics (any batch size,
    any split into ranges) and fs3 (the first N samples: StyleCLIP also renders the first samples of its
    statistics set) agree.
    """
    return next(_z_batches(dim, seed, start, n, n), torch.zeros(0, dim))


def _z_batches(dim: int, seed: int, start: int, n: int, batch: int):
    """Samples start..start+n of the seeded stream, `batch` at a time (the last one may be shorter)."""
    rng = np.random.default_rng(seed)
    for skip in range(0, start, SKIP_CHUNK):  # in chunks: memory stays small however deep the start
        rng.standard_normal((min(SKIP_CHUNK, start - skip), dim), dtype=np.float32)
    for first in range(start, start + n, batch):
        yield torch.from_numpy(rng.standard_normal((min(batch, start + n - first), dim), dtype=np.float32))


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
    Sums are float64 around the first batch's mean (a shift keeps E[x²] - E[x]² from cancelling); a
    split run (precompute/distributed.py) adds the sums of its ranges, which gives the same numbers.
    """
    if n < 1 or batch < 1:
        raise ValueError(f"need n >= 1 and batch >= 1, got n={n}, batch={batch}")
    shift = statistics_shift(gen, n, psi, seed, batch)
    return finish_statistics(statistics_sums(gen, 0, n, shift, psi, seed, batch), n, shift)


def _mapped_styles(gen, z: torch.Tensor, psi: float) -> torch.Tensor:
    return torch.cat(gen.styles(gen.wplus_from_z(z.to(_device(gen)), psi)), 1).double()


@torch.no_grad()
def statistics_shift(gen, n: int, psi: float = PSI, seed: int = 0, batch: int = 4096) -> np.ndarray:
    """The float64 mean of the first batch: the shift every range of one statistics run sums around."""
    return _mapped_styles(gen, sample_z(min(batch, n), gen.config.style_dim, seed), psi).mean(0).cpu().numpy()


@torch.no_grad()
def statistics_sums(gen, start: int, n: int, shift: np.ndarray, psi: float = PSI, seed: int = 0,
                    batch: int = 4096) -> np.ndarray:
    """float64 [2, total]: sums of (s - shift) and (s - shift)² over samples start..start+n of the stream.

    Samples go through the generator `batch` at a time from `start`; ranges that start on a multiple
    of `batch` therefore make the same generator calls as one whole run.
    """
    shift_t = torch.tensor(shift, device=_device(gen))  # a copy: a worker gets a read-only array
    sums = torch.zeros(2, shift.size, dtype=torch.float64, device=shift_t.device)
    for z in _z_batches(gen.config.style_dim, seed, start, n, batch):
        s = _mapped_styles(gen, z, psi) - shift_t
        sums[0] += s.sum(0)
        sums[1] += s.square().sum(0)
    return sums.cpu().numpy()


def finish_statistics(sums: np.ndarray, n: int, shift: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mean, std) float32 from the summed `statistics_sums` of all n samples."""
    mean = sums[0] / n
    std = np.sqrt(np.clip(sums[1] / n - np.square(mean), 0, None))
    return (mean + shift).astype(np.float32), std.astype(np.float32)


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


def unit_path(workdir, rows: tuple[int, int]) -> Path:
    return Path(workdir) / f"rows_{rows[0]:05d}_{rows[1]:05d}.npz"


def channel_group(n_images: int, batch: int) -> int:
    """Channels rendered together: as many as fit in one `batch` of 2·N images (at least one)."""
    return max(1, batch // (2 * n_images))


def channel_groups(layout: StyleSpaceLayout, start: int, end: int, group: int) -> list[tuple[int, int]]:
    """Rows [start, end) cut on the grid of `group` channels that starts at every conv layer's first row.

    Every run and every unit renders on this one grid, so the generator calls (and rows) of a unit
    with bounds on it equal those of an unsplit run; a bound off the grid only splits one group.
    """
    groups, first = [], 0
    for layer in layout.conv_layers:
        for a in range(first, first + layer.channels, group):
            a, b = max(a, start), min(a + group, first + layer.channels, end)
            if a < b:
                groups.append((a, b))
        first += layer.channels
    return groups


def plan_units(layout: StyleSpaceLayout, rows: int, channels: int, group: int = 1) -> list[tuple[str, int, int]]:
    """Work units (layer name, first row, end row) of a table of `rows` rows: each conv layer cut into
    runs of `channels` (rounded up to a multiple of `group`, so unit bounds lie on the render grid)."""
    if channels < 1:
        raise ValueError(f"need at least one channel per unit, got {channels}")
    size = -(-channels // group) * group
    units, first = [], 0
    for layer in layout.conv_layers:
        end = min(first + layer.channels, rows)
        units += [(layer.name, a, min(a + size, end)) for a in range(first, end, size)]
        first += layer.channels
    return units


def default_batch(gen, budget_bytes: float | None = None) -> int:
    """Images per generator call that keep the activations near `budget_bytes` (≈4 live fp32 maps per layer).

    CPUs are faster per image with small batches that stay in cache (64 px demo: 10 ms at 8-16 images,
    22 ms at 200); GPUs want large ones.
    """
    if budget_bytes is None:
        budget_bytes = GPU_BATCH_BYTES if _device(gen).type == "cuda" else CPU_BATCH_BYTES
    per_image = sum(4 * 4 * (l.channels * l.resolution**2) for l in gen.layout.conv_layers)
    return int(max(1, min(512, budget_bytes // per_image)))


def _read_shard(path: Path) -> dict:
    with np.load(path, allow_pickle=False) as f:
        return {"rows": f["rows"], "done": int(f["done"]), "config": json.loads(str(f["config"])),
                "shard": tuple(int(v) for v in f["shard"]) if "shard" in f.files else None,
                "range": tuple(int(v) for v in f["range"]),
                "layout": StyleSpaceLayout.from_list(json.loads(str(f["layout"]))),
                # the embeddings of the images already rendered for the group of channels under way
                "partial": (tuple(int(v) for v in f["partial_group"]), f["partial"]) if "partial" in f.files else None}


def check_resume(path: Path, saved: dict, config: dict, shard, rng) -> None:
    """Refuse to continue a part file made with other settings (or for other rows)."""
    shard = tuple(shard) if shard is not None else None
    if saved["config"] != config or saved["shard"] != shard or saved["range"] != tuple(rng):
        keys = sorted(k for k in set(config) | set(saved["config"]) if config.get(k) != saved["config"].get(k))
        if saved["shard"] != shard or saved["range"] != tuple(rng):
            keys.append("shard" if shard is not None else "rows")
        raise ValueError(f"{path} was computed with other settings ({', '.join(keys)} differ); "
                         "use another --workdir or delete the file to start over")


def fs3_settings(gen, clip, mean: np.ndarray, std: np.ndarray, n_images: int = 100, seed: int = 0,
                 alpha: float = 5.0, max_resolution: int | None = None, psi: float = PSI) -> dict:
    """Everything that changes the numbers of a table (not `batch`/`compile`: they change only float
    rounding): what every part file records and a resume or merge must match."""
    layout = gen.layout
    if n_images < 1 or not np.isfinite(alpha):
        raise ValueError(f"need n_images >= 1 and a finite alpha, got {n_images}, {alpha}")
    if mean.shape != (layout.total,) or std.shape != (layout.total,):
        raise ValueError(f"S statistics have shapes {mean.shape}/{std.shape}; this generator has {layout.total} channels")
    return {
        "version": FORMAT_VERSION, "generator": model_digest(gen, gen.latent_avg), "clip": model_digest(clip.model),
        "preprocess": clip.preprocess, "preprocess_cfg": clip.preprocess_cfg, "embed_dim": clip.embed_dim,
        "stats": hashlib.sha256(mean.astype(np.float32).tobytes() + std.astype(np.float32).tobytes()).hexdigest(),
        "n_images": int(n_images), "seed": int(seed), "psi": float(psi), "alpha": float(alpha),
        "rows": fs3_rows(layout, max_resolution), "max_resolution": max_resolution,
    }


@torch.no_grad()
def compute_fs3(gen, clip, mean: np.ndarray, std: np.ndarray, n_images: int = 100, seed: int = 0,
                alpha: float = 5.0, shard: tuple[int, int] = (0, 1), workdir=None, progress: bool = True,
                batch: int | None = None, max_resolution: int | None = None, psi: float = PSI,
                save_every_s: float = 30.0, on_progress: Callable[[int], None] | None = None,
                compile: bool = False, unit: tuple[int, int] | None = None) -> np.ndarray:
    """The fs3 rows of one shard (or of the rows [start, end) of `unit`), [rows, embed_dim] float32.

    `batch`: images per generator/CLIP call (default from the generator's size); as many channels as
    fit are rendered together (channel_groups). With `workdir`, progress is saved (shard_path or
    unit_path) every `save_every_s` seconds and at the end, and a rerun resumes (or, when complete,
    just returns the saved rows). `on_progress(done)` is called after every channel group (tests use it
    to simulate a kill; workers report progress with it). `compile=True` runs the generator and CLIP
    through torch.compile (measured ~2x faster on a CPU, where eager mode spends about half its time in
    unfused element-wise ops; compiling costs a minute or two per process). Like `batch`, it changes
    the rows only at float-rounding level, so it is not part of the settings a resume must match.
    """
    layout = gen.layout
    config = fs3_settings(gen, clip, mean, std, n_images, seed, alpha, max_resolution, psi)
    rows = config["rows"]
    if unit is None:
        start, end = shard_range(rows, shard)
    else:
        start, end = (int(v) for v in unit)
        if not 0 <= start < end <= rows:
            raise ValueError(f"unit rows {start}..{end} are not inside the table's {rows} rows")
        shard = None
    channels = layout.conv_index()  # flat S position of every row
    out = np.zeros((end - start, clip.embed_dim), np.float32)
    done, partial = 0, None
    path = None if workdir is None else shard_path(workdir, shard) if unit is None else unit_path(workdir, (start, end))
    if path is not None and path.is_file():
        saved = _read_shard(path)
        check_resume(path, saved, config, shard, (start, end))
        out, done, partial = saved["rows"], saved["done"], saved["partial"]

    def save(group=None, feats=None):
        """The finished rows, and the embeddings of a group under way: one 1024 px channel is 2·N renders
        (~30 min on 2 CPU cores at N = 100), too long to lose to a Ctrl-C."""
        if path is not None:
            where = {"shard": np.array(shard)} if shard is not None else {}
            if feats is not None:
                where.update(partial=torch.cat([x.float() for x in feats]).cpu().numpy(), partial_group=np.array(group))
            _save_npz(path, rows=out, done=np.int64(done), config=_json_array(config), range=np.array([start, end]),
                      channels=channels[start:end], layout=_json_array(layout.to_list()), **where)

    device = _device(gen)
    batch = batch or default_batch(gen)
    z = sample_z(n_images, gen.config.style_dim, seed).to(device)
    s0 = torch.cat(gen.styles(gen.wplus_from_z(z, psi)), 1)  # [N, total]
    mean_t, std_t = (torch.as_tensor(a, dtype=s0.dtype, device=device) for a in (mean, std))
    render, embed = gen.synthesis_flat, clip.encode_image
    if compile:
        render, embed = torch.compile(render, dynamic=False), torch.compile(embed, dynamic=False)

    def embed_images(part):
        k = part.shape[0]
        if compile and k < batch:  # keep one input shape: each new shape would compile again
            part = torch.cat([part, part[-1:].expand(batch - k, -1)])
        return embed(render(part))[:k].to(device)

    # Progress in images (2·N per channel), so the ETA shows after the first batch, not the first channel.
    per_channel = 2 * n_images
    resumed = 0 if partial is None else len(partial[1])
    bar = tqdm(total=(end - start) * per_channel, initial=done * per_channel + resumed, unit="img",
               desc=f"fs3 rows {start}..{end}" if shard is None else f"fs3 shard {shard[0]}/{shard[1]}",
               disable=not progress, smoothing=0.1)
    last_save = time.monotonic()
    for a, b in channel_groups(layout, start + done, end, channel_group(n_images, batch)):
        chans = channels[a:b]
        # Reset per channel (every group starts from the untouched codes): the official code's shallow
        # copy leaves every earlier channel at its mean, so its rows depend on processing order and a
        # shard could not be computed without replaying all channels before it; the paper's Δi_c is
        # defined on the unmodified codes, which is what this computes.
        s = s0.expand(len(chans), 2, -1, -1).clone()  # [m, ±, N, total]
        for j, c in enumerate(chans):
            s[j, 0, :, c] = mean_t[c] + alpha * std_t[c]  # first set to the mean, then ± alpha·std
            s[j, 1, :, c] = mean_t[c] - alpha * std_t[c]
        flat = s.reshape(-1, layout.total)
        feats = []
        if partial is not None and partial[0] == (a, b):  # resume inside this group
            feats.append(torch.from_numpy(partial[1]).to(device))
        partial = None
        for part in flat[sum(len(f) for f in feats):].split(batch):
            feats.append(embed_images(part))
            bar.update(len(part))
            if time.monotonic() - last_save >= save_every_s and sum(len(f) for f in feats) < len(flat):
                save((a, b), feats)
                last_save = time.monotonic()
        f = _unit(torch.cat([x.float() for x in feats])).reshape(len(chans), 2, n_images, -1)
        d = _unit(f[:, 0] - f[:, 1])
        out[a - start:b - start] = _unit(d.mean(1)).cpu().numpy()
        done = b - start
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

    def shards():  # read lazily: the first problem in shard order is the one reported
        for i in range(n_shards):
            path = shard_path(workdir, (i, n_shards))
            if not path.is_file():
                raise FileNotFoundError(f"shard {i}/{n_shards} missing: {path} (run `cli.py fs3 --shard {i}/{n_shards}`)")
            saved = _read_shard(path)
            if saved["range"] != shard_range(saved["config"]["rows"], (i, n_shards)):
                raise ValueError(f"shard {i}/{n_shards} covers rows {saved['range'][0]}..{saved['range'][1]}, "
                                 "which does not continue the table")
            yield f"shard {i}/{n_shards}", saved

    return _join(shards(), layout, out, {"shards": n_shards})


def unit_status(workdir) -> dict[tuple[int, int], tuple[int, int]]:
    """{(start, end): (done, total)} of every unit part file in `workdir`."""
    status = {}
    for path in sorted(Path(workdir).glob("rows_*_*.npz")):
        saved = _read_shard(path)
        status[saved["range"]] = (saved["done"], saved["range"][1] - saved["range"][0])
    return status


def check_units(workdir, units: list[tuple[str, int, int]], config: dict) -> dict[tuple[int, int], int]:
    """Channels done per planned unit; refuses a work directory whose parts another plan or other
    settings made (before any worker starts)."""
    planned = {(a, b) for _, a, b in units}
    done = {}
    for path in sorted(Path(workdir).glob("rows_*_*.npz")):
        saved = _read_shard(path)
        if saved["range"] not in planned:
            raise ValueError(f"{path} covers rows {saved['range'][0]}..{saved['range'][1]}, which is not a unit of "
                             "this run (other --unit-channels, --batch or --images?); use the same settings, another "
                             "--workdir, or delete the rows_*.npz files to start over")
        check_resume(path, saved, config, None, saved["range"])
        done[saved["range"]] = saved["done"]
    return done


def merge_units(workdir, layout: StyleSpaceLayout | None = None, out=None) -> np.ndarray:
    """Join the complete unit parts of `workdir` (a `fs3 --ray` run) into fs3 [rows, D], like merge_fs3."""
    paths = sorted(Path(workdir).glob("rows_*_*.npz"))
    if not paths:
        raise FileNotFoundError(f"no unit parts (rows_*.npz) in {workdir}: run `cli.py fs3 --ray` (or, for the "
                                "shards of `fs3 --shard i/n`, merge with --shards n)")
    parts = sorted(((f"unit {p.name}", _read_shard(p)) for p in paths), key=lambda x: x[1]["range"])
    return _join(parts, layout, out, {"units": len(parts)})


def _join(parts, layout: StyleSpaceLayout | None, out, meta: dict) -> np.ndarray:
    """Check that the labelled part records (label, record) are complete, agree and tile the table in
    order; concatenate them."""
    rows, config, first, expected_start = [], None, None, 0
    for label, saved in parts:
        start, end = saved["range"]
        if saved["done"] != end - start:
            raise ValueError(f"{label} is incomplete ({saved['done']}/{end - start} channels); rerun it to resume")
        if layout is None:
            layout = saved["layout"]
        if saved["layout"] != layout:
            raise ValueError(f"{label} was computed for another generator layout")
        if config is None:
            config, first = saved["config"], label
        elif saved["config"] != config:
            raise ValueError(f"{label} was computed with other settings than {first}")
        if start > expected_start:
            raise ValueError(f"rows {expected_start}..{start} are missing before {label}; rerun to compute them")
        if start < expected_start:
            raise ValueError(f"{label} covers rows {start}..{end}, which overlap the rows before it "
                             "(parts of two different runs?)")
        rows.append(saved["rows"])
        expected_start = end
    fs3 = np.concatenate(rows)
    if fs3.shape[0] != config["rows"] or fs3.shape[0] not in layer_boundaries(layout):
        raise ValueError(f"merged table has {fs3.shape[0]} rows; expected {config['rows']} at a conv-layer boundary of this layout")
    if out is not None:
        save_fs3(out, fs3, layout, {"computed": config, **meta})
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
