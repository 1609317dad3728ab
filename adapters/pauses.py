"""Pause points, for tests that kill a deploy at an exact moment (off unless configured).

With ``CHATOPS_PAUSE_DIR`` set in the runner's environment, a run that reaches
:func:`pause_point` ``name`` while the file ``$CHATOPS_PAUSE_DIR/<name>`` exists writes
``<name>.paused`` (holding its pid) and waits until that file is removed. Without the variable
it does nothing and touches no file.
"""

import os
import time
from pathlib import Path

POLL_SECONDS = 0.1


def pause_point(name: str) -> None:
    """Wait here while ``$CHATOPS_PAUSE_DIR/<name>`` exists (see the module docstring)."""
    folder = os.environ.get("CHATOPS_PAUSE_DIR")
    if not folder:
        return
    armed = Path(folder) / name
    if not armed.exists():
        return
    (Path(folder) / f"{name}.paused").write_text(f"{os.getpid()}\n")
    while armed.exists():
        time.sleep(POLL_SECONDS)
