"""The appendices as a reader sees them: glossary, reproducibility, benchmark links.

The glossary and reproducibility scripts are run as ``dmi-eval evaluate``
runs them (:func:`dmi_eval.report.run_analysis`) on the shipped synthetic
study; the benchmark writer is run with its measurement replaced by fixed
numbers.
"""

from __future__ import annotations

import re
import tomllib
from importlib import metadata
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from dmi_eval.power import POWER
from dmi_eval.report import run_analysis
from dmi_eval.study_spec import VerdictRules
from dmi_eval.tables import DESIGN_LABELS, P_COLUMNS, TOO_WIDE
from dmi_eval.verdict import LABELS

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = ROOT / "analyses"
SYNTHETIC = ROOT / "data" / "synthetic"
IMAGE = re.compile(r"!\[[^\]]*\]\(([^)\s]+)\)")


def _run(name: str, study: Path, out: Path) -> str:
    """Run ``analyses/appendix_<name>.py`` on ``study`` and return the Markdown it writes."""
    page = out / "appendix" / f"{name}.md"
    run_analysis(
        SCRIPTS / f"appendix_{name}.py", {"study_path": str(study), "out_dir": str(out)}, page
    )
    return page.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def glossary(tmp_path_factory) -> str:
    return _run("glossary", SYNTHETIC / "study.toml", tmp_path_factory.mktemp("glossary"))


@pytest.fixture(scope="module")
def reproducibility(tmp_path_factory) -> str:
    out = tmp_path_factory.mktemp("reproducibility")
    return _run("reproducibility", SYNTHETIC / "study.toml", out)


def _entries(glossary: str) -> dict[str, str]:
    """Each bold term of the glossary -> the text that follows it up to the next term."""
    parts = re.split(r"\*\*(.+?)\*\*", glossary, flags=re.DOTALL)
    return {" ".join(parts[i].split()): parts[i + 1] for i in range(1, len(parts) - 1, 2)}


# Terms the reports use (reports/README.md, reports/sites/*.md, reports/appendix/*.md) that a
# glossary entry must name in its bold heading.
DEFINED_TERMS = (
    "Transition period",
    "MDE",
    "Minimum detectable effect",
    f"{POWER:.0%} power",
    "Prediction interval",
    "τ²",
    "tau^2",
    "I²",
    "I^2",
    "HKSJ",
    "Hartung–Knapp–Sidik–Jonkman",
    "Random-effects pooling",
    "Event study",
    "Stacked event study",
    "Wild (cluster) bootstrap",
    "RMSPE",
    "log rate ratio",
    "p (fall)",
    "p (rise)",
    "p (two-sided)",
)


@pytest.mark.slow
@pytest.mark.parametrize("term", DEFINED_TERMS)
def test_glossary_defines_every_term_the_reports_use(glossary, term):
    headings = [h for h, body in _entries(glossary).items() if len(body.strip()) > 40]
    assert any(term.casefold() in h.casefold() for h in headings), (term, headings)


@pytest.mark.slow
def test_glossary_explains_every_label_of_the_site_pages(glossary):
    """Every design, p-value column, table heading and verdict a site page prints."""
    labels = [
        *DESIGN_LABELS.values(),
        *(label for key, label in P_COLUMNS.items() if key != "p_value"),
        "expected without the DMI",
        "change",
        "interval",
        TOO_WIDE,
        "nearby areas",
        "comparison areas",
        "placebo",
        "pre-period fit",
        "primary design",
        *(label.replace("_", " ") for label in LABELS),
    ]
    text = glossary.casefold()
    missing = [label for label in labels if label.casefold() not in text]
    assert not missing


@pytest.mark.slow
def test_glossary_says_nearby_areas_can_fall(glossary):
    """The catchment's fall is reported (as diffusion), not only its rise."""
    p_entry = next(body for h, body in _entries(glossary).items() if h.startswith("p (one-sided"))
    assert "p (rise)" in p_entry
    # the verdict's words for a significant catchment fall (dmi_eval/verdict.py)
    assert "benefits spread to nearby areas" in p_entry
    assert "fell significantly" in p_entry


@pytest.mark.slow
def test_glossary_numbers_are_the_studys(tmp_path):
    """The significance level, the rule's minimum drop and the transition period are read from
    the study file, not typed."""
    study = tmp_path / "study" / "study.toml"
    study.parent.mkdir()
    for item in SYNTHETIC.iterdir():
        if item.name != "study.toml":
            (study.parent / item.name).symlink_to(item)
    text = (SYNTHETIC / "study.toml").read_text(encoding="utf-8")
    text = text.replace('frequency = "month"', 'frequency = "month"\ntransition = "post"')
    text = text.replace("\n[data]", "\n[verdict]\nalpha = 0.1\nmin_reduction = 0.3\n\n[data]", 1)
    study.write_text(text, encoding="utf-8")
    defaults = VerdictRules()
    assert (defaults.alpha, defaults.min_reduction) != (0.1, 0.3)

    page = " ".join(_run("glossary", study, tmp_path / "out").split())

    assert "Below 0.1 the report" in page
    assert "closure rule's size (30%)" in page
    assert 'counted in the "after" period' in page
    assert f"Below {defaults.alpha:g}" not in page


def _declared_dependencies() -> list[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    return [re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", d).group(0) for d in project["dependencies"]]


@pytest.mark.slow
@pytest.mark.parametrize("name", _declared_dependencies())
def test_reproducibility_lists_every_declared_dependency(reproducibility, name):
    row = re.compile(rf"^\|\s*{re.escape(name)}\s*\|\s*{re.escape(metadata.version(name))}\s*\|$")
    assert any(row.match(line) for line in reproducibility.splitlines()), name


@pytest.mark.slow
def test_reproducibility_pins_the_packages_those_pull_in(reproducibility):
    blocks = re.findall(r"^```\n(.*?)^```$", reproducibility, flags=re.MULTILINE | re.DOTALL)
    [block] = [b for b in blocks if all("==" in line for line in b.splitlines())]
    pins = dict(line.split("==") for line in block.splitlines())
    assert {name.casefold() for name in pins} >= {"pillow", "jinja2"}  # PNG and HTML writers
    assert all(metadata.version(name) == version for name, version in pins.items())
    declared = {name.casefold() for name in _declared_dependencies()}
    assert not declared & {name.casefold() for name in pins}  # each package listed once


def _fake_city_run(monkeypatch, tmp_path) -> Path:
    """Run ``bench_city.run`` with fixed measurements; return the reports folder."""
    import dmi_eval.config
    from tests.benchmarks import bench_city

    monkeypatch.setenv("DMI_BENCH_CITY_AREAS", "1000,2500")
    monkeypatch.delenv("DMI_BENCH_CITY_SITES", raising=False)
    monkeypatch.delenv("DMI_BENCH_CITY_KEEP", raising=False)
    monkeypatch.setattr(bench_city, "write_city", lambda n, folder: folder / "study.toml")
    sites = SimpleNamespace(sites=[SimpleNamespace(id=f"m{i}") for i in range(3)])
    monkeypatch.setattr(dmi_eval.config, "load_study", lambda path: sites)
    measured = iter([10.0, 20.0])
    monkeypatch.setattr(
        bench_city,
        "measure",
        lambda study, ids: dict.fromkeys(
            ("seconds", "cpu_seconds", "evaluate_seconds", "peak_tree_mb", "peak_process_mb"),
            next(measured),
        ),
    )
    out = tmp_path / "reports"
    from tests.benchmarks import run

    run.write_section(out, "city", bench_city.run(out))
    return out


def test_city_section_links_its_figure_from_where_it_is_written(monkeypatch, tmp_path):
    from tests.benchmarks.run import section_path

    out = _fake_city_run(monkeypatch, tmp_path)
    page = section_path(out, "city")
    links = IMAGE.findall(page.read_text(encoding="utf-8"))
    assert links
    assert all((page.parent / link).is_file() for link in links), links
    assert pd.read_csv(out / "results" / "city_benchmark.csv")["areas"].tolist() == [1000, 2500]


def test_assembled_benchmarks_page_links_the_figure_from_its_folder(monkeypatch, tmp_path):
    from tests.benchmarks.run import assemble

    out = _fake_city_run(monkeypatch, tmp_path)
    page = assemble(out)
    links = IMAGE.findall(page.read_text(encoding="utf-8"))
    assert links
    assert all((page.parent / link).is_file() for link in links), links


def test_assemble_keeps_links_of_a_section_written_for_the_assembled_page(tmp_path):
    """A section kept before its links were relative to its own file still assembles right."""
    from tests.benchmarks.run import assemble, section_path

    out = tmp_path / "reports"
    figure = out / "appendix" / "benchmarks" / "city_scaling.png"
    figure.parent.mkdir(parents=True)
    figure.write_bytes(b"png")
    section_path(out, "city").write_text(
        "## City\n\n![x](benchmarks/city_scaling.png) [nox](https://nox.thea.codes) [up](#city)\n",
        encoding="utf-8",
    )
    text = assemble(out).read_text(encoding="utf-8")
    assert "](benchmarks/city_scaling.png)" in text
    assert "](https://nox.thea.codes)" in text
    assert "](#city)" in text


def test_rebase_links_moves_relative_links_only(tmp_path):
    from tests.benchmarks.run import rebase_links

    source = tmp_path / "appendix" / "benchmarks"
    source.mkdir(parents=True)
    (source / "f.png").write_bytes(b"png")
    text = "![a](f.png) and [b](../methods.md) and [c](https://example.org/x.png)"
    moved = rebase_links(text, source, tmp_path / "appendix")
    assert moved == (
        "![a](benchmarks/f.png) and [b](methods.md) and [c](https://example.org/x.png)"
    )
