"""Point this process's own file descriptors elsewhere for a while.

Native libraries (OpenCascade) and child processes (Blender) write to fds 1 and 2 directly, which
replacing ``sys.stdout`` does not reach.
"""

import contextlib
import os
import sys


@contextlib.contextmanager
def redirected(target_fd: int, *fds: int):
    """Make each of ``fds`` a copy of ``target_fd`` inside the block; restore them after."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(fd) for fd in fds]
    for fd in fds:
        os.dup2(target_fd, fd)
    try:
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        for fd, copy in zip(fds, saved, strict=True):
            os.dup2(copy, fd)
            os.close(copy)
