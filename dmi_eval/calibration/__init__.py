"""Calibration study: simulated cities with known truth, and the runner of ``nox -s calibrate``.

* :mod:`dmi_eval.calibration.city` -- the realistic-city simulator
  (:func:`~dmi_eval.calibration.city.simulate_city`, :class:`~dmi_eval.calibration.city.CitySpec`);
* :mod:`dmi_eval.calibration.runner` -- every design as used at sites, on those cities;
* :mod:`dmi_eval.calibration.summary` -- the table of size, coverage, power and the
  verdict's rates from the runner's rows (:mod:`dmi_eval.calibration.accuracy`: the
  estimate's error at known closures and the power it allows);
* :mod:`dmi_eval.calibration.report` -- ``calibration.csv`` and ``calibration.md``;
* :mod:`dmi_eval.calibration.like_site` -- the verdict's power and false-closure
  rate on cities like one real site (``spec_like_site``, ``dmi-eval power``).
"""

from dmi_eval.calibration.city import CitySpec, Effect, simulate_city
from dmi_eval.calibration.like_site import SitePower, power_like_site, spec_like_site
from dmi_eval.calibration.runner import Scenario, default_scenarios, run
from dmi_eval.calibration.summary import summarise

__all__ = [
    "CitySpec",
    "Effect",
    "Scenario",
    "SitePower",
    "default_scenarios",
    "power_like_site",
    "run",
    "simulate_city",
    "spec_like_site",
    "summarise",
]
