"""The report as a list of sections, rendered twice: Markdown (figures linked beside it) and one
self-contained HTML file (figures embedded as base64 PNG, no scripts, no external resources), so it
opens offline in any browser and can be mailed as one file."""
from __future__ import annotations

import base64
import dataclasses
import html
import os
import re
from typing import Sequence, Union


@dataclasses.dataclass(frozen=True)
class Table:
    header: Sequence[str]
    rows: Sequence[Sequence[str]]


@dataclasses.dataclass(frozen=True)
class Image:
    path: str  # a PNG file
    caption: str


@dataclasses.dataclass(frozen=True)
class Bullets:
    items: Sequence[str]


Block = Union[str, Table, Image, Bullets]


@dataclasses.dataclass(frozen=True)
class Section:
    title: str
    blocks: Sequence[Block]


def _md_cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def to_markdown(title: str, sections: Sequence[Section], out_dir: str) -> str:
    lines = [f"# {title}", ""]
    for s in sections:
        lines += [f"## {s.title}", ""]
        for b in s.blocks:
            if isinstance(b, Table):
                lines.append("| " + " | ".join(_md_cell(h) for h in b.header) + " |")
                lines.append("|" + "|".join("---" for _ in b.header) + "|")
                lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in b.rows]
            elif isinstance(b, Image):
                rel = os.path.relpath(b.path, out_dir)
                lines.append(f"![{_md_cell(b.caption)}]({rel})")
                lines.append(f"*{b.caption}*")
            elif isinstance(b, Bullets):
                lines += [f"- {item}" for item in b.items]
            else:
                lines.append(str(b))
            lines.append("")
    return "\n".join(lines).rstrip() + "\n"


CSS = """body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:1200px;margin:2em auto;
padding:0 1em;color:#222;line-height:1.45}h1{border-bottom:2px solid #444}h2{border-bottom:1px solid #bbb;margin-top:2em}
table{border-collapse:collapse;margin:.6em 0;font-size:.86em;display:block;overflow-x:auto}
th,td{border:1px solid #ccc;padding:.25em .55em;text-align:right;white-space:nowrap}th{background:#f0f0f0}
td:first-child,th:first-child{text-align:left}figure{margin:1em 0}img{max-width:100%;border:1px solid #ddd}
figcaption{font-size:.9em;color:#555}code{background:#f5f5f5;padding:0 .2em}"""


def _html_block(b: Block) -> str:
    if isinstance(b, Table):
        head = "".join(f"<th>{html.escape(str(h))}</th>" for h in b.header)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in b.rows)
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
    if isinstance(b, Image):
        with open(b.path, "rb") as fh:
            data = base64.b64encode(fh.read()).decode("ascii")
        cap = html.escape(b.caption)
        return f'<figure><img alt="{cap}" src="data:image/png;base64,{data}"><figcaption>{cap}</figcaption></figure>'
    if isinstance(b, Bullets):
        return "<ul>" + "".join(f"<li>{_inline(str(i))}</li>" for i in b.items) + "</ul>"
    return f"<p>{_inline(str(b))}</p>"


def _inline(text: str) -> str:
    """A paragraph's Markdown emphasis (**bold**, `code`) as HTML, the rest escaped."""
    out = html.escape(text)
    out = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", out)
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", out)


def to_html(title: str, sections: Sequence[Section]) -> str:
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body>", f"<h1>{html.escape(title)}</h1>"]
    toc = "".join(f'<li><a href="#s{i}">{html.escape(s.title)}</a></li>' for i, s in enumerate(sections))
    parts.append(f"<nav><ol>{toc}</ol></nav>")
    for i, s in enumerate(sections):
        parts.append(f'<h2 id="s{i}">{html.escape(s.title)}</h2>')
        parts += [_html_block(b) for b in s.blocks]
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
