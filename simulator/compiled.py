"""The optional compiled engine: the hot modules built with Cython, in place, beside their sources.

    capsim compile            # needs Cython and a C compiler: pip install -e '.[fast]'
    capsim compile --clean    # back to pure Python

The .py files stay plain Python and are the reference; the types live in the augmenting .pxd file
beside each one, and a compiled module gives the same results as its source (the tests run both
ways in CI). Python imports a compiled module in preference to its .py, so an edited source would be
silently shadowed by an old build: the build records a hash of each source, and `drop_stale()` (run
when the package is imported) deletes a build whose sources changed since, with a warning.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
import tempfile
import warnings
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent
MODULES = ["job", "engine/calendar", "engine/recorder", "engine/simulation", "cluster/pool", "policies/base",
           "serving/replica", "serving/fleet", "network/fill", "network/fabric",
           "features/network"]
MANIFEST = PACKAGE / "_compiled.json"  # module -> hash of its .py and .pxd when it was built


def _source_hash(module: str) -> str:
    digest = hashlib.sha256()
    for suffix in (".py", ".pxd"):
        digest.update((PACKAGE / (module + suffix)).read_bytes())
    return digest.hexdigest()


def _built(module: str) -> list[Path]:
    path = PACKAGE / module
    return sorted(path.parent.glob(path.name + ".*.so")) + sorted(path.parent.glob(path.name + ".*.pyd"))


def status() -> dict[str, str]:
    """Each hot module: 'compiled', 'stale' (its sources changed since the build) or 'python'."""
    built = json.loads(MANIFEST.read_text()) if MANIFEST.is_file() else {}
    return {m: ("python" if not _built(m) else "compiled" if built.get(m) == _source_hash(m) else "stale")
            for m in MODULES}


def clean() -> None:
    for module in MODULES:
        for artefact in [*_built(module), PACKAGE / (module + ".c")]:
            artefact.unlink(missing_ok=True)
    MANIFEST.unlink(missing_ok=True)


def drop_stale() -> None:
    """Delete the whole build if any compiled module is stale (a mix would not link), and say so."""
    states = status()
    if "stale" in states.values():
        clean()
        stale = ", ".join(m for m, s in states.items() if s == "stale")
        warnings.warn(f"the compiled engine was older than its sources ({stale}) and has been removed; "
                      "running pure Python. Rebuild it with `capsim compile`.", stacklevel=3)


def build(force: bool = False) -> None:
    """Compile the hot modules in place (Cython and a C compiler needed)."""
    try:
        from Cython.Build import cythonize
        from setuptools import Extension, setup
    except ImportError as exc:
        raise SystemExit(f"capsim compile needs Cython and setuptools ({exc.name} is missing): "
                         "pip install -e '.[fast]'") from None
    root = PACKAGE.parent
    # No fused multiply-adds (GCC contracts a * b + c into one by default where the CPU has them, as on
    # ARM): they round once where Python rounds twice, and the build must give the sources' floats.
    flags = [] if os.name == "nt" else ["-ffp-contract=off"]
    extensions = [Extension("simulator." + m.replace("/", "."), [str(PACKAGE / (m + ".py"))], extra_compile_args=flags)
                  for m in MODULES]
    log = Path(tempfile.gettempdir()) / "capsim-compile.log"
    workers = min(len(MODULES), os.cpu_count() or 1)
    print(f"compiling {len(MODULES)} modules with Cython and the C compiler, {workers} at a time (log: {log})")
    try:
        with _output_to(log), tempfile.TemporaryDirectory() as scratch, contextlib.chdir(scratch):
            modules = cythonize(extensions, language_level=3, force=force, quiet=True, nthreads=workers,
                                # Types come from the .pxd files only; the .py annotations are for readers.
                                compiler_directives={"binding": True, "annotation_typing": False})
            setup(name="capsim-compiled", packages=[], py_modules=[], ext_modules=modules,
                  script_args=["-q", "build_ext", "--build-lib", str(root), "--build-temp", scratch,
                               "--parallel", str(workers)])
    except (Exception, SystemExit):
        clean()
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-25:])
        raise SystemExit(f"capsim compile failed (the engine stays pure Python); the end of {log}:\n{tail}") from None
    _check_no_base_method_wrappers()
    for module in MODULES:
        (PACKAGE / (module + ".c")).unlink()
    MANIFEST.write_text(json.dumps({m: _source_hash(m) for m in MODULES}, indent=1) + "\n")


@contextlib.contextmanager
def _output_to(path: Path):
    """Send this process's stdout and stderr, the C compiler's included, to `path` for the block: the
    compilers' warnings go to the log, not the terminal."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with path.open("w") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def _check_no_base_method_wrappers() -> None:
    """Cython 3 turns `obj.method` (taken, not called) on a typed `obj` whose class declares `method`
    cpdef into a wrapper of the base class's C function, so a policy's override would be ignored. The
    sources avoid the pattern (getattr, or the call in place); stop the build if it comes back."""
    bad = sorted({m for m in MODULES for line in (PACKAGE / (m + ".c")).read_text().splitlines()
                  if "= __Pyx_CFunc_" in line and "__pyx_vtab" in line})
    if bad:
        clean()
        sys.exit(f"a cpdef method is taken as an object from a typed reference in {bad}: call it in place "
                 "or take it with getattr")
