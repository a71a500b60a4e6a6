"""Edit-quality harness (DESIGN §8): scoring by hand, and every method end to end on tiny random models."""
import re

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from cli import main
from precompute import edit_eval as ev
from precompute.checkpoints import save_generator
from precompute.clip_model import Clip, save_clip
from precompute.demo.classifier import ClassifierConfig, build, save_classifier
from precompute.demo.render import ATTRIBUTE_NAMES, ATTRIBUTES, GEOMETRY
from precompute.mapper import LatentMapper, MapperConfig, save_mapper
from precompute.optimization import OptimizeConfig
from precompute.stylegan2 import GeneratorConfig
from tests.conftest import make_generator
from tests.models import CLIP_CONFIG, write_global_tables
from tests.test_clip import tiny_model

GEN64 = GeneratorConfig(64, 32, 2, {4: 16, 8: 16, 16: 8, 32: 8, 64: 8})
TINY_CLASSIFIER = ClassifierConfig(convs=((8, 2), (8, 2), (8, 2), (8, 2)), hidden=16)


def test_score_by_hand():
    hair = ATTRIBUTE_NAMES.index("hair_color")
    purple = ATTRIBUTES["hair_color"].index("purple")
    before = np.zeros((4, len(ATTRIBUTE_NAMES)), np.int64)
    before[3, hair] = purple  # already purple: not eligible
    after = before.copy()
    after[[0, 1], hair] = purple  # 2 of the 3 eligible succeed
    after[1, ATTRIBUTE_NAMES.index("glasses")] = 1  # one other attribute of 4 x 6 changes
    g0 = np.zeros((4, len(GEOMETRY)), np.float32)
    g1 = g0 + 0.1
    row = ev.score((before, g0), (after, g1), ev.find_edits(["purple hair"])[0])
    assert row["eligible"] == 3
    assert row["success"] == pytest.approx(2 / 3)
    assert row["preservation"] == pytest.approx(1 - 1 / 24)
    assert row["drift"] == pytest.approx(0.1)
    assert row["most_changed"] == ("glasses", pytest.approx(1 / 4))  # what preservation lost: 1 face of 4
    [cells] = table_rows(ev.format_table([{**ROW, **row}]))
    assert [cells[k] for k in ("success", "success (classifier)", "read as", "spill")] == ["0.667", "-", "-", "-"]


ROW = {"edit": "purple hair", "method": "C global", "setting": "alpha 5, beta 0.35", "seconds": 0.01}


def table_rows(text: str, edit: str = "") -> list[dict]:
    """The printed quality table's rows (of `edit`) as {column: cell}; columns are 2+ spaces apart. The header
    may follow the progress bar on its line."""
    lines = text.splitlines()
    head = next(line for line in lines if line.endswith("most changed other attribute"))
    head = re.split(r"\s{2,}", head[head.index("edit "):])
    return [dict(zip(head, re.split(r"\s{2,}", line.strip()))) for line in lines
            if line.startswith(edit) and not line.startswith(("edit ", "---"))]


def test_a_colour_edit_succeeds_by_the_colour_seen():
    """The classifier calls blue hair purple; the colour read (precompute/demo/colour.py) decides success and bar."""
    hair, purple = ATTRIBUTE_NAMES.index("hair_color"), ATTRIBUTES["hair_color"].index("purple")
    before = np.zeros((4, len(ATTRIBUTE_NAMES)), np.int64)
    after = before.copy()
    after[:, hair] = purple
    geometry = np.zeros((4, len(GEOMETRY)), np.float32)
    seen = {"eligible": 4, "success": 0.25, "read_as": ("blue", 0.75), "spill": 0.125}
    row = ev.score((before, geometry), (after, geometry), ev.find_edits(["purple hair"])[0], seen)
    assert row["success (classifier)"] == 1.0 and row["preservation"] == 1.0
    assert {k: row[k] for k in seen} == seen
    assert ev.meets_bar({**ROW, **row}) is False and ev.meets_bar({**ROW, **row, "success": 0.9}) is True
    [columns] = table_rows(ev.format_table([{**ROW, **row}]))
    assert columns["success"] == "0.250" and columns["success (classifier)"] == "1.000"
    assert columns["read as"] == "blue 0.750" and columns["spill"] == "0.125" and columns["bar"] == "MISSED"


def test_global_setting_names_an_unusual_neutral_text():
    assert ev.describe_global(4.0, 0.15, "a face") == "alpha 4, beta 0.15"
    assert ev.describe_global(10.0, 0.65, "a face with eyes") == "alpha 10, beta 0.65, from 'a face with eyes'"


def test_unknown_edit_and_value_are_rejected():
    with pytest.raises(ValueError, match="unknown edit"):
        ev.find_edits(["green hair"])
    with pytest.raises(ValueError, match="not an attribute value"):
        ev.EditSpec("x", "a face with teal hair", "hair_color", "teal")


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory):
    """A demo-world folder of tiny random models (64 px, the classifier's input size)."""
    d = tmp_path_factory.mktemp("demo")
    gen = make_generator(GEN64)
    save_generator(gen, d / "generator")
    save_clip(Clip(tiny_model(vision_cfg=CLIP_CONFIG["vision_cfg"]), CLIP_CONFIG), d / "clip")
    save_classifier(build(TINY_CLASSIFIER, seed=0), d / "classifier")
    torch.manual_seed(0)
    save_mapper(LatentMapper(MapperConfig(gen.n_latent, GEN64.style_dim, prompt="a face with purple hair")),
                d / "mappers" / "purple_hair")
    write_global_tables(gen, d, CLIP_CONFIG["embed_dim"], 256)
    from precompute.encoder import Encoder4Editing, EncoderConfig, save_encoder
    save_encoder(Encoder4Editing(EncoderConfig(64, (1, 1, 1, 1), (16, 16, 16, 16), gen.n_latent, GEN64.style_dim)).eval(),
                 d / "encoder")
    return d


def test_every_method_is_scored_and_pictured(demo_dir, tmp_path):
    world = ev.DemoWorld.load(demo_dir)
    methods = world.methods(["C", "B", "A"], (4.0, 0.05), OptimizeConfig(steps=2, clip_views=2))
    edits = ev.find_edits(["purple hair", "smiling"])
    rows, pictures = ev.evaluate_edits(world.gen, world.classifier, edits, methods, n=5, examples=3, progress=False)
    # B only where a mapper was trained for the text.
    assert [(r["edit"], r["method"]) for r in rows] == [("purple hair", "C global"), ("purple hair", "B mapper"),
                                                        ("purple hair", "A optimize"), ("smiling", "C global"),
                                                        ("smiling", "A optimize")]
    for r in rows:
        assert 0 <= r["preservation"] <= 1 and r["drift"] >= 0 and r["seconds"] > 0
        assert ("spill" in r) == (r["edit"] == "purple hair")  # colour edits only
    assert [len(row) for row in pictures["purple hair"]] == [4, 4, 4] and pictures["smiling"][0][0].shape == (64, 64, 3)
    # Method C really edits: the edited images differ from the originals.
    assert not np.array_equal(pictures["smiling"][0][0], pictures["smiling"][0][1])
    files = ev.write_report(tmp_path, rows, pictures, "context")
    assert (tmp_path / "edits" / "purple_hair.png").is_file() and "| purple hair | B mapper |" in files[0].read_text()


def test_cli_evaluate_and_sweep(demo_dir, tmp_path):
    runner = CliRunner()
    out = tmp_path / "docs"
    result = runner.invoke(main, ["evaluate", "--methods", "C,B", "--edits", "purple hair", "-n", "3", "--threads", "1",
                                  "--demo-dir", str(demo_dir), "--out-dir", str(out)])
    assert result.exit_code == 0, result.output
    assert "C global" in result.output and (out / "edit_quality.md").is_file()
    result = runner.invoke(main, ["evaluate", "--edits", "smiling", "-n", "3", "--demo-dir", str(demo_dir),
                                  "--sweep-alphas", "2,4", "--sweep-betas", "0.05,0.99", "--threads", "1"])
    assert result.exit_code == 0, result.output
    assert result.output.count("beta 0.05") == 2 and "beta 0.99" not in result.output  # 0.99 keeps no channel: skipped
    result = runner.invoke(main, ["evaluate", "--edits", "purple hair", "-n", "3", "--demo-dir", str(demo_dir),
                                  "--sweep-alphas", "4", "--sweep-betas", "0.05", "--sweep-neutral", "a face",
                                  "--sweep-neutral", "a face with brown hair", "--threads", "1"])
    assert result.exit_code == 0, result.output
    rows = table_rows(result.output, "purple hair ")
    assert [r["setting"] for r in rows] == ["alpha 4, beta 0.05", "alpha 4, beta 0.05, from 'a face with brown hair'"]
    assert rows[0]["geometry drift"] != rows[1]["geometry drift"]  # another text direction, another edit
    result = runner.invoke(main, ["evaluate", "--edits", "purple hair", "-n", "3", "--demo-dir", str(demo_dir),
                                  "--sweep-strengths", "0,1", "--threads", "1"])
    assert result.exit_code == 0, result.output
    rows = table_rows(result.output, "purple hair ")
    assert [r["setting"] for r in rows] == ["strength 0", "strength 1"]
    # Strength 0 leaves every image as it was: everything preserved, no drift, no spill.
    assert [rows[0][k] for k in ("preservation", "geometry drift", "spill")] == ["1.000", "0.0000", "0.000"]
    result = runner.invoke(main, ["evaluate", "--methods", "B", "--edits", "purple hair", "-n", "3", "--strength", "0.5",
                                  "--threads", "1", "--demo-dir", str(demo_dir), "--out-dir", str(out)])
    assert result.exit_code == 0, result.output
    assert "strength 0.5" in result.output and "--strength 0.5" in (out / "edit_quality.md").read_text()
    result = runner.invoke(main, ["evaluate", "--demo-dir", str(demo_dir), "--sweep-alphas", "2"])
    assert result.exit_code == 2 and "go together" in result.output
    result = runner.invoke(main, ["evaluate", "--demo-dir", str(demo_dir), "--sweep-neutral", "a face"])
    assert result.exit_code == 2 and "--sweep-neutral needs --sweep-alphas" in result.output
    result = runner.invoke(main, ["evaluate", "--demo-dir", str(demo_dir), "--methods", "B", "--strength", "10"])
    assert result.exit_code == 2 and "mapper strength must be a number in [-5.0, 5.0]" in result.output
    result = runner.invoke(main, ["evaluate", "--demo-dir", str(tmp_path / "nothing"), "-n", "2"])
    assert result.exit_code == 2 and "error:" in result.output and "train-generator" in result.output


def test_cli_evaluate_inverted_renders(demo_dir, tmp_path):
    from precompute.demo.render import sample_dataset
    from precompute.demo.train_encoder import invert_renders
    from precompute.demo.training import HELDOUT_SEED
    from precompute.encoder import load_encoder

    wplus, faces = ev.inverted_wplus(load_encoder(demo_dir / "encoder.json"), 3, seed=1)
    images, labels, _ = sample_dataset(3, HELDOUT_SEED + 1)
    expected = invert_renders(load_encoder(demo_dir / "encoder.json"), images)
    assert torch.equal(wplus, expected) and wplus.shape == (3, 10, 32)
    assert [f.attrs for f in faces] == [tuple(row) for row in labels]  # colour regions come from the renders' faces
    result = CliRunner().invoke(main, ["evaluate", "--inverted", "--methods", "C,B", "--edits", "purple hair", "-n", "3",
                                       "--threads", "1", "--demo-dir", str(demo_dir), "--out-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    report = (tmp_path / "edit_quality.md").read_text()
    assert "evaluate --inverted --methods C,B -n 3" in report and "inverted by the demo encoder" in report
    assert "| purple hair | B mapper |" in report
    result = CliRunner().invoke(main, ["evaluate", "--inverted", "--demo-dir", str(tmp_path), "-n", "2"])
    assert result.exit_code == 2 and "error:" in result.output


def test_runtime_methods_match_pytorch_at_the_chosen_strength(demo_dir, tmp_path):
    from export.bundle import ExportOptions, Sources, export_bundle

    world = ev.DemoWorld.load(demo_dir)
    sources = Sources(demo_dir / "generator.json", demo_dir / "clip.json", None, [demo_dir / "mappers" / "purple_hair.json"],
                      demo_dir / "fs3.npy", demo_dir / "s_stats.npz")
    export_bundle(tmp_path / "b", sources, ExportOptions(), progress=False)
    spec = ev.find_edits(["purple hair"])[0]
    wplus = ev.sample_wplus(world.gen, 4, seed=0, psi=0.7)
    torch_b, torch_c, runtime_c, runtime_b = world.methods(["B", "C"], (4.0, 0.05), None, tmp_path / "b", strength=0.5)
    assert runtime_b.describe(spec) == torch_b.describe(spec) == "strength 0.5"
    for ours, theirs in ((runtime_b, torch_b), (runtime_c, torch_c)):
        diff = np.abs(ours(wplus, spec).astype(int) - theirs(wplus, spec).astype(int))
        assert diff.max() <= 2, f"{ours.label}: {diff.max()}"  # uint8 images; fp32 graphs agree to ~1e-5
    # The strength reaches the runtime: the default (the edit's own, 1) gives another image.
    _, runtime_default = world.methods(["B"], None, None, tmp_path / "b")
    assert np.abs(runtime_default(wplus, spec).astype(int) - runtime_b(wplus, spec).astype(int)).max() > 2
