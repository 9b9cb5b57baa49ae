"""What a run reads besides its scenario, by content: a sweep's run key holds these digests, so a
`--resume` reruns a run whose trace, preset or model file changed since it ran, and reuses one whose
files only moved.

- the scenario's own files: every trace (`kind: trace`), every preset (`kind: preset`, by `path` or
  by `name` in workloads/presets/), every zoo model given as a path to a YAML file;
- a policy given as `module:Class`: that module's source file (only the module's own file, not the
  modules it imports), so an edited policy reruns;
- capsim's data that any run may read: the hardware profiles and software stacks
  (hardware_profiles/), the model zoo (workloads/models/) and the calibration fit
  (workloads/validation/calibration_fit.yaml). A changed profile reruns every run, not only those of
  its device: a trace may name models, and the performance model reads every profile's calibration.

A file that cannot be read is keyed by that fact (its run fails on its own). Digests are kept per
process by path, size and modification time, so a sweep of a thousand runs on one large trace reads
the trace once.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from simulator.errors import CapsimError

_DIGESTS: dict[tuple, str] = {}


def scenario_inputs(scenario) -> list[Path]:
    """The files the scenario names (traces, presets, model files), as its run will open them."""
    from simulator.workload.presets import presets_dir

    files = []
    for source in scenario.workload:
        kind = getattr(source, "kind", None)
        if kind == "trace":
            files.append(Path(scenario.base_dir) / source.path)
        elif kind == "preset":
            files.append(Path(scenario.base_dir) / source.path if source.path is not None
                         else presets_dir() / f"{source.name}.yaml")
        elif kind == "synthetic" and source.model and source.model.endswith((".yaml", ".yml")):
            files.append(Path(source.model))  # as perf.zoo.load_model opens it
    return files


def data_files() -> list[Path]:
    """capsim's own data that a run may read (hardware profiles and stacks, model zoo, calibration fit)."""
    from simulator.profiles import profiles_dir, workloads_dir

    files: list[Path] = []
    try:
        files += sorted(profiles_dir().rglob("*.yaml"))
    except CapsimError:  # no profiles folder found: nothing of it to key on
        pass
    try:
        workloads = workloads_dir()
    except CapsimError:
        return files
    files += sorted((workloads / "models").glob("*.yaml"))
    files.append(workloads / "validation" / "calibration_fit.yaml")
    return files


def input_digests(scenario) -> dict:
    """{"files": [digest of each file the scenario names, in order], "data": digest of capsim's data},
    and "policy": the digest of a `module:Class` policy's source file (absent for a registered name, so
    that the keys of runs of built-in policies are unchanged)."""
    digests = {"files": [file_digest(p) for p in scenario_inputs(scenario)], "data": data_digest()}
    policy = scenario.scheduler.policy
    if ":" in policy:
        digests["policy"] = policy_source_digest(policy.partition(":")[0])
    return digests


def policy_source_digest(module_name: str) -> str:
    """The digest of a policy module's source file, found as the import will find it (the module is not
    run: only its parent packages are imported); "not found" when there is none (its run fails on its own)."""
    import importlib.util

    try:
        spec = importlib.util.find_spec(module_name)
    except (ImportError, ValueError):  # a parent package that does not import, an empty name
        spec = None
    if spec is None or not spec.origin or not Path(spec.origin).is_file():
        return "not found"
    return file_digest(Path(spec.origin))


def data_digest() -> str:
    """One digest of capsim's own data (data_files), by content."""
    data = hashlib.sha256()
    for path in data_files():
        data.update(f"{path.parent.name}/{path.name}={file_digest(path)}\n".encode())
    return data.hexdigest()


def file_digest(path: Path) -> str:
    """The SHA-256 of a file's bytes ("missing" or "unreadable: ..." when it cannot be read)."""
    try:
        st = Path(path).stat()
        signature = (str(Path(path).resolve()), st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)
        if signature not in _DIGESTS:
            digest = hashlib.sha256()
            with open(path, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    digest.update(chunk)
            _DIGESTS[signature] = digest.hexdigest()
        return _DIGESTS[signature]
    except FileNotFoundError:
        return "missing"
    except OSError as exc:
        return f"unreadable: {exc.strerror or type(exc).__name__}"
