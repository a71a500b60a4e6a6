"""CLI: checkpoint commands work and bad input exits 2 with one clear line and no traceback."""
import subprocess
import sys
from pathlib import Path

import torch

from precompute.checkpoints import load_generator, save_rosinality

ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args):
    return subprocess.run([sys.executable, str(ROOT / "cli.py"), *map(str, args)], capture_output=True, text=True, cwd=ROOT)


def test_convert_and_inspect(tmp_path, small_gen, wplus):
    save_rosinality(small_gen, tmp_path / "g.pt")
    res = run_cli("convert", tmp_path / "g.pt", tmp_path / "out" / "gen")
    assert res.returncode == 0, res.stderr
    converted = load_generator(tmp_path / "out" / "gen.safetensors")
    with torch.no_grad():
        assert torch.equal(converted(wplus), small_gen(wplus))
    res = run_cli("inspect", tmp_path / "out" / "gen.json")
    assert res.returncode == 0 and "StyleSpace: 11 layers, 256 channels" in res.stdout


def test_bad_checkpoint_exits_2_without_traceback(tmp_path, small_gen):
    sd = small_gen.state_dict()
    del sd["style.1.bias"]
    torch.save({"g_ema": sd}, tmp_path / "bad.pt")
    for args in (("inspect", tmp_path / "bad.pt"), ("inspect", tmp_path / "absent.pt"),
                 ("convert", tmp_path / "bad.pt", tmp_path / "o")):
        res = run_cli(*args)
        assert res.returncode == 2
        assert res.stderr.startswith("error: ") and "Traceback" not in res.stderr
    assert "missing keys: style.1.bias" in run_cli("inspect", tmp_path / "bad.pt").stderr
    assert not list(tmp_path.glob("o*"))  # nothing written
