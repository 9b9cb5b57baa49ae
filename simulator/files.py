"""Files written whole: a run's outputs, a sweep's store, a plan, a report, a fitted calibration. Each
is written to a temporary file beside its target and renamed into place, so a reader (or an
interrupted run) sees either the old file whole or the new one whole, never half of one."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

_UMASK = os.umask(0o022)
os.umask(_UMASK)  # read once: umask can only be read by setting it


def atomic_write(target: Path, writer) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        writer(tmp)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes the file private; outputs are shared like any other file
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
