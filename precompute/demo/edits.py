"""The demo world's named edits: text, the attribute value each should set, method C's setting.

Torch-free, so `cli.py demo` (runtime only) and the evaluation harness share one table.
"""
from __future__ import annotations

from dataclasses import dataclass

from runtime.edit_math import DEFAULT_STRENGTH
from runtime.files import slugify

from .render import ATTRIBUTES


@dataclass(frozen=True)
class EditSpec:
    name: str
    target: str
    attribute: str
    value: str
    neutral: str = "a face"
    alpha: float = 4.1  # method C (global directions): strength ...
    beta: float = 0.15  # ... and threshold, chosen with `cli.py evaluate --sweep-alphas ... --sweep-betas ...`
    strength: float | None = None  # method B (mapper): scale of its W+ offset, chosen with `--sweep-strengths ...`

    def __post_init__(self):
        if self.value not in ATTRIBUTES.get(self.attribute, ()):
            raise ValueError(f"{self.attribute}={self.value} is not an attribute value of the demo world")

    def global_setting(self, override: tuple[float, float] | None = None) -> tuple[float, float]:
        """Method C's (alpha, beta): `override` when given (sweeps, --alpha/--beta), else the edit's own."""
        return override or (self.alpha, self.beta)

    def mapper_strength(self, override: float | None = None) -> float:
        """Method B's strength: `override` when given (sweeps, --strength), else the edit's own (1 if untuned)."""
        if override is not None:
            return override
        return DEFAULT_STRENGTH if self.strength is None else self.strength

    def tuned_settings(self) -> dict:
        """What the demo bundle records for this edit's prompt (runtime/edit_settings.py)."""
        tuned = {"neutral": self.neutral, "alpha": self.alpha, "beta": self.beta}
        return tuned if self.strength is None else {**tuned, "strength": self.strength}

    @property
    def slug(self) -> str:
        return slugify(self.name)


# The edits issue 4 names; the texts are the demo CLIP's zero-shot phrasings. (alpha, beta): per edit, the
# highest preservation with success >= 0.9 in `cli.py evaluate --sweep-alphas ... --sweep-betas ... -n 100`
# on the shipped generator over alphas 0.5-10 and betas 0.1-0.65 (pink background: then 8-10 x 0.19-0.23;
# alpha is capped at 10). A larger beta keeps fewer, more relevant channels, which then need a larger alpha.
# Neutral text: "a face", except where naming what the edit changes ("a face with eyes", "... on a background")
# did better in that sweep; their (alpha, beta) come from a second sweep on held-out latents (--seed 1, N 200).
# ("a face with hair" did worse for the hair edits.)
# Mapper strength (edits with a shipped mapper): the highest preservation with success >= 0.95 (B's bar) in
# `cli.py evaluate --methods B -n 1000 --seed 1 --sweep-strengths 0.8,1,1.25,1.5,1.75,2,2.25,2.5,3,3.5,4`
# (seed 1: not the reported latents; N 1000 because at N 200 the success of one strength varies by ~0.05).
DEMO_EDITS = (
    EditSpec("purple hair", "a face with purple hair", "hair_color", "purple", alpha=5.0, beta=0.35, strength=2.5),
    EditSpec("blonde hair", "a face with blonde hair", "hair_color", "blonde", alpha=2.0, beta=0.25),
    EditSpec("smiling", "a smiling face", "expression", "smiling", alpha=0.5, beta=0.45, strength=1.0),
    EditSpec("glasses", "a face with glasses", "glasses", "yes", alpha=1.5, beta=0.65, strength=2.0),
    EditSpec("blue eyes", "a face with blue eyes", "eye_color", "blue", "a face with eyes", alpha=10.0, beta=0.65),
    EditSpec("bald", "a bald face", "hair_style", "bald", alpha=3.0, beta=0.1),
    EditSpec("pink background", "a face on a pink background", "background", "pink", "a face on a background",
             alpha=10.0, beta=0.2),
)


def find_edits(names) -> list[EditSpec]:
    by_name = {e.name: e for e in DEMO_EDITS} | {e.slug: e for e in DEMO_EDITS}
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise ValueError(f"unknown edit(s) {unknown}; choose from: {', '.join(e.name for e in DEMO_EDITS)}")
    return [by_name[n] for n in names]
