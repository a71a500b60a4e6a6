"""Does method A keep more of a face when the demo CLIP's image encoder serves as its identity network?

Method A's loss takes any image-embedding network as L_id (ArcFace for real faces; the demo world has
none). This plugs in the demo CLIP image encoder, L_id = 1 - cos(E_I(edited), E_I(original)), at several
weights, with the shipped A settings (100 steps, l2 0.2, 4 views), and prints `cli.py evaluate`'s scores.
Measured (purple hair, N 50): id 0 0.809/0.540 success/preservation, id 1 0.532/0.677, id 3 0.404/0.587:
it costs success and does not buy the preservation bar, so it is not used.

    python scripts/try_clip_identity.py --edit "purple hair" -n 50 --weights 0,1,3
"""
import argparse

import torch

from precompute.demo.edits import find_edits
from precompute.demo.report import DEMO_DIR
from precompute.edit_eval import DemoWorld, Optimization, evaluate_edits, to_uint8
from precompute.optimization import OptimizeConfig, optimize_latents


class WithClipIdentity(Optimization):
    def __init__(self, gen, clip, cfg):
        super().__init__(gen, clip, cfg)
        self.label = f"A, CLIP identity {cfg.identity:g}"

    def __call__(self, wplus, spec):
        w, _ = optimize_latents(self.gen, self.clip, spec.target, wplus, self.cfg, identity=self.clip.encode_image,
                                progress=False)
        with torch.no_grad():
            return to_uint8(self.gen(w))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--edit", default="purple hair")
    parser.add_argument("-n", type=int, default=50)
    parser.add_argument("--weights", default="0,1,3")
    args = parser.parse_args()
    torch.set_num_threads(2)
    world = DemoWorld.load(DEMO_DIR, need_global=False, need_mappers=False)
    methods = [WithClipIdentity(world.gen, world.clip, OptimizeConfig(steps=100, l2=0.2, clip_views=4, identity=float(w)))
               for w in args.weights.split(",")]
    rows, _ = evaluate_edits(world.gen, world.classifier, find_edits([args.edit]), methods, args.n, 0, 0.7, examples=0)
    for r in rows:
        print(f"{r['edit']:<12} {r['method']:<20} success {r['success']:.3f} preservation {r['preservation']:.3f} "
              f"drift {r['drift']:.4f} {r['seconds']:.2f} s/edit")


if __name__ == "__main__":
    main()
