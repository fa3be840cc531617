"""Render a report as one self-contained HTML page (images inlined as base64 data URIs)."""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from oodml.report.tables import format_cell

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;
max-width:1340px;padding:0 1em;color:#111;line-height:1.45}
h1{font-size:1.6em}h2{font-size:1.25em;margin-top:2em;border-bottom:1px solid #ccc}
table{border-collapse:collapse;font-size:.82em;margin:.6em 0;display:block;overflow-x:auto}
th,td{border:1px solid #bbb;padding:.25em .5em;text-align:right;white-space:nowrap}
th{background:#eee}td:first-child,th:first-child{text-align:left}
img{max-width:100%;height:auto;border:1px solid #ddd}
.note{background:#fff6d6;border-left:4px solid #d9a400;padding:.4em .8em;margin:.5em 0}
code{background:#f3f3f3;padding:0 .2em}
table.pivot td{vertical-align:top;line-height:1.35}table.pivot td>span{display:block}
table.pivot td span.k{color:#666;font-size:.85em}
.warn{color:#9b1c1c;font-weight:600}
"""


@dataclass
class Section:
    """One titled block of the page: optional text, image (PNG path), table and notes."""

    title: str
    text: str = ""
    image: Path | None = None
    table: pd.DataFrame | None = None
    notes: list[str] = field(default_factory=list)
    links: list[Path] = field(default_factory=list)
    raw_html: str = ""


def data_uri(png: Path) -> str:
    """A PNG file as a ``data:image/png;base64,...`` URI."""
    return "data:image/png;base64," + base64.b64encode(Path(png).read_bytes()).decode("ascii")


def table_html(table: pd.DataFrame) -> str:
    """An HTML table with the same number formatting as the Markdown tables."""
    cols = [str(c) for c in table.columns]
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    rows = "".join(
        "<tr>" + "".join(f"<td>{html.escape(format_cell(v, c))}</td>"
                         for v, c in zip(row, cols, strict=True)) + "</tr>"
        for row in table.itertuples(index=False, name=None)
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"


def pivot_html(pivot: pd.DataFrame, metrics: Sequence[str], labels: Sequence[str],
               names: Sequence[str]) -> str:
    """The compact pivot (rows: series; one column per metric) with the stats of each metric
    stacked in its cell, so many metrics fit a 1400 px page. ``labels`` are the stat suffixes
    of the pivot's columns (e.g. "AUC", "drop", "slope/100"), ``names`` the metrics' display
    names."""
    head = "<th>series</th>" + "".join(f"<th>{html.escape(n)}</th>" for n in names)
    body = []
    for _, row in pivot.iterrows():
        cells = [f"<td>{html.escape(str(row['series']))}</td>"]
        for metric in metrics:
            spans = []
            for lab in labels:
                v = row[f"{metric} {lab}"]
                text = ("–" if pd.isna(v) else v if isinstance(v, str)
                        else f"{100 * v:.1f}%" if lab == "drop" else f"{v:.3f}")
                rising = lab.startswith("slope") and not pd.isna(v) and v > 0
                cls = ' class="warn"' if rising else ""
                spans.append(f'<span{cls}><span class="k">{html.escape(lab)}</span> '
                             f"{html.escape(text)}</span>")
            cells.append("<td>" + "".join(spans) + "</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return (f'<table class="pivot"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}'
            "</tbody></table>")


def _section_html(s: Section, out_dir: Path) -> str:
    parts = [f"<h2>{html.escape(s.title)}</h2>"]
    if s.text:
        parts.append(f"<p>{html.escape(s.text)}</p>")
    parts += [f'<p class="note">{html.escape(n)}</p>' for n in s.notes]
    if s.image is not None:
        parts.append(f'<img alt="{html.escape(s.title)}" src="{data_uri(s.image)}">')
    if s.raw_html:
        parts.append(s.raw_html)
    if s.table is not None:
        parts.append(table_html(s.table))
    if s.links:
        links = ", ".join(
            f'<a href="{html.escape(p.relative_to(out_dir).as_posix())}">'
            f"{html.escape(p.name)}</a>" for p in s.links
        )
        parts.append(f"<p>Files: {links}</p>")
    return "\n".join(parts)


def render_page(title: str, meta: Sequence[tuple[str, str]], sections: Sequence[Section],
                out_dir: Path) -> str:
    """The full page; ``meta`` is shown as a key/value list under the title."""
    items = "".join(f"<li><b>{html.escape(k)}</b>: {html.escape(v)}</li>" for k, v in meta)
    body = "\n".join(_section_html(s, out_dir) for s in sections)
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        f"<title>{html.escape(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
        f"<h1>{html.escape(title)}</h1>\n<ul>{items}</ul>\n{body}\n</body>\n</html>\n"
    )
