"""The demo world's attribute classifier (DESIGN section 7): a small CNN with one softmax head per
attribute (`ATTRIBUTES`) and a regression head for the geometry (`GEOMETRY`, normalized to [0, 1]).

It only *evaluates* edits (section 8) and is never part of a training loss. Inputs are images as the
generator produces them, float [N, 3, 64, 64] in [-1, 1]; uint8 renders [N, 64, 64, 3] are converted
(x / 127.5 - 1). Training draws its batches from a render set cached once in the work directory, with
light noise/blur augmentation so that slightly imperfect generator samples are still read correctly.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..checkpoints import CheckpointError, check_state_dict, load_model, save_model
from .render import ATTRIBUTES, ATTRIBUTE_NAMES, GEOMETRY_NAMES, sample_dataset
from .training import (
    HELDOUT_SEED, as_input, augment, cached_dataset, cosine_lr, run_training, set_threads, step_generator, step_rng, to_model_input,
)

KIND = "demo-classifier"
GEOMETRY_WEIGHT = 50.0  # MSE of [0, 1] targets is small next to the cross-entropies


@dataclass(frozen=True)
class ClassifierConfig:
    size: int = 64
    # (output channels, stride) per 3x3 conv + BatchNorm + ReLU layer; 64 px -> 4 x 4 at the end.
    convs: tuple[tuple[int, int], ...] = ((24, 2), (48, 1), (64, 2), (96, 1), (128, 2), (128, 1), (128, 2))
    hidden: int = 256
    attributes: dict = field(default_factory=lambda: {k: list(v) for k, v in ATTRIBUTES.items()})
    geometry: tuple[str, ...] = GEOMETRY_NAMES

    def to_dict(self) -> dict:
        d = asdict(self)
        d["convs"] = [list(c) for c in self.convs]
        d["geometry"] = list(self.geometry)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "ClassifierConfig":
        return cls(size=int(d["size"]), convs=tuple((int(c), int(s)) for c, s in d["convs"]), hidden=int(d["hidden"]),
                   attributes={k: list(v) for k, v in d["attributes"].items()}, geometry=tuple(d["geometry"]))


class AttributeClassifier(nn.Module):
    def __init__(self, config: ClassifierConfig = ClassifierConfig()):
        super().__init__()
        self.config = config
        layers, cin, side = [], 3, config.size
        for cout, stride in config.convs:
            layers += [nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
            cin, side = cout, side // stride
        self.features = nn.Sequential(*layers)
        # Flattened (not pooled) features: positions matter for the geometry.
        self.fc = nn.Sequential(nn.Flatten(), nn.Linear(cin * side * side, config.hidden), nn.ReLU(inplace=True))
        self.heads = nn.ModuleDict({name: nn.Linear(config.hidden, len(values))
                                    for name, values in config.attributes.items()})
        self.geometry = nn.Linear(config.hidden, len(config.geometry))

    def forward(self, x: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """float [N, 3, size, size] in [-1, 1] -> ({attribute: logits [N, k]}, geometry [N, G])."""
        if x.shape[1:] != (3, self.config.size, self.config.size):
            raise ValueError(f"the classifier takes [N, 3, {self.config.size}, {self.config.size}] images, got {tuple(x.shape)}")
        h = self.fc(self.features(x))
        return {name: head(h) for name, head in self.heads.items()}, self.geometry(h)


def build(config: ClassifierConfig | None = None, seed: int = 0) -> AttributeClassifier:
    torch.manual_seed(seed)
    return AttributeClassifier(config or ClassifierConfig())


def _loss(model, x, labels: torch.Tensor, geometry: torch.Tensor) -> tuple[torch.Tensor, dict]:
    logits, geo = model(x)
    ce = sum(F.cross_entropy(logits[name], labels[:, i]) for i, name in enumerate(ATTRIBUTE_NAMES))
    mse = F.mse_loss(geo, geometry)
    return ce + GEOMETRY_WEIGHT * mse, {"ce": ce.item(), "mse": mse.item()}


def train_classifier(workdir, steps: int = 400, seed: int = 0, *, n_train: int = 20_000, batch: int = 128,
                     lr: float = 2e-3, weight_decay: float = 1e-4, warmup: int = 50, checkpoint_every: int = 100,
                     stop_at: int | None = None, out=None, n_eval: int = 2000, threads: int | None = None,
                     progress: bool = True, config: ClassifierConfig | None = None) -> tuple[AttributeClassifier, dict]:
    """Train (or resume) in `workdir`; returns (model in eval mode, run info). Once all `steps` are done,
    `out` saves the weights with the held-out metrics (`n_eval` renders) in their JSON."""
    set_threads(threads)
    config = config or ClassifierConfig()
    hparams = dict(model=config.to_dict(), steps=steps, seed=seed, n_train=n_train, batch=batch, lr=lr,
                   weight_decay=weight_decay, warmup=warmup)
    images, labels, geometry = cached_dataset(workdir, n_train, seed)
    images_t, labels_t, geometry_t = torch.from_numpy(images), torch.from_numpy(labels), torch.from_numpy(geometry)
    model = build(config, seed)
    decay = [p for n, p in model.named_parameters() if p.ndim > 1]
    rest = [p for n, p in model.named_parameters() if p.ndim <= 1]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0.0}],
                            lr=lr, betas=(0.9, 0.99))

    def step_fn(step: int) -> dict:
        idx = torch.from_numpy(step_rng(seed, step).integers(n_train, size=batch))
        x = augment(to_model_input(images_t[idx]), step_generator(seed, step))
        loss, logs = _loss(model, x, labels_t[idx], geometry_t[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return {"loss": loss.item(), **logs}

    info = run_training(workdir=workdir, hparams=hparams, model=model, optimizer=opt, steps=steps, step_fn=step_fn,
                        lr_fn=lambda s, _: cosine_lr(s, steps, lr, warmup), checkpoint_every=checkpoint_every,
                        stop_at=stop_at, desc="classifier", progress=progress)
    info["hparams"] = hparams
    if out is not None and info["step"] >= steps:
        info["metrics"] = evaluate_classifier(model, n_eval) if n_eval else None
        info["files"] = save_classifier(model, out, training={k: v for k, v in hparams.items() if k != "model"},
                                        metrics=info["metrics"])
    return model, info


# --- inference and evaluation ---------------------------------------------------------------------
@torch.no_grad()
def predict(model: AttributeClassifier, images, batch: int = 256) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """uint8 renders [N, H, W, 3] or float images [N, 3, H, W] in [-1, 1] ->
    ({attribute: probabilities [N, k]}, geometry [N, G] normalized to [0, 1])."""
    model.eval()
    x = as_input(images)
    probs: dict[str, list] = {name: [] for name in model.config.attributes}
    geometry = []
    for i in range(0, len(x), batch):
        logits, geo = model(x[i:i + batch])
        for name, value in logits.items():
            probs[name].append(value.softmax(dim=1))
        geometry.append(geo)
    if not geometry:
        raise ValueError("predict needs at least one image")
    return {name: torch.cat(p) for name, p in probs.items()}, torch.cat(geometry)


def read_attributes(model: AttributeClassifier, images, batch: int = 256) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """What the classifier reads from `images`: each attribute's most probable value index and that
    value's probability ([N, n_attr] each, ATTRIBUTE_NAMES order), and the geometry [N, G] in [0, 1]."""
    probs, geometry = predict(model, images, batch)
    top = [probs[name].max(1) for name in ATTRIBUTE_NAMES]
    return (np.stack([t.indices.numpy() for t in top], 1), np.stack([t.values.numpy() for t in top], 1),
            geometry.numpy())


def r2_scores(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Coefficient of determination per column."""
    ss_res = ((pred - target) ** 2).sum(0)
    ss_tot = ((target - target.mean(0)) ** 2).sum(0)
    return 1 - ss_res / np.maximum(ss_tot, 1e-12)


def evaluate_classifier(model: AttributeClassifier, n: int = 2000, seed: int = HELDOUT_SEED, data=None) -> dict:
    """Accuracy per attribute and R^2 per geometry value on `n` held-out renders (or `data` =
    (images, labels, geometry)). Returns {"accuracy": {...}, "r2": {...}, "r2_mean": float, "n": n}."""
    images, labels, geometry = data if data is not None else sample_dataset(n, seed)
    values, _, geo = read_attributes(model, images)
    accuracy = {name: float((values[:, i] == labels[:, i]).mean()) for i, name in enumerate(ATTRIBUTE_NAMES)}
    r2 = r2_scores(geo.astype(np.float64), geometry.astype(np.float64))
    return {"n": len(images), "accuracy": accuracy, "r2": dict(zip(GEOMETRY_NAMES, map(float, r2))),
            "r2_mean": float(r2.mean())}


# --- files ----------------------------------------------------------------------------------------
def save_classifier(model: AttributeClassifier, path, training: dict | None = None, metrics: dict | None = None):
    config = {"model": model.config.to_dict(), "input": "float [N, 3, 64, 64] in [-1, 1] (uint8 renders: x / 127.5 - 1)"}
    if training:
        config["training"] = training
    if metrics:
        config["metrics"] = metrics
    return save_model(path, KIND, config, model.state_dict())


def load_classifier(path) -> AttributeClassifier:
    saved, tensors = load_model(path, KIND)
    try:
        config = ClassifierConfig.from_dict(saved["model"])
    except (KeyError, TypeError, ValueError) as err:
        raise CheckpointError(f"{path}: invalid {KIND} config ({type(err).__name__}: {err})") from None
    current = {k: list(v) for k, v in ATTRIBUTES.items()}
    if config.attributes != current or config.geometry != GEOMETRY_NAMES:
        raise CheckpointError(f"{path} was trained for other attributes or geometry than the renderer's; retrain it "
                              "(python cli.py train-classifier)")
    model = AttributeClassifier(config)
    check_state_dict(model, tensors, str(Path(path)))
    model.load_state_dict(tensors, strict=True)
    return model.eval()
