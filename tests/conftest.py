import pytest
import torch

from precompute.stylegan2 import Generator, GeneratorConfig

SMALL = GeneratorConfig(size=32, style_dim=64, n_mlp=3, channels={4: 32, 8: 32, 16: 16, 32: 8})


def make_generator(config=SMALL, seed=0, noise_scale=0.1):
    """A random-weight generator whose noise weights and biases are non-zero, so every path is exercised."""
    torch.manual_seed(seed)
    gen = Generator(config)
    with torch.no_grad():
        for name, p in gen.named_parameters():
            if name.endswith("noise.weight") or (name.endswith("bias") and "modulation" not in name):
                p.normal_(0, noise_scale)
    gen.mean_latent(256)
    return gen.eval()


@pytest.fixture
def small_gen():
    return make_generator()


@pytest.fixture
def wplus(small_gen):
    g = torch.Generator().manual_seed(1)
    z = torch.randn(4, SMALL.style_dim, generator=g)
    w = small_gen.wplus_from_z(z, 0.7).clone()
    return w + 0.3 * torch.randn(w.shape, generator=g)  # distinct rows, as inverted latents have


@pytest.fixture(scope="session")
def models(tmp_path_factory):
    """Small random generator, CLIP, mapper and tables saved as files (tests/models.py)."""
    from tests.models import write_random_models

    return write_random_models(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="session")
def bundle(models, tmp_path_factory):
    """One exported bundle with every variant, shared by the export and runtime tests."""
    from export.bundle import ExportOptions, export_bundle
    from tests.models import sources

    out = tmp_path_factory.mktemp("bundles") / "b"
    export_bundle(out, sources(models), ExportOptions(fp16=True, torchscript=True, image_encoder=True, int8=True, openvino=True), progress=False)
    return out
