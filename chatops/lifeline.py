"""Processes that die with the one that started them, so none acts on hosts unsupervised.

Linux's parent-death signal (``prctl(PR_SET_PDEATHSIG)``) delivers a signal to a process when
its parent dies. ``chatops up`` starts its children with :func:`die_with_parent`; the runner's
forkserver imports :mod:`chatops.forkserver_tie`, which ties the forkserver to the runner and
every flow process it forks to the forkserver. A SIGKILL of ``chatops up`` then takes down the
runner, the forkserver and each deploy within moments (the next start reports their runs as
Crashed), instead of leaving them running for minutes with nobody to stop them.

The signal is cleared on fork and kept across exec: a flow's own subprocesses (git, the build,
ssh) are not tied here. On systems without ``prctl`` this does nothing.
"""

import contextlib
import ctypes
import os
import signal

_PR_SET_PDEATHSIG = 1


def die_with_parent(signum: int = signal.SIGKILL) -> None:
    """Get ``signum`` when the parent dies; if it already has, exit now (a race with fork)."""
    parent = os.getppid()
    with contextlib.suppress(OSError, AttributeError):  # not Linux: nothing to tie
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signum)
    if os.getppid() != parent:  # the parent died before the signal was armed
        os._exit(1)


def tie_forks_to_this_process() -> None:
    """Tie this process to its parent and each child it forks (not their children) to it."""
    die_with_parent()
    me = os.getpid()

    def child_of_me() -> None:
        if os.getppid() == me:
            die_with_parent()

    os.register_at_fork(after_in_child=child_of_me)
