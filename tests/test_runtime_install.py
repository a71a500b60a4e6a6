"""A runtime-only install (`pip install styleclip-edge`, no extras) is a first-class way to use the toolkit.

The wheel is built from this checkout and installed into a fresh virtual environment that has only the
base dependencies (no torch, onnx, open_clip): the runtime commands work there and give the same PNG
bytes as the full install; every other command says which extra it needs (exit 2, one `error:` line,
no traceback) before doing anything. The environment is cached in build/runtime-venv, keyed by the base
packages' versions; only the wheel is rebuilt and reinstalled on each run.
"""
import importlib.metadata
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import cli

ROOT = Path(__file__).resolve().parents[1]
VENV = ROOT / "build" / "runtime-venv"
BASE = ("numpy", "onnxruntime", "pillow", "click", "regex", "ftfy")  # pyproject.toml's dependencies
RUNTIME_COMMANDS = {"edit", "demo", "web", "invert"}
ALIGN = ("dlib-bin", "face_recognition_models", "scipy")  # the [align] extra's packages
ALIGN_COMMANDS = {"align"}
# Each command that needs an extra, with the least arguments that get it past parsing.
MINIMAL = {
    "inspect": ["g.pt"], "convert": ["g.pt", "out"], "import-mapper": ["m.pt", "out"], "export": [],
    "validate": ["b"], "train-generator": [], "refine-generator": [], "s-stats": ["--generator", "g.json"],
    "fs3": ["--generator", "g.json", "--clip", "c.json"], "fs3-merge": ["--workdir", "w", "--shards", "1"],
    "import-styleclip": ["--fs3", "f.npy", "--s-mean-std", "s.pkl", "--generator", "g.json", "--out", "o"],
    "train-mapper": ["a face with purple hair"], "optimize": ["a face with purple hair"], "train-classifier": [],
    "train-clip": [], "sample-demo": [], "evaluate-demo": [], "evaluate": [], "bench": [],
    "import-encoder": ["e.pt", "out"], "train-encoder": [], "import-identity": ["model_ir_se50.pth", "out"], "train-identity": [],
}


def _python(venv: Path) -> Path:
    return venv / "bin" / "python"


def make_venv(folder: Path, packages, wheels: Path) -> Path:
    """A virtual environment with exactly `packages` (the full install's versions) and this checkout's wheel."""
    pins = [f"{name}=={importlib.metadata.version(name)}" for name in packages]  # what the full install runs
    stamp = json.dumps({"python": sys.version, "pins": pins})
    if not (folder / "stamp.json").is_file() or (folder / "stamp.json").read_text() != stamp:
        shutil.rmtree(folder, ignore_errors=True)  # build/ output of this test only
        subprocess.run([sys.executable, "-m", "venv", str(folder)], check=True)
        subprocess.run([str(_python(folder)), "-m", "pip", "install", "-q", *pins], check=True)
        (folder / "stamp.json").write_text(stamp)
    subprocess.run([str(_python(folder)), "-m", "pip", "install", "-q", "--no-deps", "--force-reinstall",
                    *map(str, wheels.glob("*.whl"))], check=True)
    return folder


@pytest.fixture(scope="module")
def wheels(tmp_path_factory):
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(out),
                    str(ROOT)], check=True, capture_output=True)
    return out


@pytest.fixture(scope="module")
def venv(wheels):
    return make_venv(VENV, BASE, wheels)


@pytest.fixture(scope="module")
def align_venv(wheels):
    """`pip install 'styleclip-edge[align]'`: the base packages and the [align] extra's, still no torch."""
    return make_venv(VENV.with_name("runtime-align-venv"), BASE + ALIGN, wheels)


def run(venv: Path | None, args, cwd):
    """The installed console script of `venv`, or this checkout's cli.py with the full install (venv None)."""
    command = [str(venv / "bin" / "styleclip-edge")] if venv else [sys.executable, str(ROOT / "cli.py")]
    return subprocess.run(command + [str(a) for a in args], capture_output=True, text=True, cwd=cwd)


def test_the_venv_has_no_training_packages(venv):
    for module in ("torch", "onnx", "open_clip", "safetensors"):
        res = subprocess.run([str(_python(venv)), "-c", f"import {module}"], capture_output=True, text=True)
        assert res.returncode != 0 and "ModuleNotFoundError" in res.stderr, module


def test_every_command_is_covered_here():
    assert set(cli.main.commands) == RUNTIME_COMMANDS | ALIGN_COMMANDS | set(MINIMAL)
    assert {name for name, c in cli.main.commands.items() if getattr(c, "extra", "runtime") == "align"} == ALIGN_COMMANDS
    assert {name for name, c in cli.main.commands.items() if getattr(c, "extra", "runtime") == "train"} == set(MINIMAL)


@pytest.mark.parametrize("command", sorted(MINIMAL))
def test_commands_that_need_the_train_extra_say_so(venv, tmp_path, command):
    res = run(venv, [command, *MINIMAL[command]], tmp_path)
    assert res.returncode == 2, (command, res.stdout, res.stderr)
    assert "Traceback" not in res.stderr and res.stderr.count("\n") == 1, res.stderr
    assert res.stderr.startswith(f"error: `{command}` needs the [train] extra") and "pip install 'styleclip-edge[train]'" in res.stderr
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_help_groups_commands_by_what_they_need(venv, tmp_path):
    res = run(venv, ["--help"], tmp_path)
    assert res.returncode == 0, res.stderr
    runtime, train = res.stdout.split("Train, precompute")
    assert "Edit with a bundle (the base install)" in runtime and " edit " in runtime and " export " in train
    assert run(venv, ["export", "--help"], tmp_path).returncode == 0  # help never needs the extra


@pytest.mark.parametrize("args", [
    ["edit", "a face with blue hair", "--seed", "1,2"],
    ["edit", "a face with blue hair", "--image", "{photo}"],
    ["invert", "{photo}", "--recon", "r.png", "--out-npy"],
    ["edit", "purple hair", "--method", "mapper", "--seed", "3", "--sweep", "0,1"],
    ["demo", "--seed", "1,2"],
])
def test_runtime_commands_give_the_same_png_bytes(venv, bundle, tmp_path, args):
    from PIL import Image

    outputs = []
    for label, env in (("runtime-only", venv), ("full", None)):
        work = tmp_path / label
        work.mkdir()
        Image.fromarray(np.random.default_rng(0).integers(0, 255, (48, 48, 3), dtype=np.uint8)).save(work / "me.png")
        out = ["--out", "w.npy"] if "--out-npy" in args else ["--out", "x.png"]
        argv = [a.replace("{photo}", "me.png") for a in args if a != "--out-npy"]
        res = run(env, [*argv, "--bundle", bundle, *out], work)
        assert res.returncode == 0 and "Traceback" not in res.stderr, (label, res.stderr)
        outputs.append([(work / name).read_bytes() for name in ("x.png", "r.png", "w.npy") if (work / name).exists()])
    assert outputs[0] == outputs[1] and outputs[0]


def test_web_from_an_installed_wheel_says_it_needs_a_checkout(venv, bundle, tmp_path):
    res = run(venv, ["web", bundle, "--out", "site"], tmp_path)
    assert res.returncode == 2 and "Traceback" not in res.stderr and res.stderr.startswith("error: "), res.stderr
    assert "checkout" in res.stderr or "npm ci --prefix web" in res.stderr
    assert list(tmp_path.iterdir()) == []


def test_demo_without_a_bundle_explains_how_to_get_one(venv, tmp_path):
    res = run(venv, ["demo"], tmp_path)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "error: the demo bundle" in res.stderr and "pass --bundle FOLDER" in res.stderr
    res = run(venv, ["edit", "a smiling face"], tmp_path)
    assert res.returncode == 2 and "error: no bundle given" in res.stderr
    assert list(tmp_path.iterdir()) == []


# --- real photos: the [align] extra ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def astronaut(tmp_path_factory):
    from PIL import Image
    from skimage import data

    path = tmp_path_factory.mktemp("photo") / "astronaut.png"
    Image.fromarray(data.astronaut()).save(path)
    return path


ALIGN_RUNS = [
    ["align", "{photo}", "--out", "crops"],
    ["invert", "{photo}", "--align", "--out", "w.npy", "--recon", "r.png"],
    ["edit", "a face with purple hair", "--image", "{photo}", "--align", "--paste", "--out", "x.png"],
]


@pytest.mark.parametrize("args", ALIGN_RUNS, ids=lambda a: a[0])
def test_align_extra_without_torch(align_venv, bundle, astronaut, tmp_path, args):
    """With only the runtime and [align] installed, the photo commands run and give the full install's bytes."""
    res = subprocess.run([str(_python(align_venv)), "-c", "import torch"], capture_output=True, text=True)
    assert res.returncode != 0 and "ModuleNotFoundError" in res.stderr
    outputs = []
    for label, env in (("runtime-align", align_venv), ("full", None)):
        work = tmp_path / label
        work.mkdir()
        argv = [str(astronaut) if a == "{photo}" else a for a in args]
        res = run(env, [*argv] + ([] if args[0] == "align" else ["--bundle", bundle]), work)
        assert res.returncode == 0 and "Traceback" not in res.stderr, (label, res.stderr)
        outputs.append({str(p.relative_to(work)): p.read_bytes() for p in sorted(work.rglob("*")) if p.is_file()})
    assert outputs[0] == outputs[1] and outputs[0]


@pytest.mark.parametrize("args", ALIGN_RUNS, ids=lambda a: a[0])
def test_without_the_align_extra_the_options_say_so(venv, bundle, astronaut, tmp_path, args):
    argv = [str(astronaut) if a == "{photo}" else a for a in args]
    res = run(venv, [*argv] + ([] if args[0] == "align" else ["--bundle", bundle]), tmp_path)
    assert res.returncode == 2 and "Traceback" not in res.stderr and res.stderr.count("\n") == 1, res.stderr
    assert res.stderr.startswith("error: ") and "[align] extra" in res.stderr and "pip install 'styleclip-edge[align]'" in res.stderr
    assert list(tmp_path.iterdir()) == []
