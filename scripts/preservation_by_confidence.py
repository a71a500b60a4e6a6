"""Where edits lose preservation: attribute readings the classifier was sure of before the edit vs unsure ones.

Preservation (DESIGN §8) is the share of the other attributes' readings an edit leaves unchanged. This
splits those readings (image x other attribute) by the classifier's probability before the edit
(>= 0.9: confident) and reports the unchanged share in each part, for methods C and B at each demo edit's
own setting (the `cli.py evaluate` latents: N 200, seed 0, psi 0.7). If the unsure readings lose far more,
preservation is limited by how ambiguous the generator's samples are, not only by the edit.

    python scripts/preservation_by_confidence.py [-n 200] [--seed 0]
"""
import argparse

import numpy as np
import torch

from precompute.demo.classifier import read_attributes
from precompute.demo.edits import DEMO_EDITS
from precompute.demo.render import ATTRIBUTE_NAMES
from precompute.demo.report import DEMO_DIR
from precompute.edit_eval import DemoWorld, GlobalDirections, Mappers, sample_wplus, to_uint8

CONFIDENT = 0.9


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(2)
    world = DemoWorld.load(DEMO_DIR)
    wplus = sample_wplus(world.gen, args.n, args.seed, 0.7)
    with torch.no_grad():
        values0, prob0, _ = read_attributes(world.classifier, to_uint8(world.gen(wplus)))
    sure = prob0 >= CONFIDENT
    print(f"{args.n} latents (seed {args.seed}, psi 0.7): readings with p >= {CONFIDENT} before any edit: "
          f"{sure.mean():.3f}; per attribute " + ", ".join(f"{a} {s:.2f}" for a, s in zip(ATTRIBUTE_NAMES, sure.mean(0))))
    print(f"\n{'edit':<16} {'method':<9} {'preservation':>12} {'sure':>6} {'unsure':>7} {'unsure share':>12}")
    totals = {}
    for method in (GlobalDirections(world.gen, world.clip, world.fs3, world.std), Mappers(world.gen, world.mappers)):
        for spec in DEMO_EDITS:
            if not method.available(spec):
                continue
            values1, _, _ = read_attributes(world.classifier, method(wplus, spec))
            others = [i for i, a in enumerate(ATTRIBUTE_NAMES) if a != spec.attribute]
            kept = values1[:, others] == values0[:, others]
            s = sure[:, others]
            print(f"{spec.name:<16} {method.label:<9} {kept.mean():>12.3f} {kept[s].mean():>6.3f} {kept[~s].mean():>7.3f} "
                  f"{(~s).mean():>12.3f}")
            t = totals.setdefault(method.label, [0, 0, 0, 0])
            t[0] += kept[s].sum(); t[1] += s.sum(); t[2] += kept[~s].sum(); t[3] += (~s).sum()
    for label, (ks, ns, ku, nu) in totals.items():
        print(f"{'all edits':<16} {label:<9} {(ks + ku) / (ns + nu):>12.3f} {ks / ns:>6.3f} {ku / nu:>7.3f} {nu / (ns + nu):>12.3f}")


if __name__ == "__main__":
    main()
