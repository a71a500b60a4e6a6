"""Why a demo generator misses its bars: how often its samples show the intended value, by how clearly
z's attribute block picks that value (the margin between the block's top two entries); and, with a
train-generator workdir, the same for the stage-1 conditional decoder given the exact code (what the
synthesis network can draw at all). The figures behind stage 5 (`train_generator.sharpen_mapping`).

    python scripts/generator_margins.py artifacts/demo/generator.json [build/train/generator]
"""
import sys

import numpy as np
import torch

from precompute.checkpoints import load_generator
from precompute.demo.classifier import load_classifier, read_attributes
from precompute.demo.render import ATTRIBUTE_NAMES
from precompute.demo.report import DEMO_DIR
from precompute.demo.train_generator import DEMO_CONFIG, DemoTraining, attribute_blocks, face_code, sample_images, z_to_face
from precompute.demo.training import HELDOUT_SEED, to_uint8
from precompute.training import CHECKPOINT

BINS = (0, 0.25, 0.5, 1.0, np.inf)


def read(classifier, images, intended):
    values, probability, _ = read_attributes(classifier, images)
    return probability >= 0.9, values == intended


def main(generator, workdir=None, n=1000):
    torch.set_num_threads(2)
    classifier = load_classifier(DEMO_DIR / "classifier.json")
    images, z = sample_images(load_generator(generator), n, HELDOUT_SEED)
    intended, geometry = z_to_face(z)
    confident, agree = read(classifier, images, intended)
    print(f"{n} samples of {generator}: = intended (confident) by the margin of the attribute's block in z")
    print(f"{'attribute':<12}" + "".join(f"{f'[{lo:g}, {hi:g})':>18}" for lo, hi in zip(BINS, BINS[1:])))
    for k, block in enumerate(attribute_blocks(z)):
        top2 = np.sort(block, 1)[:, -2:]
        margin = top2[:, 1] - top2[:, 0]
        cells = []
        for lo, hi in zip(BINS, BINS[1:]):
            m = (margin >= lo) & (margin < hi)
            cells.append(f"{agree[m, k].mean():.2f} ({confident[m, k].mean():.2f}) n={m.sum():<4}")
        print(f"{ATTRIBUTE_NAMES[k]:<12}" + "".join(f"{c:>18}" for c in cells))
    if workdir:
        model = DemoTraining(DEMO_CONFIG)
        model.load_state_dict(torch.load(f"{workdir}/{CHECKPOINT}", weights_only=True)["model"])
        model.eval()
        with torch.no_grad():
            w = model.cond(face_code(torch.from_numpy(intended), torch.from_numpy(geometry)))
            decoded = np.concatenate([to_uint8(model.gen.synthesis_wplus(w[i:i + 100, None].expand(-1, model.gen.n_latent, -1)))
                                      for i in range(0, n, 100)])
        confident, agree = read(classifier, decoded, intended)
        print(f"\nstage-1 decoder of {workdir} on the exact codes: = intended / confident per attribute")
        for k, name in enumerate(ATTRIBUTE_NAMES):
            print(f"{name:<12} {agree[:, k].mean():.3f} / {confident[:, k].mean():.3f}")
        print(f"{'all':<12} {agree.all(1).mean():.3f} / {confident.all(1).mean():.3f}")


if __name__ == "__main__":
    main(*sys.argv[1:])
