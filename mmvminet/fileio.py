"""Crash-safe file writes: a reader sees a file's old content or its new one, never a mix."""
import contextlib
import os
import os.path as osp


@contextlib.contextmanager
def atomic_open(path: str, mode: str = 'wb'):
    """``open(path, mode)`` for writing, through a temporary file in the same directory that is
    fsynced and renamed over ``path`` only when the ``with`` block ends without an error.

    A process killed mid-write leaves at most a hidden ``.NAME.PID.tmp`` beside ``path``; ``path``
    itself keeps its previous content. ``os.replace`` is atomic within one file system, hence
    the same directory.
    """
    if mode not in ('w', 'wb'):
        raise ValueError(f'atomic_open writes whole files; mode must be w or wb, got {mode!r}')
    folder, name = osp.split(osp.abspath(path))
    tmp = osp.join(folder, f'.{name}.{os.getpid()}.tmp')
    try:
        with open(tmp, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise
    _fsync_dir(folder)  # make the rename itself survive a power cut


def _fsync_dir(folder: str):
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # e.g. Windows cannot open directories
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
