"""Demo generator training: the structured code, a few real steps, and resuming after a stop."""
import numpy as np
import torch

from precompute.demo.render import ATTRIBUTES, GEOMETRY
from precompute.demo.train_generator import Trainer, TrainConfig, face_to_z, z_to_face


def test_structured_code_round_trip():
    rng = np.random.default_rng(0)
    attrs = np.stack([rng.integers(0, len(v), 50) for v in ATTRIBUTES.values()], 1)
    geometry = rng.random((50, len(GEOMETRY))).astype(np.float32)
    z = face_to_z(attrs, geometry, rng, 128)
    back_attrs, back_geometry = z_to_face(z)
    assert np.array_equal(back_attrs, attrs)
    np.testing.assert_allclose(back_geometry, np.clip(geometry, 1e-4, 1 - 1e-4), atol=1e-5)


def test_prior_codes_give_the_renderers_prior():
    z = np.random.default_rng(1).standard_normal((30000, 128)).astype(np.float32)
    attrs, geometry = z_to_face(z)
    for k, values in enumerate(ATTRIBUTES.values()):
        freq = np.bincount(attrs[:, k], minlength=len(values)) / len(z)
        np.testing.assert_allclose(freq, 1 / len(values), atol=0.015)  # uniform, as PRIOR
    assert np.all(np.abs(np.quantile(geometry, [0.25, 0.5, 0.75], axis=0).T - [0.25, 0.5, 0.75]) < 0.02)


def small(workdir, steps):
    return Trainer(workdir, TrainConfig(steps=steps, batch=4, n_train=32, distill_from=1, checkpoint_every=2,
                                        map_fit_steps=3))


def test_training_steps_and_resume(tmp_path):
    full = small(tmp_path / "full", 4)
    before = [p.detach().clone() for p in full.gen.parameters()]
    full.train(progress=False)
    assert full.step == 4 and all(np.isfinite(list(h.values())).all() for h in full.history)
    assert "distill" in full.history[-1]  # the distillation term joined after warm-up
    assert full.mapping_fit is not None and any("mapping_r2" in h for h in full.history)
    assert any(not torch.equal(a, b) for a, b in zip(before, full.gen.parameters()))

    first = small(tmp_path / "resumed", 2)
    first.train(progress=False)
    resumed = small(tmp_path / "resumed", 4)  # a new process would start exactly like this
    assert resumed.step == 2
    resumed.train(progress=False)
    assert resumed.history == full.history
    for a, b in zip(resumed.gen.parameters(), full.gen.parameters()):
        torch.testing.assert_close(a, b)
