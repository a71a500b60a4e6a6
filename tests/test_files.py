"""All-or-nothing writes: the result appears complete with the usual permissions, a failure leaves nothing."""
import os
import stat

import pytest

from runtime.files import atomic_path


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_written_file_and_folder_get_umask_permissions(tmp_path):
    with atomic_path(tmp_path / "a.bin") as tmp:
        tmp.write_bytes(b"x")
    with atomic_path(tmp_path / "d", is_dir=True) as tmp:
        (tmp / "f").write_text("y")
    assert stat.S_IMODE((tmp_path / "a.bin").stat().st_mode) == 0o666 & ~_umask()
    assert stat.S_IMODE((tmp_path / "d").stat().st_mode) == 0o777 & ~_umask()


def test_failure_leaves_old_content_and_no_temporary(tmp_path):
    target = tmp_path / "a.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("interrupted")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]


def test_long_names_fit_their_temporaries(tmp_path):
    name = "n" * 255  # the longest name a filesystem allows: temporaries must not add to it
    with atomic_path(tmp_path / name) as tmp:
        tmp.write_text("x")
    with atomic_path(tmp_path / ("d" * 255), is_dir=True) as tmp:
        (tmp / "f").write_text("y")
    assert (tmp_path / name).read_text() == "x" and (tmp_path / ("d" * 255) / "f").read_text() == "y"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([name, "d" * 255])


@pytest.mark.parametrize("name", ["n" * 256, "\u00e9" * 128, "d" * 300 + "/f"], ids=["256 bytes", "128 two-byte letters", "long folder"])
@pytest.mark.parametrize("is_dir", [False, True], ids=["file", "folder"])
def test_names_longer_than_the_file_system_allows_are_refused_before_anything_is_written(tmp_path, name, is_dir):
    import errno

    from runtime.files import NameTooLongError

    with pytest.raises(NameTooLongError) as caught:
        with atomic_path(tmp_path / name, is_dir=is_dir):
            pytest.fail("the work ran for a path that can never be written")
    err = caught.value
    assert isinstance(err, OSError) and err.errno == errno.ENAMETOOLONG  # callers catching OSError still do
    text = str(err)
    assert "\n" not in text and len(text) < 250 and ".tmp-" not in text, text  # one short line, no temporary
    assert "is too long for the file system" in text and "more than the 255 bytes a file or folder name may have" in text
    assert "choose a shorter name" in text and ("has 256 bytes" in text or "has 300 bytes" in text)
    assert list(tmp_path.iterdir()) == []


def _stale_temporary(target, pid):
    """A temporary as a run with process id `pid` would have left it for `target`."""
    from runtime.files import _HOST, _tmp_prefix

    path = target.with_name(f"{_tmp_prefix(target)}{_HOST}-{pid}-abc")
    path.mkdir()
    (path / "half").write_text("half")
    return path


def test_stale_temporaries_of_dead_runs_are_removed_and_nothing_else(tmp_path):
    import subprocess

    dead = subprocess.Popen(["true"])
    dead.wait()
    target = tmp_path / "bundle"
    stale = _stale_temporary(target, dead.pid)
    live = _stale_temporary(target, os.getppid())  # a run still going (our parent process is alive)
    other = _stale_temporary(tmp_path / "other", dead.pid)  # another target's: not ours to judge now
    (tmp_path / ".bundle.old").mkdir()  # a user's folder with a look-alike name
    with atomic_path(target) as tmp:
        tmp.write_text("new")
    assert not stale.exists() and live.exists() and other.exists() and (tmp_path / ".bundle.old").is_dir()


def test_existing_folder_is_replaced_only_when_allowed(tmp_path):
    target = tmp_path / "d"
    target.mkdir()
    (target / "mine").write_text("mine")
    with pytest.raises(FileExistsError, match="cannot be replaced: it exists"):
        with atomic_path(target, is_dir=True) as tmp:
            (tmp / "new").write_text("new")
    with pytest.raises(FileExistsError, match="cannot be replaced: not ours"):
        with atomic_path(target, is_dir=True, replace=lambda p: "not ours") as tmp:
            (tmp / "new").write_text("new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"] and (target / "mine").read_text() == "mine"
    with atomic_path(target, is_dir=True, replace=lambda p: None) as tmp:
        (tmp / "new").write_text("new")
    assert sorted(p.name for p in target.iterdir()) == ["new"] and sorted(p.name for p in tmp_path.iterdir()) == ["d"]


def test_outputs_replace_only_what_this_tool_wrote(tmp_path):
    import numpy as np
    from PIL import Image

    from runtime.files import check_output
    from runtime.images import save_png

    photo = tmp_path / "photo.png"
    Image.new("RGB", (4, 4)).save(photo)
    with pytest.raises(FileExistsError, match="was not written by styleclip-edge"):
        save_png(Image.new("RGB", (2, 2)), photo)
    assert Image.open(photo).size == (4, 4)
    ours = save_png(Image.fromarray(np.zeros((2, 2, 3), np.uint8)), tmp_path / "ours.png")
    save_png(Image.fromarray(np.ones((3, 3, 3), np.uint8)), ours)  # our own output: replaced
    assert Image.open(ours).size == (3, 3)
    (tmp_path / "notes.json").write_text('{"mine": 1}')
    (tmp_path / "model.json").write_text('{"kind": "latent-mapper", "format_version": 1}')
    with pytest.raises(FileExistsError):
        check_output(tmp_path / "notes.json")
    check_output(tmp_path / "model.json")
    check_output(tmp_path / "absent.npy")
