"""A resumable training loop shared by the training commands (mappers, the demo models).

Each step's randomness should come from `step_rng(seed, step)` / `step_generator(seed, step)`, so a run
that is stopped and resumed from its checkpoint takes exactly the steps an uninterrupted run takes.
A checkpoint belongs to one set of hyperparameters: resuming with others is refused.
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from tqdm.auto import tqdm

from runtime.files import atomic_path

CHECKPOINT = "checkpoint.pt"


def step_rng(seed: int, step: int) -> np.random.Generator:
    return np.random.default_rng([seed, step])


def step_generator(seed: int, step: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(step_rng(seed, step).integers(2**62)))


def save_checkpoint(workdir, step: int, hparams: dict, model: torch.nn.Module, optimizer, history: list) -> Path:
    path = Path(workdir) / CHECKPOINT
    state = {"step": step, "hparams": json.dumps(hparams, sort_keys=True), "model": model.state_dict(),
             "optimizer": optimizer.state_dict(), "history": json.dumps(history)}
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    return path


def load_checkpoint(workdir, hparams: dict, model: torch.nn.Module, optimizer) -> tuple[int, list]:
    """(step reached, history) after restoring `workdir`'s checkpoint of this run; (0, []) without one."""
    path = Path(workdir) / CHECKPOINT
    if not path.is_file():
        return 0, []
    state = torch.load(path, map_location="cpu", weights_only=True)
    saved = json.loads(state["hparams"])
    if saved != json.loads(json.dumps(hparams, sort_keys=True)):
        diff = sorted(k for k in set(saved) | set(hparams) if saved.get(k) != hparams.get(k))
        raise ValueError(f"{path} belongs to a run with other settings ({', '.join(diff)} differ); "
                         "rerun with the same options to resume, or pass a fresh --workdir")
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    return int(state["step"]), json.loads(state["history"])


def run_training(*, workdir, hparams: dict, model: torch.nn.Module, optimizer, steps: int,
                 step_fn: Callable[[int], dict], lr_fn: Callable[[int, dict], float], checkpoint_every: int,
                 stop_at: int | None = None, desc: str = "train", progress: bool = True) -> dict:
    """Resume from `workdir` and run `step_fn(step)` (it returns the floats to log) up to `steps`, setting each
    param group's lr to `lr_fn(step, group)` first; checkpoint every `checkpoint_every` steps and at the end.
    `stop_at` ends early after that step (the next call resumes there).
    Returns {"step", "history", "seconds", "resumed_from"}."""
    Path(workdir).mkdir(parents=True, exist_ok=True)
    start, history = load_checkpoint(workdir, hparams, model, optimizer)
    end = steps if stop_at is None else min(steps, stop_at)
    t0 = time.perf_counter()
    model.train()
    done = start
    with tqdm(range(start, end), desc=desc, initial=start, total=steps, disable=not progress, dynamic_ncols=True) as bar:
        for step in bar:
            for group in optimizer.param_groups:
                group["lr"] = lr_fn(step, group)
            logs = step_fn(step)
            if not all(math.isfinite(float(v)) for v in logs.values()):
                raise FloatingPointError(f"{desc}: non-finite values at step {step}: {logs}")
            done = step + 1
            history.append([step] + [round(float(v), 5) for v in logs.values()])
            bar.set_postfix({k: f"{v:.4g}" for k, v in logs.items()}, refresh=False)
            if done % checkpoint_every == 0 and done < end:
                save_checkpoint(workdir, done, hparams, model, optimizer, history)
    # The final checkpoint is written only after a step completes: an interruption inside a step
    # resumes from the last periodic checkpoint.
    if done > start:
        save_checkpoint(workdir, done, hparams, model, optimizer, history)
    model.eval()
    return {"step": done, "history": history, "seconds": time.perf_counter() - t0, "resumed_from": start}
