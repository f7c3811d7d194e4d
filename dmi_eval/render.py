"""HTML pages of the report: an executed notebook or a Markdown file, one page template.

Used by ``report`` (the analyses) and by ``validation`` / the benchmarks (Markdown written
outside the notebooks), so that neither imports the other.

Every page is a self-contained file that works offline: one stylesheet in the
page, math pre-rendered to MathML (browsers draw it natively; no script, no
CDN), figures linked relatively. A navigation header on every page links the
summary, the site pages and the appendices, only those that exist in that
output folder; :func:`add_navigation` refreshes it once all pages are written.
"""

from __future__ import annotations

import html
import re
from pathlib import Path

from latex2mathml.converter import convert as latex_to_mathml
from nbconvert import HTMLExporter

NAV_START = "<!-- dmi-eval:nav -->"
NAV_END = "<!-- /dmi-eval:nav -->"
MD_NAV = "<!-- dmi-eval:md-nav -->"
"""Marks the Markdown pages' own line of links; the HTML header replaces it."""

APPENDICES: tuple[tuple[str, str], ...] = (
    ("appendix/methods.html", "Methods"),
    ("appendix/glossary.html", "Glossary"),
    ("appendix/validation.html", "Validation"),
    ("appendix/calibration.html", "Calibration"),
    ("appendix/benchmarks.html", "Benchmarks"),
    ("appendix/reproducibility.html", "Reproducibility"),
)

STYLE = """
:root { --ink: #1f2328; --muted: #59636e; --line: #d1d9e0; --accent: #0b5cad; }
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial,
       sans-serif; color: var(--ink); max-width: 62em; margin: 0 auto; padding: 0 1.2em 3em;
       line-height: 1.5; }
nav.dmi-nav { position: sticky; top: 0; background: #f6f8fa; border-bottom: 1px solid
              var(--line); margin: 0 -1.2em 1.5em; padding: 0.5em 1.2em; font-size: 0.9em;
              display: flex; flex-wrap: wrap; gap: 0.3em 1.2em; z-index: 1; }
nav.dmi-nav a { color: var(--accent); text-decoration: none; }
nav.dmi-nav a:hover { text-decoration: underline; }
nav.dmi-nav .here { font-weight: 600; color: var(--ink); }
nav.dmi-nav .group { color: var(--muted); }
h1 { font-size: 1.8em; margin-top: 0.6em; }
h2 { border-bottom: 1px solid var(--line); padding-bottom: 0.2em; margin-top: 1.8em; }
a { color: var(--accent); }
table { border-collapse: collapse; font-size: 0.88em; margin: 1em 0; display: block;
        overflow-x: auto; max-width: 100%; }
th, td { border: 1px solid var(--line); padding: 0.25em 0.6em; vertical-align: top; }
th { background: #f6f8fa; text-align: left; }
td[style*="right"], th[style*="right"] { white-space: nowrap;
        font-variant-numeric: tabular-nums; }
tr:nth-child(even) td { background: #fafbfc; }
img { max-width: 100%; height: auto; display: block; margin: 1em auto; }
em { color: var(--muted); }
pre, code { background: #f6f8fa; border-radius: 4px; }
pre { padding: 0.6em; overflow-x: auto; }
code { padding: 0 0.2em; font-size: 0.92em; }
math { font-size: 1.05em; }
math[display="block"] { margin: 0.8em 0; }
.anchor-link { display: none; }
"""

PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>{style}</style>
</head>
<body>
{nav_start}{nav_end}
<main>
{body}
</main>
</body>
</html>
"""

_DISPLAY_MATH = re.compile(r"\$\$(.+?)\$\$", re.DOTALL)
_INLINE_MATH = re.compile(r"(?<![\\$\w])\$(?=\S)([^$]+?)(?<=\S)\$(?![\w$])")
_PRE_OR_CODE = re.compile(r"(<(pre|code)\b.*?</\2>)", re.DOTALL)


def render_math(body: str) -> str:
    """Replace ``$...$`` and ``$$...$$`` (LaTeX) in an HTML body by MathML.

    Text inside ``<pre>`` and ``<code>`` is left alone.
    """

    def convert(match: re.Match[str], display: str) -> str:
        tex = html.unescape(match.group(1)).strip()
        return latex_to_mathml(tex, display=display)

    pieces = _PRE_OR_CODE.split(body)
    out = []
    # split() with two groups yields: text, whole match, tag name, text, ...
    for i in range(0, len(pieces), 3):
        text = pieces[i]
        text = _DISPLAY_MATH.sub(lambda m: convert(m, "block"), text)
        text = _INLINE_MATH.sub(lambda m: convert(m, "inline"), text)
        out.append(text)
        if i + 1 < len(pieces):
            out.append(pieces[i + 1])
    return "".join(out)


def page_title(body: str, fallback: str) -> str:
    """The text of the page's first ``<h1>`` (or ``fallback``)."""
    match = re.search(r"<h1[^>]*>(.*?)</h1>", body, re.DOTALL)
    if not match:
        return fallback
    text = re.sub(r"<[^>]+>", "", match.group(1))
    return html.unescape(text.replace("¶", "")).strip() or fallback


def html_page(body: str, *, fallback_title: str) -> str:
    """A whole HTML page around a rendered body (links to ``.md`` point at ``.html``)."""
    body = re.sub(r'href="([^":#]+)\.md(#[^"]*)?"', r'href="\1.html\2"', body)
    body = re.sub(r'<a class="anchor-link"[^>]*>[^<]*</a>', "", body)
    body = re.sub(re.escape(MD_NAV) + r"\s*<p>.*?</p>", "", body, flags=re.DOTALL)
    body = render_math(body)
    lines = [line.rstrip() for line in body.strip().splitlines()]
    title = page_title(body, fallback_title)
    return PAGE.format(
        title=html.escape(title),
        style=STYLE.strip(),
        nav_start=NAV_START,
        nav_end=NAV_END,
        body="\n".join(lines),
    )


def write_html(notebook, path: Path) -> Path:
    """The HTML rendering of an executed analysis (nbconvert's basic template, code hidden).

    The body goes into the report's page template (:func:`html_page`): styled,
    math as MathML, links to ``.md`` pages pointing at the ``.html`` ones.
    """
    exporter = HTMLExporter(template_name="basic")
    exporter.exclude_input = True
    exporter.exclude_input_prompt = True
    exporter.exclude_output_prompt = True
    exporter.anchor_link_text = ""
    body, _ = exporter.from_notebook_node(notebook)
    fallback = path.stem if path.stem != "README" else "Evaluation report"
    path.write_text(html_page(body, fallback_title=fallback), encoding="utf-8")
    return path


def markdown_to_html(markdown_path: Path) -> Path:
    """HTML page of a Markdown file written outside the notebooks (validation, benchmarks)."""
    import mistune

    text = markdown_path.read_text(encoding="utf-8")
    body = mistune.create_markdown(escape=False, plugins=["table", "strikethrough"])(text)
    path = markdown_path.with_suffix(".html")
    path.write_text(html_page(body, fallback_title=path.stem), encoding="utf-8")
    add_navigation(path.parent.parent if path.parent.name == "appendix" else path.parent)
    return path


def _pages(root: Path) -> list[Path]:
    pages = [root / "README.html"]
    pages += sorted((root / "sites").glob("*.html"))
    pages += [root / rel for rel, _ in APPENDICES]
    return [p for p in pages if p.is_file()]


def _title_of(page: Path) -> str:
    text = page.read_text(encoding="utf-8")
    match = re.search(r"<title>(.*?)</title>", text, re.DOTALL)
    title = html.unescape(match.group(1)) if match else page.stem
    return title.split(":")[0].strip() or page.stem


def add_navigation(root: Path) -> list[Path]:
    """Write the navigation header into every page of the report folder ``root``.

    Links go only to pages that exist there. Pages without the header markers
    (files dmi_eval did not write) are left alone. Returns the pages updated.
    """
    root = Path(root)
    pages = _pages(root)
    entries: list[tuple[str, str, str]] = []  # (group, relative path, label)
    for page in pages:
        rel = page.relative_to(root).as_posix()
        if rel == "README.html":
            entries.append(("", rel, "Summary"))
        elif rel.startswith("sites/"):
            entries.append(("Sites", rel, _title_of(page)))
    for rel, label in APPENDICES:
        if (root / rel).is_file():
            entries.append(("Appendix", rel, label))
    updated = []
    for page in pages:
        text = page.read_text(encoding="utf-8")
        if NAV_START not in text or NAV_END not in text:
            continue
        here = page.relative_to(root).as_posix()
        depth = here.count("/")
        parts, group = [], None
        for grp, rel, label in entries:
            if grp and grp != group:
                parts.append(f'<span class="group">{grp}:</span>')
            group = grp
            if rel == here:
                parts.append(f'<span class="here">{html.escape(label)}</span>')
            else:
                parts.append(f'<a href="{"../" * depth}{rel}">{html.escape(label)}</a>')
        nav = f'<nav class="dmi-nav">{" ".join(parts)}</nav>'
        start = text.index(NAV_START) + len(NAV_START)
        new = text[:start] + nav + text[text.index(NAV_END) :]
        if new != text:
            page.write_text(new, encoding="utf-8")
            updated.append(page)
    return updated
