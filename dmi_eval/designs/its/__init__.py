"""Interrupted time series (ITS): segmented regression, single and controlled.

Two layers:

* a numeric core that works on plain arrays -- :func:`fit_segmented` (one series)
  and :func:`fit_multigroup` (Linden's multiple-group / controlled ITS: the
  target stacked with one or more comparison series) -- both returning a
  read-only :class:`SegmentedFit` with coefficients, window effects,
  diagnostics and predictions;
* the site-level design :class:`ITS` (``ITS(site_data, ...).fit() ->``
  :class:`ITSResults`) that fits every outcome of a DMI site and returns the
  tidy effects frame (design ``"its"``, or ``"cits"`` against the comparison
  areas' total, their number as an offset).

Model families: OLS with Newey-West (HAC) standard errors; Poisson and
quasi-Poisson GLM (log link, optional exposure); negative binomial (NB2, alpha
estimated); SARIMAX with step / slope ("ramp") inputs.
"""

from __future__ import annotations

from dmi_eval.designs.its.design import ITS
from dmi_eval.designs.its.fit import fit_multigroup, fit_segmented
from dmi_eval.designs.its.model import (
    SegmentedFit,
    WindowEffect,
    default_hac_lags,
    segmented_design,
)
from dmi_eval.designs.its.results import ITSResults, OutcomeITS

__all__ = [
    "ITS",
    "ITSResults",
    "OutcomeITS",
    "SegmentedFit",
    "WindowEffect",
    "default_hac_lags",
    "fit_multigroup",
    "fit_segmented",
    "segmented_design",
]
