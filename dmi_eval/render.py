"""HTML pages of the report: an executed notebook or a Markdown file, one page template.

Used by ``report`` (the analyses) and by ``validation`` / the benchmarks (Markdown written
outside the notebooks), so that neither imports the other.
"""

from __future__ import annotations

import re
from pathlib import Path

from nbconvert import HTMLExporter

HTML_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title}</title>
<style>
body {{ font-family: sans-serif; max-width: 60em; margin: 2em auto; padding: 0 1em;
       line-height: 1.45; }}
table {{ border-collapse: collapse; font-size: 0.85em; margin: 1em 0; }}
th, td {{ border: 1px solid #ccc; padding: 0.2em 0.5em; text-align: left; }}
img {{ max-width: 100%; }}
pre {{ background: #f6f6f6; padding: 0.5em; overflow-x: auto; }}
</style>
</head>
<body>
{body}
</body>
</html>
"""


def write_html(notebook, path: Path) -> Path:
    """The HTML rendering of an executed analysis (nbconvert's basic template, code hidden).

    Links between report pages point at the ``.html`` pages instead of the
    ``.md`` ones, so the HTML folder reads on its own.
    """
    exporter = HTMLExporter(template_name="basic")
    exporter.exclude_input = True
    exporter.exclude_input_prompt = True
    exporter.exclude_output_prompt = True
    body, _ = exporter.from_notebook_node(notebook)
    body = re.sub(r'href="([^":]+)\.md(#[^"]*)?"', r'href="\1.html\2"', body)
    title = path.stem if path.stem != "README" else "Evaluation report"
    lines = [line.rstrip() for line in body.strip().splitlines()]
    path.write_text(HTML_PAGE.format(title=title, body="\n".join(lines)), encoding="utf-8")
    return path


def markdown_to_html(markdown_path: Path) -> Path:
    """HTML page of a Markdown file written outside the notebooks (validation, benchmarks)."""
    import mistune

    text = markdown_path.read_text(encoding="utf-8")
    body = mistune.html(text)
    body = re.sub(r'href="([^":]+)\.md(#[^"]*)?"', r'href="\1.html\2"', body)
    path = markdown_path.with_suffix(".html")
    lines = [line.rstrip() for line in body.strip().splitlines()]
    path.write_text(HTML_PAGE.format(title=path.stem, body="\n".join(lines)), encoding="utf-8")
    return path
