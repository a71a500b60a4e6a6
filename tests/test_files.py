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
