"""HTML pages: math as MathML, navigation only to pages that exist, no pilcrows."""

from __future__ import annotations

import re

from dmi_eval.render import MD_NAV, add_navigation, html_page, markdown_to_html, render_math


def test_math_is_rendered_offline_and_code_is_left_alone():
    body = "<p>Cost $5 and $x_t = \\beta_0 +\n\\beta_1 t$ then $$\\sum_i w_i$$</p><code>$a$</code>"
    html = render_math(body)
    assert html.count("<math") == 2 and 'display="block"' in html
    assert "<code>$a$</code>" in html and "Cost $5" in html


def test_page_has_no_pilcrows_no_markdown_nav_and_links_html():
    body = (
        '<h1 id="T">Title<a class="anchor-link" href="#T">¶</a></h1>'
        f'{MD_NAV}\n<p><a href="../README.md">Summary</a></p><p><a href="x.md#a">x</a></p>'
    )
    page = html_page(body, fallback_title="f")
    assert "¶" not in page and "<title>Title</title>" in page
    assert "../README" not in page and 'href="x.html#a"' in page


def test_navigation_links_only_existing_pages(tmp_path):
    for rel in ("README.md", "sites/a.md", "appendix/methods.md"):
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"# {path.stem.title()}: page\n\ntext $x^2$\n")
        markdown_to_html(path)
    (tmp_path / "appendix" / "mine.html").write_text("<p>user page</p>")
    add_navigation(tmp_path)
    site = (tmp_path / "sites" / "a.html").read_text()
    nav = re.search(r'<nav class="dmi-nav">(.*?)</nav>', site).group(1)
    assert 'href="../README.html"' in nav and 'href="../appendix/methods.html"' in nav
    assert '<span class="here">A</span>' in nav
    assert "validation" not in nav.lower() and "mine" not in nav
    (tmp_path / "appendix" / "validation.md").write_text("# Validation\n")
    markdown_to_html(tmp_path / "appendix" / "validation.md")
    assert 'href="../appendix/validation.html"' in (tmp_path / "sites" / "a.html").read_text()
    assert (tmp_path / "appendix" / "mine.html").read_text() == "<p>user page</p>"
