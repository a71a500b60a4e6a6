"""scripts/gpu_bench.py on the CPU with a tiny generator (the suite has no GPU; the GPU table is a command)."""
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_script_runs_every_candidate_on_cpu(tmp_path):
    out = tmp_path / "gpu.json"
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "gpu_bench.py"), "--device", "cpu", "--tiny",
                           "--repeats", "1", "--warmup", "0", "--batch", "2", "--out", str(out)],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())
    rows = {r["candidate"]: r for r in result["rows"]}
    assert set(rows) == {f"{form} {mode} {p}" for form in ("generator", "rewrite") for mode in ("eager", "torchscript")
                         for p in ("fp32", "fp16")}
    assert result["device"] == "cpu" and result["batch"] == 2 and result["size"] == 32
    for name, row in rows.items():
        assert row["median_ms"] > 0 and row["images_per_s"] > 0
        if "fp32" in name:  # the same images as fp32 eager: TorchScript and the rewrite change no pixel
            assert row["psnr_vs_fp32_eager"] >= 50, row
        else:  # fp16 really ran in half precision, and stayed close
            assert 35 <= row["psnr_vs_fp32_eager"] < 200, row
    assert "| rewrite torchscript fp16 |" in proc.stdout
