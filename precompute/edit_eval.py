"""Edit quality (DESIGN §8): one harness for methods A, B and C, through PyTorch and through the runtime.

For an edit (target text, the attribute value it should set) over N sampled latents (or the W+ of N
held-out renders inverted by the demo encoder: `inverted_wplus`), the demo classifier — never used in any
training loss — reads every image before and after:
success = share of the images without the target value that have it after the edit; preservation =
share of the other attributes unchanged; geometry drift = mean |change| of the regressed geometry (in
units of each value's range); plus seconds per edited image. With an identity network (ArcFace for real
faces, precompute/identity.py): identity = mean cosine between its features of each image before and after.
Edits of a colour attribute (hair, eyes, skin, background) succeed by the colour a person sees instead
(precompute/demo/colour.py: the region's colour named in CIELAB among the renderer's colours and others it never
draws), with the classifier's success beside it, and have a spill: how much of the rest of the picture changed.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from runtime import edit_math
from runtime.files import atomic_path, slugify
from runtime.images import grid, save_png

from .demo.classifier import AttributeClassifier, read_attributes
from .demo.colour import COLOUR_ATTRIBUTES, SPILL_DELTA_E, SPILL_MARGIN, ColourJudge
from .demo.edits import DEMO_EDITS, EditSpec, find_edits  # noqa: F401  (re-exported)
from .demo.keep import faces_of_codes, is_demo_generator, keep_weights
from .demo.render import ATTRIBUTE_NAMES, ATTRIBUTES, Face
from .demo.training import to_model_input, to_uint8


# --- methods: W+ [N, n_latent, D] -> edited images (uint8 [N, H, W, 3]) ------------------------------------
def describe_global(alpha: float, beta: float, neutral: str) -> str:
    """Method C's setting as the table shows it; the neutral text only where it is not the usual "a face"."""
    return f"alpha {alpha:g}, beta {beta:g}" + (f", from '{neutral}'" if neutral != EditSpec.neutral else "")


class GlobalDirections:
    """Method C in PyTorch, with the runtime's edit math (one source of truth)."""

    label = "C global"

    def __init__(self, gen, clip, fs3: np.ndarray, std: np.ndarray, default: tuple[float, float] | None = None,
                 text_directions: dict | None = None, neutral: str | None = None):
        self.gen, self.clip, self.fs3, self.std, self.default = gen, clip, fs3, std, default
        self.text_directions = {} if text_directions is None else text_directions  # shareable cache
        self.neutral = neutral  # for every edit (sweeps), else each edit's own

    def setting(self, spec: EditSpec) -> tuple[float, float]:
        return spec.global_setting(self.default)

    def neutral_text(self, spec: EditSpec) -> str:
        return self.neutral or spec.neutral

    def describe(self, spec: EditSpec) -> str:
        return describe_global(*self.setting(spec), self.neutral_text(spec))

    def available(self, spec: EditSpec) -> bool:
        try:
            self.direction(spec, self.setting(spec)[1])
            return True
        except edit_math.NoChannelError:  # beta above every channel's relevance (sweeps)
            return False

    def direction(self, spec: EditSpec, beta: float) -> np.ndarray:
        key = (spec.target, self.neutral_text(spec))
        if key not in self.text_directions:
            encode = lambda texts: self.clip.encode_text(texts).numpy()  # noqa: E731
            self.text_directions[key] = edit_math.text_direction(encode, *key)
        r = edit_math.relevance(self.fs3, self.text_directions[key])
        return edit_math.style_direction(r, beta, self.std, self.gen.layout)

    @torch.no_grad()
    def __call__(self, wplus: torch.Tensor, spec: EditSpec, faces: list[Face] | None = None) -> np.ndarray:
        alpha, beta = self.setting(spec)
        ds = self.direction(spec, beta)
        s = torch.cat(self.gen.styles(wplus), 1).numpy()
        edited = edit_math.apply_edits(s, [ds], [alpha])
        return to_uint8(self.gen.synthesis_flat(torch.from_numpy(edited)))


class Mappers:
    """Method B in PyTorch: the mapper trained for the edit's text, if any."""

    label = "B mapper"

    def __init__(self, gen, mappers: dict, strength: float | None = None):
        self.gen, self.mappers = gen, {m.config.prompt.strip().lower(): m for m in mappers.values()}
        self.strength = strength

    def setting(self, spec: EditSpec) -> float:
        return spec.mapper_strength(self.strength)

    def available(self, spec: EditSpec) -> bool:
        return spec.target.lower() in self.mappers

    def describe(self, spec: EditSpec) -> str:
        return f"strength {self.setting(spec):g}"

    @torch.no_grad()
    def __call__(self, wplus: torch.Tensor, spec: EditSpec, faces: list[Face] | None = None) -> np.ndarray:
        return to_uint8(self.gen(self.mappers[spec.target.lower()].edit(wplus, self.setting(spec))))


class Optimization:
    """Method A: latent optimization per image (batched; every latent follows its own path)."""

    label = "A optimize"

    def __init__(self, gen, clip, cfg, identity=None):
        self.gen, self.clip, self.cfg, self.identity = gen, clip, cfg, identity  # identity: the L_id network

    def available(self, spec: EditSpec) -> bool:
        return True

    def describe(self, spec: EditSpec) -> str:
        views = f", {self.cfg.clip_views} views" if self.cfg.clip_views > 1 else ""
        ids = f", id {self.cfg.identity:g}" if self.identity is not None and self.cfg.identity > 0 else ""
        keep = f", keep {self.cfg.keep_weight:g}" if self.cfg.keep_weight > 0 else ""
        return f"{self.cfg.steps} steps, lr {self.cfg.lr:g}, l2 {self.cfg.l2:g}{views}{ids}{keep}"

    def __call__(self, wplus: torch.Tensor, spec: EditSpec, faces: list[Face] | None = None) -> np.ndarray:
        """`faces`: what each latent shows, for the keep term's masks (outside the edited attribute's region)."""
        from .optimization import optimize_latents

        keep = None
        if self.cfg.keep_weight > 0:
            if faces is None:
                raise ValueError("method A's keep term needs the faces the latents show: the demo world's sampled "
                                 "latents or inverted renders")
            keep = keep_weights(faces, spec.attribute)
        w, _ = optimize_latents(self.gen, self.clip, spec.target, wplus, self.cfg, identity=self.identity,
                                progress=False, keep=keep)
        with torch.no_grad():
            return to_uint8(self.gen(w))


class RuntimeMethod:
    """Methods B and C through the runtime (a bundle, onnxruntime): what apps embedding it get."""

    def __init__(self, editor, kind: str, default: tuple[float, float] | None = None, strength: float | None = None):
        self.editor, self.kind, self.default, self.strength = editor, kind, default, strength
        self.label = f"{'C global' if kind == 'global' else 'B mapper'} (runtime)"

    def _edit(self, spec: EditSpec):
        from runtime.editor import GlobalEdit, MapperEdit

        if self.kind == "mapper":
            return MapperEdit(self.editor.mapper_for(spec.target), spec.mapper_strength(self.strength))
        return GlobalEdit(spec.target, spec.neutral, *spec.global_setting(self.default))

    def available(self, spec: EditSpec) -> bool:
        if self.kind == "global":
            return self.editor.has_global_directions
        try:
            self.editor.mapper_for(spec.target)
            return True
        except ValueError:
            return False

    def describe(self, spec: EditSpec) -> str:
        edit = self._edit(spec)
        return describe_global(edit.alpha, edit.beta, edit.neutral) if self.kind == "global" else f"strength {edit.strength:g}"

    def __call__(self, wplus: torch.Tensor, spec: EditSpec, faces: list[Face] | None = None) -> np.ndarray:
        return self.editor.edit(wplus.numpy(), self._edit(spec))


# --- the demo world's models ------------------------------------------------------------------------------
@dataclass
class DemoWorld:
    gen: object
    clip: object
    classifier: AttributeClassifier
    fs3: np.ndarray | None
    std: np.ndarray | None
    mappers: dict
    encoder: object = None

    @classmethod
    def load(cls, demo_dir, need_global: bool = True, need_mappers: bool = True,
             need_encoder: bool = False) -> "DemoWorld":
        from .checkpoints import load_generator
        from .clip_model import load_clip
        from .demo.classifier import load_classifier
        from .global_directions import import_official_fs3, load_style_statistics
        from .mapper import load_mapper

        d = Path(demo_dir)
        for name, how in (("generator.json", "train-generator"), ("clip.json", "train-clip"),
                          ("classifier.json", "train-classifier")):
            if not (d / name).is_file():
                raise FileNotFoundError(f"{d / name} is missing; make it with `python cli.py {how}`")
        gen = load_generator(d / "generator.json").eval()
        fs3 = std = None
        if need_global:
            fs3 = import_official_fs3(d / "fs3.npy", gen.layout)
            std = load_style_statistics(d / "s_stats.npz", gen.layout)[1]
        mappers = {}
        if need_mappers:
            mappers = {p.stem: load_mapper(p) for p in sorted((d / "mappers").glob("*.json"))}
        encoder = None
        if need_encoder:
            from .encoder import load_encoder

            if not (d / "encoder.json").is_file():
                raise FileNotFoundError(f"{d / 'encoder.json'} is missing; make it with `python cli.py train-encoder`")
            encoder = load_encoder(d / "encoder.json")
        return cls(gen, load_clip(weights=d / "clip.json"), load_classifier(d / "classifier.json"), fs3, std, mappers,
                   encoder)

    def methods(self, letters, default: tuple[float, float] | None, optimize, bundle=None,
                strength: float | None = None, identity=None) -> list:
        """Methods by letter; C uses `default` (alpha, beta) for every edit and B `strength`, or each edit's
        own when None; A uses `optimize` (an OptimizeConfig) and `identity` (its L_id network, if any)."""
        made = {"C": lambda: GlobalDirections(self.gen, self.clip, self.fs3, self.std, default),
                "B": lambda: Mappers(self.gen, self.mappers, strength),
                "A": lambda: Optimization(self.gen, self.clip, optimize, identity)}
        methods = [made[k]() for k in letters]
        if bundle is not None:
            from runtime.editor import Editor

            editor = Editor(bundle)
            methods += [RuntimeMethod(editor, kind, default, strength)
                        for kind, k in (("global", "C"), ("mapper", "B")) if k in letters]
        return methods


def sweep_global(world: DemoWorld, edits, alphas, betas, n: int, seed: int, psi: float, identity=None,
                 neutrals=(None,)) -> list[dict]:
    """Method C's table for every (neutral text, alpha, beta) (None: each edit's own neutral): how the demo edits'
    settings were chosen."""
    cache: dict = {}
    methods = [GlobalDirections(world.gen, world.clip, world.fs3, world.std, (a, b), cache, neutral)
               for neutral in neutrals for b in betas for a in alphas]
    return evaluate_edits(world.gen, world.classifier, edits, methods, n, seed, psi, examples=0, identity=identity)[0]


def sweep_mappers(world: DemoWorld, edits, strengths, n: int, seed: int, psi: float, identity=None) -> list[dict]:
    """Method B's table for every mapper strength: how the demo edits' strengths were chosen."""
    methods = [Mappers(world.gen, world.mappers, s) for s in strengths]
    return evaluate_edits(world.gen, world.classifier, edits, methods, n, seed, psi, examples=0, identity=identity)[0]


# --- scoring --------------------------------------------------------------------------------------------
def read_faces(classifier: AttributeClassifier, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Classifier's (attribute value indices [N, n_attr], geometry [N, n_geom] in [0, 1])."""
    values, _, geometry = read_attributes(classifier, images)
    return values, geometry


def faces_read(values: np.ndarray, geometry: np.ndarray) -> list[Face]:
    """The faces `read_faces` reads: where the colour regions of images without a known face come from. Seed 0:
    the seed only places hair strands, inside the hair."""
    return [Face(tuple(int(v) for v in vs), tuple(float(g) for g in np.clip(gs, 0, 1)))
            for vs, gs in zip(values, geometry)]


def score(before: tuple[np.ndarray, np.ndarray], after: tuple[np.ndarray, np.ndarray], spec: EditSpec,
          colour: dict | None = None) -> dict:
    """A row's scores from the classifier's readings before and after; for a colour edit, `colour`
    (ColourJudge.score: eligible, success, read_as, spill) replaces its success, kept as "success (classifier)"."""
    (a0, g0), (a1, g1) = before, after
    k = ATTRIBUTE_NAMES.index(spec.attribute)
    target = ATTRIBUTES[spec.attribute].index(spec.value)
    eligible = a0[:, k] != target
    others = [i for i in range(len(ATTRIBUTE_NAMES)) if i != k]
    changed = (a1[:, others] != a0[:, others]).mean(0)  # per other attribute: what preservation loses
    worst = int(np.argmax(changed))
    row = {"n": int(len(a0)), "eligible": int(eligible.sum()),
           "success": float((a1[eligible, k] == target).mean()) if eligible.any() else float("nan"),
           "preservation": float(1 - changed.mean()),
           "drift": float(np.abs(g1 - g0).mean()),
           "most_changed": (ATTRIBUTE_NAMES[others[worst]], float(changed[worst]))}
    # The classifier names every colour by the nearest of the renderer's (blue hair: "purple"): second opinion only.
    return row if colour is None else {**row, "success (classifier)": row["success"], **colour}


def identity_features(identity, images: np.ndarray, batch: int) -> torch.Tensor:
    """Unit identity features [N, D] of uint8 images [N, H, W, 3] (fed as [-1, 1], like generator output)."""
    with torch.no_grad():
        feats = [identity(to_model_input(images[i:i + batch])) for i in range(0, len(images), batch)]
    return torch.nn.functional.normalize(torch.cat(feats), dim=1)


def sample_codes(gen, n: int, seed: int) -> torch.Tensor:
    """n codes z [n, style_dim] from numpy's generator (seed)."""
    return torch.from_numpy(np.random.default_rng(seed).standard_normal((n, gen.config.style_dim), dtype=np.float32))


def sample_wplus(gen, n: int, seed: int, psi: float) -> torch.Tensor:
    """W+ of n latents: `sample_codes`, mapped and truncated."""
    with torch.no_grad():
        return gen.wplus_from_z(sample_codes(gen, n, seed), psi)


class Inverted(NamedTuple):
    """Latents of renders, with the faces rendered: colour regions come from a render's own face."""

    wplus: torch.Tensor
    faces: list[Face]


def inverted_wplus(encoder, n: int, seed: int = 0) -> Inverted:
    """W+ of n held-out renders (render seed HELDOUT_SEED + seed; no model saw them) inverted by `encoder`."""
    from .demo.render import render_batch, sample_faces
    from .demo.train_encoder import invert_renders
    from .demo.training import HELDOUT_SEED

    faces = sample_faces(n, HELDOUT_SEED + seed)
    return Inverted(invert_renders(encoder, render_batch(faces)), faces)


def evaluate_edits(gen, classifier, edits, methods, n: int = 200, seed: int = 0, psi: float = 0.7, batch: int = 100,
                   examples: int = 6, progress: bool = True, wplus: torch.Tensor | Inverted | None = None,
                   identity=None) -> tuple[list[dict], dict[str, list[list[np.ndarray]]]]:
    """Rows of the quality table (one per edit and available method) and, per edit, example grid rows
    (original, then each method's result). The latents: `wplus` when given (e.g. `inverted_wplus`), else n
    sampled ones (seed, truncation psi); "original" is what the generator draws from them. With `identity`
    (an image-embedding network, e.g. precompute.identity's ArcFace) every row also has "identity".
    Colour edits' regions come from the faces rendered (`Inverted`), else from the classifier's readings of the
    originals: an edit should not move the face, so each edited image is read where its original shows it."""
    from tqdm.auto import tqdm

    wplus, faces = wplus if isinstance(wplus, Inverted) else (wplus, None)
    named = faces  # what each latent shows, for method A's keep term: the renders, or what sampled codes name
    if wplus is None:
        wplus = sample_wplus(gen, n, seed, psi)
        if is_demo_generator(gen):
            named = faces_of_codes(sample_codes(gen, n, seed))
    n = len(wplus)
    with torch.no_grad():
        originals = np.concatenate([to_uint8(gen(wplus[i:i + batch])) for i in range(0, n, batch)])
    before = read_faces(classifier, originals)
    colours = None
    if any(spec.attribute in COLOUR_ATTRIBUTES for spec in edits):
        colours = ColourJudge(faces_read(*before) if faces is None else faces, originals)
    source_ids = None if identity is None else identity_features(identity, originals, batch)
    rows, pictures = [], {}
    jobs = [(spec, m) for spec in edits for m in methods if m.available(spec)]
    bar = tqdm(jobs, desc="evaluate edits", disable=not progress)
    for spec, method in bar:
        bar.set_postfix_str(f"{spec.name} / {method.label}")
        start = time.perf_counter()
        edited = np.concatenate([method(wplus[i:i + batch], spec, None if named is None else named[i:i + batch])
                                 for i in range(0, n, batch)])
        seconds = (time.perf_counter() - start) / n
        colour = colours.score(edited, spec.attribute, spec.value) if spec.attribute in COLOUR_ATTRIBUTES else None
        rows.append({"edit": spec.name, "method": method.label, "setting": method.describe(spec),
                     **score(before, read_faces(classifier, edited), spec, colour), "seconds": seconds})
        if source_ids is not None:
            rows[-1]["identity"] = float((identity_features(identity, edited, batch) * source_ids).sum(1).mean())
        shown = pictures.setdefault(spec.name, [[originals[i]] for i in range(min(examples, n))])
        for i, row in enumerate(shown):
            row.append(edited[i])
    return rows, pictures


# --- reports --------------------------------------------------------------------------------------------
BARS = {"C global": (0.85, 0.95), "B mapper": (0.95, 0.95), "A optimize": (0.90, 0.90)}  # success, preservation (issue 25)


def meets_bar(row: dict) -> bool | None:
    """Against the method's bar; a colour edit's "success" is already the colour a person sees (`score`)."""
    bar = BARS.get(row["method"].removesuffix(" (runtime)"))
    return None if bar is None else row["success"] >= bar[0] and row["preservation"] >= bar[1]


def format_table(rows: list[dict], markdown: bool = False) -> str:
    """The quality table; an "identity" column after geometry drift when the rows were scored with one. Colour
    edits fill "success (classifier)", "read as" and "spill"; other edits show "-" there."""
    ids = any("identity" in r for r in rows)
    head = ["edit", "method", "setting", "success", "success (classifier)", "read as", "spill", "preservation",
            "geometry drift", *(["identity"] if ids else []), "s/edit", "bar", "most changed other attribute"]

    def colour(r: dict) -> list[str]:
        if "spill" not in r:
            return ["-"] * 3
        return [f"{r['success (classifier)']:.3f}", "{} {:.3f}".format(*r["read_as"]), f"{r['spill']:.3f}"]

    body = [[r["edit"], r["method"], r["setting"], f"{r['success']:.3f}", *colour(r), f"{r['preservation']:.3f}",
             f"{r['drift']:.4f}", *([f"{r.get('identity', float('nan')):.3f}"] if ids else []), f"{r['seconds']:.4f}",
             {True: "met", False: "MISSED", None: "-"}[meets_bar(r)], "{} {:.3f}".format(*r["most_changed"])]
            for r in rows]
    if markdown:
        return "\n".join("| " + " | ".join(cells) + " |" for cells in [head, ["---"] * len(head), *body])
    widths = [max(len(c[i]) for c in [head, *body]) for i in range(len(head))]
    fmt = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths))  # noqa: E731
    return "\n".join([fmt(head), fmt(["-" * w for w in widths]), *map(fmt, body)])


def write_report(out_dir, rows: list[dict], pictures: dict, context: str) -> list[Path]:
    """`out_dir/edit_quality.md` (the table) and `out_dir/edits/<edit>.png` (original | each method)."""
    out_dir = Path(out_dir)
    written = []
    for name, grid_rows in pictures.items():
        labels = ["original"] + [r["method"] for r in rows if r["edit"] == name]
        written.append(save_png(grid(grid_rows, labels, scale=3), out_dir / "edits" / f"{slugify(name)}.png"))
    text = ["# Edit quality on the demo world", "", context, "",
            "success: share of the images without the target value that have it after the edit, as the classifier "
            "reads it; for colour edits (hair, eyes, skin, background) as a person sees it instead: the median CIELAB "
            "colour of the attribute's region (where the renderer draws it on the original's face), named by the "
            "nearest (CIEDE2000) of the renderer's colours and colours it never draws there, such as blue hair "
            "(precompute/demo/colour.py). Success (classifier): the classifier's reading, which names every colour "
            "by the nearest it knows. Read as: the colour most often read after the edit on those images, and its "
            "share (eyes are read one side at a time; mixed: the two differ). Spill: share of the pixels outside the "
            f"region (and a {SPILL_MARGIN} px margin) whose colour changed by more than {SPILL_DELTA_E:g} (CIEDE2000). "
            "Preservation: "
            "share of the other six attributes unchanged; geometry drift: mean |change| of the seven regressed "
            "geometry values (each in [0, 1]); s/edit: wall seconds per edited image on this machine. Bars (issue 25): "
            "C success >= 0.85 at preservation >= 0.95, B >= 0.95 / 0.95, A >= 0.90 / 0.90 (with the identity term). Most changed other attribute: "
            "the one the edit changed on the most images, and on what share of them."
            + (" Identity: mean cosine between the identity network's features of each image before and after the "
               "edit (1: the same face to it)." if any("identity" in r for r in rows) else ""), "",
            format_table(rows, markdown=True), "",
            "Examples: one row per latent; columns: the original, then each method as labelled.", ""]
    text += [f"**{name}**\n\n![{name}](edits/{slugify(name)}.png)\n" for name in pictures]
    with atomic_path(out_dir / "edit_quality.md") as tmp:
        tmp.write_text("\n".join(text) + "\n")
    return [out_dir / "edit_quality.md", *written]
