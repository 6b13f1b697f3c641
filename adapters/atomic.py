"""Atomic publication, the one way anything is written into place here: into a staging path in a
scratch directory, made durable (fsync), then renamed over the target. Readers see the old
version or the new one, never a half-written one; a failure leaves nothing behind.

    with staged(target, scratch) as tmp:       # tmp: a path to create, a file or a directory
        write(tmp)

Used for uploaded files, the trainer's final adapter and every adapter the store publishes.
"""

from __future__ import annotations

import errno
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def staged(target: Path, scratch: Path | None = None) -> Iterator[Path]:
    """A staging path for `target` (in `scratch`, by default beside it), renamed over `target` once the
    block ends without an error. `scratch` must be on the same filesystem as `target`."""
    scratch = scratch or target.parent
    tmp = scratch / f".{target.name[:80]}.{uuid.uuid4().hex}.staging"
    try:
        yield tmp
        _fsync_tree(tmp)
        _swap_in(tmp, target, scratch)
        fsync(target.parent)
    finally:
        _remove(tmp)  # gone after a successful rename; the remains of a failure otherwise


def remove_atomically(target: Path, scratch: Path | None = None) -> bool:
    """Take `target` away from readers at once (a rename), then delete it; False if it was not there."""
    trash = (scratch or target.parent) / f".{target.name[:80]}.{uuid.uuid4().hex}.deleted"
    try:
        os.rename(target, trash)
    except FileNotFoundError:
        return False
    _remove(trash)
    return True


def fsync(path: Path) -> None:
    """Make a file's data, or a directory's entries, durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _swap_in(tmp: Path, target: Path, scratch: Path) -> None:
    """Rename `tmp` to `target`. A file replaces atomically; a directory cannot be renamed over a
    non-empty one, so an existing target is moved aside first. Another process may publish or delete
    the same target meanwhile: each rename tolerates the other side having moved first."""
    if not tmp.is_dir():
        os.replace(tmp, target)
        return
    for _ in range(100):
        trash = scratch / f".{target.name[:80]}.{uuid.uuid4().hex}.old"
        try:
            os.rename(target, trash)
        except FileNotFoundError:
            trash = None
        try:
            os.rename(tmp, target)
            return
        except OSError as e:  # someone published the target between our two renames
            if e.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                raise
        finally:
            if trash is not None:
                _remove(trash)
    raise OSError(errno.EBUSY, f"could not publish {target.name}: it kept changing")


def _fsync_tree(path: Path) -> None:
    if path.is_dir():
        for child in path.rglob("*"):
            if child.is_file():
                fsync(child)
        fsync(path)
    elif path.exists():
        fsync(path)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
