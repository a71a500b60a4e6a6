"""The StyleSpace layout table at the sizes StyleCLIP knows, and its (de)serialisation."""
import numpy as np
import pytest

from precompute.stylegan2 import rosinality_channels
from runtime.stylespace import StyleSpaceLayout, n_latent_for


@pytest.mark.parametrize("size,layers,total,conv,torgb", [
    (1024, 26, 9088, 6048, 3040), (512, 23, 8960, 5952, 3008), (256, 20, 8704, 5760, 2944)])
def test_layout_totals_match_reference(size, layers, total, conv, torgb):
    layout = StyleSpaceLayout.for_generator(size, rosinality_channels(size, 2))
    assert (len(layout), layout.total, layout.conv_channels, layout.torgb_channels) == (layers, total, conv, torgb)
    assert len(layout) == 3 * int(np.log2(size)) - 4
    assert layout.n_latent == n_latent_for(size) == 2 * int(np.log2(size)) - 2


def test_layout_names_and_offsets():
    layout = StyleSpaceLayout.for_generator(32, {4: 8, 8: 8, 16: 4, 32: 2})
    assert [l.name for l in layout.layers] == ["conv1", "to_rgb1", "convs.0", "convs.1", "to_rgbs.0",
                                               "convs.2", "convs.3", "to_rgbs.1", "convs.4", "convs.5", "to_rgbs.2"]
    assert [l.channels for l in layout.layers] == [8, 8, 8, 8, 8, 8, 4, 4, 4, 2, 2]
    assert [l.offset for l in layout.layers] == list(np.cumsum([0, 8, 8, 8, 8, 8, 8, 4, 4, 4, 2]))
    conv_idx = layout.conv_index()
    assert len(conv_idx) == layout.conv_channels == 42
    assert conv_idx[:10].tolist() == list(range(8)) + [16, 17]  # conv1, then convs.0 (to_rgb1 skipped)


def test_split_concat_and_serialisation_round_trip():
    layout = StyleSpaceLayout.for_generator(64, rosinality_channels(64, 1))
    flat = np.random.default_rng(0).normal(size=(3, layout.total))
    parts = layout.split(flat)
    assert [p.shape[1] for p in parts] == [l.channels for l in layout.layers]
    assert np.array_equal(layout.concat(parts), flat)
    assert StyleSpaceLayout.from_list(layout.to_list()) == layout
    with pytest.raises(ValueError, match="channels"):
        layout.split(flat[:, :-1])
    bad = layout.to_list()
    bad[2]["offset"] += 1
    with pytest.raises(ValueError, match="starts at"):
        StyleSpaceLayout.from_list(bad)
    with pytest.raises(ValueError, match="malformed"):
        StyleSpaceLayout.from_list([{"name": "conv1"}])
