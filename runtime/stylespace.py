"""The StyleSpace (S) layout as data: the single source of truth for every part of the product.

Each modulated layer of a StyleGAN2 generator turns one W+ row into one style vector (its affine
output, bias included). The layout lists those layers in the rosinality / TF order
(conv1, to_rgb1, then per resolution conv_up, conv, to_rgb), with their channel counts, the W+ row
each one reads and where its channels sit in the flat S vector. The exporter writes this table into
the bundle and the runtime reads it back, so neither side re-derives it.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from math import log2

import numpy as np


@dataclass(frozen=True)
class StyleLayer:
    name: str  # module path in the rosinality state dict: conv1, to_rgb1, convs.N, to_rgbs.N
    resolution: int
    channels: int  # style channels = input channels of the modulated conv
    wplus_index: int
    is_torgb: bool
    offset: int  # first channel of this layer in the flat S vector


def log2_size(size: int) -> int:
    """log2 of a generator size, rejecting sizes that are not powers of two ≥ 4."""
    if not isinstance(size, int) or size < 4 or size & (size - 1):
        raise ValueError(f"generator size must be a power of two >= 4, got {size!r}")
    return int(log2(size))


def n_latent_for(size: int) -> int:
    """Number of W+ rows of a generator of this size (18 at 1024)."""
    return 2 * log2_size(size) - 2


class StyleSpaceLayout:
    """Ordered style layers of one generator, with helpers to split and join flat S vectors."""

    def __init__(self, layers):
        self.layers = tuple(layers)
        offset = 0
        for layer in self.layers:
            if layer.offset != offset:
                raise ValueError(f"style layer {layer.name} starts at {layer.offset}, expected {offset}")
            offset += layer.channels
        self.total = offset

    @classmethod
    def for_generator(cls, size: int, channels: dict[int, int]) -> "StyleSpaceLayout":
        """Layout of a generator of `size` with `channels[resolution]` feature maps per resolution."""
        log_size = log2_size(size)
        missing = [2**r for r in range(2, log_size + 1) if 2**r not in channels]
        if missing:
            raise ValueError(f"channel table has no entry for resolutions {missing}")
        specs = [("conv1", 4, channels[4], 0, False), ("to_rgb1", 4, channels[4], 1, True)]
        for block, log_res in enumerate(range(3, log_size + 1)):
            res, r = 2**log_res, block + 1
            specs += [
                (f"convs.{2 * block}", res, channels[res // 2], 2 * r - 1, False),
                (f"convs.{2 * block + 1}", res, channels[res], 2 * r, False),
                (f"to_rgbs.{block}", res, channels[res], 2 * r + 1, True),
            ]
        layers, offset = [], 0
        for name, res, ch, w_idx, torgb in specs:
            layers.append(StyleLayer(name, res, ch, w_idx, torgb, offset))
            offset += ch
        return cls(layers)

    # --- derived views -------------------------------------------------------------------------
    @property
    def n_latent(self) -> int:
        return max(layer.wplus_index for layer in self.layers) + 1

    @property
    def conv_layers(self) -> tuple[StyleLayer, ...]:
        return tuple(layer for layer in self.layers if not layer.is_torgb)

    @property
    def conv_channels(self) -> int:
        return sum(layer.channels for layer in self.conv_layers)

    @property
    def torgb_channels(self) -> int:
        return self.total - self.conv_channels

    def conv_index(self) -> np.ndarray:
        """Positions in the flat S vector of the non-ToRGB channels, in layout order (fs3 row order)."""
        return np.concatenate(
            [np.arange(l.offset, l.offset + l.channels) for l in self.conv_layers]
        )

    def split(self, flat):
        """Flat S [..., total] -> list of per-layer arrays (works for numpy and torch alike)."""
        if flat.shape[-1] != self.total:
            raise ValueError(f"flat S has {flat.shape[-1]} channels, layout expects {self.total}")
        return [flat[..., l.offset : l.offset + l.channels] for l in self.layers]

    def concat(self, styles) -> np.ndarray:
        """List of per-layer numpy arrays -> flat S [..., total]."""
        self._check_styles(styles)
        return np.concatenate(styles, axis=-1)

    def _check_styles(self, styles) -> None:
        if len(styles) != len(self.layers):
            raise ValueError(f"got {len(styles)} style tensors, layout has {len(self.layers)}")
        for s, layer in zip(styles, self.layers):
            if s.shape[-1] != layer.channels:
                raise ValueError(f"style {layer.name} has {s.shape[-1]} channels, expected {layer.channels}")

    # --- (de)serialisation for bundles ---------------------------------------------------------
    def to_list(self) -> list[dict]:
        return [asdict(layer) for layer in self.layers]

    @classmethod
    def from_list(cls, rows) -> "StyleSpaceLayout":
        try:
            return cls(StyleLayer(**row) for row in rows)
        except TypeError as err:
            raise ValueError(f"malformed StyleSpace layout table: {err}") from None

    def __eq__(self, other):
        return isinstance(other, StyleSpaceLayout) and self.layers == other.layers

    def __len__(self):
        return len(self.layers)

    def __repr__(self):
        return (
            f"StyleSpaceLayout({len(self.layers)} layers, {self.total} channels, "
            f"{self.conv_channels} without ToRGB)"
        )
