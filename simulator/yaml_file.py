"""Reading a YAML file the user gave us: one clear error naming the file when it cannot be read or parsed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from simulator.errors import CapsimError

# libyaml's parser when PyYAML was built with it: our own data files (profiles, models) load ~6x faster.
_DATA_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_data_yaml(text_or_file) -> Any:
    """A YAML file shipped with capsim (same result as yaml.safe_load)."""
    return yaml.load(text_or_file, Loader=_DATA_LOADER)


def read_yaml(path: str | Path, what: str) -> Any:
    """The parsed contents of `path`; `what` names the file's role in the error ("sweep file")."""
    path = Path(path)
    try:
        return yaml.safe_load(path.read_text())
    except OSError as exc:
        raise CapsimError(f"cannot read {what}: {exc.strerror}", source=str(path)) from None
    except yaml.YAMLError as exc:
        raise CapsimError(f"malformed YAML: {exc}", source=str(path)) from None
