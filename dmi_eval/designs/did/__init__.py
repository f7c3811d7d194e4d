"""Difference-in-differences and event studies on area-level counts.

Three layers:

* a numeric core, :func:`fit_fe`: a regression of an area x period outcome on
  regressors with area (entity) and period (time) fixed effects and standard
  errors clustered by area, either a Poisson fixed-effects model (the default
  for counts) or a linear model fitted with linearmodels' ``PanelOLS`` on
  ``log(1 + y)`` or on the counts themselves; it returns a read-only
  :class:`FEFit`;
* the site-level design :class:`DID` (``DID(site_data, ...).fit() ->``
  :class:`DIDResults`): the site's treated areas against its donor areas
  (catchment areas are never comparisons), a static DID for the effects rows
  (design ``"did"``) and an event study with leads and lags around the call-in
  and a joint pre-trend test;
* the cross-site staggered event study :func:`stacked_event_study` (a stacked
  design, Cengiz, Dube, Lindner & Zipperer 2019), valid under staggered call-in
  dates with heterogeneous effects, unlike two-way fixed effects that use
  already-treated areas as controls.

Why a Poisson fixed-effects model: counts per area and month are small (many
zeros), so a linear model on ``log(1 + y)`` does not estimate a percent change
of the count, and a model on the level mixes areas of very different size. The
Poisson model with area and period effects estimates a rate ratio, is
consistent when only the conditional mean is right (Wooldridge 1999), and is
fitted here by Newton's method on the likelihood with the area effects
concentrated out (the conditional multinomial likelihood, which gives exactly
the Poisson MLE). linearmodels has no Poisson panel model, and a statsmodels
GLM with 300 area and 72 period dummies takes seconds per fit (see the
benchmark); the concentrated fit takes milliseconds.
"""

from __future__ import annotations

from dmi_eval.designs.did.design import DID
from dmi_eval.designs.did.inference import WindowEffect, event_time_bins
from dmi_eval.designs.did.model import FEFit, fit_fe
from dmi_eval.designs.did.results import DIDResults

__all__ = ["DID", "DIDResults", "FEFit", "WindowEffect", "event_time_bins", "fit_fe"]
