"""One figure style for every design: title, axis in words, observed / expected, call-in."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from dmi_eval.plots.style import (
    CALL_IN_LABEL,
    EXPECTED_LABEL,
    OBSERVED_LABEL,
    per_period,
    plot_observed_expected,
    titles_in_words,
)


def series(periods):
    n = len(periods)
    role = ["pre"] * 10 + ["transition"] + ["post"] * (n - 11)
    return pd.DataFrame(
        {
            "period": periods,
            "role": role,
            "observed": np.arange(n, dtype=float) + 5,
            "counterfactual": np.arange(n, dtype=float) + 6,
            "low": np.where(np.array(role) == "post", 3.0, np.nan),
            "high": np.where(np.array(role) == "post", 9.0, np.nan),
        }
    )


@pytest.mark.parametrize(
    "periods",
    [list(pd.period_range("2018-01", periods=20, freq="M")), list(range(1, 21))],
)
def test_every_counterfactual_figure_reads_in_words(periods):
    import matplotlib.pyplot as plt

    fig, ax = plot_observed_expected(
        series(periods),
        title="Eastside: drug offences",
        ylabel=per_period("drug", "month"),
        band_label="90% band",
    )
    assert ax.get_title(loc="left") == "Eastside: drug offences"
    assert ax.get_ylabel() == "drug offences per month"
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend[0] == OBSERVED_LABEL and EXPECTED_LABEL in legend and "90% band" in legend
    assert "call-in period (left out)" in legend
    assert CALL_IN_LABEL in [t.get_text() for t in ax.texts]
    plt.close(fig)


def test_labels_come_from_the_study():
    assert per_period("i_drugs", "quarter", "drug offences") == "drug offences per quarter"
    assert per_period("any_crime", None) == "any crime offences"


def test_titles_in_words_replaces_the_first_matching_code_at_the_start_only():
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2)
    a.set_title("riverside: drug, event study (Poisson)")
    b.set_title("drug: permutation test", loc="left")
    b.set_title("riverside: drug", loc="right")
    words = [
        ("riverside: drug", "Riverside: drug offences"),
        ("riverside:", "Riverside:"),
        ("drug:", "Drug offences:"),
    ]
    titles_in_words(fig, words)
    assert a.get_title() == "Riverside: drug offences, event study (Poisson)"
    assert b.get_title(loc="left") == "Drug offences: permutation test"
    assert b.get_title(loc="right") == "Riverside: drug offences"
    titles_in_words(fig, words)  # words are not codes: a second pass changes nothing
    assert a.get_title() == "Riverside: drug offences, event study (Poisson)"
    plt.close(fig)
