"""Synthetic control (Abadie et al.), synthetic DID and DID, with placebo inference.

Two layers:

* :class:`Synth` -- classic synthetic control on any units x periods outcome
  table with an optional predictor table (covariate means over chosen windows,
  outcome lags), nested search of the predictor weights ``V`` or a user-given
  ``V``, and an optional placebo-in-space test. Used for the reference datasets.
* :class:`SyntheticControl` -- the site-level model on a
  :class:`~dmi_eval.panel.SiteData`: outcome-only SC (``"sc"``) or synthetic
  difference-in-differences (``"sdid"``) for every outcome, with placebo-in-space, placebo-in-time and
  leave-one-out inference, fit diagnostics and the tidy effects frame.
"""

from __future__ import annotations

from dmi_eval.designs.synth.design import SyntheticControl
from dmi_eval.designs.synth.reference import Synth, SynthFit, predictor_table
from dmi_eval.designs.synth.results import SyntheticControlResults

__all__ = ["Synth", "SynthFit", "SyntheticControl", "SyntheticControlResults", "predictor_table"]
