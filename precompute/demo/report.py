"""The demo models' quality bars, measured on held-out renders and printed as one table."""
from __future__ import annotations

from pathlib import Path

from .render import ATTRIBUTE_NAMES, ATTRIBUTES, GEOMETRY_NAMES, sample_dataset
from .training import HELDOUT_SEED

DEMO_DIR = Path(__file__).resolve().parents[2] / "artifacts" / "demo"
CLASSIFIER_ACCURACY_BAR = 0.98  # every categorical attribute
GEOMETRY_R2_BAR = 0.90          # every geometry value
CLIP_ZERO_SHOT_BAR = 0.90       # mean over attributes
# Generator samples (z ~ N(0, I), no truncation):
CONFIDENT_BAR = 0.90            # share of samples the classifier is confident about (max p >= 0.9) on every attribute
FREQUENCY_RANGE = (0.5, 2.0)    # every attribute value's frequency / its prior frequency
INTENDED_BAR = 0.90             # classifier agrees with the intended value (z_to_face), every attribute
CLIP_SAMPLES_BAR = 0.85         # CLIP zero-shot mean on samples, labelled by the classifier
# The encoder's reconstructions of held-out renders (issue 16):
INVERSION_MARGIN = 0.05         # same value read on render and reconstruction >= the generator's "intended" - this
INVERSION_R2_BAR = 0.80         # geometry read on the reconstruction vs on the render, every value


def evaluate_demo_models(classifier=DEMO_DIR / "classifier.json", clip=DEMO_DIR / "clip.json",
                         generator=DEMO_DIR / "generator.json", n: int = 2000, n_samples: int = 1000,
                         seed: int = HELDOUT_SEED, encoder=None, n_inversions: int = 1000) -> dict:
    """Classifier accuracy / R^2 and CLIP zero-shot accuracy on the same `n` held-out renders, the
    generator's bars on `n_samples` samples (they need the classifier) and, with `encoder`, its
    reconstructions of the first `n_inversions` of those renders. A path may be None to skip it."""
    from .classifier import evaluate_classifier, load_classifier
    from .train_clip import load_demo_clip, zero_shot_eval

    data = sample_dataset(n, seed)
    out: dict = {"n": n, "seed": seed}
    clf = load_classifier(classifier) if classifier is not None else None
    model = load_demo_clip(clip) if clip is not None else None
    if clf is not None:
        out["classifier"] = evaluate_classifier(clf, data=data)
    if model is not None:
        out["clip"] = zero_shot_eval(model, data[0], data[1])
    if generator is not None:
        if clf is None:
            raise ValueError("evaluating the generator needs the classifier")
        from ..checkpoints import load_generator
        out["generator"] = evaluate_generator(load_generator(generator), clf, model, n_samples, seed)
    if encoder is not None:
        if clf is None or generator is None:
            raise ValueError("evaluating the encoder needs the classifier and the generator")
        from ..checkpoints import load_generator
        from ..encoder import load_encoder
        from .train_encoder import evaluate_inversion
        out["inversion"] = evaluate_inversion(load_encoder(encoder), load_generator(generator), clf,
                                              min(n_inversions, n), seed, data=data)
    return out


def evaluate_generator(gen, classifier, clip=None, n: int = 1000, seed: int = HELDOUT_SEED) -> dict:
    """The generator's bars on `n` samples z ~ N(0, I) (psi 1): classifier confidence, value frequencies
    against the renderer's prior, agreement with the intended face `z_to_face(z)`, CLIP zero-shot."""
    import numpy as np

    from .classifier import read_attributes
    from .render import PRIOR
    from .train_clip import zero_shot_eval
    from .train_generator import sample_images, z_to_face

    images, z = sample_images(gen, n, seed)
    predicted, probability, _ = read_attributes(classifier, images)
    intended, _ = z_to_face(z)
    confident = probability >= 0.9
    agree = predicted == intended
    freq = {name: (np.bincount(predicted[:, k], minlength=len(PRIOR[name])) / n / np.array(PRIOR[name])).tolist()
            for k, name in enumerate(ATTRIBUTE_NAMES)}
    out = {"n": n, "seed": seed,
           "confident": {name: float(confident[:, k].mean()) for k, name in enumerate(ATTRIBUTE_NAMES)},
           "confident_all": float(confident.all(1).mean()),
           "frequency_ratio": freq,
           "intended": {name: float(agree[:, k].mean()) for k, name in enumerate(ATTRIBUTE_NAMES)},
           "intended_all": float(agree.all(1).mean())}
    if clip is not None:
        out["clip"] = zero_shot_eval(clip, images, predicted)
    return out


def failures(report: dict) -> list[str]:
    """The bars a report misses (empty when all are met)."""
    missed = []
    if "classifier" in report:
        c = report["classifier"]
        missed += [f"classifier {k} accuracy {v:.4f} < {CLASSIFIER_ACCURACY_BAR}"
                   for k, v in c["accuracy"].items() if v < CLASSIFIER_ACCURACY_BAR]
        missed += [f"classifier {k} R2 {v:.4f} < {GEOMETRY_R2_BAR}" for k, v in c["r2"].items() if v < GEOMETRY_R2_BAR]
    if "clip" in report and report["clip"]["mean"] < CLIP_ZERO_SHOT_BAR:
        missed.append(f"CLIP zero-shot mean {report['clip']['mean']:.4f} < {CLIP_ZERO_SHOT_BAR}")
    g = report.get("generator")
    if g:
        if g["confident_all"] < CONFIDENT_BAR:
            missed.append(f"generator: classifier confident on every attribute for {g['confident_all']:.4f} < {CONFIDENT_BAR}")
        lo, hi = FREQUENCY_RANGE
        missed += [f"generator: {name}={value} at {r:.2f}x its prior frequency"
                   for name, ratios in g["frequency_ratio"].items()
                   for value, r in zip(ATTRIBUTES[name], ratios) if not lo <= r <= hi]
        missed += [f"generator: {name} agrees with the intended value for {v:.4f} < {INTENDED_BAR}"
                   for name, v in g["intended"].items() if v < INTENDED_BAR]
        if "clip" in g and g["clip"]["mean"] < CLIP_SAMPLES_BAR:
            missed.append(f"CLIP zero-shot mean on generator samples {g['clip']['mean']:.4f} < {CLIP_SAMPLES_BAR}")
    inv = report.get("inversion")
    if inv:
        if g:
            missed += [f"encoder: {name} read the same on {v:.4f} of reconstructions < the generator's intended "
                       f"{g['intended'][name]:.4f} - {INVERSION_MARGIN}"
                       for name, v in inv["agreement"].items() if v < g["intended"][name] - INVERSION_MARGIN]
        missed += [f"encoder: {name} R2 {v:.4f} < {INVERSION_R2_BAR}" for name, v in inv["r2"].items() if v < INVERSION_R2_BAR]
    return missed


def format_inversion(inv: dict, intended: dict | None = None) -> str:
    """The encoder's table: agreement per attribute (with the generator's "intended" and the bar when
    given), geometry R^2, PSNR."""
    ref = "generator_agreement" in inv  # the generator drawing each render's intended w, no encoder
    head = (f"{'attribute':<12} {'same value':>10}" + (f" {'G(intended w)':>13}" if ref else "")
            + (f" {'intended':>10} {'bar':>8}" if intended else ""))
    lines = [f"encoder reconstructions of {inv['n']} held-out renders (seed {inv['seed']}); G(intended w): the "
             "generator drawing each render's own parameters' w", head, "-" * len(head)]
    for name in ATTRIBUTE_NAMES:
        row = f"{name:<12} {inv['agreement'][name]:>10.4f}" + (f" {inv['generator_agreement'][name]:>13.4f}" if ref else "")
        if intended:
            row += f" {intended[name]:>10.4f} {intended[name] - INVERSION_MARGIN:>8.4f}"
        lines.append(row)
    lines.append(f"{'all':<12} {inv['agreement_all']:>10.4f}" + (f" {inv['generator_agreement_all']:>13.4f}" if ref else ""))
    lines += ["", f"{'geometry':<12} {'R2 recon vs render':>18}" + (f" {'G(intended w)':>13}" if ref else ""), "-" * 45]
    lines += [f"{name:<12} {inv['r2'][name]:>18.4f}" + (f" {inv['generator_r2'][name]:>13.4f}" if ref else "")
              for name in GEOMETRY_NAMES]
    lines += [f"{'mean':<12} {inv['r2_mean']:>18.4f}" + (f" {inv['generator_r2_mean']:>13.4f}" if ref else ""), "",
              f"PSNR render vs reconstruction: mean {inv['psnr']:.2f} dB, p10 {inv['psnr_p10']:.2f} dB"
              + (f" (G(intended w): {inv['generator_psnr']:.2f} dB, p10 {inv['generator_psnr_p10']:.2f} dB)" if ref else "")]
    return "\n".join(lines)


def format_report(report: dict) -> str:
    lines = [f"held-out renders: {report['n']} (seed {report['seed']})"]
    c, z = report.get("classifier"), report.get("clip")
    if c or z:
        head = f"{'attribute':<12}"
        head += f" {'classifier acc':>15}" if c else ""
        head += f" {'CLIP zero-shot':>15}" if z else ""
        lines += ["", head, "-" * len(head)]
        for name in ATTRIBUTE_NAMES:
            row = f"{name:<12}"
            row += f" {c['accuracy'][name]:>15.4f}" if c else ""
            row += f" {z['accuracy'][name]:>15.4f}" if z else ""
            lines.append(row)
        row = f"{'mean':<12}"
        row += f" {sum(c['accuracy'].values()) / len(c['accuracy']):>15.4f}" if c else ""
        row += f" {z['mean']:>15.4f}" if z else ""
        lines.append(row)
    if c:
        lines += ["", f"{'geometry':<12} {'classifier R2':>15}", "-" * 28]
        lines += [f"{name:<12} {c['r2'][name]:>15.4f}" for name in GEOMETRY_NAMES]
        lines.append(f"{'mean':<12} {c['r2_mean']:>15.4f}")
    g = report.get("generator")
    if g:
        head = f"{'attribute':<12} {'confident':>10} {'intended':>10} {'freq/prior min..max':>20}"
        head += f" {'CLIP zero-shot':>15}" if "clip" in g else ""
        lines += ["", f"generator samples: {g['n']} (seed {g['seed']}, psi 1)", head, "-" * len(head)]
        for name in ATTRIBUTE_NAMES:
            ratios = g["frequency_ratio"][name]
            row = f"{name:<12} {g['confident'][name]:>10.4f} {g['intended'][name]:>10.4f} {min(ratios):>10.2f}..{max(ratios):<8.2f}"
            row += f" {g['clip']['accuracy'][name]:>15.4f}" if "clip" in g else ""
            lines.append(row)
        row = f"{'all / mean':<12} {g['confident_all']:>10.4f} {g['intended_all']:>10.4f} {'':>20}"
        row += f" {g['clip']['mean']:>15.4f}" if "clip" in g else ""
        lines.append(row)
    if report.get("inversion"):
        lines += ["", format_inversion(report["inversion"], g["intended"] if g else None)]
    missed = failures(report)
    lines += ["", "bars: classifier accuracy >= {:.2f} each, geometry R2 >= {:.2f} each, CLIP zero-shot mean >= {:.2f}"
              .format(CLASSIFIER_ACCURACY_BAR, GEOMETRY_R2_BAR, CLIP_ZERO_SHOT_BAR)]
    if g:
        lines.append(f"      generator: confident on every attribute >= {CONFIDENT_BAR:.2f} of samples, value frequencies "
                     f"{FREQUENCY_RANGE[0]}x..{FREQUENCY_RANGE[1]}x the prior, intended >= {INTENDED_BAR:.2f} each, "
                     f"CLIP on samples >= {CLIP_SAMPLES_BAR:.2f}")
    if report.get("inversion"):
        lines.append(f"      encoder: same value on the reconstruction >= the generator's intended - {INVERSION_MARGIN} "
                     f"each, geometry R2 >= {INVERSION_R2_BAR:.2f} each")
    lines += [f"MISSED: {m}" for m in missed] or ["all bars met"]
    return "\n".join(lines)
