"""One error type for every bad input, so the CLI can print it in one line and exit non-zero."""

from __future__ import annotations


class CapsimError(Exception):
    """A user-facing error: names where (file, key path or line) and what was expected."""

    def __init__(self, message: str, *, source: str | None = None, where: str | None = None):
        self.source = source
        self.where = where
        self.detail = message
        parts = [p for p in (source, where) if p]
        prefix = ": ".join(parts)
        super().__init__(f"{prefix}: {message}" if prefix else message)
