"""Global-direction precompute on Ray (DESIGN §13): every core of one machine, every GPU of a box, or a cluster.

fs3 is cut into work units of (layer, channel range) (global_directions.plan_units). One actor per worker
(one CPU core each, or one GPU where the cluster has GPUs) receives the generator, CLIP and the S
statistics once through Ray's object store and computes units with `compute_fs3(unit=...)`, which writes
each unit's part file into the work directory (atomically, with progress inside a unit). So a rerun skips
the complete parts and resumes a partial one, a worker process that dies is restarted by Ray and its unit
retried from the part's saved progress (max_restarts / max_task_retries), and the table is
`merge_units`, the same checks and join as the shard merge. Units render on the same channel grid as a
single process, so the table equals the single-process one (bit for bit on one kind of device).

The S statistics split the same way: ranges of whole batches of the one sample stream, each summed in
float64 around a common shift (global_directions.statistics_sums), added up in order.

Ray is optional (`pip install 'styleclip-edge[distributed]'`) and imported only here, only when asked.
The embedded Ray (no address) keeps every address on 127.0.0.1; `address` joins an existing cluster, whose
nodes must all see the work directory at the same path (a shared filesystem) and have this project installed.
"""
from __future__ import annotations

import contextlib
import ipaddress
import os
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
from tqdm import tqdm

from . import global_directions as gd

# Ray advertises (and binds) the machine's outward address by default; its non-cluster mode, the one it
# uses on macOS/Windows, keeps everything on 127.0.0.1, which is all a one-machine Ray needs.
LOOPBACK_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
UNIT_CHANNELS = 16  # default channels per unit: many units for balance, each a few minutes at most on a GPU
MAX_RETRIES = 3  # restarts of a dead worker, and retries of the unit it was computing
POLL_S = 0.2


class WorkerFailed(RuntimeError):
    """A worker died more often than Ray may restart it; the finished parts are kept."""


def import_ray(address: str | None = None):
    """`ray`, set up for an embedded (loopback) Ray when `address` is None or a loopback address."""
    if "ray" not in sys.modules:
        if address is None or is_loopback(address):
            os.environ.setdefault(LOOPBACK_ENV, "0")
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no reports to the network from our runs
    try:
        import ray
    except ModuleNotFoundError as err:
        if err.name != "ray":
            raise
        raise ValueError("--ray needs Ray: pip install 'styleclip-edge[distributed]' (or pip install ray)") from None
    return ray


def is_loopback(address: str) -> bool:
    host = address.removeprefix("ray://").rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@contextlib.contextmanager
def ray_session(address: str | None = None, cpus: int | None = None):
    """Connected Ray: an existing connection as it is (left open), else the cluster at `address`, else a
    new embedded Ray with `cpus` CPUs; what this starts it stops."""
    ray = import_ray(address)
    if ray.is_initialized():
        yield ray
        return
    if address is None:  # "local": a new Ray, never one that happens to run on the machine
        ray.init(address="local", num_cpus=cpus, include_dashboard=False, logging_level="WARNING")
    else:
        try:
            ray.init(address=address, logging_level="WARNING")
        except ConnectionError as err:
            raise ConnectionError(f"{err}; is the cluster up (`ray status --address {address}`)? A cluster with "
                                  "token authentication (Ray's default) also needs RAY_AUTH_MODE=token and its token "
                                  "(~/.ray/auth_token or RAY_AUTH_TOKEN) here: see docs/distributed.md") from None
    try:
        yield ray
    finally:
        ray.shutdown()


# --- the remote side ------------------------------------------------------------------------------------
class Hub:
    """The driver's post box: workers fetch the model references from it and post their events to it
    (fire and forget); the driver collects the events. (Model references reach the workers through it
    rather than as constructor arguments: the driver holds them for the whole run, so a restarted
    worker always finds them.)"""

    def __init__(self, models: dict):
        self.models = models
        self.events = []

    def model_refs(self) -> dict:
        return self.models

    def post(self, *event):
        self.events.append(event)

    def take(self) -> list:
        events, self.events = self.events, []
        return events


class Worker:
    """One worker process: the models once (from the object store), then any number of units."""

    def __init__(self, hub_name: str, threads: int, gpu: bool):
        import ray
        import torch

        torch.set_num_threads(threads)
        device = "cuda" if gpu else "cpu"
        hub = ray.get_actor(hub_name)  # by name: a handle as constructor argument counts as one in the object store
        refs = ray.get(hub.model_refs.remote())
        loaded = dict(zip(refs, ray.get(list(refs.values()))))  # from the object store, once per worker
        self.gen = loaded["generator"].to(device).eval()
        self.clip = loaded["clip"].to(device).eval() if "clip" in loaded else None
        # Object-store arrays are read-only views; torch wants writable ones.
        self.mean, self.std = (None, None) if "stats" not in loaded else (np.array(a) for a in loaded["stats"])
        self.hub = hub

    def hello(self, probe: str) -> dict:
        import ray

        return {"pid": os.getpid(), "node": ray.get_runtime_context().get_node_id(),
                "sees_workdir": Path(probe).is_file()}

    def fs3_unit(self, unit: tuple[int, int], workdir: str, settings: dict) -> float:
        """Computes (or resumes) one unit into its part file; returns this process's CPU seconds for it."""
        pid, cpu = os.getpid(), time.process_time()
        self.hub.post.remote("start", unit, 0, pid)
        gd.compute_fs3(self.gen, self.clip, self.mean, self.std, unit=unit, workdir=workdir, progress=False,
                       on_progress=lambda done: self.hub.post.remote("progress", unit, done, pid), **settings)
        return time.process_time() - cpu

    def statistics_unit(self, start: int, n: int, shift: np.ndarray, psi: float, seed: int, batch: int) -> np.ndarray:
        self.hub.post.remote("start", (start, start + n), 0, os.getpid())
        return gd.statistics_sums(self.gen, start, n, shift, psi, seed, batch)


# --- the driver -----------------------------------------------------------------------------------------
@dataclass
class Event:
    kind: str  # "start" (a worker began a unit) or "progress" (rows of the unit done)
    unit: tuple[int, int]
    done: int
    pid: int


@dataclass
class RunReport:
    workers: int
    nodes: int
    gpu: bool
    units: int  # units in the plan
    computed_units: int  # units computed (or resumed) by this run
    channels: int  # rows computed by this run
    seconds: float  # whole run, Ray start-up and model transfer included
    compute_seconds: float  # from all workers ready to the last unit done
    cpu_seconds: float = 0.0  # CPU time the workers spent in their units (all their threads, Ray's included)
    retried: list = field(default_factory=list)  # units retried after their worker died
    table: np.ndarray | None = None

    @property
    def channels_per_s(self) -> float:
        return self.channels / self.compute_seconds if self.compute_seconds > 0 else float("nan")


def _resources(ray, workers: int | None, threads: int) -> tuple[int, bool]:
    res = ray.cluster_resources()
    gpus = int(res.get("GPU", 0))
    if gpus:
        return min(workers or gpus, gpus), True
    cpus = int(res.get("CPU", 0))
    count = workers or max(1, cpus // threads)
    if count * threads > cpus:
        raise ValueError(f"{count} workers x {threads} threads need {count * threads} CPUs; this Ray cluster has {cpus}")
    return count, False


class _Pool:
    """Actors that keep one unit each in flight; the log says when a unit had to be retried."""

    def __init__(self, ray, models: dict, count: int, threads: int, gpu: bool, workdir: Path | None, log,
                 max_retries: int):
        self.ray, self.log, self.max_retries = ray, log, max_retries
        hub_name = f"styleclip-hub-{uuid.uuid4().hex}"
        self.hub = ray.remote(num_cpus=0)(Hub).options(name=hub_name).remote(models)
        cls = ray.remote(Worker).options(num_cpus=threads, num_gpus=1 if gpu else 0,
                                         max_restarts=max_retries, max_task_retries=max_retries)
        self.actors = [cls.remote(hub_name, threads, gpu) for _ in range(count)]
        try:
            self.nodes = self._check(workdir)
        except BaseException:
            self.close()
            raise
        self.started: dict[tuple[int, int], int] = {}
        self.retried: list[tuple[int, int]] = []

    def _check(self, workdir: Path | None) -> int:
        """Wait for every worker; with `workdir`, check that each sees it (workers write the parts
        themselves). Returns the number of nodes the workers run on."""
        probe = workdir / f".ray_probe_{uuid.uuid4().hex}" if workdir is not None else None
        if probe is not None:
            probe.touch()
        try:
            hello = self.ray.get([a.hello.remote(str(probe) if probe else "") for a in self.actors])
        finally:
            if probe is not None:
                probe.unlink()
        blind = [h for h in hello if probe is not None and not h["sees_workdir"]]
        if blind:
            raise ValueError(f"{len(blind)} of {len(hello)} workers cannot see the work directory {workdir} (nodes "
                             f"{sorted({h['node'][:8] for h in blind})}); put it on a filesystem every node mounts "
                             "at the same path")
        return len({h["node"] for h in hello})

    def run(self, units: list, submit: Callable, on_done: Callable, on_event: Callable, label: Callable):
        """Compute `units` with submit(actor, unit) -> ref, calling on_done(unit, result) in completion order."""
        ray, todo, pending = self.ray, list(units), {}
        idle = list(self.actors)
        while todo or pending:
            while idle and todo:
                actor, unit = idle.pop(), todo.pop(0)
                pending[submit(actor, unit)] = (actor, unit)
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=POLL_S)
            for event in ray.get(self.hub.take.remote()):
                event = Event(*event)
                if event.kind == "start":
                    if event.unit in self.started and event.unit not in self.retried:
                        self.retried.append(event.unit)
                    if event.unit in self.started:
                        self.log(f"retrying {label(event.unit)} on worker pid {event.pid}: its worker "
                                 f"(pid {self.started[event.unit]}) died")
                    self.started[event.unit] = event.pid
                on_event(event)
            for ref in ready:
                actor, unit = pending.pop(ref)
                try:
                    result = ray.get(ref)
                except ray.exceptions.RayTaskError as err:  # raised by our code inside the worker
                    cause = err.cause
                    raise (cause if isinstance(cause, (ValueError, OSError)) else err) from None
                except ray.exceptions.RayActorError as err:
                    raise WorkerFailed(f"{label(unit)} failed: its worker died more often than the "
                                       f"{self.max_retries} restarts allowed ({err.__class__.__name__}); the "
                                       "finished parts are kept, rerun to resume") from None
                on_done(unit, result)
                idle.append(actor)

    def close(self):
        for actor in self.actors + [self.hub]:
            with contextlib.suppress(Exception):
                self.ray.kill(actor, no_restart=True)


def _interrupted_note(log, what: str):
    log(f"interrupted: {what}; rerun the same command to resume")


def ray_fs3(gen, clip, mean: np.ndarray, std: np.ndarray, workdir, *, n_images: int = 100, seed: int = 0,
            alpha: float = 5.0, max_resolution: int | None = None, psi: float = gd.PSI, batch: int | None = None,
            compile: bool = False, unit_channels: int = UNIT_CHANNELS, workers: int | None = None, threads: int = 1,
            address: str | None = None, save_every_s: float = 30.0, out=None, progress: bool = True,
            log: Callable[[str], None] | None = None, on_event: Callable[[Event], None] | None = None,
            max_retries: int = MAX_RETRIES) -> RunReport:
    """The whole fs3 table computed by Ray workers into `workdir`'s unit parts, then merged (and with `out`
    saved); see the module docstring. `workers`: actors [one per CPU (threads each), or per GPU]; an
    embedded Ray gets workers x threads CPUs. `on_event(Event)` sees every worker event (tests)."""
    t0 = time.perf_counter()
    log = log or (lambda message: tqdm.write(message, file=sys.stderr))
    on_event = on_event or (lambda event: None)
    workdir = Path(workdir).resolve()
    settings = gd.fs3_settings(gen, clip, mean, std, n_images, seed, alpha, max_resolution, psi)
    layout = gen.layout
    with ray_session(address, None if address else (workers or os.cpu_count()) * threads) as ray:
        count, gpu = _resources(ray, workers, threads)
        batch = batch or gd.default_batch(gen, gd.GPU_BATCH_BYTES if gpu else gd.CPU_BATCH_BYTES)
        units = gd.plan_units(layout, settings["rows"], unit_channels, gd.channel_group(n_images, batch))
        label = {(a, b): f"unit {name} rows {a}..{b}" for name, a, b in units}.__getitem__
        workdir.mkdir(parents=True, exist_ok=True)
        done = gd.check_units(workdir, units, settings)
        todo = [(a, b) for _, a, b in units if done.get((a, b), 0) < b - a]
        rows_left = sum(b - a - done.get((a, b), 0) for a, b in todo)
        report = RunReport(workers=0, nodes=0, gpu=gpu, units=len(units), computed_units=len(todo), channels=rows_left,
                           seconds=0.0, compute_seconds=0.0)
        if todo:
            worker_settings = {"n_images": n_images, "seed": seed, "alpha": alpha, "max_resolution": max_resolution,
                               "psi": psi, "batch": batch, "compile": compile, "save_every_s": save_every_s}
            models = {"generator": ray.put(gen), "clip": ray.put(clip), "stats": ray.put((mean, std))}
            pool = bar = None
            progress_of = {unit: done.get(unit, 0) for unit in todo}

            complete = set()

            def seen(event: Event):
                # A unit's last events may arrive after its result; a retried one may resume below what it showed.
                if event.kind == "progress" and event.unit not in complete:
                    bar.update(event.done - progress_of[event.unit])
                    progress_of[event.unit] = event.done
                on_event(event)

            def finished(unit, cpu_seconds):
                bar.update(unit[1] - unit[0] - progress_of[unit])
                progress_of[unit] = unit[1] - unit[0]
                complete.add(unit)
                report.cpu_seconds += cpu_seconds

            try:
                pool = _Pool(ray, models, min(count, len(todo)), threads, gpu, workdir, log, max_retries)
                report.workers, report.nodes = len(pool.actors), pool.nodes
                bar = tqdm(total=settings["rows"], initial=settings["rows"] - rows_left, unit="ch", smoothing=0.05,
                           desc=f"fs3 on {report.workers} Ray {'GPU' if gpu else 'CPU'} workers", disable=not progress)
                t_ready = time.perf_counter()
                pool.run(todo, lambda actor, unit: actor.fs3_unit.remote(unit, str(workdir), worker_settings),
                         finished, seen, label)
                report.compute_seconds = time.perf_counter() - t_ready
                report.retried = [label(unit) for unit in pool.retried]
            except KeyboardInterrupt:
                complete = sum(1 for done_, total in gd.unit_status(workdir).values() if done_ == total)
                _interrupted_note(log, f"{complete}/{len(units)} units complete in {workdir}")
                raise
            finally:
                if bar is not None:
                    bar.close()
                if pool is not None:
                    pool.close()
    report.table = gd.merge_units(workdir, layout, out)
    report.seconds = time.perf_counter() - t0
    return report


def ray_style_statistics(gen, n: int = 100_000, psi: float = gd.PSI, seed: int = 0, batch: int = 4096,
                         workers: int | None = None, threads: int = 1, address: str | None = None,
                         progress: bool = True, log: Callable[[str], None] | None = None,
                         max_retries: int = MAX_RETRIES) -> tuple[np.ndarray, np.ndarray, RunReport]:
    """style_statistics split over Ray workers: (mean, std, report), equal to the single-process numbers
    (same generator calls, float64 sums added in range order; at most one float32 ulp apart)."""
    t0 = time.perf_counter()
    log = log or (lambda message: tqdm.write(message, file=sys.stderr))
    if n < 1 or batch < 1:
        raise ValueError(f"need n >= 1 and batch >= 1, got n={n}, batch={batch}")
    shift = gd.statistics_shift(gen, n, psi, seed, batch)
    with ray_session(address, None if address else (workers or os.cpu_count()) * threads) as ray:
        count, gpu = _resources(ray, workers, threads)
        batches = -(-n // batch)
        per_unit = -(-batches // (4 * count))  # ~4 units per worker, whole batches each
        units = [(a, min(a + per_unit * batch, n)) for a in range(0, n, per_unit * batch)]
        sums = {}
        pool = None
        bar = tqdm(total=n, unit="z", desc="S statistics on Ray", disable=not progress)
        try:
            pool = _Pool(ray, {"generator": ray.put(gen)}, min(count, len(units)), threads, gpu, None, log,
                         max_retries)
            t_ready = time.perf_counter()

            def finished(unit, result):
                sums[unit] = result
                bar.update(unit[1] - unit[0])

            pool.run(units, lambda actor, unit: actor.statistics_unit.remote(unit[0], unit[1] - unit[0], shift, psi,
                                                                             seed, batch),
                     finished, lambda event: None, lambda unit: f"samples {unit[0]}..{unit[1]}")
            report = RunReport(workers=len(pool.actors), nodes=pool.nodes, gpu=gpu, units=len(units),
                               computed_units=len(units), channels=0, seconds=0.0,
                               compute_seconds=time.perf_counter() - t_ready,
                               retried=[f"samples {a}..{b}" for a, b in pool.retried])
        except KeyboardInterrupt:
            _interrupted_note(log, "nothing was written")
            raise
        finally:
            bar.close()
            if pool is not None:
                pool.close()
    total = np.zeros_like(next(iter(sums.values())))
    for unit in units:  # in sample order: the sum does not depend on which worker finished first
        total += sums[unit]
    mean, std = gd.finish_statistics(total, n, shift)
    report.seconds = time.perf_counter() - t0
    return mean, std, report

