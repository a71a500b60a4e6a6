"""Look at a generator run in progress: renders vs the decoder (stage 1) or G(mapping(z)) (stage 3), one PNG.

    python scripts/peek_generator.py build/train/generator peek.png
"""
import sys

import numpy as np
import torch

from precompute.demo.train_generator import DEMO_CONFIG, DemoTraining, face_code, face_to_z
from precompute.demo.training import cached_dataset, to_uint8
from precompute.training import CHECKPOINT
from runtime.images import grid, save_png


def main(workdir, out, n=8):
    torch.set_num_threads(1)
    state = torch.load(f"{workdir}/{CHECKPOINT}", weights_only=True)
    model = DemoTraining(DEMO_CONFIG)
    model.load_state_dict(state["model"])
    model.eval()
    images, labels, geometry = cached_dataset(workdir, 20000, 0)
    idx = np.arange(n)
    a, g = torch.from_numpy(labels[idx]), torch.from_numpy(geometry[idx])
    with torch.no_grad():
        w_cond = model.cond(face_code(a, g))
        z = torch.from_numpy(face_to_z(labels[idx], geometry[idx], np.random.default_rng(0), DEMO_CONFIG.style_dim))
        w_map = model.gen.mapping(z)
        rows = []
        for w in (w_cond, w_map):
            img = model.gen.synthesis_wplus(w[:, None].expand(-1, model.gen.n_latent, -1))
            rows.append(to_uint8(img))
    save_png(grid([list(images[idx]), list(rows[0]), list(rows[1])], scale=2), out)
    print(f"step {state['step']}: rows = renders, decoder(cond), G(mapping(z)); wrote {out}")


if __name__ == "__main__":
    main(*sys.argv[1:3])
