"""Durations and sizes with units: `90s`, `2h`, `30d`, `1.5e3`."""

from __future__ import annotations

import math
import re

_SECONDS = {
    "ms": 1e-3, "s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "hr": 3600.0,
    "d": 86400.0, "day": 86400.0, "w": 604800.0, "wk": 604800.0, "y": 365.0 * 86400.0, "yr": 365.0 * 86400.0,
}
# The longest time capsim reads, anywhere: 10,000 years. Beyond it a float second loses its fraction
# (a simulated clock at 3e11 s still resolves 0.1 ms), and no capacity plan needs it.
MAX_DURATION_S = 10_000 * 365.0 * 86400.0
MAX_DURATION_TEXT = "10,000 years"
# The largest count capsim reads (GPUs, users, jobs): 2^53, the last integer a float holds exactly.
MAX_COUNT = 2**53

_DURATION = re.compile(r"^\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*([a-zA-Z]*)\s*$")


def parse_duration(value: float | int | str) -> float:
    """Seconds from a number (already seconds) or a string with a unit suffix.

    Raises ValueError with the accepted forms when the value cannot be read.
    """
    if isinstance(value, bool):
        raise ValueError(f"expected a duration, got {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        match = _DURATION.match(str(value))
        unit = match.group(2).lower() if match else None
        if not match or (unit and unit not in _SECONDS):
            raise ValueError(
                f"expected a duration such as 90, '90s', '15m', '2h', '30d' or '1y', got {value!r}"
            )
        seconds = float(match.group(1)) * (_SECONDS[unit] if unit else 1.0)
    if not math.isfinite(seconds):
        raise ValueError(f"expected a finite duration, got {value!r}")
    if abs(seconds) > MAX_DURATION_S:
        raise ValueError(f"expected a duration of at most {MAX_DURATION_TEXT} ({MAX_DURATION_S:.3g} s), got {value!r}")
    return seconds


def format_duration(seconds: float) -> str:
    """Short human form for tables: 45s, 12.5m, 3.2h, 4.1d, 548d, then years from two (2.74y; a year
    of 365 days, as parse_duration reads `y`); beyond 10,000 years, powers of ten (1.2e+05y)."""
    s = abs(seconds)
    for limit, unit, div in ((60, "s", 1), (3600, "m", 60), (86400, "h", 3600), (2 * 365 * 86400, "d", 86400)):
        if s < limit:
            return f"{seconds / div:.3g}{unit}"
    years = seconds / (365 * 86400)
    return f"{years:.3g}y" if abs(years) < 1e4 else f"{years:.2g}y"


def format_span(seconds: float) -> str:
    """A duration in messages, long ones in years: 45s, 3.2h, 12d, 4,170 years, 1.2e+09 years."""
    years = seconds / (365 * 86400)
    if not abs(years) >= 3:
        return format_duration(seconds)
    return f"{years:,.0f} years" if abs(years) < 1e6 else f"{years:.2g} years"
