"""Child processes that die with the process that started them (Linux ``PR_SET_PDEATHSIG``).

A run worker killed outright (``kill -9``, the OOM killer, a container gone) runs no cleanup of its
own: Blender and the conversion child it started would go on rendering and writing for nobody,
beside the retry's own. The kernel kills them instead, the moment their parent is gone.
"""

from __future__ import annotations

import ctypes
import os
import signal

PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True)


def die_with(parent: int) -> None:
    """Have this process killed when its parent exits; exit at once if ``parent`` (the pid that
    started it) is gone already. Call it first thing in the child (``preexec_fn``, a forked child)."""
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:
        os._exit(1)
