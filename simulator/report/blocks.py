"""The building blocks of a report page: a figure as inline PNG with its reading line, and a table of
rows (dicts of column header -> text), as page.html.j2 draws them."""

from __future__ import annotations

import base64
import io

from matplotlib.figure import Figure


def png(fig: Figure) -> str:
    """The figure as base64 PNG, the same bytes for the same figure: no software stamp, no date."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, metadata={"Software": None})
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def figure_block(heading: str, fig: Figure, caption: str) -> dict:
    return {"heading": heading, "png": png(fig), "caption": caption}


def table_block(rows: list[dict], flag_last: bool = False) -> dict:
    headers = list(rows[0]) if rows else []
    return {"headers": headers, "rows": [list(r.values()) for r in rows], "flag_last": flag_last}
