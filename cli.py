"""Command line: parses options and calls the library. Run `python cli.py --help`."""
from __future__ import annotations

import errno
import importlib.util
import os
import sys
import time
import warnings
from pathlib import Path

import click

ROOT = Path(__file__).resolve().parent
# In a source checkout the demo world and its bundle live beside cli.py; an installed CLI (pip) has no
# artifacts/ there and looks in the current folder instead.
_BASE = ROOT if (ROOT / "artifacts").is_dir() else Path("")
DEMO_DIR = _BASE / "artifacts" / "demo"  # the shipped demo world
DEFAULT_BUNDLE = _BASE / "artifacts" / "bundles" / "demo"  # built by `export`/`make demo`; ignored by git
DEMO_PHOTO_SEED = 900_001  # the held-out renders' seed (precompute.demo.training.HELDOUT_SEED): `demo` inverts one

# Errors a user can cause with bad input: reported as one line, exit code 2, no traceback.
USER_ERRORS = (ValueError, OSError, MemoryError)

# What each optional extra brings (module names), for the check that runs before a command needs them.
EXTRAS = {"train": ("torch", "torchvision", "open_clip", "onnx", "onnxscript", "safetensors", "tqdm", "skimage"),
          "distributed": ("ray",), "align": ("dlib", "scipy")}
SECTIONS = (("runtime", "Edit with a bundle (the base install)"),
            ("align", "Real photos: find and align faces (need the [align] extra)"),
            ("train", "Train, precompute, export, validate, benchmark (need the [train] extra)"))


def requires(extra: str):
    """Mark a command as needing an optional extra: without it the command says which and how to get it
    (one `error:` line, exit 2) before doing anything; --help still works."""
    def mark(command: click.Command) -> click.Command:
        callback = command.callback
        command.extra = extra

        def checked(*args, **kwargs):
            require_extra(extra, command.name)
            return callback(*args, **kwargs)
        command.callback = checked
        return command
    return mark


def require_extra(extra: str, what: str) -> None:
    missing = [m for m in EXTRAS[extra] if importlib.util.find_spec(m) is None]
    if missing:
        raise click.ClickException(
            f"`{what}` needs the [{extra}] extra, which is not installed here (missing: {', '.join(missing)}); install it "
            f"with: pip install 'styleclip-edge[{extra}]' (in a source checkout: pip install '.[{extra}]')")


def _print_warning(message, category, filename, lineno, file=None, line=None):
    from runtime.checks import ToolWarning

    if issubclass(category, ToolWarning):
        click.echo(f"warning: {message}", err=True)
    else:
        _show_warning(message, category, filename, lineno, file, line)


_show_warning = warnings.showwarning


class Cli(click.Group):
    """Every failure a user can cause ends as one `error: ...` line and exit code 2, never a traceback:
    click's usage errors, the library's ValueError/OSError (bad files, options, bundles) and Ctrl-C."""

    def main(self, args=None, prog_name=None, **extra):
        warnings.showwarning = _print_warning
        try:
            code = super().main(args=args, prog_name=prog_name, standalone_mode=False, **extra)
        except click.UsageError as err:
            hint = f" (see `{err.ctx.command_path} --help`)" if err.ctx is not None else ""
            click.echo(f"error: {err.format_message()}{hint}", err=True)
            sys.exit(2)
        except click.ClickException as err:
            click.echo(f"error: {err.format_message()}", err=True)
            sys.exit(2)
        except (click.Abort, KeyboardInterrupt):
            click.echo("error: interrupted; rerun the command to resume where it supports resuming", err=True)
            sys.exit(130)
        finally:
            warnings.showwarning = _show_warning
        sys.exit(code if isinstance(code, int) else 0)

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except USER_ERRORS as err:
            message = "out of memory; use fewer or smaller inputs" if isinstance(err, MemoryError) else str(err)
            if isinstance(err, OSError) and err.errno == errno.ENAMETOOLONG and (err.filename2 or err.filename):
                from runtime.files import NameTooLongError, name_too_long  # the system's line names temporaries

                if not isinstance(err, NameTooLongError):
                    message = str(name_too_long(err.filename2 or err.filename, "the path"))
            click.echo(f"error: {message}", err=True)
            sys.exit(2)

    def format_commands(self, ctx, formatter):
        """The commands grouped by what they need installed."""
        for extra, title in SECTIONS:
            limit = formatter.width - 6 - max(map(len, self.commands))
            rows = [(name, cmd.get_short_help_str(limit=limit)) for name, cmd in self.commands.items()
                    if getattr(cmd, "extra", "runtime") == extra and not cmd.hidden]
            if rows:
                with formatter.section(title):
                    formatter.write_dl(sorted(rows))


class Output(click.ParamType):
    """An output file path checked at parse time, before any work: its suffix, not a folder, and an
    existing file only if this tool wrote it (runtime/files.check_output)."""

    name = "path"

    def __init__(self, suffix: str | None = None, stem: bool = False):
        self.suffix, self.stem = suffix, stem  # stem: a weights stem, written as STEM.safetensors + STEM.json

    def convert(self, value, param, ctx):
        from runtime.files import check_output

        what = (f"--{param.name.replace('_', '-')}" if param.param_type_name == "option" else param.name.upper()) if param else "output"
        if self.suffix and not str(value).lower().endswith(self.suffix):
            self.fail(f"must end in {self.suffix}, got {value!r}", param, ctx)
        try:
            for path in [Path(value).with_suffix(s) for s in (".safetensors", ".json")] if self.stem else [value]:
                check_output(path, what)
        except (OSError, ValueError) as err:
            self.fail(str(err), param, ctx)
        return str(value)


@click.group(cls=Cli)
def main():
    """Text-driven StyleGAN editing (StyleCLIP), exported for the edge.

    Run as `styleclip-edge COMMAND` after `pip install`, or `python cli.py COMMAND` in a source checkout."""


@requires("train")
@main.command()
@click.argument("checkpoint", type=click.Path(dir_okay=False))
@click.option("--trust-pickle", is_flag=True, help="Allow a full unpickle (runs code from the file; trusted files only).")
def inspect(checkpoint, trust_pickle):
    """Load a StyleGAN2 checkpoint strictly and print its config and StyleSpace layout."""
    from precompute.checkpoints import load_generator

    gen = load_generator(checkpoint, trust_pickle=trust_pickle)
    cfg, layout = gen.config, gen.layout
    click.echo(f"size {cfg.size}, style_dim {cfg.style_dim}, n_mlp {cfg.n_mlp}, n_latent {cfg.n_latent}, "
               f"channel_multiplier {cfg.channel_multiplier}, parameters {sum(p.numel() for p in gen.parameters()):,}")
    click.echo(f"StyleSpace: {len(layout)} layers, {layout.total} channels, {layout.conv_channels} without ToRGB")
    for layer in layout.layers:
        click.echo(f"  {layer.name:<10} {layer.resolution:>5}px {layer.channels:>4} ch  w[{layer.wplus_index}]"
                   f"{'  ToRGB' if layer.is_torgb else ''}")


@requires("train")
@main.command()
@click.argument("checkpoint", type=click.Path(dir_okay=False))
@click.argument("output", type=Output(stem=True))
@click.option("--trust-pickle", is_flag=True, help="Allow a full unpickle (runs code from the file; trusted files only).")
@click.option("--sha256", callback=lambda ctx, param, v: _check_sha256(v),
              help="Refuse the input file unless its sha256 (64 hex digits) matches.")
def convert(checkpoint, output, trust_pickle, sha256):
    """Convert a rosinality StyleGAN2 checkpoint to our safetensors + JSON format (tensors only)."""
    from precompute.checkpoints import load_generator, save_generator

    gen = load_generator(checkpoint, trust_pickle=trust_pickle, sha256=sha256)
    for path in save_generator(gen, output):
        click.echo(f"wrote {path}")


@requires("train")
@main.command("import-mapper")
@click.argument("checkpoint", type=click.Path(dir_okay=False))
@click.argument("output", type=Output(stem=True))
@click.option("--trust-pickle", is_flag=True, help="Allow a full unpickle (runs code from the file; trusted files only).")
@click.option("--prompt", help="The text the mapper edits towards, as `edit --method mapper` will be given it "
                               "[StyleCLIP's short description in the checkpoint, e.g. 'purple hair'].")
def import_mapper(checkpoint, output, trust_pickle, prompt):
    """Import an official StyleCLIP mapper checkpoint (its decoder copy is dropped)."""
    from precompute.mapper import import_official_mapper, save_mapper

    mapper = import_official_mapper(checkpoint, trust_pickle=trust_pickle, prompt=prompt)
    groups = [g for g, on in mapper.config.enabled.items() if on]
    click.echo(f"mapper for {mapper.config.prompt!r}: groups {', '.join(groups)}, split {mapper.config.split}")
    for path in save_mapper(mapper, output):
        click.echo(f"wrote {path}")


@requires("train")
@main.command("import-encoder")
@click.argument("checkpoint", type=click.Path(dir_okay=False))
@click.argument("output", type=Output(stem=True))
@click.option("--trust-pickle", is_flag=True, help="Allow a full unpickle (runs code from the file; trusted files only).")
def import_encoder(checkpoint, output, trust_pickle):
    """Import an official e4e checkpoint (encoder4editing; its decoder copy and training state are dropped)."""
    from precompute.encoder import load_encoder, save_encoder

    encoder = load_encoder(checkpoint, trust_pickle=trust_pickle)  # a .json/.safetensors of ours is checked too
    c = encoder.config
    click.echo(f"e4e encoder: {c.input_size} px, IR-SE units {list(c.units)}, widths {list(c.widths)}, "
               f"W+ [{c.n_latent}, {c.style_dim}] (latent_avg included)")
    for path in save_encoder(encoder, output, {"source": str(Path(checkpoint).name)}):
        click.echo(f"wrote {path}")


@requires("train")
@main.command("import-identity")
@click.argument("pth", type=click.Path(dir_okay=False))
@click.argument("out_stem", type=Output(stem=True))
@click.option("--trust-pickle", is_flag=True, help="Allow a full unpickle (runs code from the file; trusted files only).")
def import_identity(pth, out_stem, trust_pickle):
    """Import ArcFace IR-SE-50 (model_ir_se50.pth), the identity network of StyleCLIP, e4e and pSp."""
    from precompute.identity import load_identity, save_identity

    net = load_identity(pth, trust_pickle=trust_pickle)  # a .json/.safetensors of ours is checked too
    c = net.config
    click.echo(f"identity network: IR-SE units {list(c.units)}, widths {list(c.widths)}, {c.input_size} px face crop "
               f"-> {c.embedding} features")
    for path in save_identity(net, out_stem, {"source": str(Path(pth).name)}):
        click.echo(f"wrote {path}")


@requires("train")
@main.command("export")
@click.option("--generator", type=click.Path(dir_okay=False), help="StyleGAN2 checkpoint (rosinality .pt or ours).")
@click.option("--clip", "clip_path", type=click.Path(dir_okay=False), help="CLIP weights (ours, open_clip or OpenAI).")
@click.option("--clip-name", help="open_clip model name when --clip is a raw weights file, e.g. ViT-B-32.")
@click.option("--mapper", "mappers", multiple=True, type=click.Path(dir_okay=False), help="Latent mapper (ours); repeatable.")
@click.option("--fs3", type=click.Path(dir_okay=False), help="Global-direction relevance table (.npy).")
@click.option("--encoder", type=click.Path(dir_okay=False), help="e4e encoder (ours or an official .pt): pictures -> W+.")
@click.option("--s-stats", type=click.Path(dir_okay=False), help="StyleSpace mean/std (.npz with 'mean', 'std').")
@click.option("--out", type=click.Path(file_okay=False), help="Bundle folder [default: artifacts/bundles/demo].")
@click.option("--fp16", is_flag=True, help="Also write fp16 variants of every graph: weights stored in fp16, computed in "
              "fp32; half the size, what `web` serves (Editor(precision='fp16') runs them too).")
@click.option("--torchscript", is_flag=True, help="Also write TorchScript variants.")
@click.option("--int8", is_flag=True, help="Also write dynamic-int8 variants of the text encoder and the mappers "
              "(Editor(precision='int8')).")
@click.option("--openvino", is_flag=True, help="Also write the synthesis graphs in the form OpenVINO runs best "
              "(Editor(device='openvino')).")
@click.option("--tensorrt", is_flag=True, help="Also build TensorRT engines (needs tensorrt and a GPU).")
@click.option("--image-encoder", is_flag=True, help="Also export the CLIP image encoder.")
@click.option("--edit-settings", type=click.Path(dir_okay=False),
              help='JSON of tuned settings per prompt, e.g. {"a face with purple hair": {"neutral": "a face", '
                   '"alpha": 5, "beta": 0.35, "strength": 2}}: what `edit` uses when not told.')
@click.option("--trust-pickle", is_flag=True, help="Allow full unpickling of checkpoints (trusted files only).")
def export_cmd(generator, clip_path, clip_name, mappers, fs3, encoder, s_stats, out, fp16, torchscript, int8,
               openvino, tensorrt, image_encoder, edit_settings, trust_pickle):
    """Export models into one bundle. With no model options: the demo world from artifacts/demo."""
    from export.bundle import ExportOptions, Sources, demo_sources, export_bundle

    if generator is None and clip_path is None:
        if mappers or fs3 or s_stats or edit_settings or encoder:
            raise click.UsageError("--mapper/--fs3/--s-stats/--encoder/--edit-settings need --generator and --clip")
        src = demo_sources(DEMO_DIR)
    elif generator is None or clip_path is None:
        raise click.UsageError("pass both --generator and --clip (or neither, for the demo world)")
    else:
        src = Sources(Path(generator), Path(clip_path), clip_name, [Path(m) for m in mappers],
                      Path(fs3) if fs3 else None, Path(s_stats) if s_stats else None, trust_pickle,
                      read_json(edit_settings, "--edit-settings") if edit_settings else {},
                      Path(encoder) if encoder else None)
    out = Path(out) if out else DEFAULT_BUNDLE
    start = time.perf_counter()
    manifest = export_bundle(out, src, ExportOptions(fp16, torchscript, tensorrt, image_encoder, int8=int8,
                                                     openvino=openvino))
    total = sum(f["size"] for f in manifest["files"].values())
    clip = manifest["clip"]
    click.echo(f"CLIP {clip['name'] or '(custom config)'}: activation {clip['activation']} ({clip['activation_source']})")
    click.echo(f"wrote {out} ({len(manifest['graphs'])} graphs, {total / 1e6:.1f} MB) in {time.perf_counter() - start:.1f} s")


@requires("train")
@main.command()
@click.argument("bundle", required=False, type=click.Path(file_okay=False))
@click.option("--batches", default="1,4", show_default=True, help="Batch sizes to test (comma-separated).")
@click.option("--seed", default=0, show_default=True)
def validate(bundle, batches, seed):
    """Compare every graph of BUNDLE with PyTorch; exit 1 on any failure. Writes BUNDLE/report/index.html."""
    from export.validate import Validator, format_table

    sizes = parse_ints(batches, "--batches")
    folder = Path(bundle) if bundle else DEFAULT_BUNDLE
    checks = Validator(folder, sizes, seed).run()
    click.echo(format_table(checks))
    click.echo(f"report: {folder / 'report' / 'index.html'}")
    if not all(c.passed for c in checks):
        click.echo("validation FAILED", err=True)
        sys.exit(1)
    click.echo("validation passed")


def read_json(path: str, option: str):
    import json

    try:
        return json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise click.BadParameter(f"cannot read {path} as JSON ({err})", param_hint=option) from None


def parse_ints(text: str, option: str, minimum: int = 1) -> list[int]:
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        raise click.BadParameter(f"expected comma-separated integers, got {text!r}", param_hint=option) from None
    if min(values) < minimum:
        raise click.BadParameter(f"values must be >= {minimum}", param_hint=option)
    return values


MAX_SEEDS = 100_000


def parse_seeds(text: str, option: str = "--seed") -> list[int]:
    """Comma-separated seeds and inclusive ranges: "1,2,3", "0-99" or "0-9,20"."""
    seeds = []
    for part in text.split(","):
        first, dash, last = part.strip().partition("-")
        try:
            lo, hi = int(first), int(last) if dash else int(first)
        except ValueError:
            raise click.BadParameter(f"expected non-negative integers or ranges like 0-99, got {part.strip()!r}",
                                     param_hint=option) from None
        if lo > hi:
            raise click.BadParameter(f"the range {part.strip()!r} is empty; write it low-high", param_hint=option)
        if len(seeds) + hi - lo + 1 > MAX_SEEDS:
            raise click.BadParameter(f"more than {MAX_SEEDS} seeds; split the work over several runs", param_hint=option)
        seeds += range(lo, hi + 1)
    return seeds


def parse_float(text: str, option: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise click.BadParameter(f"expected one number, got {text!r}", param_hint=option) from None


def parse_floats(text: str, option: str, skip_blank: bool = False) -> list[float]:
    """Comma-separated numbers; `skip_blank`: empty parts ("1,,2", a trailing comma) are ignored."""
    try:
        return [float(v) for v in text.split(",") if not skip_blank or v.strip()]
    except ValueError:
        raise click.BadParameter(f"expected comma-separated numbers, got {text!r}", param_hint=option) from None


def _resumable_options(f):
    """--seed, --threads and --stop-at of the resumable training commands."""
    for option in reversed([
        click.option("--seed", default=0, show_default=True),
        click.option("--threads", default=2, show_default=True, type=click.IntRange(1, 2), help="torch threads."),
        click.option("--stop-at", type=click.IntRange(1), help="Stop after this step (rerun to resume)."),
    ]):
        f = option(f)
    return f


def _stopped_early(info: dict, steps: int) -> bool:
    """Say so when a run stopped before `steps` (--stop-at): nothing is written then."""
    if info["step"] < steps:
        click.echo(f"stopped at step {info['step']} of {steps}; rerun the same command to resume")
        return True
    return False


@requires("train")
@main.command("train-generator")
@click.option("--workdir", default="build/train/generator", show_default=True, type=click.Path(file_okay=False),
              help="Checkpoints and the cached renders; rerunning the command resumes from here.")
@click.option("--steps", default=7000, show_default=True, type=click.IntRange(1))
@click.option("--fit-at", default=4000, show_default=True, type=click.IntRange(1),
              help="Step at which the mapping is fitted and distillation begins.")
@click.option("--batch", default=32, show_default=True, type=click.IntRange(1))
@_resumable_options
@click.option("--out", default="artifacts/demo", show_default=True, type=click.Path(file_okay=False),
              help="Where the finished generator.{safetensors,json} goes.")
def train_generator(workdir, steps, fit_at, batch, seed, threads, stop_at, out):
    """Train the demo StyleGAN2 on renders (conditional decoder, mapping fit, distillation; DESIGN §7)."""
    from precompute.demo.train_generator import TrainConfig, finalize, train

    check_stem(Path(out) / "generator")
    model, info = train(workdir, TrainConfig(steps=steps, fit_at=fit_at, batch=batch, seed=seed),
                        threads=threads, stop_at=stop_at)
    if _stopped_early(info, steps):
        return
    files = finalize(model.gen, out)
    click.echo(f"trained to step {info['step']} ({info['seconds']:.0f} s this run, mapping fit R^2 "
               f"{info['mapping_r2']:.3f}); wrote {files[0]} and {files[1].name}")


@requires("train")
@main.command("refine-generator")
@click.option("--init", default="artifacts/demo/generator.json", show_default=True, type=click.Path(dir_okay=False),
              help="The generator train-generator made (stages 1-3).")
@click.option("--workdir", default="build/train/refine", show_default=True, type=click.Path(file_okay=False),
              help="Checkpoints and the cached renders; rerunning the command resumes from here.")
@click.option("--steps", default=3000, show_default=True, type=click.IntRange(1))
@click.option("--feature-weight", default=8.0, show_default=True, type=click.FloatRange(0),
              help="Extra loss weight on the eyes, brows and mouth (1 + this inside their regions).")
@click.option("--sharpen-steps", default=50000, show_default=True, type=click.IntRange(0),
              help="Then this many mapping-only steps making w independent of how clearly z picks each attribute "
                   "value (0: skip; not checkpointed: rerunning redoes only this).")
@click.option("--margin", default=2.0, show_default=True, type=click.FloatRange(0, min_open=True),
              help="The clear lead of an attribute block that sharpening compares with.")
@_resumable_options
@click.option("--out", default="artifacts/demo", show_default=True, type=click.Path(file_okay=False),
              help="Where the refined generator.{safetensors,json} goes.")
def refine_generator(init, workdir, steps, feature_weight, sharpen_steps, margin, seed, threads, stop_at, out):
    """Stages 4-5 of the demo generator: more distillation with the small features weighted up, then a
    sharper mapping (DESIGN §7)."""
    from precompute.demo.train_generator import RefineConfig, finalize, refine

    check_stem(Path(out) / "generator")
    if not Path(init).is_file():
        raise FileNotFoundError(f"generator not found: {init}; train it with `python cli.py train-generator`")
    cfg = RefineConfig(steps=steps, feature_weight=feature_weight, sharpen_steps=sharpen_steps, margin=margin, seed=seed)
    gen, info = refine(workdir, init, cfg, threads=threads, stop_at=stop_at)
    if _stopped_early(info, steps):
        return
    files = finalize(gen, out)
    sharpened = ("; sharpening loss {:.4f} -> {:.4f}".format(*info["sharpen_loss"])) if "sharpen_loss" in info else ""
    click.echo(f"refined to step {info['step']} ({info['seconds']:.0f} s this run{sharpened}); "
               f"wrote {files[0]} and {files[1].name}")


def fit(image, size: int):
    """A uint8 picture at size x size for a grid beside the generator's images (PIL bilinear)."""
    from runtime.photos import resize

    return resize(image, size)


def _align_options(f):
    """--align, --faces, --landmarks: real photos, aligned the FFHQ / e4e way before the encoder sees them."""
    for option in reversed([
        click.option("--align", "align_", is_flag=True,
                     help="Find the face in each photo and crop it the FFHQ/e4e way at the encoder's input size "
                          "(needs the [align] extra)."),
        click.option("--faces", type=click.Choice(["best", "all"]),
                     help="With --align: the best-scoring face of each photo, or every face [best]."),
        click.option("--landmarks", type=click.Path(dir_okay=False),
                     help="With --align: dlib's shape_predictor_68_face_landmarks.dat [face-recognition-models' copy, "
                          "else /usr/share/dlib's]."),
    ]):
        f = option(f)
    return f


def check_align_options(align_, faces, landmarks, crop) -> None:
    if (faces or landmarks) and not align_:
        raise click.UsageError("--faces and --landmarks apply to --align")
    if align_ and crop:
        raise click.UsageError("--align makes the crop itself; leave out --crop")
    if align_:
        require_extra("align", "--align")


def encoder_pictures(editor, images, crop, align_, faces, landmarks):
    """(the aligned faces or None, uint8 pictures as the encoder sees them, encoder inputs): every picture is
    read, checked (and aligned) before anything is written."""
    if not align_:
        return (None, *editor.encoder_input(list(images), crop))
    from runtime.align import align_photo, read_photo

    photos = [read_photo(p) for p in images]  # every file checked before the slower detection
    found = [f for photo in photos for f in align_photo(photo, editor.encoder_size(), faces or "best",
                                                        landmarks=landmarks)]
    return (found, *editor.encoder_input([f.crop for f in found]))


def aligned_lead(found, seen, own: str, side: int):
    """The grid's lead columns for pictures: photo (face outlined) | crop, or the input alone."""
    if found is None:
        return ["input"], own, [[p] for p in seen]
    from runtime.align import overview

    return ["photo", "crop"], own, [[overview(f.photo, [f.aligned.quad], side), f.crop] for f in found]


@requires("align")
@main.command()
@click.argument("photos", nargs=-1, required=True, type=click.Path())
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Folder for the crops and their JSON sidecars.")
@click.option("--size", default=256, show_default=True, type=click.IntRange(16, 4096), help="Crop side in pixels.")
@click.option("--transform-size", type=click.IntRange(16, 8192),
              help="Sample the quad at this size, then resize to --size (FFHQ's own crops: --size 1024 "
                   "--transform-size 4096) [--size: e4e's way].")
@click.option("--faces", default="best", show_default=True, type=click.Choice(["best", "all"]),
              help="The best-scoring face (OUT/<stem>.png) or every face (OUT/<stem>_<k>.png, k by score).")
@click.option("--landmarks", type=click.Path(dir_okay=False),
              help="dlib's shape_predictor_68_face_landmarks.dat [face-recognition-models' copy, else /usr/share/dlib's].")
def align(photos, out, size, transform_size, faces, landmarks):
    """Find faces in photos and write FFHQ-aligned crops (e4e's recipe) with JSON sidecars: the quad in photo
    pixels, the 68 landmarks, the detection, the photo's sha256 and size. Feed the crops to `invert`/`edit
    --image`, or use `--align` there."""
    import json

    from runtime.align import align_photo, read_photo
    from runtime.files import atomic_path, check_output
    from runtime.images import save_png
    from PIL import Image

    if transform_size is not None and transform_size < size:
        raise click.BadParameter(f"must be at least --size {size}", param_hint="--transform-size")
    stems = [Path(p).stem for p in photos]
    if len(set(stems)) < len(stems):
        twice = sorted({s for s in stems if stems.count(s) > 1})
        raise click.UsageError(f"several photos are named {', '.join(twice)}; their crops would overwrite each other "
                               "in --out: align them in separate runs")
    folder = Path(out)
    if folder.exists() and not folder.is_dir():
        raise click.BadParameter(f"{out} exists and is not a folder", param_hint="--out")
    results = []
    with click.progressbar(photos, label="aligning", file=sys.stderr, hidden=len(photos) < 2) as bar:
        for path in bar:  # every photo is read and aligned before anything is written
            results.append(align_photo(read_photo(path), size, faces, transform_size, landmarks))
    files = []
    for stem, found in zip(stems, results):
        for f in found:
            name = stem if faces == "best" else f"{stem}_{f.index}"
            files.append((f, folder / f"{name}.png", folder / f"{name}.json"))
    for _, png, sidecar in files:
        check_output(png, "--out crop")
        check_output(sidecar, "--out sidecar")
    for f, png, sidecar in files:
        save_png(Image.fromarray(f.crop), png)
        with atomic_path(sidecar) as tmp:
            tmp.write_text("{\n" + ",\n".join(f" {json.dumps(k)}: {json.dumps(v)}" for k, v in f.record().items()) + "\n}\n")
    n_faces = len(files)
    click.echo(f"wrote {n_faces} aligned {size} px crop(s) of {len(photos)} photo(s) to {folder}/ (PNG + JSON each)")


@main.command()
@click.argument("images", nargs=-1, required=True, type=click.Path())
@click.option("--out", required=True, type=Output(".npy"), help="W+ of every picture: float32 [N, n_latent, style_dim] .npy.")
@click.option("--recon", type=Output(".png"), help="Also a PNG grid: input | reconstruction (with --align: photo | crop | "
                                                   "reconstruction), one row per face.")
@click.option("--crop", type=click.Choice(["center"]), help="Use the centre square of non-square pictures (else an error).")
@_align_options
@click.option("--bundle", type=click.Path(file_okay=False), help="Bundle folder with an encoder [artifacts/bundles/demo].")
def invert(images, out, recon, crop, align_, faces, landmarks, bundle):
    """Pictures -> W+ with the bundle's e4e encoder: aligned square face crops (others resized, PIL bilinear),
    or photos with --align (the face found and cropped first).

    Feed the .npy to `edit --latents`, or use `edit --image` directly."""
    from runtime.files import save_latents

    check_align_options(align_, faces, landmarks, crop)
    editor = open_editor(bundle)
    found, seen, x = encoder_pictures(editor, images, crop, align_, faces, landmarks)
    wplus = editor.encode(x)
    if recon:
        side = editor.manifest["generator"].get("size") or seen.shape[1]
        write_comparison(editor, wplus, [], [], recon, lead=aligned_lead(found, seen, "reconstruction", side))
    save_latents(out, wplus)
    click.echo(f"wrote {out}: W+ {list(wplus.shape)} of {len(wplus)} " + ("face(s)" if align_ else "picture(s)")
               + (f"; {recon}" if recon else ""))


@main.command()
@click.argument("prompt")
@click.option("--seed", "seeds", default="1,2,3", show_default=True, help="Comma-separated seeds to sample faces from.")
@click.option("--latents", type=click.Path(dir_okay=False), help="A .npy of W+ latents [N, n_latent, style_dim] instead of seeds.")
@click.option("--method", type=click.Choice(["global", "mapper"]), default="global", show_default=True)
@click.option("--mapper", "mapper_name", help="Mapper name for --method mapper (default: the one trained for PROMPT).")
@click.option("--neutral", help="Neutral text of a global-direction edit [the bundle's tuned one for PROMPT, else 'a face'].")
@click.option("--alpha", type=float, help="Strength: alpha of a global edit, mapper strength [the bundle's tuned "
                                          "setting for PROMPT, else alpha 4.1 / strength 1].")
@click.option("--beta", help="Disentanglement threshold, or 'auto' [the bundle's tuned one for PROMPT, else 0.15].")
@click.option("--sweep", help="Comma-separated strengths: one column each, e.g. -4,0,4,8.")
@click.option("--truncation", type=float, help="Truncation psi for seeds [bundle default].")
@click.option("--image", "images", multiple=True, type=click.Path(),
              help="Edit this picture (repeatable): inverted with the bundle's encoder; the grid shows input | "
                   "reconstruction | edits.")
@click.option("--crop", type=click.Choice(["center"]), help="With --image: use the centre square of non-square pictures.")
@_align_options
@click.option("--paste", is_flag=True,
              help="With --image --align: write the whole photo with each edited face pasted back (a feathered face "
                   "mask; every other pixel unchanged) instead of a grid; one photo per picture and strength.")
@click.option("--out", default="edit.png", show_default=True, type=Output(".png"))
@click.option("--bundle", type=click.Path(file_okay=False), help="Bundle folder [artifacts/bundles/demo].")
@click.pass_context
def edit(ctx, prompt, seeds, latents, method, mapper_name, neutral, alpha, beta, sweep, truncation, images, crop, align_,
         faces, landmarks, paste, out, bundle):
    """Edit faces with a sentence and write a PNG grid: original | edited, one row per face.

    Faces come from seeds, a .npy of W+ (--latents) or your pictures (--image, inverted by the bundle's e4e
    encoder; photos with --align, and the edited photo itself with --paste). Settings not given come from the
    bundle's tuned settings for PROMPT (`edit_settings` in its manifest)."""
    from click.core import ParameterSource

    from runtime.files import load_latents

    if images and (latents or ctx.get_parameter_source("seeds") != ParameterSource.DEFAULT or truncation is not None):
        raise click.UsageError("--image replaces --seed/--latents/--truncation; pass one source of faces")
    if (crop or align_) and not images:
        raise click.UsageError("--crop and --align apply to --image pictures")
    if paste and not align_:
        raise click.UsageError("--paste puts edited faces back into their photos, which needs --align (the crop's "
                               "place in the photo)")
    check_align_options(align_, faces, landmarks, crop)
    if mapper_name and method != "mapper":
        raise click.UsageError("--mapper selects a mapper for --method mapper; add --method mapper")
    if method == "mapper" and (neutral or beta):
        raise click.UsageError("--neutral and --beta are settings of --method global")
    strengths = parse_floats(sweep, "--sweep") if sweep is not None else [alpha]
    seed_list = None if latents or images else parse_seeds(seeds)
    editor = open_editor(bundle)
    seen = found = None
    if images:
        found, seen, x = encoder_pictures(editor, images, crop, align_, faces, landmarks)
        wplus = editor.encode(x)
    elif latents:
        wplus = editor.check_wplus(load_latents(latents))
    else:
        wplus = editor.sample(seed_list, truncation)
    if method == "global":
        given = {"neutral": neutral} if neutral else {}
        if beta is not None:
            given["beta"] = None if beta == "auto" else parse_float(beta, "--beta")
        edits = [editor.global_edit(prompt, **given, **({} if a is None else {"alpha": a})) for a in strengths]
        titles = [f"alpha {e.alpha:g}" for e in edits]
        setting = f"from {edits[0].neutral!r}, beta {'auto' if edits[0].beta is None else f'{edits[0].beta:g}'}"
    else:
        edits = [editor.mapper_edit(mapper_name or prompt, a) for a in strengths]
        titles = [f"strength {e.strength:g}" for e in edits]
        setting = f"mapper {edits[0].name!r}"
    if paste:
        written = write_pasted(editor, found, wplus, edits, titles, out)
        click.echo(f"wrote {', '.join(map(str, written))} ({len(found)} face(s) pasted back; {setting}; {', '.join(titles)})")
        return
    side = editor.manifest["generator"].get("size") or editor.render(wplus[:1]).shape[1]
    lead = None if seen is None else aligned_lead(found, seen, "reconstruction", side)
    rows = write_comparison(editor, wplus, [[e] for e in edits], titles, out, lead=lead)
    click.echo(f"wrote {out} ({len(rows)} faces; {setting}; {', '.join(titles)})")


def pasted_paths(out, photos: list[str], titles: list[str]) -> dict:
    """(photo index, edit index) -> output path: OUT for one photo and one edit, else OUT's stem with the
    photo's stem and/or the edit's title added."""
    out = Path(out)
    stems = [Path(p).stem for p in photos]
    stems = [s if stems.count(s) == 1 else f"{s}-{i}" for i, s in enumerate(stems)]
    paths = {}
    for i, stem in enumerate(stems):
        for j, title in enumerate(titles):
            parts = [out.stem] + ([stem] if len(photos) > 1 else []) + ([title.replace(" ", "")] if len(titles) > 1 else [])
            paths[i, j] = out.with_name("_".join(parts) + out.suffix)
    return paths


def write_pasted(editor, found, wplus, edits, titles, out) -> list:
    """Each photo with its faces' edits pasted back, one PNG per photo and edit (runtime/align.paste_back)."""
    import numpy as np
    from PIL import Image

    from runtime.align import paste_back
    from runtime.files import check_output
    from runtime.images import save_png

    photos = list(dict.fromkeys(f.photo for f in found))  # in order, each once
    paths = pasted_paths(out, [p.name for p in photos], titles)
    for path in paths.values():
        check_output(path, "--out")
    written = []
    for j, e in enumerate(edits):
        edited = np.concatenate([editor.edit(wplus[i:i + CHUNK], [e]) for i in range(0, len(wplus), CHUNK)])
        for i, photo in enumerate(photos):
            pixels = photo.pixels
            for k, f in enumerate(found):
                if f.photo is photo:
                    pixels = paste_back(pixels, edited[k], f.aligned.quad)
            written.append(save_png(Image.fromarray(pixels), paths[i, j]))
    return written


CHUNK = 8  # faces edited per step of the progress bar


def open_bundle_folder(bundle) -> Path:
    """--bundle, or the default bundle with a message saying how to get one when it is missing."""
    if bundle is None and not DEFAULT_BUNDLE.is_dir():
        raise click.UsageError(f"no bundle given, and the default bundle {DEFAULT_BUNDLE} does not exist: pass "
                               "one (a bundle made by `export`), or build the demo one with `make demo` in a source "
                               "checkout")
    return Path(bundle) if bundle else DEFAULT_BUNDLE


def open_editor(bundle):
    """The runtime Editor on --bundle or the default bundle."""
    from runtime.editor import Editor

    return Editor(open_bundle_folder(bundle))


def write_comparison(editor, wplus, columns, titles, out, scale=None, lead=None) -> list:
    """The rows of `editor.comparison` as a PNG grid, refused before any work if too large for one picture,
    with a progress bar when there are many faces. `lead` = (the titles of columns before the faces, the title
    of the faces' own column, per face a list of pictures (or None for a blank), one per lead column): e.g. the
    inputs of inverted faces, whose own column then holds their reconstructions."""
    import numpy as np

    from runtime.images import check_grid, grid, save_png

    size = editor.manifest["generator"].get("size") or editor.render(wplus[:1]).shape[1]
    scale = scale or max(1, 128 // size)
    check_grid(len(wplus), len(columns) + 1 + (len(lead[0]) if lead else 0), size, scale)
    rows = editor.comparison(wplus[:CHUNK], columns)  # a bad edit fails here, before any progress output
    rest = range(CHUNK, len(wplus), CHUNK)
    with click.progressbar(rest, label="editing", file=sys.stderr, hidden=not rest) as bar:
        for i in bar:
            rows += editor.comparison(wplus[i:i + CHUNK], columns)
    first = ["original"]
    if lead is not None:
        blank = np.full((size, size, 3), 255, np.uint8)
        first = [*lead[0], lead[1]]
        rows = [[blank if p is None else fit(p, size) for p in pictures] + r for pictures, r in zip(lead[2], rows)]
    save_png(grid(rows, first + titles, scale=scale), out)
    return rows


# --- global directions: S statistics and the fs3 relevance table (precompute/global_directions.py) ---
def _parse_shard(ctx, param, value):
    if value is None:
        return None
    try:
        i, n = (int(v) for v in value.split("/"))
    except ValueError:
        raise click.BadParameter(f"expected i/n (shard i of n, i from 0), got {value!r}") from None
    if not 0 <= i < n:
        raise click.BadParameter(f"need 0 <= i < n, got {value!r}")
    return i, n


def _check_sha256(value):
    import re

    if value is not None and not re.fullmatch(r"[0-9a-fA-F]{64}", value):
        raise click.BadParameter(f"expected a sha256 of 64 hex digits, got {value!r}", param_hint="--sha256")
    return value


def _ray_options(f):
    for option in reversed([
        click.option("--ray", "use_ray", is_flag=True,
                     help="Run on Ray workers: an embedded local Ray, or the cluster at --ray-address."),
        click.option("--workers", type=click.IntRange(1),
                     help="Ray workers [one per CPU core (embedded: this many CPUs), or one per GPU where there are GPUs]."),
        click.option("--ray-address", help="Join this existing Ray cluster (implies --ray), e.g. 10.0.0.1:6379 or auto."),
    ]):
        f = option(f)
    return f


def _ray_mode(use_ray: bool, workers, address) -> bool:
    if workers is not None and not (use_ray or address):
        raise click.BadParameter("needs --ray (or --ray-address)", param_hint="--workers")
    if use_ray or address:
        require_extra("distributed", "--ray")
    return bool(use_ray or address)


def _ray_summary(report, what: str) -> str:
    line = (f"{what} on Ray: {report.workers} {'GPU' if report.gpu else 'CPU'} worker(s) on {report.nodes} node(s), "
            f"{report.computed_units}/{report.units} units computed, {report.seconds:.1f} s in all "
            f"({report.compute_seconds:.1f} s computing")
    line += f", {report.channels_per_s:.3g} channels/s)" if report.channels else ")"
    if report.retried:
        line += f"; retried after a worker died: {', '.join(report.retried)}"
    return line


def check_stem(stem, what: str = "--out") -> None:
    """A weights stem's two files (STEM.safetensors, STEM.json) may be written: before the work starts."""
    from runtime.files import check_output

    for suffix in (".safetensors", ".json"):
        check_output(Path(stem).with_suffix(suffix), what)


@requires("train")
@main.command("s-stats")
@click.option("--generator", required=True, type=click.Path(dir_okay=False), help="StyleGAN2 checkpoint.")
@click.option("-n", "n", default=100_000, show_default=True, type=click.IntRange(1), help="Mapped samples.")
@click.option("--seed", default=0, show_default=True)
@click.option("--psi", default=0.7, show_default=True, help="Truncation of the samples.")
@click.option("--out", default="s_stats.npz", show_default=True, type=Output(".npz"))
@_ray_options
def s_stats_cmd(generator, n, seed, psi, out, use_ray, workers, ray_address):
    """StyleSpace mean/std per channel over N mapped samples (global directions)."""
    from precompute.checkpoints import load_generator
    from precompute.global_directions import save_style_statistics, style_statistics

    distributed = _ray_mode(use_ray, workers, ray_address)
    gen = load_generator(generator)
    if distributed:
        from precompute.distributed import ray_style_statistics

        mean, std, report = ray_style_statistics(gen, n, psi, seed, workers=workers, address=ray_address)
        click.echo(_ray_summary(report, "S statistics"))
    else:
        mean, std = style_statistics(gen, n, psi, seed)
    save_style_statistics(out, mean, std, {"generator": str(generator), "n": n, "seed": seed, "psi": psi})
    click.echo(f"wrote {out} ({mean.size} channels, {n} samples)")


@requires("train")
@main.command("fs3")
@click.option("--generator", required=True, type=click.Path(dir_okay=False), help="StyleGAN2 checkpoint.")
@click.option("--clip", "clip_path", required=True, type=click.Path(dir_okay=False), help="CLIP weights.")
@click.option("--clip-name", help="open_clip model name when --clip is a raw weights file, e.g. ViT-B-32.")
@click.option("--s-stats", type=click.Path(dir_okay=False), help="S statistics [WORKDIR/s_stats.npz, made if missing].")
@click.option("--images", default=100, show_default=True, type=click.IntRange(1), help="Latents per channel.")
@click.option("--seed", default=0, show_default=True)
@click.option("--shard", callback=_parse_shard, help="This process's shard i/n [0/1] (not with --ray).")
@click.option("--workdir", default="build/fs3", show_default=True, type=click.Path(file_okay=False),
              help="Shard or unit progress; rerunning resumes. With --ray-address: on a filesystem every node sees.")
@click.option("--max-resolution", type=click.IntRange(4), help="Only conv layers up to this many px (FFHQ official: 128).")
@click.option("--batch", type=click.IntRange(1), help="Images per generator call [from the generator size].")
@click.option("--threads", type=click.IntRange(0), help="torch threads (0: torch's default) [0; with --ray 1 per worker].")
@click.option("--compile", "compile_", is_flag=True, help="torch.compile the models (~2x on CPU; a minute or two to compile).")
@_ray_options
@click.option("--unit-channels", default=16, show_default=True, type=click.IntRange(1),
              help="With --ray: channels per work unit (a unit never spans two layers).")
@click.option("--out", type=Output(".npy"), help="Merge into this .npy when every shard is complete.")
def fs3_cmd(generator, clip_path, clip_name, s_stats, images, seed, shard, workdir, max_resolution, batch, threads,
            compile_, use_ray, workers, ray_address, unit_channels, out):
    """Compute the fs3 relevance table: one shard per process (then fs3-merge), or all of it on Ray (--ray)."""
    import torch

    from precompute.checkpoints import load_generator
    from precompute.clip_model import load_clip
    from precompute import global_directions as gd

    distributed = _ray_mode(use_ray, workers, ray_address)
    if distributed and shard is not None:
        raise click.BadParameter("--ray computes every unit itself; leave --shard out", param_hint="--shard")
    shard = shard or (0, 1)
    if distributed and threads == 0:
        raise click.BadParameter("with --ray give each worker a thread count (>= 1)", param_hint="--threads")
    if threads and not distributed:
        torch.set_num_threads(threads)
    gen, clip = load_generator(generator), load_clip(clip_name, weights=clip_path)
    gd.shard_range(gd.fs3_rows(gen.layout, max_resolution), shard)  # bad input fails before anything is written
    stats = Path(s_stats) if s_stats else Path(workdir) / "s_stats.npz"
    if not s_stats and not stats.is_file():
        click.echo(f"computing S statistics (100k samples, seed {seed}) into {stats} ...")
        gd.save_style_statistics(stats, *gd.style_statistics(gen, seed=seed), {"generator": str(generator), "seed": seed})
    mean, std = gd.load_style_statistics(stats, gen.layout)
    if distributed:
        from precompute.distributed import WorkerFailed, ray_fs3

        try:
            report = ray_fs3(gen, clip, mean, std, workdir, n_images=images, seed=seed, max_resolution=max_resolution,
                             batch=batch, compile=compile_, unit_channels=unit_channels, workers=workers,
                             threads=threads or 1, address=ray_address, out=out)
        except WorkerFailed as err:  # not the user's input: exit 1
            click.echo(f"error: {err}", err=True)
            sys.exit(1)
        click.echo(_ray_summary(report, "fs3"))
        click.echo(f"wrote {out} and {Path(out).with_suffix('.json')}" if out else
                   f"all units complete in {workdir}; merge with: cli.py fs3-merge --workdir {workdir} --out fs3.npy")
        return
    rows = gd.compute_fs3(gen, clip, mean, std, images, seed, shard=shard, workdir=workdir, batch=batch,
                          max_resolution=max_resolution, compile=compile_)
    i, n = shard
    done = sum(bool(s) and s[0] == s[1] for s in gd.shard_status(workdir, n))
    click.echo(f"shard {i}/{n} complete ({len(rows)} channels); {done}/{n} shards complete in {workdir}")
    if done == n and out:
        gd.merge_fs3(workdir, n, gen.layout, out=out)
        click.echo(f"wrote {out} and {Path(out).with_suffix('.json')}")
    elif done == n:
        click.echo(f"merge with: cli.py fs3-merge --workdir {workdir} --shards {n} --out fs3.npy")


@requires("train")
@main.command("fs3-merge")
@click.option("--workdir", required=True, type=click.Path(file_okay=False))
@click.option("--shards", type=click.IntRange(1), help="Number of shards n [none: the units of a --ray run].")
@click.option("--out", default="fs3.npy", show_default=True, type=Output(".npy"))
def fs3_merge_cmd(workdir, shards, out):
    """Check and join the complete shards (or units) into fs3.npy (+ fs3.json: which layers and channels it covers)."""
    from precompute.global_directions import merge_fs3, merge_units

    fs3 = merge_fs3(workdir, shards, out=out) if shards else merge_units(workdir, out=out)
    click.echo(f"wrote {out} {fs3.shape} and {Path(out).with_suffix('.json')}")


@requires("train")
@main.command("import-styleclip")
@click.option("--fs3", "fs3_path", required=True, type=click.Path(dir_okay=False), help="Official fs3.npy.")
@click.option("--s-mean-std", required=True, type=click.Path(dir_okay=False), help="Official S_mean_std (a pickle).")
@click.option("--trust-pickle", is_flag=True, help="Allow unpickling S_mean_std (runs code from the file; trusted files only).")
@click.option("--generator", required=True, type=click.Path(dir_okay=False), help="The generator the tables belong to.")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Folder for fs3.npy, fs3.json, s_stats.npz.")
def import_styleclip_cmd(fs3_path, s_mean_std, trust_pickle, generator, out):
    """Import official StyleCLIP global-direction tables (checked against the generator's layout)."""
    from precompute.checkpoints import load_generator
    from precompute.global_directions import import_styleclip

    layout = load_generator(generator).layout
    for path in import_styleclip(fs3_path, s_mean_std, layout, out, trust_pickle):
        click.echo(f"wrote {path}")


# --- methods A and B on a generator + CLIP (precompute/optimization.py, mapper_training.py; DESIGN §4) ---
MAPPER_GROUPS = ("coarse", "medium", "fine")  # precompute.mapper.GROUPS, spelled out so --help stays fast


def _slug(prompt: str) -> str:
    """A prompt as a file name; `export` names a mapper after its file, so this is also its bundle name."""
    from runtime.files import slugify

    slug = slugify(prompt)
    if not slug:
        raise ValueError(f"cannot name files after the prompt {prompt!r}; pass --workdir and --out")
    return slug


def _load_generator_and_clip(generator, clip_path, clip_name):
    from precompute.checkpoints import load_generator
    from precompute.clip_model import load_clip

    for path, what, command, option in ((generator, "generator", "train-generator", "--generator"),
                                        (clip_path, "CLIP", "train-clip", "--clip")):
        if not Path(path).is_file():
            raise FileNotFoundError(f"{what} not found: {path}; make the demo one with `python cli.py {command}` "
                                    f"or pass {option} <file>")
    return load_generator(generator), load_clip(clip_name, weights=clip_path)


def _model_options(f):
    for option in reversed([
        click.option("--generator", default="artifacts/demo/generator.json", show_default=True,
                     type=click.Path(dir_okay=False), help="StyleGAN2 checkpoint (ours or rosinality .pt)."),
        click.option("--clip", "clip_path", default="artifacts/demo/clip.json", show_default=True,
                     type=click.Path(dir_okay=False), help="CLIP weights (ours, open_clip or OpenAI)."),
        click.option("--clip-name", help="open_clip model name when --clip is a raw weights file, e.g. ViT-B-32."),
    ]):
        f = option(f)
    return f


def _identity_options(weight: float, whose: str):
    """--identity FILE and --id-weight (default `weight`, `whose` default it is) of methods A and B."""
    def wrap(f):
        f = click.option("--id-weight", default=weight, show_default=True, type=click.FloatRange(0),
                         help=f"Weight of the identity loss 1 - cos(id(edited), id(original)), with --identity ({whose}).")(f)
        return click.option("--identity", "identity_path", type=click.Path(dir_okay=False),
                            help="Identity network (ArcFace's model_ir_se50.pth, or ours from import-identity): adds "
                                 "the identity loss.")(f)
    return wrap


def _load_identity(identity_path):
    """The --identity network, or None; an explicit --id-weight (methods A, B) without it is a usage error."""
    if identity_path is None:
        if click.get_current_context().get_parameter_source("id_weight") == click.core.ParameterSource.COMMANDLINE:
            raise click.UsageError("--id-weight needs --identity FILE (the identity network)")
        return None
    from precompute.identity import load_identity

    return load_identity(identity_path)


@requires("train")
@main.command("train-mapper")
@click.argument("prompt")
@_model_options
@click.option("--steps", default=1000, show_default=True, type=click.IntRange(1))
@click.option("--batch", default=8, show_default=True, type=click.IntRange(1))
@click.option("--lr", default=0.5, show_default=True, type=click.FloatRange(0, min_open=True),
              help="Adam lr (the equalized weights make the effective step ~0.01 of it).")
@click.option("--clip-weight", default=1.0, show_default=True, type=click.FloatRange(0))
@click.option("--l2-weight", default=0.8, show_default=True, type=click.FloatRange(0), help="Weight of the latent MSE.")
@click.option("--truncation", default=0.7, show_default=True, type=click.FloatRange(0, 1),
              help="Truncation psi of the sampled training latents.")
@click.option("--clip-views", default=1, show_default=True, type=click.IntRange(1),
              help="Average the CLIP loss over this many shifted copies of each image (small CLIPs: 4).")
@click.option("--disable", multiple=True, type=click.Choice(MAPPER_GROUPS),
              help="Leave this group of W+ rows unedited (repeatable).")
@_identity_options(0.1, "StyleCLIP's mapper default")
@click.option("--keep", default="", metavar="ATTRIBUTE", help="Demo world only: keep the pixels outside where the renderer "
                                                    "draws ATTRIBUTE (e.g. hair_color), irises weighted x10 (HairCLIP's "
                                                    "background loss; README).")
@click.option("--keep-weight", default=200.0, show_default=True, type=click.FloatRange(0, min_open=True),
              help="Weight of the --keep term (the weighted MSE of the pixels, in [-1, 1] units).")
@_resumable_options
@click.option("--workdir", type=click.Path(file_okay=False),
              help="Checkpoint; rerunning the same command resumes [build/train/mapper/<prompt slug>].")
@click.option("--out", type=Output(stem=True),
              help="Weights stem: writes OUT.safetensors and OUT.json [artifacts/demo/mappers/<prompt slug>].")
def train_mapper_cmd(prompt, generator, clip_path, clip_name, steps, batch, lr, clip_weight, l2_weight, truncation,
                     clip_views, disable, identity_path, id_weight, keep, keep_weight, seed, threads, workdir, stop_at,
                     out):
    """Train a latent mapper for PROMPT (method B, DESIGN §4.B); `export` ships it, named after OUT."""
    import torch

    from precompute.mapper import save_mapper
    from precompute.mapper_training import MapperTrainConfig, train_mapper

    if set(disable) >= set(MAPPER_GROUPS):
        raise click.BadParameter("at least one group must stay enabled", param_hint="--disable")
    if not keep and click.get_current_context().get_parameter_source("keep_weight") == click.core.ParameterSource.COMMANDLINE:
        raise click.UsageError("--keep-weight needs --keep ATTRIBUTE (the attribute the edit may change)")
    keep_masks = None
    if keep:
        from precompute.demo.keep import KeepMasks

        try:
            keep_masks = KeepMasks(keep)
        except ValueError as err:
            raise click.BadParameter(str(err), param_hint="--keep") from None
    cfg = MapperTrainConfig(prompt, steps=steps, batch=batch, lr=lr, clip_weight=clip_weight, l2_weight=l2_weight,
                            truncation=truncation, clip_views=clip_views, id_weight=id_weight,
                            keep=keep, keep_weight=keep_weight,
                            enabled={g: g not in disable for g in MAPPER_GROUPS}, seed=seed)
    workdir = workdir or f"build/train/mapper/{_slug(prompt)}"
    out = out or f"artifacts/demo/mappers/{_slug(prompt)}"
    check_stem(out)
    identity = _load_identity(identity_path)
    gen, clip = _load_generator_and_clip(generator, clip_path, clip_name)
    if keep_masks:
        keep_masks.check_generator(gen)
    torch.set_num_threads(threads)
    mapper, info = train_mapper(gen, clip, cfg, workdir, identity=identity, stop_at=stop_at, keep_masks=keep_masks)
    terms = zip(info["terms"], info["history"][-1][1:])
    click.echo(f"trained steps {info['resumed_from']} -> {info['step']} in {info['seconds']:.1f} s; final "
               + ", ".join(f"{k} {v:.4f}" for k, v in terms))
    if _stopped_early(info, steps):
        return
    for path in save_mapper(mapper, out):
        click.echo(f"wrote {path}")


@requires("train")
@main.command()
@click.argument("prompt")
@_model_options
@click.option("--seed", "seeds", default="1,2,3", show_default=True,
              help="Comma-separated seeds to start from (the same faces as `edit`).")
@click.option("--latents", type=click.Path(dir_okay=False), help="A .npy of W+ latents [N, n_latent, style_dim] instead of seeds.")
@click.option("--truncation", default=0.7, show_default=True, type=click.FloatRange(0, 1), help="Truncation psi for seeds.")
@click.option("--steps", default=300, show_default=True, type=click.IntRange(1))
@click.option("--lr", default=0.1, show_default=True, type=click.FloatRange(0, min_open=True))
@click.option("--l2", default=0.008, show_default=True, type=click.FloatRange(0), help="Weight of sum((w - w_start)^2).")
@click.option("--clip-views", default=1, show_default=True, type=click.IntRange(1),
              help="Average the CLIP loss over this many shifted copies of each image (against pixel patterns).")
@_identity_options(0.005, "StyleCLIP's optimization notebook")
@click.option("--threads", default=2, show_default=True, type=click.IntRange(1, 2), help="torch threads.")
@click.option("--save-latents", type=Output(".npy"), help="Also write the edited W+ to this .npy.")
@click.option("--out", default="optimize.png", show_default=True, type=Output(".png"))
def optimize(prompt, generator, clip_path, clip_name, seeds, latents, truncation, steps, lr, l2, clip_views,
             identity_path, id_weight, threads, save_latents, out):
    """Edit faces by optimizing their W+ towards PROMPT (method A, DESIGN §4.A); PNG grid: original | edited."""
    import numpy as np
    import torch

    from precompute.optimization import OptimizeConfig, optimize_latents
    from runtime.edit_math import check_wplus
    from runtime.editor import Editor
    from runtime.files import load_latents, save_latents as save_latents_file
    from runtime.images import check_grid, grid, save_png

    if not prompt.strip():
        raise ValueError("the prompt is empty; describe the edit, e.g. 'a face with purple hair'")
    cfg = OptimizeConfig(steps=steps, lr=lr, l2=l2, identity=id_weight, clip_views=clip_views)
    seed_list = None if latents else parse_seeds(seeds)
    identity = _load_identity(identity_path)
    gen, clip = _load_generator_and_clip(generator, clip_path, clip_name)
    torch.set_num_threads(threads)
    shape = (gen.n_latent, gen.config.style_dim)
    if latents:
        w0 = torch.from_numpy(check_wplus(load_latents(latents), *shape))
    else:  # z per seed exactly as Editor.sample draws it, so a seed is the same face as in `edit`
        z = np.stack([np.random.default_rng(s).standard_normal(shape[1], dtype=np.float32) for s in seed_list])
        with torch.no_grad():
            w0 = gen.wplus_from_z(torch.from_numpy(z), truncation).contiguous()
    scale = max(1, 128 // gen.config.size)
    check_grid(len(w0), 2, gen.config.size, scale)
    w, history = optimize_latents(gen, clip, prompt, w0, cfg, identity=identity)
    seconds, final = history[-1]["seconds"], history[-2]
    with torch.no_grad():
        before, after = (Editor.to_uint8(gen(x).numpy()) for x in (w0, w))
    image = grid([[a, b] for a, b in zip(before, after)], ["original", prompt], scale=scale)
    if save_latents:
        save_latents_file(save_latents, w.numpy())
    save_png(image, out)
    click.echo(f"optimized {len(w)} face(s) for {prompt!r}: {steps} steps in {seconds:.1f} s "
               f"({seconds / len(w):.2f} s per edit); final " + ", ".join(f"{k} {v:.4f}" for k, v in final.items()))
    for path in filter(None, (save_latents, out)):
        click.echo(f"wrote {path}")


# --- demo world: attribute classifier and demo CLIP (precompute/demo/classifier.py, train_clip.py) ---
def _demo_train_options(workdir: str, steps: int, n_train: int, out: str):
    options = [
        click.option("--workdir", default=workdir, show_default=True, type=click.Path(file_okay=False),
                     help="Render cache and checkpoint; rerunning with the same options resumes."),
        click.option("--steps", default=steps, show_default=True, type=click.IntRange(1)),
        click.option("--seed", default=0, show_default=True),
        click.option("--n-train", default=n_train, show_default=True, type=click.IntRange(1), help="Cached renders."),
        click.option("--checkpoint-every", default=100, show_default=True, type=click.IntRange(1)),
        click.option("--threads", default=2, show_default=True, type=click.IntRange(1, 2)),
        click.option("--out", default=out, show_default=True, type=Output(stem=True),
                     help="Weights stem: writes OUT.safetensors and OUT.json once all steps are done."),
    ]

    def wrap(f):
        for option in reversed(options):
            f = option(f)
        return f
    return wrap


def _echo_demo_training(info: dict, what: str) -> None:
    from precompute.demo.report import format_report
    from precompute.demo.training import HELDOUT_SEED

    click.echo(f"trained steps {info['resumed_from']} -> {info['step']} in {info['seconds']:.1f} s")
    if info.get("metrics"):
        click.echo(format_report({"n": info["metrics"]["n"], "seed": HELDOUT_SEED, what: info["metrics"]}))
    for path in info.get("files", ()):
        click.echo(f"wrote {path}")


@requires("train")
@main.command("train-classifier")
@_demo_train_options("build/train/classifier", 400, 20_000, "artifacts/demo/classifier")
def train_classifier_cmd(workdir, steps, seed, n_train, checkpoint_every, threads, out):
    """Train the demo attribute classifier (evaluates edits; never in a training loss)."""
    from precompute.demo.classifier import train_classifier

    _, info = train_classifier(workdir, steps, seed, n_train=n_train, checkpoint_every=checkpoint_every,
                               threads=threads, out=out)
    _echo_demo_training(info, "classifier")


@requires("train")
@main.command("train-clip")
@_demo_train_options("build/train/clip", 1000, 40_000, "artifacts/demo/clip")
@click.option("--off-palette", default=0.25, show_default=True, type=click.FloatRange(0, 1),
              help="Share of hair-colour captions whose counterfactual twin has hair in a colour of another name, "
                   "mostly ones the renderer never draws (blue, cyan, green, orange), so CLIP tells them apart.")
def train_clip_cmd(workdir, steps, seed, n_train, checkpoint_every, threads, out, off_palette):
    """Train the demo CLIP contrastively on cached renders and generated captions."""
    from precompute.demo.train_clip import train_clip

    _, info = train_clip(workdir, steps, seed, n_train=n_train, checkpoint_every=checkpoint_every,
                         threads=threads, out=out, off_palette=off_palette)
    _echo_demo_training(info, "clip")


@requires("train")
@main.command("train-encoder")
@click.option("--generator", default="artifacts/demo/generator.json", show_default=True, type=click.Path(dir_okay=False))
@click.option("--clip", "clip_path", default="artifacts/demo/clip.json", show_default=True, type=click.Path(dir_okay=False))
@click.option("--classifier", default="artifacts/demo/classifier.json", show_default=True, type=click.Path(dir_okay=False),
              help="Only measures the result (held-out inversions); never in the loss.")
@click.option("--workdir", default="build/train/encoder", show_default=True, type=click.Path(file_okay=False),
              help="Render cache and checkpoint; rerunning the same command resumes.")
@click.option("--steps", default=2200, show_default=True, type=click.IntRange(1))
@click.option("--latent-steps", default=1600, show_default=True, type=click.IntRange(0),
              help="Steps of the latent stage (regressing each render's intended w) before the image stage.")
@click.option("--n-train", default=20_000, show_default=True, type=click.IntRange(1), help="Cached renders.")
@click.option("--n-eval", default=1000, show_default=True, type=click.IntRange(0), help="Held-out renders measured at the end.")
@_resumable_options
@click.option("--out", default="artifacts/demo/encoder", show_default=True, type=Output(stem=True),
              help="Weights stem: writes OUT.safetensors and OUT.json once all steps are done.")
def train_encoder_cmd(generator, clip_path, classifier, workdir, steps, latent_steps, n_train, n_eval, seed, threads,
                      stop_at, out):
    """Train the demo e4e encoder on renders (image -> the demo generator's W+; DESIGN §10)."""
    from precompute.demo.train_encoder import EncoderTrainConfig, evaluate_inversion, finalize, train_encoder

    for path, what, command in ((generator, "generator", "train-generator"), (clip_path, "CLIP", "train-clip"),
                                (classifier, "classifier", "train-classifier")):
        if not Path(path).is_file() and (what != "classifier" or n_eval):
            raise FileNotFoundError(f"{what} not found: {path}; make the demo one with `python cli.py {command}`")
    if latent_steps > steps:
        raise click.BadParameter(f"must be <= --steps ({steps})", param_hint="--latent-steps")
    cfg = EncoderTrainConfig(steps=steps, latent_steps=latent_steps, n_train=n_train, seed=seed)
    encoder, info = train_encoder(workdir, generator, clip_path, cfg, threads=threads, stop_at=stop_at)
    click.echo(f"trained steps {info['resumed_from']} -> {info['step']} in {info['seconds']:.0f} s")
    if _stopped_early(info, steps):
        return
    files = finalize(encoder, out, info["hparams"])
    if n_eval:  # the shipped (fp16) weights are what gets measured
        from precompute.checkpoints import load_generator
        from precompute.demo.classifier import load_classifier
        from precompute.demo.report import format_inversion
        from precompute.encoder import load_encoder

        metrics = evaluate_inversion(load_encoder(files[1]), load_generator(generator), load_classifier(classifier), n_eval)
        click.echo(format_inversion(metrics))
        files = finalize(load_encoder(files[1]), out, info["hparams"], metrics)
    for path in files:
        click.echo(f"wrote {path}")


@requires("train")
@main.command("train-identity")
@click.option("--workdir", default="build/train/identity", show_default=True, type=click.Path(file_okay=False),
              help="Render cache and checkpoint; rerunning the same command resumes.")
@click.option("--steps", default=1200, show_default=True, type=click.IntRange(1))
@click.option("--batch", default=32, show_default=True, type=click.IntRange(2), help="Identities per step (even), two views each.")
@click.option("--n-identities", default=6000, show_default=True, type=click.IntRange(2),
              help="Cached identities (even), 4 renders each.")
@click.option("--checkpoint-every", default=100, show_default=True, type=click.IntRange(1))
@click.option("--n-eval", default=1000, show_default=True, type=click.IntRange(0), help="Held-out identities measured at the end.")
@click.option("--encoder", default="artifacts/demo/encoder.json", show_default=True, type=click.Path(dir_okay=False),
              help="With --generator: also measures renders against their reconstructions (skipped while either is "
                   "missing; rerun the finished command to add it). Never in the loss.")
@click.option("--generator", default="artifacts/demo/generator.json", show_default=True, type=click.Path(dir_okay=False))
@_resumable_options
@click.option("--out", default="artifacts/demo/identity", show_default=True, type=Output(stem=True),
              help="Weights stem: writes OUT.safetensors and OUT.json once all steps are done.")
def train_identity_cmd(workdir, steps, batch, n_identities, checkpoint_every, n_eval, encoder, generator, seed, threads,
                       stop_at, out):
    """Train the demo identity network (the demo world's ArcFace: renders of one geometry embed close)."""
    from precompute.demo.train_identity import IdentityTrainConfig, evaluate_identity, finalize, format_metrics, train_identity
    from precompute.identity import load_identity

    cfg = IdentityTrainConfig(steps=steps, batch=batch, n_identities=n_identities, checkpoint_every=checkpoint_every,
                              seed=seed)
    net, info = train_identity(workdir, cfg, threads=threads, stop_at=stop_at)
    click.echo(f"trained steps {info['resumed_from']} -> {info['step']} in {info['seconds']:.0f} s")
    if _stopped_early(info, steps):
        return
    files = finalize(net, out, info["hparams"])
    if n_eval:  # the shipped (fp16) weights are what gets measured
        shipped, models = load_identity(files[1]), {}
        if Path(encoder).is_file() and Path(generator).is_file():
            from precompute.checkpoints import load_generator
            from precompute.encoder import load_encoder

            models = {"encoder": load_encoder(encoder), "generator": load_generator(generator)}
        else:
            click.echo(f"no reconstruction AUC: {encoder if not Path(encoder).is_file() else generator} not found "
                       "(train-encoder makes the demo pair; rerun this command then to add it)")
        metrics = evaluate_identity(shipped, n_eval, **models)
        click.echo(format_metrics(metrics))
        files = finalize(shipped, out, info["hparams"], metrics)
    for path in files:
        click.echo(f"wrote {path}")


@requires("train")
@main.command("sample-demo")
@click.option("--generator", default="artifacts/demo/generator.json", show_default=True, type=click.Path(dir_okay=False))
@click.option("-n", "n", default=32, show_default=True, type=click.IntRange(1, 256))
@click.option("--seed", default=0, show_default=True)
@click.option("--truncation", default=1.0, show_default=True, type=click.FloatRange(0, 1))
@click.option("--out", default="docs/demo_samples.png", show_default=True, type=Output(".png"))
def sample_demo(generator, n, seed, truncation, out):
    """Contact sheet of demo generator samples, each row above the renders of the faces intended by z."""
    from precompute.checkpoints import load_generator
    from precompute.demo.train_generator import contact_sheet
    from runtime.images import save_png

    if not Path(generator).is_file():
        raise FileNotFoundError(f"generator not found: {generator}; train it with `python cli.py train-generator`")
    save_png(contact_sheet(load_generator(generator), n, seed, truncation), out)
    click.echo(f"wrote {out}: {n} samples (seed {seed}, truncation {truncation}), intended renders below each row")


@requires("train")
@main.command("evaluate-demo")
@click.option("--classifier", default="artifacts/demo/classifier.json", show_default=True, type=click.Path(dir_okay=False))
@click.option("--clip", "clip_path", default="artifacts/demo/clip.json", show_default=True, type=click.Path(dir_okay=False))
@click.option("--generator", default="artifacts/demo/generator.json", show_default=True, type=click.Path(dir_okay=False))
@click.option("--encoder", default="artifacts/demo/encoder.json", show_default=True, type=click.Path(dir_okay=False),
              help="Its reconstructions of the first --inversions held-out renders (skipped while the file is absent).")
@click.option("--skip", multiple=True, type=click.Choice(["clip", "generator", "encoder"]), help="Leave a model out (repeatable).")
@click.option("-n", "n", default=2000, show_default=True, type=click.IntRange(1), help="Held-out renders.")
@click.option("--samples", default=1000, show_default=True, type=click.IntRange(1), help="Generator samples.")
@click.option("--inversions", default=1000, show_default=True, type=click.IntRange(1), help="Held-out renders inverted.")
def evaluate_demo_cmd(classifier, clip_path, generator, encoder, skip, n, samples, inversions):
    """The demo world's quality bars (classifier and CLIP on held-out renders, generator samples, encoder
    reconstructions) as tables; exit 1 if a bar is missed."""
    from precompute.demo.report import evaluate_demo_models, failures, format_report

    use_encoder = "encoder" not in skip and "generator" not in skip and Path(encoder).is_file()
    report = evaluate_demo_models(classifier, None if "clip" in skip else clip_path,
                                  None if "generator" in skip else generator, n, samples,
                                  encoder=encoder if use_encoder else None, n_inversions=inversions)
    click.echo(format_report(report))
    if failures(report):
        sys.exit(1)


# --- edit quality: methods A, B, C on the demo world (precompute/edit_eval.py, DESIGN §8) --------------
@requires("train")
@main.command()
@click.option("--methods", default="C,B,A", show_default=True, help="Comma-separated: A optimize, B mapper, C global.")
@click.option("--edits", "edit_names", help="Comma-separated edit names [all: purple hair, blonde hair, smiling, glasses, "
              "blue eyes, bald, pink background].")
@click.option("-n", "n", default=200, show_default=True, type=click.IntRange(1), help="Latents per edit.")
@click.option("--seed", default=0, show_default=True)
@click.option("--truncation", default=0.7, show_default=True, type=click.FloatRange(0, 1))
@click.option("--alpha", type=float, help="Method C strength for every edit [each edit's own, precompute/demo/edits.py].")
@click.option("--beta", type=float, help="Method C threshold for every edit [each edit's own].")
@click.option("--sweep-alphas", help="Method C only: evaluate every alpha x beta of these lists, e.g. 2,4,6.")
@click.option("--sweep-betas", help="... and these betas, e.g. 0.1,0.15,0.2 (with --sweep-alphas).")
@click.option("--sweep-neutral", "sweep_neutrals", multiple=True,
              help="... and these neutral texts (repeat the option; with --sweep-alphas) [each edit's own].")
@click.option("--strength", type=float, help="Method B mapper strength for every edit [each edit's own].")
@click.option("--sweep-strengths", help="Method B only: evaluate every mapper strength of this list, e.g. 0.5,1.")
@click.option("--steps", default=300, show_default=True, type=click.IntRange(1), help="Method A steps.")
@click.option("--l2", default=0.008, show_default=True, type=click.FloatRange(0), help="Method A l2 weight.")
@click.option("--clip-views", default=1, show_default=True, type=click.IntRange(1), help="Method A CLIP views.")
@click.option("--keep-weight", default=0.0, show_default=True, type=click.FloatRange(0),
              help="Method A's keep term (method B's, README): the pixels outside the edited attribute's region, "
                   "from the faces the latents show (0: none).")
@click.option("--bundle", type=click.Path(file_okay=False), help="Also run B and C through the runtime on this bundle.")
@click.option("--identity", "identity_path", type=click.Path(dir_okay=False),
              help="Identity network (model_ir_se50.pth, or ours from import-identity): adds an identity column, the "
                   "mean cosine of its features before and after each edit; method A also optimizes its loss.")
@click.option("--id-weight", default=0.005, show_default=True, type=click.FloatRange(0),
              help="Method A's identity loss weight, with --identity (StyleCLIP's optimization notebook's default).")
@click.option("--demo-dir", default=str(DEMO_DIR), show_default=True, type=click.Path(file_okay=False),
              help="generator, clip, classifier, fs3.npy, s_stats.npz, mappers/.")
@click.option("--threads", default=2, show_default=True, type=click.IntRange(1, 2))
@click.option("--inverted", is_flag=True, help="Edit the W+ of N held-out renders inverted by the demo encoder "
              "(DEMO_DIR/encoder.json) instead of sampled latents (--truncation then does not apply).")
@click.option("--out-dir", type=click.Path(file_okay=False),
              help="Writes edit_quality.md and edits/<edit>.png here (not for sweeps) [docs; docs/inverted with --inverted].")
def evaluate(methods, edit_names, n, seed, truncation, alpha, beta, sweep_alphas, sweep_betas, sweep_neutrals, strength,
             sweep_strengths, steps, l2, clip_views, keep_weight, bundle, identity_path, id_weight, inverted, demo_dir,
             threads, out_dir):
    """Edit quality of methods A, B, C (success, preservation, geometry drift, s/edit) as a table and pictures."""
    import torch

    from precompute import edit_eval as ev

    torch.set_num_threads(threads)
    chosen = [m.strip().upper() for m in methods.split(",") if m.strip()]
    if not chosen or set(chosen) - {"A", "B", "C"}:
        raise click.BadParameter(f"choose from A, B, C, got {methods!r}", param_hint="--methods")
    edits = ev.find_edits([e.strip() for e in edit_names.split(",")]) if edit_names else list(ev.DEMO_EDITS)
    if bool(sweep_alphas) != bool(sweep_betas):
        raise click.UsageError("--sweep-alphas and --sweep-betas go together")
    if sweep_neutrals and not sweep_alphas:
        raise click.UsageError("--sweep-neutral needs --sweep-alphas and --sweep-betas")
    if any(not t.strip() for t in sweep_neutrals):
        raise click.BadParameter("a neutral text must not be empty", param_hint="--sweep-neutral")
    strengths = parse_floats(sweep_strengths, "--sweep-strengths", skip_blank=True) if sweep_strengths else []
    for s in strengths + ([] if strength is None else [strength]):  # the runtime's range, checked before the work
        ev.edit_math.check_range("mapper strength", s, ev.edit_math.STRENGTH_RANGE)
    if inverted and (sweep_alphas or sweep_strengths):
        raise click.UsageError("--inverted evaluates the edits' settings; sweeps choose them on sampled latents")
    identity = _load_identity(identity_path)
    world = ev.DemoWorld.load(demo_dir, need_global="C" in chosen or bool(sweep_alphas),
                              need_mappers="B" in chosen or bool(sweep_strengths), need_encoder=inverted)
    if sweep_alphas or sweep_strengths:
        rows = []
        if sweep_alphas:
            rows += ev.sweep_global(world, edits, parse_floats(sweep_alphas, "--sweep-alphas", skip_blank=True),
                                    parse_floats(sweep_betas, "--sweep-betas", skip_blank=True), n, seed, truncation,
                                    identity, sweep_neutrals or (None,))
        if sweep_strengths:
            rows += ev.sweep_mappers(world, edits, strengths, n, seed, truncation, identity)
        click.echo(ev.format_table(rows))
        return
    default = None if alpha is None and beta is None else (
        ev.edit_math.DEFAULT_ALPHA if alpha is None else alpha, ev.edit_math.DEFAULT_BETA if beta is None else beta)
    from precompute.optimization import OptimizeConfig

    method_a = OptimizeConfig(steps=steps, l2=l2, clip_views=clip_views, identity=id_weight, keep_weight=keep_weight)
    latents = ev.inverted_wplus(world.encoder, n, seed) if inverted else None
    rows, pictures = ev.evaluate_edits(world.gen, world.classifier, edits,
                                       world.methods(chosen, default, method_a, bundle, strength, identity), n, seed,
                                       truncation,
                                       wplus=latents, identity=identity)
    click.echo(ev.format_table(rows))
    options = f" --steps {steps} --l2 {l2:g} --clip-views {clip_views}" if "A" in chosen else ""
    options += f" --id-weight {id_weight:g}" if "A" in chosen and identity_path else ""
    options += f" --keep-weight {keep_weight:g}" if "A" in chosen and keep_weight else ""
    options += f" --edits '{edit_names}'" if edit_names else ""
    options += f" --identity {identity_path}" if identity_path else ""
    options += "".join(f" --{k} {v:g}" for k, v in (("alpha", alpha), ("beta", beta), ("strength", strength)) if v is not None)
    if inverted:
        context = (f"`python cli.py evaluate --inverted --methods {','.join(chosen)} -n {n} --seed {seed}{options}"
                   f"{' --bundle ' + str(bundle) if bundle else ''}`: {n} held-out renders per edit (render seed "
                   f"900001 + {seed}), inverted by the demo encoder; \"original\" is their reconstruction.")
    else:
        context = (f"`python cli.py evaluate --methods {','.join(chosen)} -n {n} --seed {seed} --truncation {truncation}"
                   f"{options}{' --bundle ' + str(bundle) if bundle else ''}`: {n} latents per edit (seed {seed}, "
                   f"truncation {truncation}).")
    out_dir = out_dir or ("docs/inverted" if inverted else "docs")
    for path in ev.write_report(out_dir, rows, pictures, context):
        click.echo(f"wrote {path}")


# --- benchmarks: runtime vs PyTorch eager, and the floor (export/bench.py, DESIGN §9) ----------------
@requires("train")
@main.command()
@click.option("--preset", type=click.Choice(["demo", "ffhq", "both"]),
              help="Random-weight models (demo size, FFHQ-1024 + ViT-B-32), built once into build/bench/<preset> [demo].")
@click.option("--bundle", type=click.Path(file_okay=False), help="Benchmark this bundle (PyTorch from its recorded sources).")
@click.option("--batches", help="Batch sizes (the text encoder also runs 158 prompts) [1,8; 1 for generators of 512 px "
                                 "and more: 8 images of 1024 px need GBs of buffers per session and in PyTorch].")
@click.option("--repeats", default=20, show_default=True, type=click.IntRange(1), help="Interleaved timed calls per row.")
@click.option("--warmup", default=2, show_default=True, type=click.IntRange(0))
@click.option("--threads", default=0, type=click.IntRange(0), help="Threads for onnxruntime and torch (0: all usable CPUs).")
@click.option("--max-seconds", default=60.0, show_default=True, type=click.FloatRange(0),
              help="Stop a row's repeats after this long (at least 3; 0: no limit).")
@click.option("--graphs", help="Only these graphs, comma-separated (no whole edits, no photos, no fs3), e.g. "
                                "synthesis,text_encoder.")
@click.option("--only-photos", is_flag=True,
              help="Only the real-photo rows: align at 512 and 2048 px, and with an encoder a whole photo (align, "
                   "invert, GD edit, paste-back); needs the [align] and [test] extras.")
@click.option("--profile", is_flag=True, help="Also print onnxruntime's per-op profile of every graph.")
@click.option("--plain/--no-plain", default=True, show_default=True,
              help="Also time the rewritten graphs (synthesis, text encoder) exported without their rewrite, and the "
                   "rewritten modules in PyTorch eager.")
@click.option("--openvino/--no-openvino", default=None,
              help="Also time OpenVINO's CPU plugin (f32 and bf16) [when the openvino package is installed].")
@click.option("--out", type=Output(".md"), help="Write the report into this .md (its run block; chart PNG beside it).")
def bench(preset, bundle, batches, repeats, warmup, threads, max_seconds, graphs, only_photos, profile, plain, openvino,
          out):
    """Time the runtime against PyTorch eager (same inputs, interleaved) and against each graph's floor."""
    import shlex

    from runtime.bundle import read_manifest

    sizes = parse_ints(batches, "--batches") if batches is not None else None
    if preset and bundle:
        raise click.UsageError("pass --preset or --bundle, not both")
    if graphs and only_photos:
        raise click.UsageError("pass --graphs or --only-photos, not both")
    if bundle:
        read_manifest(bundle)  # before the slow imports: a wrong folder fails at once
    from export.bench import bench_bundle, format_result, write_markdown
    from export.bundle import ExportOptions
    from export.presets import preset_bundle

    if bundle:
        targets = [(Path(bundle), Path(bundle).name)]
    else:
        names = ["demo", "ffhq"] if preset == "both" else [preset or "demo"]
        targets = [(preset_bundle(ROOT / "build" / "bench" / p, p, ExportOptions(fp16=True, torchscript=True, int8=True, openvino=True),
                                  log=click.echo), p) for p in names]
    only = [g.strip() for g in (graphs or "").split(",") if g.strip()] or None  # None: every graph
    partial = bool(only or only_photos)  # no whole edits, no fs3
    results = []
    for folder, label in targets:
        res = bench_bundle(folder, batches=sizes or default_batches(folder), repeats=repeats, warmup=warmup,
                           threads=threads or None,
                           max_seconds=max_seconds or None, label=label, profile=profile,
                           graphs=[] if only_photos else only, reference_graphs=plain, openvino=openvino,
                           edits=not partial, photos=not only, fs3_channels=0 if partial else 2,
                           log=lambda m: click.echo(m, err=True))
        click.echo(format_result(res) + "\n")
        results.append(res)
    if out:
        command = " ".join(["python cli.py", *map(shlex.quote, sys.argv[1:])])
        key = (preset or "bundle-" + targets[0][1]) + ("-photos" if only_photos else "")  # not the full run's block
        md, chart = write_markdown(out, results, command, key)
        click.echo(f"wrote {md} and {chart}")


def default_batches(bundle) -> list[int]:
    """[1] at 512 px and more: at 1,8 the FFHQ preset passed 19 GB (every candidate open then; each holds its
    own buffers for the batch)."""
    from runtime.bundle import read_manifest

    return [1] if read_manifest(bundle)["generator"]["size"] >= 512 else [1, 8]


# --- the runtime in a web page (runtime/web_site.py, DESIGN §12) ------------------------------------
@main.command()
@click.argument("bundle", required=False, type=click.Path(file_okay=False))
@click.option("--out", default=str(_BASE / "build" / "web"), show_default="build/web", type=click.Path(file_okay=False),
              help="Site folder (replaced only if it is a site this command wrote).")
@click.option("--serve", is_flag=True, help="Then serve the site on http://127.0.0.1:PORT/ until Ctrl-C.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535), help="Port for --serve (0: any free one).")
@click.option("--ort-dist", type=click.Path(file_okay=False),
              help="onnxruntime-web's dist folder [web/node_modules/onnxruntime-web/dist, from `npm ci --prefix web`].")
@click.option("--without", default="", metavar="PARTS",
              help="Leave out of the site, comma-separated: encoder (no dropped pictures), text_encoder (only the "
                   "bundle's tuned prompts), mappers.")
@click.option("--weights", default="auto", show_default=True, metavar="auto|fp32|fp16",
              help="Which of the bundle's graph variants the site serves; auto: fp16 (weights stored in fp16, computed "
                   "in fp32; `export --fp16`) where the bundle has them, else fp32.")
def web(bundle, out, serve, port, ort_dist, without, weights):
    """Write a static site that runs BUNDLE's edits in the browser (onnxruntime-web) [artifacts/bundles/demo]."""
    from runtime.web_site import build_site, make_server, site_size

    start = time.perf_counter()
    site = build_site(open_bundle_folder(bundle), out, ort_dist, without.split(","), weights)
    size = site_size(out)
    mb = lambda sizes: ", ".join(f"{b} {v / 1e6:.1f} MB" for b, v in sizes.items())  # noqa: E731
    variants = sorted({g["variant"] for g in site["graphs"].values()})
    click.echo(f"wrote {out} ({size['total'] / 1e6:.1f} MB, {'/'.join(variants)} graphs; the first visit downloads "
               f"{mb(size['first_visit'])}; with every graph used {mb(size['per_visit'])}) "
               f"in {time.perf_counter() - start:.1f} s")
    if serve:
        server = make_server(out, port)
        click.echo(f"serving http://127.0.0.1:{server.server_address[1]}/ (Ctrl-C to stop)", nl=True)
        sys.stdout.flush()
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            server.server_close()


@main.command()
@click.option("--out", default="demo.png", show_default=True, type=Output(".png"))
@click.option("--seed", "seeds", default="1,2,3,4", show_default=True)
@click.option("--bundle", type=click.Path(file_okay=False),
              help="Use this bundle instead of the demo one (artifacts/bundles/demo, built when missing).")
@click.pass_context
def demo(ctx, out, seeds, bundle):
    """The main job: build the demo bundle if missing (export + validate), then a grid of text edits
    (sampled faces, and with an encoder one held-out render inverted last)."""
    import numpy as np

    from precompute.demo.edits import DEMO_EDITS

    seed_list = parse_seeds(seeds)
    if bundle is None and not (DEFAULT_BUNDLE / "manifest.json").is_file():
        if not DEMO_DIR.is_dir():
            raise click.UsageError(f"the demo bundle {DEFAULT_BUNDLE} is missing and there is no demo world "
                                   f"({DEMO_DIR}) to build it from: pass --bundle FOLDER, or run `make demo` in a "
                                   "source checkout")
        require_extra("train", "demo (building the missing demo bundle)")
        click.echo(f"building the demo bundle in {DEFAULT_BUNDLE} ...")
        ctx.invoke(export_cmd)
        ctx.invoke(validate)
    editor = open_editor(bundle)
    if not editor.manifest.get("edit_settings"):
        click.echo(f"note: {DEFAULT_BUNDLE} records no tuned edit settings (exported by an older toolkit), so the "
                   "edits use the defaults; `python cli.py export` rebuilds it with the measured ones")
    wplus = editor.sample(seed_list)
    lead = None
    if editor.encoder:  # and one held-out render (a "photo" no model saw), inverted: the user's main path
        from precompute.demo.render import render, sample_faces

        photo = render(sample_faces(1, DEMO_PHOTO_SEED)[0])
        wplus = np.concatenate([wplus, editor.invert(photo)])
        lead = (["photo"], "start", [[None]] * len(seed_list) + [[photo]])
    columns = [[editor.global_edit(e.target)] for e in DEMO_EDITS]  # the bundle's tuned settings
    rows = write_comparison(editor, wplus, columns, [e.name for e in DEMO_EDITS], out, scale=2, lead=lead)
    inverted = "; the last row starts from a held-out render inverted by the bundle's encoder" if lead else ""
    click.echo(f"wrote {out}: {len(rows)} faces x {len(DEMO_EDITS)} global-direction edits{inverted}")


if __name__ == "__main__":
    main()
