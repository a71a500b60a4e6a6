"""CLI: `train-mapper` (method B) and `optimize` (method A) on tiny random models, through click's CliRunner."""
import dataclasses

import click
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from cli import MAPPER_GROUPS, main
from precompute.checkpoints import load_generator
from precompute.demo.train_generator import RefineConfig
from precompute.mapper import GROUPS, load_mapper
from precompute.mapper_training import MapperTrainConfig
from precompute.optimization import OptimizeConfig
from runtime.editor import Editor
from runtime.images import HEADER, PAD

PROMPT = "a face with purple hair"
SLUG = "a_face_with_purple_hair"


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def assert_user_error(res, *fragments):
    assert res.exit_code == 2, res.output
    assert "error: " in res.output and "Traceback" not in res.output
    for fragment in fragments:
        assert fragment in res.output


@pytest.fixture(autouse=True)
def keep_torch_threads():
    threads = torch.get_num_threads()  # train-mapper sets them for the whole process
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def gen(models):
    return load_generator(models["generator"])


def model_args(models):
    return ["--generator", models["generator"], "--clip", models["clip"], "--threads", 1]


def test_option_defaults_are_the_library_defaults():
    def defaults(command):
        return {p.name: p.default for p in main.commands[command].params if isinstance(p, click.Option)}

    assert MAPPER_GROUPS == GROUPS
    train = defaults("train-mapper")
    assert {"steps", "batch", "lr", "clip_weight", "l2_weight", "truncation", "seed"} <= set(train)
    for f in dataclasses.fields(MapperTrainConfig):
        if f.name in train:
            assert train[f.name] == f.default, f.name
    for command, config in (("optimize", OptimizeConfig), ("refine-generator", RefineConfig)):
        options = defaults(command)
        for f in dataclasses.fields(config):
            if f.name in options:
                assert options[f.name] == f.default, (command, f.name)
    assert {"steps", "feature_weight", "sharpen_steps", "margin"} <= set(defaults("refine-generator"))


def test_train_mapper_stops_resumes_and_writes_a_loadable_mapper(models, gen, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the default --workdir and --out are relative
    args = ["train-mapper", PROMPT, *model_args(models), "--steps", 3, "--batch", 2, "--disable", "fine"]
    res = run(*args, "--stop-at", 1)
    assert res.exit_code == 0, res.output
    assert "stopped at step 1 of 3" in res.output and "final loss " in res.output
    assert (tmp_path / "build/train/mapper" / SLUG / "checkpoint.pt").is_file()
    assert not (tmp_path / "artifacts").exists()  # no mapper until every step is done

    res = run(*args)
    assert res.exit_code == 0, res.output
    assert "trained steps 1 -> 3" in res.output and "clip " in res.output and "l2 " in res.output
    out = tmp_path / "artifacts/demo/mappers" / SLUG
    assert out.with_suffix(".safetensors").is_file() and out.with_suffix(".json").is_file()
    mapper = load_mapper(out.with_suffix(".json"))
    assert mapper.config.prompt == PROMPT
    assert mapper.config.enabled == {"coarse": True, "medium": True, "fine": False}
    assert (mapper.config.n_latent, mapper.config.style_dim) == (gen.n_latent, gen.config.style_dim)

    res = run(*args, "--lr", 0.1)  # other settings: the checkpoint is refused, not silently reused
    assert_user_error(res, "lr differ", "fresh --workdir")


class TorchMappingEditor(Editor):
    """Editor.sample as shipped, with the generator's torch mapping in place of the ONNX graph."""

    def __init__(self, gen):
        self.gen, self.manifest = gen, {"defaults": {"truncation": 0.7}}
        self.n_latent, self.style_dim = gen.n_latent, gen.config.style_dim
        self.latent_avg = gen.latent_avg.numpy()

    def run(self, graph, x):
        assert graph == "mapping"
        with torch.no_grad():
            return self.gen.mapping(torch.from_numpy(x)).numpy()


def test_optimize_from_seeds_and_from_latents(models, gen, tmp_path):
    res = run("optimize", PROMPT, *model_args(models), "--seed", "1,2", "--steps", 3,
              "--save-latents", tmp_path / "w.npy", "--out", tmp_path / "o.png")
    assert res.exit_code == 0, res.output
    assert "s per edit" in res.output and "final clip " in res.output
    w = np.load(tmp_path / "w.npy")
    assert w.shape == (2, gen.n_latent, gen.config.style_dim) and w.dtype == np.float32
    side = 128 + PAD  # 32 px faces scaled x4, like `edit`
    assert Image.open(tmp_path / "o.png").size == (PAD + 2 * side, HEADER + PAD + 2 * side)

    # lr is 0 on the first step, so one step returns the start: the seeds' faces are those of `edit`
    res = run("optimize", PROMPT, *model_args(models), "--seed", "3,1", "--steps", 1,
              "--save-latents", tmp_path / "start.npy", "--out", tmp_path / "start.png")
    assert res.exit_code == 0, res.output
    np.testing.assert_allclose(np.load(tmp_path / "start.npy"), TorchMappingEditor(gen).sample([3, 1], 0.7),
                               rtol=1e-5, atol=1e-6)

    res = run("optimize", PROMPT, *model_args(models), "--latents", tmp_path / "w.npy", "--steps", 1,
              "--save-latents", tmp_path / "again.npy", "--out", tmp_path / "again.png")
    assert res.exit_code == 0, res.output
    assert np.array_equal(np.load(tmp_path / "again.npy"), w)
    assert Image.open(tmp_path / "again.png").size == Image.open(tmp_path / "o.png").size


def test_bad_input_exits_2_with_a_clear_message(models, gen, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no artifacts/demo here
    assert_user_error(run("train-mapper", PROMPT, "--steps", 1), "generator not found: artifacts/demo/generator.json",
                      "python cli.py train-generator")
    assert_user_error(run("optimize", PROMPT, "--clip", models["clip"], "--generator", tmp_path / "absent.json"),
                      "absent.json", "python cli.py train-generator")
    assert_user_error(run("optimize", PROMPT, "--generator", models["generator"], "--clip", tmp_path / "no.json"),
                      "CLIP not found", "python cli.py train-clip")
    assert_user_error(run("train-mapper", "  ", *model_args(models)), "prompt is empty")
    assert_user_error(run("optimize", "", *model_args(models)), "prompt is empty")
    res = run("train-mapper", PROMPT, *model_args(models), *[a for g in GROUPS for a in ("--disable", g)])
    assert res.exit_code == 2 and "at least one group" in res.output

    np.save(tmp_path / "bad.npy", np.zeros((2, 3, gen.config.style_dim), np.float32))
    res = run("optimize", PROMPT, *model_args(models), "--latents", tmp_path / "bad.npy", "--steps", 1,
              "--save-latents", tmp_path / "o.npy", "--out", tmp_path / "o.png")
    assert_user_error(res, f"latents must be W+ of shape [N, {gen.n_latent}, {gen.config.style_dim}]", "got [2, 3, ")
    (tmp_path / "junk.npy").write_bytes(b"")
    res = run("optimize", PROMPT, *model_args(models), "--latents", tmp_path / "junk.npy", "--out", tmp_path / "o.png")
    assert_user_error(res, "junk.npy is not a valid .npy of W+ latents")
    assert not list(tmp_path.glob("o.*")) and not list(tmp_path.glob(".o.*"))  # nothing written, not even a temp
    assert not (tmp_path / "build").exists() and not (tmp_path / "artifacts").exists()
