"""Stacked event study as the study summary shows it: coverage words, prose, figure, caption."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from dmi_eval.plots.did import plot_event_study
from dmi_eval.stacked import stacked_event_study
from tests.test_did import _staggered


def _legend(ax) -> list[str]:
    return [t.get_text() for t in ax.get_legend().get_texts()]


def test_unbalanced_stack_states_each_sites_event_times():
    # the last site is called in 5 months before the data end: event times -6..5 only
    panel, study, *_ = _staggered(4, calls=(12, 30, 66))
    res = stacked_event_study(panel, study, window=(-6, 12))
    assert res.balanced_window() == (-6, 5)
    text = res.describe({"c2": "Late Site"})
    assert "over event times -6..12 around its own call-in" not in text
    assert "c0 -6..12, c1 -6..12, Late Site -6..5" in text
    assert "only event times -6..5 come from every site" in text
    # the event-time frame agrees: beyond 5, only two sites contribute
    frame = res.event_study().set_index("event_time")
    assert frame.loc[12, "n_sites"] == 2 and frame.loc[5, "n_sites"] == 3


def test_balanced_stack_keeps_the_window_sentence():
    panel, study, *_ = _staggered(4)
    res = stacked_event_study(panel, study, window=(-6, 12))
    assert res.balanced_window() == (-6, 12)
    assert "over event times -6..12 around its own call-in;" in res.describe()


def test_too_few_sites_prose_figure_and_caption_draw_no_interval():
    panel, study, *_ = _staggered(4)
    res = stacked_event_study(panel, study, window=(-6, 12))
    text = res.describe()
    assert res.notes and f"{res.average_post['pct_change']:+.1%}. With 3 sites" in text
    assert "%; With" not in text
    fig, ax = plot_event_study(res)
    legend = _legend(ax)
    assert not any("95% interval" in t for t in legend)  # none is drawn
    assert "estimate (no interval could be estimated)" in legend
    assert not ax.collections or all(
        len(c.get_segments()) == 0 for c in ax.collections if hasattr(c, "get_segments")
    )
    assert ax.get_ylabel().startswith("%")
    from dmi_eval.plots.did import event_study_caption

    caption = event_study_caption(res)
    assert "without intervals" in caption and "interval" not in caption.replace(
        "without intervals", ""
    )
    assert "% changes" in caption and "log rate ratio" not in caption
    plt.close(fig)


def test_with_enough_sites_the_intervals_are_drawn_and_captioned():
    calls = (12, 20, 28, 36, 44, 52)
    panel, study, *_ = _staggered(4, calls=calls, slopes=(0.0,) * 6)
    res = stacked_event_study(panel, study, window=(-6, 12), n_boot=199)
    assert np.isfinite(res.event_study()["ci_low"]).any()
    fig, ax = plot_event_study(res)
    assert "95% interval" in _legend(ax)
    from dmi_eval.plots.did import event_study_caption

    assert "with their 95% intervals" in event_study_caption(res)
    plt.close(fig)
