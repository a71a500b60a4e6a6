"""The identity network (DESIGN §14): ArcFace IR-SE-50 with StyleCLIP's pool and crop, parity with a
from-the-spec reference, strict import, and its use by optimize, train-mapper and evaluate."""
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from cli import main
from precompute.identity import IdentityConfig, IdentityNetwork, face_crop, load_identity, save_identity
from precompute.mapper_training import MapperTrainConfig
from precompute.optimization import OptimizeConfig
from tests import identity_reference as ref
from tests.test_edit_eval import demo_dir  # noqa: F401  (a fixture: a demo world of tiny random models)

TOLERANCE = 1e-5  # max abs error of unit features
TINY = IdentityConfig(units=(1, 1, 1, 1), widths=(8, 8, 16, 16), embedding=16, se_reduction=4)
PROMPT = "a face with purple hair"


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def assert_one_error_line(res, *fragments):
    assert res.exit_code == 2, res.output
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in res.output, res.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def images(n, size, seed=0):
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


@pytest.fixture(scope="module")
def official(tmp_path_factory):
    """A random-weight model_ir_se50.pth, its state, and the network loaded from it and from its import."""
    folder = tmp_path_factory.mktemp("identity")
    state = ref.official_file(folder / "model_ir_se50.pth")
    res = run("import-identity", folder / "model_ir_se50.pth", folder / "arcface")
    assert res.exit_code == 0, res.output
    assert f"wrote {folder / 'arcface.safetensors'}" in res.output and "units [3, 4, 14, 3]" in res.output
    return {"state": state, "pth": load_identity(folder / "model_ir_se50.pth"), "pair": load_identity(folder / "arcface.json")}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    torch.manual_seed(0)
    net = IdentityNetwork(TINY).eval()
    paths = save_identity(net, tmp_path_factory.mktemp("tiny") / "tiny_id")
    return net, paths[1]


def test_names_and_shapes_are_treb1ens():
    ours = {k: tuple(v.shape) for k, v in IdentityNetwork().state_dict().items()}
    assert ours == ref.parameter_shapes()


@pytest.mark.parametrize("size,n", [(64, 2), (256, 2), (1024, 1)])
def test_features_match_the_reference(official, size, n):
    x = images(n, size, seed=size)
    with torch.no_grad():
        expected = ref.extract_feats_ref(official["state"], x)
        for source in ("pth", "pair"):
            out = official[source](x)
            assert out.shape == (n, 512)
            err = (out - expected).abs().max().item()
            assert err <= TOLERANCE, (source, size, err)
    assert torch.allclose(expected.norm(dim=1), torch.ones(n))
    if n > 1:  # the features depend on the image: the comparison is not of constants
        assert (expected[0] * expected[1]).sum() < 0.99


def test_the_tolerance_catches_small_mistakes(official):
    """A crop one row off, or BN1d without its running statistics, moves the features far beyond TOLERANCE."""
    sd, x = official["state"], images(1, 256, seed=7)
    with torch.no_grad():
        expected = ref.extract_feats_ref(sd, x)
        off_by_one = ref.backbone_ref(sd, ref.adaptive_pool(x[:, :, 36:224, 32:220], 112))
        plain_bn = dict(sd, **{"output_layer.4.running_mean": torch.zeros(512), "output_layer.4.running_var": torch.ones(512)})
        no_stats = ref.extract_feats_ref(plain_bn, x)
    assert (off_by_one - expected).abs().max() > 100 * TOLERANCE
    assert (no_stats - expected).abs().max() > 100 * TOLERANCE


def test_loaded_network_is_frozen_and_checks_its_input(official):
    net = official["pth"]
    assert not net.training and not any(p.requires_grad for p in net.parameters())
    x = images(1, 64).requires_grad_(True)
    net(x).sum().backward()  # frozen weights, but the loss still reaches the image
    assert x.grad is not None and x.grad.abs().sum() > 0
    for bad, what in ((torch.zeros(1, 3, 64, 48), r"\(1, 3, 64, 48\)"), (torch.zeros(1, 1, 64, 64), r"\(1, 1, 64, 64\)"),
                      (torch.zeros(3, 64, 64), r"\(3, 64, 64\)")):
        with pytest.raises(ValueError, match=r"square RGB images \[N, 3, S, S\].*" + what):
            net(bad)
    assert face_crop(images(2, 128), 112).shape == (2, 3, 112, 112)


def test_old_and_wrapped_official_files_load(official, tmp_path):
    """torch < 0.4.1 saved BN without num_batches_tracked; a {'state_dict': ...} wrapper is unwrapped."""
    state = {k: v for k, v in official["state"].items() if not k.endswith("num_batches_tracked")}
    torch.save(state, tmp_path / "old.pth")
    torch.save({"state_dict": official["state"]}, tmp_path / "wrapped.pt")
    x = images(1, 64)
    with torch.no_grad():
        expected = official["pth"](x)
        for name in ("old.pth", "wrapped.pt"):
            assert torch.equal(load_identity(tmp_path / name)(x), expected)


def test_our_format_keeps_a_smaller_config(tiny):
    net, path = tiny
    again = load_identity(path)
    assert again.config == TINY and again.output_layer[3].weight.shape == (16, 16 * 7 * 7)
    x = images(2, 32)
    with torch.no_grad():
        assert torch.equal(again(x), net(x))
    with pytest.raises(ValueError, match="se_reduction"):
        IdentityConfig(widths=(8, 8, 16, 16))  # reduction 16 would leave SE no channels
    with pytest.raises(ValueError, match="multiple of 16"):
        IdentityConfig(input_size=100)


@pytest.mark.parametrize("change,message", [
    (lambda s: s.pop("body.23.res_layer.5.fc2.weight"), "missing keys: body.23.res_layer.5.fc2.weight"),
    (lambda s: s.update({"body.5.res_layer.1.weight": torch.zeros(128, 64, 3, 3)}),
     "wrong shapes: body.5.res_layer.1.weight (128, 64, 3, 3) (expected (128, 128, 3, 3))"),
    (lambda s: s.update({"output_layer.5.weight": torch.zeros(512)}), "unexpected keys: output_layer.5.weight"),
])
def test_strict_import_errors_through_the_cli(official, tmp_path, change, message):
    state = dict(official["state"])
    change(state)
    torch.save(state, tmp_path / "bad.pth")
    assert_one_error_line(run("import-identity", tmp_path / "bad.pth", tmp_path / "out"), "bad.pth", "does not match",
                          message)
    assert list(tmp_path.iterdir()) == [tmp_path / "bad.pth"]  # nothing written


def test_files_that_are_no_identity_network(models, tmp_path):
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint at all")
    assert_one_error_line(run("import-identity", tmp_path / "junk.pth", tmp_path / "out"),
                          "junk.pth is not a readable PyTorch checkpoint")
    assert_one_error_line(run("import-identity", models["encoder"], tmp_path / "out"),
                          "e4e.pt is a StyleGAN2, e4e or mapper checkpoint", "model_ir_se50.pth")
    assert_one_error_line(run("import-identity", models["generator"], tmp_path / "out"),
                          "describes a 'stylegan2-generator', not a 'identity-irse'")
    assert_one_error_line(run("import-identity", tmp_path / "absent.pth", tmp_path / "out"), "absent.pth")
    torch.save([torch.zeros(1)], tmp_path / "list.pth")
    assert_one_error_line(run("import-identity", tmp_path / "list.pth", tmp_path / "out"), "holds a list, not the state dict")
    torch.save({1: torch.zeros(1), "input_layer.0.weight": "x"}, tmp_path / "odd.pth")
    assert_one_error_line(run("import-identity", tmp_path / "odd.pth", tmp_path / "out"), "input_layer.0.weight are not tensors")
    torch.save({1: torch.zeros(1)}, tmp_path / "odd.pth")
    assert_one_error_line(run("import-identity", tmp_path / "odd.pth", tmp_path / "out"), "unexpected keys: 1")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["junk.pth", "list.pth", "odd.pth"]  # nothing written


def model_args(models):
    return ["--generator", models["generator"], "--clip", models["clip"], "--threads", 1]


@pytest.fixture
def keep_torch_threads():
    threads = torch.get_num_threads()  # the commands set them for the whole process
    yield
    torch.set_num_threads(threads)


def test_optimize_uses_the_identity_term(models, tiny, tmp_path, keep_torch_threads):
    def default(command):
        return next(p.default for p in main.commands[command].params if p.name == "id_weight")

    # StyleCLIP's: its optimization notebook's id_lambda, its mapper's default
    assert default("optimize") == OptimizeConfig().identity == 0.005
    assert default("train-mapper") == MapperTrainConfig("p").id_weight == 0.1
    common = ["optimize", PROMPT, *model_args(models), "--seed", "1,2", "--steps", 4]
    res = run(*common, "--save-latents", tmp_path / "plain.npy", "--out", tmp_path / "plain.png")
    assert res.exit_code == 0 and " id " not in res.output, res.output
    res = run(*common, "--identity", tiny[1], "--id-weight", 1, "--save-latents", tmp_path / "id.npy",
              "--out", tmp_path / "id.png")
    assert res.exit_code == 0, res.output
    assert ", id " in res.output  # the logged loss terms
    # lr is 0 on step 0 and the id gradient is 0 while the image is the source: the paths part from step 2 on
    assert not np.array_equal(np.load(tmp_path / "plain.npy"), np.load(tmp_path / "id.npy"))
    res = run(*common, "--id-weight", 0.5, "--out", tmp_path / "x.png")
    assert_one_error_line(res, "--id-weight needs --identity")


def test_train_mapper_uses_the_identity_term(models, tiny, tmp_path, keep_torch_threads):
    args = ["train-mapper", PROMPT, *model_args(models), "--steps", 2, "--batch", 2, "--identity", tiny[1],
            "--workdir", tmp_path / "work", "--out", tmp_path / "mapper"]
    res = run(*args, "--stop-at", 1)
    assert res.exit_code == 0, res.output
    assert ", id " in res.output
    torch.manual_seed(1)
    other = save_identity(IdentityNetwork(TINY), tmp_path / "other_id")[1]
    res = run(*[other if a == tiny[1] else a for a in args])  # resuming with another identity network is refused
    assert res.exit_code == 2 and "identity_weights differ" in res.output, res.output
    res = run(*args)
    assert res.exit_code == 0 and (tmp_path / "mapper.json").is_file(), res.output


def quality_table(folder):
    """The markdown table of edit_quality.md: its header and its rows as {column: cell}."""
    lines = (folder / "edit_quality.md").read_text().splitlines()
    head, *rows = [line.strip("| ").split(" | ") for line in lines if line.startswith("| ") and "---" not in line]
    return head, [dict(zip(head, row)) for row in rows]


def test_evaluate_adds_an_identity_column(demo_dir, tiny, tmp_path, keep_torch_threads):  # noqa: F811
    res = run("evaluate", "--methods", "C,B,A", "--edits", "purple hair", "-n", 3, "--steps", 2, "--threads", 1,
              "--identity", tiny[1], "--demo-dir", demo_dir, "--out-dir", tmp_path)
    assert res.exit_code == 0, res.output
    head, rows = quality_table(tmp_path)
    drift = head.index("geometry drift")
    assert head[drift:drift + 3] == ["geometry drift", "identity", "s/edit"]
    assert [r["method"] for r in rows] == ["C global", "B mapper", "A optimize"]
    assert rows[2]["setting"].endswith(", id 0.005")  # method A optimizes the identity loss (default weight)
    assert all(-1 <= float(r["identity"]) <= 1 for r in rows)
    assert float(rows[0]["identity"]) < 0.99  # method C changes the face
    assert "--identity" in (tmp_path / "edit_quality.md").read_text() and "--id-weight 0.005" in res.output + \
        (tmp_path / "edit_quality.md").read_text()
    assert "geometry drift  identity  s/edit" in res.output  # the printed table has the column too
    # an edit that changes nothing keeps the identity exactly
    res = run("evaluate", "--methods", "B", "--strength", 0, "--edits", "purple hair", "-n", 3, "--threads", 1,
              "--identity", tiny[1], "--demo-dir", demo_dir, "--out-dir", tmp_path / "zero")
    assert res.exit_code == 0, res.output
    _, [row] = quality_table(tmp_path / "zero")
    assert [row[k] for k in ("preservation", "geometry drift", "identity")] == ["1.000", "0.0000", "1.000"]
