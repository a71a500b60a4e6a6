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
