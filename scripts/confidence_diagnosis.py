"""Why the demo generator's samples miss "the classifier is confident (max p >= 0.9) on every attribute":
1. the bar on renders, sharp and blurred (is the classifier just brittle to a soft image?);
2. the bar on samples at several truncations (psi < 1 blends discrete attributes toward the mean face);
3. eye colour, where samples fail most: intended value vs what the classifier reads, and confidence
   with and without glasses.

    python scripts/confidence_diagnosis.py [artifacts/demo/generator.json]
"""
import sys

import numpy as np
import torch
from PIL import Image, ImageFilter

from precompute.checkpoints import load_generator
from precompute.demo.classifier import load_classifier, read_attributes
from precompute.demo.render import ATTRIBUTE_NAMES, ATTRIBUTES, sample_dataset
from precompute.demo.report import DEMO_DIR
from precompute.demo.train_generator import sample_images, z_to_face
from precompute.demo.training import HELDOUT_SEED


def read(classifier, images):
    """(confident [N, n_attr] bool, value read [N, n_attr])."""
    values, probability, _ = read_attributes(classifier, images)
    return probability >= 0.9, values


def row(label, confident, correct=None):
    cells = " ".join(f"{n[:10]:>10} {c:.2f}" for n, c in zip(ATTRIBUTE_NAMES, confident.mean(0)))
    acc = "" if correct is None else f"  (all correct {correct.all(1).mean():.3f})"
    print(f"{label:<22} confident on all {confident.all(1).mean():.3f}{acc} | {cells}")


def main(generator=DEMO_DIR / "generator.json", n=1000):
    torch.set_num_threads(2)
    classifier = load_classifier(DEMO_DIR / "classifier.json")
    renders, labels, _ = sample_dataset(n, HELDOUT_SEED)
    print(f"1. {n} held-out renders (seed {HELDOUT_SEED}), Gaussian blur of radius r px")
    for r in (0, 0.5, 1.0, 1.5):
        blurred = np.stack([np.asarray(Image.fromarray(x).filter(ImageFilter.GaussianBlur(r))) for x in renders]) if r else renders
        confident, predicted = read(classifier, blurred)
        row(f"renders, blur {r:g}", confident, predicted == labels)

    gen = load_generator(generator)
    print(f"\n2. {n} samples of {generator} (seed {HELDOUT_SEED}) by truncation psi")
    for psi in (0.7, 0.85, 1.0):
        confident, _ = read(classifier, sample_images(gen, n, HELDOUT_SEED, psi)[0])
        row(f"samples, psi {psi:g}", confident)

    images, z = sample_images(gen, n, HELDOUT_SEED)
    intended, _ = z_to_face(z)
    confident, predicted = read(classifier, images)
    eye, glasses = ATTRIBUTE_NAMES.index("eye_color"), ATTRIBUTE_NAMES.index("glasses")
    values = ATTRIBUTES["eye_color"]
    print("\n3. eye colour of the psi-1 samples: intended (rows) vs read by the classifier (columns)")
    print(f"{'':>10}" + "".join(f"{v:>8}" for v in values))
    for a, name in enumerate(values):
        print(f"{name:>10}" + "".join(f"{np.sum((intended[:, eye] == a) & (predicted[:, eye] == b)):>8}" for b in range(len(values))))
    with_glasses = intended[:, glasses] == 1
    print(f"eye colour confident: with glasses {confident[with_glasses, eye].mean():.3f}, "
          f"without {confident[~with_glasses, eye].mean():.3f}")


if __name__ == "__main__":
    main(*sys.argv[1:2])
