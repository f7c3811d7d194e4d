"""The market-closure rule: unit cases, and every synthetic site gets its true verdict."""

from __future__ import annotations

import json

import pytest

from dmi_eval.config import VerdictRules, load_study
from dmi_eval.data import load_study_data
from dmi_eval.evaluation import evaluate_site
from dmi_eval.verdict import Evidence, WindowEvidence, decide, rule_text

RULES = VerdictRules()


def window(pct, p_lower, design="sc", name="post"):
    return WindowEvidence(design, name, pct, pct - 0.1, pct + 0.1, p_lower)


def evidence(
    post=(-0.4, 0.01),
    last=(-0.4, 0.01),
    catchment=None,
    pre_mean=30.0,
    n_pre=40,
    fit=0.2,
    others=(),
):
    return Evidence(
        site="s",
        outcome="drug",
        post=window(*post),
        last=window(*last, name="last6"),
        n_pre=n_pre,
        pre_mean=pre_mean,
        pre_fit_ratio=fit,
        catchment=None if catchment is None else window(*catchment),
        others=tuple(window(pct, 0.5, design="did") for pct, _ in others),
        others_p_two_sided=tuple(p for _, p in others),
    )


@pytest.mark.parametrize(
    ("ev", "label", "phrase"),
    [
        (evidence(), "closed", "held over the last 6"),
        (evidence(post=(-0.4, 0.2)), "not_closed", "No significant reduction"),
        (evidence(post=(0.3, 0.99)), "not_closed", "rose 30%"),
        (evidence(catchment=(0.5, 0.999)), "displaced", "moved next door"),
        (evidence(catchment=(-0.3, 0.01)), "closed", "benefits spread"),
        (evidence(last=(-0.05, 0.4)), "not_closed", "came back"),
        (evidence(post=(-0.15, 0.01)), "not_closed", "smaller than the 25%"),
        (evidence(pre_mean=2.0), "inconclusive", "too few for the test"),
        (evidence(n_pre=8), "inconclusive", "Only 8 pre-intervention periods"),
        (evidence(fit=0.9), "inconclusive", "Poor pre-period fit"),
        (evidence(others=[(0.3, 0.01)]), "inconclusive", "Designs disagree"),
        (evidence(others=[(0.3, 0.3)]), "closed", "held"),
    ],
)
def test_rule(ev, label, phrase):
    verdict = decide(ev, RULES)
    assert verdict.label == label
    assert phrase in verdict.reasons_text()


def test_thresholds_are_configurable_and_stated():
    strict = VerdictRules(min_reduction=0.5)
    assert decide(evidence(), strict).label == "not_closed"
    text = rule_text(strict)
    assert "at least 50%" in text and "one-sided p < 0.05" in text


@pytest.mark.slow
def test_every_synthetic_site_gets_its_true_verdict(project_root):
    folder = project_root / "data" / "synthetic"
    study = load_study(folder / "study.toml")
    truth = json.loads((folder / "truth.json").read_text())["sites"]
    panel = load_study_data(study).panel
    got = {s.id: evaluate_site(panel, study, s.id).verdict.label for s in study.sites}
    assert got == {site: t["verdict"] for site, t in truth.items()}
