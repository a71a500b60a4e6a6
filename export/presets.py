"""Random-weight models of real size or demo size, written as files a user would export (DESIGN §9).

  ffhq  FFHQ-1024 config-f StyleGAN2 + ViT-B-32 (real weights are not available here; random weights
        have exactly the real compute, file sizes and numerics paths), fs3 with the official 5376 rows
  demo  the demo world's architectures (64 px generator, small open_clip at 64 px)

Each preset also gets a latent mapper ("purple hair"), an fs3 table (random unit rows), S statistics and
an e4e encoder (ffhq: e4e_ffhq_encode.pt's IR-SE-50 at 256 px, 18 rows, saved in e4e's checkpoint format;
demo: the demo encoder's architecture), so every graph and every kind of edit exists. `preset_bundle` builds the models and the
bundle once into a work folder and reuses them while the preset and the export options are unchanged.
"""
from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

import numpy as np
import torch

from precompute.stylegan2 import GeneratorConfig

from precompute.demo.train_clip import DEMO_CLIP_CONFIG
from precompute.demo.train_encoder import DEMO_ENCODER
from precompute.demo.train_generator import DEMO_CONFIG
from precompute.encoder import EncoderConfig

from . import __version__
from .bundle import ExportOptions, Sources, export_bundle

PRESETS = ("demo", "ffhq")
# The demo world's architectures (precompute/demo): 64 px generator, small open_clip at 64 px.
DEMO_GENERATOR = DEMO_CONFIG
DEMO_CLIP = DEMO_CLIP_CONFIG
FFHQ_CLIP = "ViT-B-32"
FFHQ_FS3_ROWS = 5376  # the official table: conv layers up to 128 px
FFHQ_GENERATOR = GeneratorConfig.rosinality(1024, 512, 8, 2)  # stylegan2-ffhq-config-f
STAMP = "preset.json"


def check_preset(preset: str) -> str:
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    return preset


def preset_definition(preset: str) -> dict:
    """Everything that decides the preset's models (a change rebuilds them)."""
    if check_preset(preset) == "ffhq":
        return {"preset": preset, "generator": FFHQ_GENERATOR.to_dict(),
                "clip": FFHQ_CLIP, "fs3_rows": FFHQ_FS3_ROWS, "encoder": EncoderConfig.official(18).to_dict(), "seed": 0}
    return {"preset": preset, "generator": DEMO_GENERATOR.to_dict(), "clip": DEMO_CLIP, "fs3_rows": None,
            "encoder": DEMO_ENCODER.to_dict(), "seed": 0}


def write_models(work: Path, preset: str) -> Sources:
    """Random-weight models of `preset` saved under `work` (torch seed 0: the same files every time)."""
    import open_clip

    from precompute.checkpoints import save_rosinality
    from precompute.encoder import Encoder4Editing, save_encoder
    from precompute.mapper import LatentMapper, MapperConfig, save_mapper
    from precompute.stylegan2 import Generator

    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    if check_preset(preset) == "ffhq":
        gen = Generator(FFHQ_GENERATOR).eval()
        clip, clip_name, rows = open_clip.create_model(FFHQ_CLIP, pretrained=None), FFHQ_CLIP, FFHQ_FS3_ROWS
    else:
        gen = Generator(DEMO_GENERATOR).eval()
        clip, clip_name, rows = open_clip.CLIP(**DEMO_CLIP), None, None
    gen.mean_latent(4096)
    save_rosinality(gen, work / "generator.pt")
    dim, embed = gen.config.style_dim, clip.text_projection.shape[1]
    save_mapper(LatentMapper(MapperConfig(gen.n_latent, dim, prompt="purple hair")), work / "purple_hair")
    np.save(work / "fs3.npy", random_fs3(rows or gen.layout.conv_channels, embed))
    s = style_samples(gen)
    np.savez(work / "s_stats.npz", mean=s.mean(0), std=s.std(0))
    if clip_name is None:  # a custom config: save it in our format, which records the config
        from precompute.clip_model import Clip, save_clip

        save_clip(Clip(clip, DEMO_CLIP), work / "clip")
        clip_file = work / "clip.json"
    else:
        torch.save(clip.state_dict(), work / "clip.pt")
        clip_file = work / "clip.pt"
    encoder = Encoder4Editing(EncoderConfig.official(gen.n_latent) if preset == "ffhq" else DEMO_ENCODER).eval()
    with torch.no_grad():
        encoder.latent_avg.copy_(gen.latent_avg.expand(gen.n_latent, -1))
    if preset == "ffhq":  # e4e's own checkpoint layout, through the import an e4e user takes
        torch.save(e4e_checkpoint(encoder, gen.config.size), work / "e4e.pt")
        encoder_file = work / "e4e.pt"
    else:
        save_encoder(encoder, work / "encoder")
        encoder_file = work / "encoder.json"
    return Sources(work / "generator.pt", clip_file, clip_name, [work / "purple_hair.json"], work / "fs3.npy",
                   work / "s_stats.npz", encoder=encoder_file)


def random_fs3(rows: int, embed: int) -> np.ndarray:
    """An fs3 table of random unit rows (seeded: the same table every time)."""
    fs3 = np.random.default_rng(0).standard_normal((rows, embed)).astype(np.float32)
    return fs3 / np.linalg.norm(fs3, axis=1, keepdims=True)


def style_samples(gen, n: int = 2000) -> np.ndarray:
    """StyleSpace vectors [n, channels] of psi-0.7 samples (torch's global generator draws the z)."""
    with torch.no_grad():
        return torch.cat(gen.styles(gen.wplus_from_z(torch.randn(n, gen.config.style_dim), 0.7)), 1).numpy()


def e4e_checkpoint(encoder, stylegan_size: int, decoder: dict | None = None, opts: dict | None = None) -> dict:
    """`encoder` laid out as e4e's coach saves it: {'state_dict': encoder.* (+ decoder.*), 'opts', 'latent_avg'}."""
    state = {f"encoder.{k}": v for k, v in encoder.state_dict().items() if k != "latent_avg"}
    state.update({f"decoder.{k}": v for k, v in (decoder or {}).items()})
    opts = {"encoder_type": "Encoder4Editing", "stylegan_size": stylegan_size, "start_from_latent_avg": True,
            **(opts or {})}
    return {"state_dict": state, "opts": opts, "latent_avg": encoder.latent_avg.clone()}


# What the bundle's graphs are, beyond the options: a change here rebuilds cached preset bundles (issue 26: no
# synthesis_wplus graph, --fp16 stores weights in fp16 and computes in fp32).
GRAPH_LAYOUT = "styles -> synthesis; fp16 = fp16 weights, fp32 compute"


def _stamp(preset: str, options: ExportOptions) -> dict:
    return {"definition": preset_definition(preset), "toolkit": __version__, "graphs": GRAPH_LAYOUT,
            "options": {"fp16": options.fp16, "torchscript": options.torchscript, "opset": options.opset,
                        "image_encoder": options.image_encoder, "int8": options.int8, "openvino": options.openvino}}


def reusable(work: Path, preset: str, options: ExportOptions) -> str | None:
    """None when `work/bundle` was built from this preset with these options and its sources are
    unchanged; otherwise why not."""
    from runtime.bundle import BundleError, read_manifest

    from .validate import sources_from_manifest

    work, expected = Path(work), _stamp(preset, options)
    try:
        stamp = json.loads((work / STAMP).read_text())
        manifest = read_manifest(work / "bundle")
    except (OSError, ValueError) as err:
        return f"no usable bundle yet ({err})"
    if stamp != expected:
        return "the preset or the export options changed"
    wanted = {"fp32"} | ({"fp16"} if options.fp16 else set()) | ({"torchscript"} if options.torchscript else set())
    if any(not wanted <= set(g["variants"]) for g in manifest["graphs"].values()) or options.int8 and not any(
            "int8" in g["variants"] for g in manifest["graphs"].values()):
        return "the bundle lacks a requested variant"
    if manifest["producer"].get("toolkit") != __version__ or manifest["producer"].get("opset") != options.opset:
        return "the bundle was made by another toolkit version or opset"
    try:
        sources_from_manifest(manifest)  # every recorded source file present with its sha256
    except BundleError as err:
        return str(err)
    return None


def preset_bundle(work, preset: str, options: ExportOptions = ExportOptions(), progress: bool = True,
                  log=print) -> Path:
    """`work/bundle` for `preset`: reused when it matches (see `reusable`), else models + export anew."""
    work = Path(work)
    why = reusable(work, preset, options)
    if why is None:
        log(f"reusing {work / 'bundle'} ({preset} preset)")
        return work / "bundle"
    log(f"building the {preset} preset into {work}: {why}")
    (work / STAMP).unlink(missing_ok=True)
    # In a child process: at FFHQ size the heap the models and export leave behind (freed, yet resident) came on
    # top of the benchmark's own peak (6.5 GiB in one process; the two apart 5.0 and 4.9 GiB).
    child = multiprocessing.get_context("spawn").Process(target=_build, args=(work, preset, options, progress))
    child.start()
    child.join()
    if child.exitcode != 0:
        raise RuntimeError(f"building the {preset} preset into {work} failed (exit code {child.exitcode}; see above)")
    (work / STAMP).write_text(json.dumps(_stamp(preset, options), indent=2) + "\n")
    return work / "bundle"


def _build(work: Path, preset: str, options: ExportOptions, progress: bool) -> None:
    export_bundle(work / "bundle", write_models(work, preset), options, progress=progress)
