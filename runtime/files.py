"""File helpers shared by every stage: hashing, all-or-nothing writes, reading user latents."""
from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import tempfile
from pathlib import Path


def slugify(text: str) -> str:
    """A name for files and bundle entries: lower case, runs of anything but a-z0-9 as one "_"."""
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")


def sha256_file(path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path, is_dir: bool = False):
    """Yield a temporary sibling of `path`; on success rename it into place, on failure remove it.

    Readers therefore see either the old file (or folder) or the complete new one, never a half.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if is_dir:
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    else:
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        tmp = Path(name)
    try:
        yield tmp
        # mkstemp/mkdtemp create private (0600/0700) entries; give the result the usual umask mode.
        os.chmod(tmp, (0o777 if is_dir else 0o666) & ~_umask())
        if is_dir and path.exists():
            # Swap folders: move the old one aside first so a failure never loses both.
            old = path.with_name(f".{path.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
        raise


def load_latents(path):
    """A numeric array from a user's .npy of W+ latents, never unpickled.

    An empty, truncated, pickled or otherwise unreadable file, an .npz archive or non-numeric values
    raise ValueError naming the file (a missing file stays an OSError); the caller checks the shape
    (Editor.check_wplus).
    """
    import pickle

    import numpy as np

    what = f"{path} is not a valid .npy of W+ latents [N, n_latent, style_dim]"
    try:
        data = np.load(path, allow_pickle=False)
    except (EOFError, ValueError, pickle.UnpicklingError) as err:
        if isinstance(err, EOFError):
            reason = "the file is empty or truncated"
        elif "pickle" in str(err).lower():  # numpy's message would suggest loading it unsafely
            reason = "it is not in .npy format, or holds pickled objects, which are never loaded"
        else:
            reason = str(err)
        raise ValueError(f"{what} ({reason}); save one with numpy.save") from None
    if not isinstance(data, np.ndarray):  # np.load opens .npz archives as NpzFile
        data.close()
        raise ValueError(f"{what} (it is an .npz archive); save one array with numpy.save")
    if data.dtype.kind not in "fiu":
        raise ValueError(f"{what} (its values are {data.dtype}, not real numbers)")
    return data
