"""Micro-level synthetic control (microsynth) for small-area interventions.

A Drug Market Intervention targets a handful of micro-areas (blocks) with tiny
counts. Following Robbins, Saunders & Kilmer (2017, JASA) and the R package
microsynth, the control areas are weighted so that their weighted totals equal
the treated areas' totals on every covariate and on every pre-period (or block
of pre periods) of several outcomes at once. The synthetic control's
post-period totals are the counterfactual.

Two layers:

- :func:`fit_microsynth` works on plain DataFrames (outcome -> units x periods
  counts) and is what the reference validation (Seattle DMI) calls;
- :class:`MicroSynth` is the site-level model on a :class:`~dmi_eval.panel.SiteData`.

Inference (all on the log ratio of treated to synthetic totals):

- *linearization*: survey-weighted least squares of the outcome on a treatment
  dummy and period dummies over the post-period rows, sandwich variance (as
  ``survey::svyglm``), delta-method interval on the log ratio;
- *jackknife*: the weights are recomputed leaving out one group of treated and
  control units at a time (JK1 variance);
- *permutation*: placebo treated sets drawn from all units, weights recomputed
  for each, p-values and intervals from the standardised placebo statistics;
- an *omnibus* test across outcomes for each method.
"""

from __future__ import annotations

from dmi_eval.designs.microsynth.design import MicroSynth
from dmi_eval.designs.microsynth.model import fit_microsynth
from dmi_eval.designs.microsynth.results import MicroSynthResults

__all__ = ["MicroSynth", "MicroSynthResults", "fit_microsynth"]
