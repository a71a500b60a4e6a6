"""The keep term's masks in the demo world (mapper training, method A): which pixels an edit should leave alone.

StyleCLIP's mapper loss (CLIP, latent L2, identity) lets a hair-colour mapper tint the face and recolour the
irises: the demo identity network ignores colour by design and the latent penalty is blind to where a change
lands. HairCLIP-style mappers add a pixel term outside the edited region (a face parser's mask there). Here the
renderer is the parser: a training latent's z names the face it draws (`train_generator.z_to_face`), and the
edited attribute's region is wherever the renderer draws that face differently with any of the attribute's values
(the hair and brows for a hair colour, the mouth for an expression, the frames for glasses), grown by a margin for
the generator's blur. Any value, not the target's alone: a face that has the target already still leaves its hair
free (kept too, it cost the purple-hair mapper 0.06 success at the same preservation; docs/edit_tuning.md).
Everything else is kept, the irises weighted up: a person sees an iris change colour out of proportion to its
1% of the pixels, and the plain mean let the mappers recolour them (docs/edit_tuning.md).
"""
from __future__ import annotations

import numpy as np
import torch
from scipy.ndimage import binary_dilation

from .render import ATTRIBUTES, Face, render
from .train_generator import DEMO_CONFIG, z_to_face

# A pixel belongs to a region when the two renders differ there by more than this (sum of |RGB| differences):
# above the anti-aliasing noise at a region's edge, below any colour change the renderer draws.
DIFFERS = 12
MARGIN = 2  # px grown around the edited region: the generator's 64 px images blur an edge over a pixel or two
IRIS_WEIGHT = 10.0  # 30 did worse on the purple-hair and glasses mappers (docs/edit_tuning.md)


def check_attribute(attribute: str) -> str:
    """`attribute` when the demo world has it, else ValueError naming the choices."""
    if attribute not in ATTRIBUTES:
        raise ValueError(f"the keep term takes an attribute of the demo world ({', '.join(ATTRIBUTES)}), "
                         f"got {attribute!r}")
    return attribute


def region(face: Face, attribute: str, drawn: np.ndarray | None = None) -> np.ndarray:
    """bool [64, 64]: where the renderer draws `attribute` on `face` (`drawn`: its render, if at hand), whatever
    the value: the pixels that differ when the value does."""
    drawn = render(face).astype(np.int16) if drawn is None else drawn.astype(np.int16)
    others = [render(face.with_values(**{attribute: v})) for v in ATTRIBUTES[attribute] if v != face.value(attribute)]
    return np.any([np.abs(o - drawn).sum(-1) > DIFFERS for o in others], 0)


def keep_mask(face: Face, attribute: str) -> np.ndarray:
    """float32 [64, 64] weights of the pixels to keep: 0 on the attribute's region and its margin, IRIS_WEIGHT on
    the irises outside it, 1 elsewhere."""
    drawn = render(face)
    edited = binary_dilation(region(face, attribute, drawn), iterations=MARGIN)
    iris = region(face, "eye_color", drawn)
    return np.where(edited, 0.0, np.where(iris, IRIS_WEIGHT, 1.0)).astype(np.float32)


class KeepMasks:
    """z [B, 128] (the demo generator's latent codes) -> keep weights [B, 1, 64, 64] outside `attribute`."""

    def __init__(self, attribute: str):
        self.attribute = check_attribute(attribute)

    @staticmethod
    def check_generator(gen) -> None:
        """ValueError unless `gen` is the demo world's generator, whose z names a face the renderer can draw."""
        if not is_demo_generator(gen):
            raise ValueError("the keep term needs the demo world's generator (its latent codes name the faces the "
                             "renderer draws, which give the masks); this generator is another one")

    def __call__(self, z: torch.Tensor) -> torch.Tensor:
        return keep_weights(faces_of_codes(z), self.attribute)


def is_demo_generator(gen) -> bool:
    """Whether `gen` has the demo world's architecture, whose codes name faces (`faces_of_codes`)."""
    return gen.config.to_dict() == DEMO_CONFIG.to_dict()


def faces_of_codes(z: torch.Tensor) -> list[Face]:
    """The faces the demo generator's codes z [B, 128] name (what it was trained to draw from them)."""
    attrs, geometry = z_to_face(z.detach().cpu().numpy())
    return [Face(tuple(int(a) for a in at), tuple(float(g) for g in ge)) for at, ge in zip(attrs, geometry)]


def keep_weights(faces: list[Face], attribute: str) -> torch.Tensor:
    """`keep_mask` of each face, as the keep term takes them: float32 [B, 1, 64, 64]."""
    return torch.from_numpy(np.stack([keep_mask(f, attribute) for f in faces])[:, None])
