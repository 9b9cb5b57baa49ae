"""Files written whole: a run's outputs, a sweep's store, a plan, a report, a fitted calibration.

- `atomic_write`: one file, written to a temporary file beside its target and renamed into place, so a
  reader (or an interrupted run) sees either the old file whole or the new one whole, never half of one.
- `replace_files`: a set of files that belong together (a run's jobs.parquet, timeline.parquet and
  summary.json), written whole into a hidden folder inside the output folder and only then renamed
  into place one after the other, with SIGINT and SIGTERM held back while they are renamed, so an
  interruption leaves either the old set or the new one. Only SIGKILL (or a power cut) in the
  microseconds between two renames can leave a mix, and readers check for that (results.py: run ids).

Temporary names carry the writer's process id. Interrupted by SIGINT or SIGTERM (which the CLI turns
into an exception), a write removes its own temporaries on the way out; one killed outright (SIGKILL)
leaves them behind, and `remove_stale` removes those whose process is gone: `replace_files` calls it
on its folder, a sweep on its store of runs when it starts.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

_UMASK = os.umask(0o022)
os.umask(_UMASK)  # read once: umask can only be read by setting it

_HELD = {signal.SIGINT, signal.SIGTERM}
_SET_PREFIX = ".capsim-new."  # the hidden folder a set of files is written into, inside its output folder


def atomic_write(target: Path, writer: Callable[[str], object]) -> None:
    """Call `writer(path)` on a temporary file beside `target`, then rename it onto `target`."""
    target = Path(target)
    tmp = None
    try:
        # held: a signal between creating the file and knowing its name would leave it behind
        with signals_held():
            fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.{os.getpid()}.", suffix=".tmp", dir=target.parent)
            os.close(fd)
        writer(tmp)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes the file private; outputs are shared like any other file
        os.replace(tmp, target)
    except BaseException:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        raise


def replace_files(out: Path, writers: dict[str, Callable[[str], object]]) -> Path:
    """Write every file of a set (name -> `writer(path)`) into `out`, the set as a whole.

    The files are first written into a hidden folder inside `out` (same file system, so renames are
    atomic, and it works where `out`'s parent is not writable, `--out .` included); then each is
    renamed onto its name in `out`, in the order given, with SIGINT and SIGTERM held back until the
    last rename is done. Other files in `out` (a report, notes) are left as they are."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    remove_stale(out)
    staging = None
    try:
        staging = Path(tempfile.mkdtemp(prefix=f"{_SET_PREFIX}{os.getpid()}.", dir=out))
        for name, writer in writers.items():
            writer(str(staging / name))
            os.chmod(staging / name, 0o666 & ~_UMASK)
        with signals_held():
            for name in writers:
                os.replace(staging / name, out / name)
            staging.rmdir()
    except BaseException:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
        raise
    return out


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """Hold SIGINT and SIGTERM back inside the block: one that arrives is acted on when it ends, as its
    handler would have acted on it. (Python runs signal handlers in the main thread only, so this works
    there; a block in another thread is not interrupted by them anyway. A signal mask would not do:
    the kernel hands a process's signal to any thread that does not block it, Arrow's among them.)"""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    previous = {s: signal.signal(s, lambda signum, frame: caught.append(signum)) for s in _HELD}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        if caught:
            handler = previous[caught[0]]
            if callable(handler):
                handler(caught[0], None)
            elif handler in (signal.SIG_DFL, None):
                signal.raise_signal(caught[0])


# The temporaries of atomic_write (`.NAME.PID.RANDOM.tmp`) and of replace_files (`.capsim-new.PID.RANDOM/`).
_TEMPORARY = re.compile(r"\..+\.(\d+)\.\w+\.tmp|" + re.escape(_SET_PREFIX) + r"(\d+)\.\w+")


def remove_stale(folder: Path) -> None:
    """Remove the temporaries in `folder` whose writing process no longer exists (killed outright)."""
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return
    for entry in entries:
        match = _TEMPORARY.fullmatch(entry.name)
        if match is None or _alive(int(match.group(1) or match.group(2))):
            continue
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                os.unlink(entry.path)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True  # this process's own (another thread's write)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError, OverflowError):
        return True  # someone else's process, or cannot tell: leave it
    return True
