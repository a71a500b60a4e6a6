"""fs3 and S statistics on Ray (precompute/distributed.py): units, parts, resume, retries, the CLI.

One embedded Ray (2 CPUs, loopback only) serves the whole module: Ray's start-up costs seconds.
"""
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from cli import main
from precompute import global_directions as gd
from precompute.checkpoints import load_generator
from precompute.clip_model import load_clip

try:
    from precompute.distributed import import_ray, ray_fs3, ray_style_statistics

    ray = import_ray()  # sets up the loopback-only embedded Ray before ray is first imported
except ValueError as err:  # ray not installed: `pip install -e '.[test]'` pulls it
    pytest.skip(f"ray is not importable ({err})", allow_module_level=True)

pytestmark = pytest.mark.ray
N = 3  # latents per channel where the numbers are all that matters


@pytest.fixture(scope="module")
def local_ray():
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="ERROR")
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def setup(models):
    torch.set_num_threads(1)
    gen, clip = load_generator(models["generator"]), load_clip(weights=models["clip"])
    mean, std = gd.style_statistics(gen, 512, batch=200)
    return gen, clip, mean, std


def single(setup, **kw):
    gen, clip, mean, std = setup
    return gd.compute_fs3(gen, clip, mean, std, n_images=kw.pop("n_images", N), progress=False, **kw)


def on_ray(setup, workdir, **kw):
    gen, clip, mean, std = setup
    kw.setdefault("n_images", N)
    return ray_fs3(gen, clip, mean, std, workdir, workers=kw.pop("workers", 2), progress=False, **kw)


# --- units and their parts (no Ray) --------------------------------------------------------------------
def test_units_tile_each_layer_on_the_render_grid(setup):
    layout = setup[0].layout
    rows = gd.fs3_rows(layout, 16)
    units = gd.plan_units(layout, rows, 5, group=4)  # 5 channels rounded up to 8 (a multiple of the group)
    layers = {l.name: (r - l.channels, r) for l, r in zip(layout.conv_layers, gd.layer_boundaries(layout))}
    assert [u[1:] for u in units][:5] == [(0, 8), (8, 16), (16, 24), (24, 32), (32, 40)]
    assert units[-1][2] == rows and all(b - a <= 8 for _, a, b in units)
    for name, a, b in units:  # inside one layer, starting on its grid
        assert layers[name][0] <= a < b <= layers[name][1] and (a - layers[name][0]) % 4 == 0
    assert np.array_equal(np.concatenate([np.arange(a, b) for _, a, b in units]), np.arange(rows))  # tiles, in order
    # The render grid restarts at every layer: a group never mixes two layers' channels.
    assert gd.channel_groups(layout, 30, 40, 6) == [(30, 32), (32, 38), (38, 40)]


def test_unit_parts_merge_to_the_unsplit_table_and_are_idempotent(setup, tmp_path):
    gen, clip, mean, std = setup
    full = single(setup, batch=4 * N)  # groups of 2 channels: unit bounds must fall on the grid
    units = gd.plan_units(gen.layout, gen.layout.conv_channels, 7, gd.channel_group(N, 4 * N))
    assert {b - a for _, a, b in units} == {8}
    for _, a, b in units:
        single(setup, batch=4 * N, unit=(a, b), workdir=tmp_path)
    merged = gd.merge_units(tmp_path, gen.layout, out=tmp_path / "fs3.npy")
    assert np.array_equal(merged, full)  # the same generator calls: bit for bit
    part = gd.unit_path(tmp_path, units[0][1:])
    before = part.read_bytes()
    seen = []
    single(setup, batch=4 * N, unit=units[0][1:], workdir=tmp_path, on_progress=seen.append)
    assert not seen and part.read_bytes() == before  # a complete part is final: nothing recomputed or rewritten
    config = gd.fs3_settings(gen, clip, mean, std, N)
    assert gd.check_units(tmp_path, units, config) == {(a, b): b - a for _, a, b in units}
    with pytest.raises(ValueError, match="not a unit of this run"):
        gd.check_units(tmp_path, gd.plan_units(gen.layout, gen.layout.conv_channels, 16), config)
    with pytest.raises(ValueError, match="n_images"):
        gd.check_units(tmp_path, units, gd.fs3_settings(gen, clip, mean, std, N + 1))
    gd.unit_path(tmp_path, units[1][1:]).unlink()
    with pytest.raises(ValueError, match="rows 8..16 are missing"):
        gd.merge_units(tmp_path)


def test_statistics_sums_of_ranges_add_up_to_one_run(small_gen):
    n, batch = 700, 128
    mean, std = gd.style_statistics(small_gen, n, seed=2, batch=batch)
    shift = gd.statistics_shift(small_gen, n, seed=2, batch=batch)
    sums = sum(gd.statistics_sums(small_gen, a, min(256, n - a), shift, seed=2, batch=batch) for a in (0, 256, 512))
    split = gd.finish_statistics(sums, n, shift)
    np.testing.assert_array_max_ulp(split[0], mean, maxulp=1)
    np.testing.assert_array_max_ulp(split[1], std, maxulp=1)


def test_single_process_path_never_imports_ray(models, tmp_path):
    code = ("import sys; from click.testing import CliRunner; from cli import main; "
            f"r = CliRunner().invoke(main, ['fs3', '--generator', r'{models['generator']}', '--clip', r'{models['clip']}', "
            f"'--s-stats', r'{models['s_stats']}', '--images', '2', '--max-resolution', '4', '--workdir', r'{tmp_path}']); "
            "assert r.exit_code == 0, r.output; assert 'ray' not in sys.modules, 'ray imported'")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=os.getcwd())
    assert res.returncode == 0, res.stderr[-2000:]


# --- on Ray ----------------------------------------------------------------------------------------------
def test_ray_table_equals_single_process_and_rerun_skips(local_ray, setup, tmp_path):
    full = single(setup)
    report = on_ray(setup, tmp_path, unit_channels=8, out=tmp_path / "fs3.npy")
    assert report.workers == 2 and report.nodes == 1 and not report.retried
    assert report.computed_units == report.units == 7  # the default batch renders a whole layer per group
    assert np.abs(report.table - full).max() <= 1e-6
    assert np.array_equal(np.load(tmp_path / "fs3.npy"), report.table)
    assert not list(tmp_path.glob(".*"))  # no probe or temporary files left
    again = on_ray(setup, tmp_path)
    assert again.computed_units == 0 and again.workers == 0 and np.array_equal(again.table, report.table)


def test_killed_worker_is_retried_and_resumes_its_unit(local_ray, setup, tmp_path):
    # N = 40 with one channel per group: a 16-channel unit takes about a second, far longer than the
    # kill takes to land; parts are saved after every group, so the retry resumes where the kill hit.
    kw = dict(n_images=40, batch=80, max_resolution=4, unit_channels=16)
    reference = single(setup, **{k: kw[k] for k in ("n_images", "batch", "max_resolution")})
    events, killed, messages = [], [], []

    def kill_once(event):
        events.append(event)
        if event.kind == "progress" and not killed:
            killed.append((event.unit, event.pid, event.done))
            os.kill(event.pid, signal.SIGKILL)

    report = on_ray(setup, tmp_path, save_every_s=0, on_event=kill_once, log=messages.append, **kw)
    unit, pid, done = killed[0]
    assert report.retried == [f"unit conv1 rows {unit[0]}..{unit[1]}"]
    assert any(f"retrying unit conv1 rows {unit[0]}..{unit[1]}" in m and f"(pid {pid}) died" in m for m in messages)
    after = [e for e in events if e.unit == unit and e.pid != pid]
    assert after[0].kind == "start" and min(e.done for e in after[1:]) > done  # resumed from the saved progress
    assert np.abs(report.table - reference).max() <= 1e-6


def test_worker_dying_past_its_retries_is_a_clear_error(local_ray, setup, tmp_path):
    from precompute.distributed import WorkerFailed

    killed = set()

    def kill(event):
        # progress the worker sent before it died can still arrive: kill each worker once
        if event.kind == "progress" and event.pid not in killed:
            killed.add(event.pid)
            os.kill(event.pid, signal.SIGKILL)

    with pytest.raises(WorkerFailed, match=r"unit conv1 rows 0..16 failed: its worker died more often than the 0 "
                                           r"restarts allowed.*rerun to resume"):
        on_ray(setup, tmp_path, n_images=40, batch=80, max_resolution=4, unit_channels=16, workers=1,
               max_retries=0, on_event=kill)
    assert len(killed) == 1  # no restart was allowed


def test_interrupted_run_resumes(local_ray, setup, tmp_path):
    full = single(setup, batch=2 * N)
    messages = []

    def interrupt(event):
        if event.kind == "progress" and event.done >= 3:
            raise KeyboardInterrupt  # what Ctrl-C raises in the driver

    with pytest.raises(KeyboardInterrupt):
        on_ray(setup, tmp_path, batch=2 * N, unit_channels=32, save_every_s=0, on_event=interrupt,
               log=messages.append)
    assert "rerun the same command to resume" in messages[-1]
    assert any(done >= 3 for done, _ in gd.unit_status(tmp_path).values())  # progress was kept
    report = on_ray(setup, tmp_path, batch=2 * N, unit_channels=32)
    assert report.channels < gd.fs3_rows(setup[0].layout)  # only what was left
    assert np.abs(report.table - full).max() <= 1e-6


def test_ray_statistics_equal_single_process(local_ray, small_gen):
    mean, std = gd.style_statistics(small_gen, 3000, seed=1, batch=256)
    r_mean, r_std, report = ray_style_statistics(small_gen, 3000, seed=1, batch=256, workers=2, progress=False)
    assert report.workers == 2 and report.units >= 2
    np.testing.assert_array_max_ulp(r_mean, mean, maxulp=1)
    np.testing.assert_array_max_ulp(r_std, std, maxulp=1)


def test_cli(local_ray, models, tmp_path):
    run = lambda *args: CliRunner().invoke(main, [str(a) for a in args])
    gen, clip = models["generator"], models["clip"]
    res = run("fs3", "--generator", gen, "--clip", clip, "--workers", 2, "--workdir", tmp_path / "w")
    assert res.exit_code == 2 and "--workers" in res.output and "--ray" in res.output
    res = run("fs3", "--generator", gen, "--clip", clip, "--ray", "--shard", "0/2", "--workdir", tmp_path / "w")
    assert res.exit_code == 2 and "--shard" in res.output
    assert not (tmp_path / "w").exists()

    res = run("s-stats", "--generator", gen, "-n", 9000, "--ray", "--workers", 2, "--out", tmp_path / "s.npz")
    assert res.exit_code == 0, res.output
    assert "S statistics on Ray: 2 CPU worker(s)" in res.output
    args = ("fs3", "--generator", gen, "--clip", clip, "--s-stats", tmp_path / "s.npz", "--max-resolution", 8,
            "--workdir", tmp_path / "w", "--ray", "--workers", 2)
    res = run(*args, "--images", 2, "--out", tmp_path / "fs3.npy")
    assert res.exit_code == 0, res.output
    assert "fs3 on Ray: 2 CPU worker(s) on 1 node(s)" in res.output and "channels/s" in res.output
    res = run("fs3-merge", "--workdir", tmp_path / "w", "--out", tmp_path / "merged.npy")
    assert res.exit_code == 0, res.output
    assert np.array_equal(np.load(tmp_path / "merged.npy"), np.load(tmp_path / "fs3.npy"))
    res = run(*args, "--images", 3)  # other settings, same work directory
    assert res.exit_code == 2 and "error:" in res.output and "n_images" in res.output


def test_missing_ray_is_a_clear_error(monkeypatch):
    import precompute.distributed as distributed

    monkeypatch.setitem(sys.modules, "ray", None)  # what an environment without ray looks like to `import`
    with pytest.raises(ValueError, match=r"styleclip-edge\[distributed\]"):
        distributed.import_ray()
