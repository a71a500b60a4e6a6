"""fs3 on Ray, measured on the demo models: speed against the plain single process, and its three promises.

  speed  one plain process (1 torch thread), then in one embedded Ray with 2 CPUs: 1 worker, 2 workers
         (1 thread each); `--rounds` repeats the three in turn; medians of channels/s and the ratios
         ray(2)/ray(1) and ray(1)/single. Seconds count from all workers ready to the last unit done
         (Ray start-up and model transfer are printed apart). Also CPU seconds per channel (the
         process's own CPU time: what other load on the machine changes least).
  kill   2 workers; one worker process is SIGKILLed (as `kill -9 PID` would) while it computes a unit:
         the run completes, the unit is logged as retried.
  nodes  a 2-node Ray cluster on this machine (ray.cluster_utils: one head and one more raylet, 1 CPU each,
         all on 127.0.0.1), joined by address, as a stand-in for a real cluster.

Every table is compared with the single-process table (max abs difference). The load average is printed
around each step: on a shared machine the speed ratios are only as good as the quiet around them.

  .venv/bin/python scripts/fs3_ray.py [--images 8] [--max-resolution 8] [--rounds 1] [--checks speed,kill,nodes]
"""
from __future__ import annotations

import argparse
import os
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from precompute import global_directions as gd  # noqa: E402
from precompute.checkpoints import load_generator  # noqa: E402
from precompute.clip_model import load_clip  # noqa: E402
from precompute.distributed import import_ray, ray_fs3  # noqa: E402

DEMO = Path(__file__).resolve().parents[1] / "artifacts" / "demo"


def load() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=8, help="latents per channel (N)")
    ap.add_argument("--max-resolution", type=int, default=8, help="conv layers up to this size (8 px: 384 rows)")
    ap.add_argument("--unit-channels", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=1, help="repeats of single / ray 1 / ray 2 (speed)")
    ap.add_argument("--checks", default="speed,kill,nodes")
    args = ap.parse_args()
    checks = set(args.checks.split(","))
    ray = import_ray()  # loopback-only, before ray is imported anywhere
    torch.set_num_threads(1)
    gen, clip = load_generator(DEMO / "generator.json"), load_clip(weights=DEMO / "clip.json")
    mean, std = gd.load_style_statistics(DEMO / "s_stats.npz", gen.layout)
    settings = dict(n_images=args.images, max_resolution=args.max_resolution)
    rows = gd.fs3_rows(gen.layout, args.max_resolution)
    print(f"demo generator + CLIP, N = {args.images}, {rows} rows (conv layers <= {args.max_resolution} px), "
          f"units of {args.unit_channels} channels, torch {torch.__version__}, {os.cpu_count()} CPUs; {load()}")

    gd.compute_fs3(gen, clip, mean, std, shard=(0, rows // 2), progress=False, **settings)  # warm-up, untimed
    single, single_cpu = [], []

    def plain():
        t, cpu = time.perf_counter(), time.process_time()
        table = gd.compute_fs3(gen, clip, mean, std, progress=False, **settings)
        single.append(rows / (time.perf_counter() - t))
        single_cpu.append((time.process_time() - cpu) / rows)
        print(f"single process (1 thread): {single[-1]:.3g} channels/s, {1e3 * single_cpu[-1]:.0f} CPU ms per "
              f"channel; {load()}")
        return table

    reference = plain()

    def on_ray(workers: int, tmp: str, **kw):
        report = ray_fs3(gen, clip, mean, std, Path(tmp) / f"w{workers}_{time.monotonic_ns()}", workers=workers,
                         unit_channels=args.unit_channels, progress=False, **settings, **kw)
        diff = float(abs(report.table - reference).max())
        return report, diff

    with tempfile.TemporaryDirectory(prefix="fs3-ray-") as tmp:
        if checks & {"speed", "kill"}:
            t = time.perf_counter()
            ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="ERROR")
            print(f"embedded Ray with 2 CPUs started in {time.perf_counter() - t:.1f} s")
            try:
                if "speed" in checks:
                    speeds, cpus = {1: [], 2: []}, {1: [], 2: []}
                    for r in range(args.rounds):
                        if r:
                            plain()
                        for workers in (1, 2):
                            report, diff = on_ray(workers, tmp)
                            speeds[workers].append(report.channels_per_s)
                            cpus[workers].append(report.cpu_seconds / rows)
                            print(f"Ray {workers} worker(s): {report.channels_per_s:.3g} channels/s "
                                  f"({report.compute_seconds:.1f} s computing, {report.seconds:.1f} s with start-up), "
                                  f"{1e3 * cpus[workers][-1]:.0f} CPU ms per channel, max abs vs single {diff:.2g}; "
                                  f"{load()}")
                    s, r1, r2 = (statistics.median(v) for v in (single, speeds[1], speeds[2]))
                    c, c1, c2 = (statistics.median(v) for v in (single_cpu, cpus[1], cpus[2]))
                    print(f"medians over {args.rounds} round(s): single {s:.3g}, Ray 1 worker {r1:.3g}, Ray 2 workers "
                          f"{r2:.3g} channels/s -> 2 workers / 1 worker = {r2 / r1:.2f}x (bar >= 1.7), "
                          f"Ray 1 worker / single = {r1 / s:.3f} (bar >= 0.9); CPU ms per channel: single "
                          f"{1e3 * c:.0f}, Ray 1 worker {1e3 * c1:.0f} ({c1 / c - 1:+.1%}), 2 workers {1e3 * c2:.0f} "
                          f"({c2 / c - 1:+.1%})")
                if "kill" in checks:
                    killed, messages = [], []

                    def kill_one(event):
                        if event.kind == "progress" and not killed and event.unit[0] > 0:
                            killed.append(event)
                            os.kill(event.pid, signal.SIGKILL)  # what `kill -9 PID` does

                    report, diff = on_ray(2, tmp, on_event=kill_one, log=messages.append)
                    event = killed[0]
                    print(f"kill: SIGKILLed worker pid {event.pid} at {event.done} channels into unit rows "
                          f"{event.unit[0]}..{event.unit[1]}; log: {' | '.join(messages)}")
                    print(f"kill: completed, retried {report.retried}, max abs vs single {diff:.2g}; {load()}")
            finally:
                ray.shutdown()
        if "nodes" in checks:
            from ray.cluster_utils import Cluster

            t = time.perf_counter()
            cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
            cluster.add_node(num_cpus=1)
            print(f"2-node cluster at {cluster.address} started in {time.perf_counter() - t:.1f} s")
            try:
                report, diff = on_ray(None, tmp, address=cluster.address)
                nodes = sorted(node.node_ip_address for node in cluster.list_all_nodes())
                print(f"nodes: {report.workers} workers on {report.nodes} nodes ({', '.join(nodes)}): "
                      f"{report.channels_per_s:.3g} channels/s, max abs vs single {diff:.2g}; {load()}")
            finally:
                cluster.shutdown()


if __name__ == "__main__":
    main()
