"""The report as one self-contained HTML file: ``<kind>-results.html`` beside ``<kind>-results.md``.

The HTML is the markdown report converted, so both hold the same sections, findings and tables
(one copy of the report's logic: SECTIONS render markdown, this module only converts it). The
conversion is markdown-it-py's CommonMark with its table rule (the GitHub table syntax the
sections write), raw HTML off: failure messages and hosts in the tables are text, escaped, never
markup. Charts are embedded as ``data:`` URIs and autolinks are off, so the page opens anywhere,
from a mail attachment or a CI artifact, and fetches nothing; the one link out is the relative
link to Locust's own ``report.html`` in the same run folder.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path

IMAGE_TYPES = {".png": "image/png", ".svg": "image/svg+xml", ".jpg": "image/jpeg", ".jpeg": "image/jpeg"}

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto; max-width: 72em;
       padding: 0 1em; color: #222; line-height: 1.45; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ddd; padding-bottom: .2em; margin-top: 1.6em; }
table { border-collapse: collapse; margin: .6em 0; font-size: .9em; }
th, td { border: 1px solid #ccc; padding: .25em .6em; text-align: left; vertical-align: top; }
th { background: #f3f3f3; } tr:nth-child(even) td { background: #fafafa; }
img { max-width: 100%; height: auto; display: block; margin: .8em 0; }
code { background: #f3f3f3; padding: 0 .2em; }
nav { font-size: .9em; color: #555; }
"""


def _converter():
    from markdown_it import MarkdownIt

    # No raw HTML, no autolinks: what a run recorded (error texts, URLs) stays text.
    return MarkdownIt("commonmark", {"html": False}).enable("table").disable("autolink")


def data_uri(path: Path) -> str | None:
    """The file as a data: URI, or None when it is missing or not an image type a browser shows."""
    kind = IMAGE_TYPES.get(path.suffix.lower())
    if kind is None or not path.is_file():
        return None
    return f"data:{kind};base64,{base64.b64encode(path.read_bytes()).decode('ascii')}"


def to_html(md_text: str, folder: Path, title: str, links: list[tuple[str, str]] = ()) -> str:
    """A whole HTML page of `md_text`; images relative to `folder` are embedded, any other image
    is left out (its alt text stays), so the page loads nothing. `links`: (text, relative href)."""
    md = _converter()
    tokens = md.parse(md_text)
    for token in tokens:
        for child in token.children or []:
            if child.type != "image":
                continue
            src = str(child.attrGet("src") or "")
            uri = None if "://" in src or src.startswith(("/", "data:")) else data_uri(folder / src)
            if uri is None:  # missing or external: the alt text instead of a fetch
                child.type, child.tag, child.attrs, child.content = "text", "", {}, f"[{child.content}]"
                child.children = None
            else:
                child.attrSet("src", uri)
    body = md.renderer.render(tokens, md.options, {})
    nav = ""
    if links:
        nav = "<nav>" + " · ".join(f'<a href="{html.escape(href)}">{html.escape(text)}</a>'
                                   for text, href in links) + "</nav>\n"
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>{html.escape(title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n{nav}{body}</body>\n</html>\n")


def write(md_path: Path) -> Path:
    """Write the HTML twin of a markdown report (same folder, same stem, .html) and return its path."""
    folder = md_path.parent
    text = md_path.read_text()
    title = next((line[2:].strip() for line in text.splitlines() if line.startswith("# ")), md_path.stem)
    links = [("Locust's report (report.html)", "report.html")] if (folder / "report.html").exists() else []
    links.append((f"markdown ({md_path.name})", md_path.name))
    out = md_path.with_suffix(".html")
    out.write_text(to_html(text, folder, title, links))
    return out
