"""The embedding surface: text-driven edits from a bundle with numpy + onnxruntime only.

    from runtime.editor import Editor, GlobalEdit, MapperEdit
    editor = Editor("artifacts/bundles/demo")
    wplus = editor.sample([1, 2, 3])                      # W+ from seeds (truncation from the bundle)
    before = editor.render(wplus)                          # uint8 [3, H, W, 3]
    after = editor.edit(wplus, [GlobalEdit("a face with purple hair", "a face", alpha=4.1)])
    mine = editor.invert(["me.png"])                       # a picture -> W+ (bundles with an encoder)

Files are verified against the manifest's sha256 before their first use; graphs are opened lazily.
One Editor may be shared by many threads: sessions are thread-safe and the caches are locked.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import checks, edit_math, openvino
from .bundle import BundleError, check_session, load_table, read_manifest, text_tokens, verify_file
from .files import as_path, slugify
from .memory import trim_heap
from .edit_settings import prompt_key
from .stylespace import StyleSpaceLayout
from .tokenizer import ClipTokenizer

PROVIDERS = {"cpu": ["CPUExecutionProvider"],
             "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
             "tensorrt": ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]}
DEVICES = (*PROVIDERS, "openvino")  # openvino: OpenVINO's CPU plugin (runtime/openvino.py), optional
# ONNX variants; a graph exported without one runs its fp32 variant. bf16: OpenVINO's bf16 inference.
PRECISIONS = ("fp32", "fp16", "int8", "bf16")
MAX_BATCH = 64  # rendering is chunked so memory stays bounded for any input size


def _frozen(value):
    """`value` with its numpy arrays (also inside a tuple) made read-only, so cached results cannot be altered."""
    if isinstance(value, np.ndarray):
        value.setflags(write=False)
    elif isinstance(value, tuple):
        for v in value:
            _frozen(v)
    return value


@dataclass(frozen=True)
class GlobalEdit:
    """StyleCLIP global direction: neutral -> target text, strength alpha, threshold beta (None = auto)."""

    target: str
    neutral: str = "a face"
    alpha: float = edit_math.DEFAULT_ALPHA
    beta: float | None = edit_math.DEFAULT_BETA
    min_channels: int = 10  # auto-beta keeps at least this many channels

    def __post_init__(self):
        checks.text("GlobalEdit target", self.target)
        checks.text("GlobalEdit neutral", self.neutral)
        object.__setattr__(self, "alpha", edit_math.check_range("GlobalEdit alpha", self.alpha, edit_math.ALPHA_RANGE))
        if self.beta is not None:
            object.__setattr__(self, "beta", edit_math.check_range("GlobalEdit beta", self.beta, edit_math.BETA_RANGE))
        checks.integer("GlobalEdit min_channels", self.min_channels, 1)


@dataclass(frozen=True)
class MapperEdit:
    """A trained latent mapper by name; strength scales its W+ offset."""

    name: str
    strength: float = edit_math.DEFAULT_STRENGTH

    def __post_init__(self):
        checks.text("MapperEdit name", self.name)
        object.__setattr__(self, "strength", edit_math.check_range("MapperEdit strength", self.strength,
                                                                   edit_math.STRENGTH_RANGE))


def _edit_list(edits, name: str) -> list:
    """One edit or an iterable of them, as a list; anything else is a TypeError naming the argument."""
    if isinstance(edits, (GlobalEdit, MapperEdit)):
        return [edits]
    edits = checks.items(name, edits, "a GlobalEdit, a MapperEdit or a list of them")
    for e in edits:
        if not isinstance(e, (GlobalEdit, MapperEdit)):
            raise TypeError(f"{name} must hold GlobalEdit or MapperEdit objects, got {type(e).__name__} {e!r}")
    return edits


class Editor:
    def __init__(self, bundle, device: str = "cpu", threads: int | None = None, optimization: str = "all",
                 precision: str = "fp32"):
        import onnxruntime as ort

        checks.choice("device", device, DEVICES)
        checks.choice("precision", precision, PRECISIONS)
        if (precision not in openvino.PRECISIONS) if device == "openvino" else precision == "bf16":
            raise ValueError(f"precision {precision!r} does not run on device {device!r}: device='openvino' runs fp32 "
                             "and bf16, bf16 needs device='openvino'")
        if device == "openvino":
            openvino.require()
        if threads is not None:
            checks.integer("threads", threads, 1, 1024)
        self.folder = as_path(bundle, "bundle")
        self.manifest = read_manifest(self.folder)
        self.device, self.threads = device, threads
        available = set(ort.get_available_providers())
        if device != "openvino" and PROVIDERS[device][0] not in available:
            raise ValueError(f"device {device!r} needs {PROVIDERS[device][0]}, which this onnxruntime lacks "
                             f"(available: {', '.join(sorted(available))}); install onnxruntime-gpu or use device='cpu'")
        self.providers = [p for p in PROVIDERS.get(device, PROVIDERS["cpu"]) if p in available]
        levels = {"none": ort.GraphOptimizationLevel.ORT_DISABLE_ALL, "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
                  "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED, "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL}
        checks.choice("optimization", optimization, levels)
        self.options = ort.SessionOptions()
        self.options.graph_optimization_level = levels[optimization]
        self.options.log_severity_level = 3
        # onnxruntime's arena reuses the large intermediate buffers: without it every one is a fresh mmap whose
        # pages fault in on each run (FFHQ-1024 synthesis ~20% slower, its ConvTranspose 2x). Without the
        # memory pattern, run after run, the arena holds what a run needs rather than a planned block per
        # input shape (peak 0.62 vs 0.87 GB there); loading allocates nothing extra (docs/benchmarks.md).
        self.options.enable_mem_pattern = False
        if threads:
            self.options.intra_op_num_threads = threads
        self.precision = precision
        gen = self.manifest["generator"]
        self.layout = StyleSpaceLayout.from_list(gen["layout"])
        self.n_latent, self.style_dim = gen["n_latent"], gen["style_dim"]
        clip = self.manifest["clip"]
        self.tokenizer = ClipTokenizer(verify_file(self.folder, self.manifest, clip["tokenizer"]["file"]), clip["context_length"])
        self.latent_avg = _frozen(self.table("latent_avg"))
        self._sessions: dict[str, object] = {}
        self._cache: dict[tuple, object] = {}  # text directions, Δs and tables; arrays read-only
        self._lock = threading.Lock()

    # --- bundle access ---------------------------------------------------------------------------
    @property
    def mappers(self) -> list[str]:
        return sorted(self.manifest.get("mappers") or {})

    def tuned_settings(self, prompt: str) -> dict:
        """The bundle's tuned settings for `prompt` (neutral/alpha/beta/strength; runtime/edit_settings.py), {} if none."""
        return dict((self.manifest.get("edit_settings") or {}).get(prompt_key(prompt), {}))

    @property
    def has_global_directions(self) -> bool:
        return bool(self.manifest.get("global_directions"))

    def table(self, name: str) -> np.ndarray:
        rel = (self.manifest.get("tables") or {}).get(name)
        if rel is None:
            raise BundleError(f"this bundle has no '{name}' table")
        return load_table(self.folder, self.manifest, rel)

    def session(self, graph: str):
        """The onnxruntime session of a graph, created (and its file verified) on first use."""
        with self._lock:
            if graph not in self._sessions:
                import onnxruntime as ort

                entry = self.manifest["graphs"].get(graph)
                if entry is None:
                    raise BundleError(f"this bundle has no '{graph}' graph")
                wanted = "openvino" if self.device == "openvino" else self.precision
                variant = entry["variants"].get(wanted) or entry["variants"]["fp32"]
                path = verify_file(self.folder, self.manifest, variant["file"])
                try:
                    if self.device == "openvino":
                        session = openvino.OpenVinoSession(path, openvino.graph_precision(graph, self.precision), self.threads)
                    else:
                        session = ort.InferenceSession(str(path), self.options, providers=self.providers)
                except Exception as err:  # onnxruntime and OpenVINO raise their own types for unreadable graphs
                    raise BundleError(f"bundle graph {variant['file']} cannot be opened by "
                                      f"{'OpenVINO' if self.device == 'openvino' else 'onnxruntime'} "
                                      f"({type(err).__name__}: {str(err).splitlines()[0][:200]})") from None
                check_session(self.manifest, graph, variant["file"], session)
                trim_heap()  # what opening freed (FFHQ e4e: 1.9 GB next to its 1.1 GB session)
                self._sessions[graph] = session
            return self._sessions[graph]

    def close(self, *graphs: str) -> None:
        """Close these graphs' sessions (all when none is named) and hand their memory back (FFHQ size:
        gigabytes); the Editor stays usable and opens a graph again when next needed. Cached text
        directions and tables stay (small, and valid without their sessions)."""
        with self._lock:
            for graph in graphs or list(self._sessions):
                self._sessions.pop(graph, None)
        trim_heap()

    def run(self, graph: str, x: np.ndarray) -> np.ndarray:
        sess = self.session(graph)
        return sess.run(None, {sess.get_inputs()[0].name: x})[0]

    # --- latents ----------------------------------------------------------------------------------
    def sample(self, seeds, truncation: float | None = None) -> np.ndarray:
        """W+ [N, n_latent, style_dim] for integer seeds: z ~ N(0, I) per seed, mapped, truncated."""
        seeds = [seeds] if isinstance(seeds, (int, np.integer)) else checks.items("seeds", seeds, "an integer or a list of integers")
        if not seeds:
            raise ValueError("seeds is empty; pass at least one seed")
        seeds = [checks.integer("each seed", s, 0) for s in seeds]
        psi = self.manifest["defaults"]["truncation"] if truncation is None else truncation
        psi = edit_math.check_range("truncation", psi, (0.0, 1.0))
        z = np.stack([np.random.default_rng(s).standard_normal(self.style_dim, dtype=np.float32) for s in seeds])
        w = self._chunked("mapping", z)
        w = self.latent_avg + np.float32(psi) * (w - self.latent_avg)
        return np.ascontiguousarray(np.repeat(w[:, None, :], self.n_latent, axis=1))

    # --- pictures -> W+ (the bundle's e4e encoder) ---------------------------------------------------
    @property
    def encoder(self) -> dict | None:
        """The manifest's encoder section (input size, normalization, resize filter), None without one."""
        return self.manifest.get("encoder") or None

    def encoder_size(self) -> int:
        """The encoder's input side in pixels (the size aligned crops are made at)."""
        if self.encoder is None:
            raise BundleError("this bundle has no encoder, so it cannot invert pictures; export it with --encoder "
                              "(the demo bundle has one when artifacts/demo/encoder.json exists)")
        return int(self.encoder["input_size"])

    def encoder_input(self, images, crop: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(uint8 [N, S, S, 3] as the encoder sees them, float32 [N, 3, S, S] in [-1, 1]); see runtime/photos.py."""
        from .photos import prepare

        return prepare(images, self.encoder_size(), crop)

    def invert(self, images, crop: str | None = None) -> np.ndarray:
        """Pictures -> W+ [N, n_latent, style_dim] (float32): paths, PIL images or uint8 arrays [H, W, 3] /
        [B, H, W, 3]. Square pictures are resized to the encoder's size (PIL bilinear); a non-square one is
        an error unless crop="center"."""
        return self.encode(self.encoder_input(images, crop)[1])

    def invert_photo(self, photo, faces: str = "best", landmarks=None) -> tuple[np.ndarray, list]:
        """A whole photo (path, PIL image or uint8 [H, W, 3]) -> (W+ of its best face, or of every face best
        first, and the `runtime.align.PhotoFace`s: crop, quad, landmarks). Put edits back with
        `runtime.align.paste_back(photo, edited, face.aligned.quad)`. Needs the [align] extra."""
        from .align import align_photo

        found = align_photo(photo, self.encoder_size(), faces, landmarks=landmarks)
        return self.invert([f.crop for f in found]), found

    def encode(self, x: np.ndarray) -> np.ndarray:
        """Encoder inputs (float32 [N, 3, S, S] in [-1, 1], as `encoder_input` makes them) -> W+."""
        size = self.encoder_size()
        x = np.asarray(x, dtype=np.float32)
        if x.ndim != 4 or x.shape[1:] != (3, size, size) or not np.isfinite(x).all():
            raise ValueError(f"encoder inputs must be finite float32 [N, 3, {size}, {size}], got {list(x.shape)}")
        return self._chunked(self.encoder["graph"], x)

    def check_wplus(self, wplus) -> np.ndarray:
        return edit_math.check_wplus(wplus, self.n_latent, self.style_dim)

    def styles(self, wplus) -> np.ndarray:
        return self._chunked("styles", self.check_wplus(wplus))

    # --- rendering --------------------------------------------------------------------------------
    def _chunked(self, graph: str, x: np.ndarray) -> np.ndarray:
        return np.concatenate([self.run(graph, x[i : i + MAX_BATCH]) for i in range(0, len(x), MAX_BATCH)])

    @staticmethod
    def to_uint8(images: np.ndarray) -> np.ndarray:
        """[-1, 1] NCHW -> uint8 NHWC."""
        return ((np.clip(images, -1, 1) + 1) * 127.5).round().astype(np.uint8).transpose(0, 2, 3, 1)

    def render(self, wplus) -> np.ndarray:
        """W+ -> uint8 images, through S (the bundle holds the synthesis weights once, in `synthesis`)."""
        return self.render_styles(self.styles(wplus))

    def synthesize(self, s: np.ndarray) -> np.ndarray:
        """Flat S [N, total] -> float images [N, 3, H, W] about [-1, 1]."""
        s = checks.real_array("styles", s, f"[N, {self.layout.total}]")
        if s.ndim != 2 or s.shape[1] != self.layout.total or not np.isfinite(s).all():
            raise ValueError(f"styles must be finite [N, {self.layout.total}], got {list(s.shape)}")
        return self._chunked("synthesis", s)

    def render_styles(self, s: np.ndarray) -> np.ndarray:
        return self.to_uint8(self.synthesize(s))

    # --- text -------------------------------------------------------------------------------------
    def check_prompt(self, text: str, what: str = "prompt") -> str:
        checks.text(f"the {what}", text)
        room = self.tokenizer.context_length - 2
        if (n := len(self.tokenizer.encode(text))) > room - 8:  # the templates add up to 8 tokens
            raise ValueError(f"the {what} is too long ({n} tokens); keep it under {room - 8} tokens")
        return text

    def encode_text(self, texts: list[str]) -> np.ndarray:
        """Unit CLIP text embeddings [N, D], one batched graph call."""
        return self.run("text_encoder", text_tokens(self.manifest, self.tokenizer(texts)))

    def forget_directions(self) -> None:
        """Drop the cached text and style directions (loaded tables stay): the next edit is uncached."""
        with self._lock:
            self._cache = {k: v for k, v in self._cache.items() if k[0] == "table"}

    def _memo(self, key: tuple, compute):
        """Thread-safe cache: concurrent misses may compute twice, but all callers get equal values.

        Cached arrays are read-only: callers share them, so writing into one raises instead of
        corrupting later edits (copy first to modify).
        """
        with self._lock:
            if key in self._cache:
                return self._cache[key]
        value = _frozen(compute())
        with self._lock:
            return self._cache.setdefault(key, value)

    def text_direction(self, target: str, neutral: str = "a face") -> np.ndarray:
        """dt [D] over the bundle's templates (2 x 79 prompts in one call); cached per (target, neutral)."""
        key = (self.check_prompt(target, "target text"), self.check_prompt(neutral, "neutral text"))
        return self._memo(("dt", *key), lambda: edit_math.text_direction(
            self.encode_text, *key, templates=self.manifest["templates"]))

    def global_direction(self, edit: GlobalEdit) -> tuple[np.ndarray, float, int]:
        """(flat Δs, the beta used, channels kept) for a global-direction edit; cached."""
        if not self.has_global_directions:
            raise BundleError("this bundle has no global-direction tables (fs3, S std); export it with --fs3/--s-stats")
        return self._memo(("ds", edit.target, edit.neutral, edit.beta, edit.min_channels), lambda: self._direction(edit))

    def _direction(self, edit: GlobalEdit):
        fs3, std = (self._memo(("table", n), lambda n=n: self.table(n)) for n in ("fs3", "s_std"))
        r = edit_math.relevance(fs3, self.text_direction(edit.target, edit.neutral))
        beta = edit_math.auto_beta(r, edit.min_channels) if edit.beta is None else edit.beta
        ds = edit_math.style_direction(r, beta, std, self.layout)
        return ds, beta, int(np.count_nonzero(ds))

    # --- edits ------------------------------------------------------------------------------------
    def mapper_for(self, prompt: str) -> str:
        """The mapper trained for `prompt`, or named so (its short name: "purple hair" or "purple_hair")."""
        checks.text("the mapper prompt or name", prompt)
        mappers = self.manifest.get("mappers") or {}
        wanted = prompt_key(prompt)
        for name, info in mappers.items():
            if wanted in (name, prompt_key(info["prompt"])) or slugify(wanted) == name:
                return name
        known = ", ".join(f"{name} ({info['prompt']!r})" for name, info in mappers.items()) or "none"
        raise ValueError(f"no mapper is named or was trained for {prompt!r}; this bundle has: {known}")

    def global_edit(self, target: str, **given) -> GlobalEdit:
        """A global-direction edit of `target`: each setting in `given` (neutral, alpha, beta; beta None = auto),
        else the bundle's tuned one for this prompt, else GlobalEdit's default."""
        if unknown := sorted(set(given) - {"neutral", "alpha", "beta", "min_channels"}):
            raise TypeError(f"global_edit takes neutral, alpha, beta and min_channels, not {', '.join(unknown)}")
        tuned = self.tuned_settings(self.check_prompt(target, "target text"))
        return GlobalEdit(target,
                          **{k: tuned[k] for k in ("neutral", "alpha", "beta") if k in tuned} | given)

    def mapper_edit(self, prompt: str, strength: float | None = None) -> MapperEdit:
        """The mapper trained for `prompt` (or named so) at `strength`, else the bundle's tuned strength, else 1."""
        name = self.mapper_for(prompt)
        if strength is None:
            strength = self.tuned_settings(self.manifest["mappers"][name]["prompt"]).get("strength", edit_math.DEFAULT_STRENGTH)
        return MapperEdit(name, strength)

    def apply_mapper(self, wplus, edit: MapperEdit) -> np.ndarray:
        if not isinstance(edit, MapperEdit):
            raise TypeError(f"edit must be a MapperEdit, got {type(edit).__name__}")
        if edit.name not in (self.manifest.get("mappers") or {}):
            raise ValueError(f"unknown mapper {edit.name!r}; this bundle has: {', '.join(self.mappers) or 'none'}")
        strength = edit_math.check_range("mapper strength", edit.strength, edit_math.STRENGTH_RANGE)
        wplus = self.check_wplus(wplus)
        edited = self._chunked(self.manifest["mappers"][edit.name]["graph"], wplus)
        return wplus + np.float32(strength) * (edited - wplus)

    def edit_styles(self, wplus, edits) -> np.ndarray:
        """Flat S after all edits: mapper edits in W+ (in order), then global directions summed in S."""
        wplus = self.check_wplus(wplus)
        directions, alphas = [], []
        for e in _edit_list(edits, "edits"):
            if isinstance(e, MapperEdit):
                wplus = self.apply_mapper(wplus, e)
            elif isinstance(e, GlobalEdit):
                directions.append(self.global_direction(e)[0])
                alphas.append(e.alpha)
        return edit_math.apply_edits(self.styles(wplus), directions, alphas)

    def edit(self, wplus, edits) -> np.ndarray:
        """Edited images (uint8 [N, H, W, 3]) for one edit or a list composed in order."""
        return self.render_styles(self.edit_styles(wplus, _edit_list(edits, "edits")))

    def comparison(self, wplus, columns: list) -> list[list[np.ndarray]]:
        """Rows per latent: the original, then the result of each column's edits (a sweep or variants)."""
        wplus = self.check_wplus(wplus)
        columns = [_edit_list(c, "each column") for c in checks.items(
            "columns", columns, "a list with one edit (or list of edits) per column", (GlobalEdit, MapperEdit))]
        results = [self.render(wplus)] + [self.edit(wplus, edits) for edits in columns]
        return [[r[i] for r in results] for i in range(len(wplus))]
