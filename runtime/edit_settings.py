"""Tuned edit settings a bundle can carry (manifest "edit_settings"), keyed by prompt.

Method C's best neutral text, alpha and beta and a mapper's best strength depend on the prompt and the
models (the demo's came from `cli.py evaluate` sweeps). The bundle records them so that `cli.py edit`
and embedding apps start from what was measured best; anything the caller sets explicitly wins.

  {"a face with purple hair": {"neutral": "a face", "alpha": 5.0, "beta": 0.35, "strength": 2.0}, ...}
"""
from __future__ import annotations

import numbers

from . import edit_math

RANGES = {"alpha": edit_math.ALPHA_RANGE, "beta": edit_math.BETA_RANGE, "strength": edit_math.STRENGTH_RANGE}


def prompt_key(prompt: str) -> str:
    """Prompts match case- and whitespace-insensitively."""
    return " ".join(prompt.lower().split())


def check_edit_settings(settings) -> dict:
    """`settings` with normalized prompt keys, or ValueError naming the prompt and what is wrong."""
    if not isinstance(settings, dict):
        raise ValueError("edit settings must map prompts to settings, e.g. "
                         '{"a face with purple hair": {"alpha": 5, "beta": 0.35}}')
    out = {}
    for prompt, entry in settings.items():
        if not isinstance(prompt, str) or not prompt.strip():
            raise ValueError(f"edit settings: {prompt!r} is not a prompt")
        if not isinstance(entry, dict):
            raise ValueError(f"edit settings for {prompt!r} must be an object with neutral/alpha/beta/strength")
        if unknown := sorted(set(entry) - {"neutral", *RANGES}):
            raise ValueError(f"edit settings for {prompt!r}: unknown key(s) {unknown}; "
                             f"allowed: neutral, {', '.join(RANGES)}")
        if "neutral" in entry and (not isinstance(entry["neutral"], str) or not entry["neutral"].strip()):
            raise ValueError(f"edit settings for {prompt!r}: 'neutral' must be a non-empty text")
        for key, bounds in RANGES.items():
            if key in entry:
                value = entry[key]
                if not isinstance(value, numbers.Real) or isinstance(value, bool):
                    raise ValueError(f"edit settings for {prompt!r}: {key} must be a number, got {value!r}")
                edit_math.check_range(f"edit settings for {prompt!r}: {key}", value, bounds)
        if (key := prompt_key(prompt)) in out:
            raise ValueError(f"edit settings list {prompt!r} twice (prompts match ignoring case and spaces)")
        out[key] = dict(entry)
    return out
