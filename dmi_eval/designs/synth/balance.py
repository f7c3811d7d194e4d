"""Balance table of a synthetic control: the market, its synthetic control and the donors."""

from __future__ import annotations

import numpy as np
import pandas as pd


def balance_table(
    y1: np.ndarray,
    Y0: np.ndarray,
    w: np.ndarray,
    pre: np.ndarray,
    cov: pd.DataFrame | None,
    n_tr: int,
) -> pd.DataFrame:
    """Predictor balance of the market, its synthetic control and the donor mean.

    Rows: the outcome's pre-period mean, the means of the first and second
    half of the pre period, the last pre period, and every numeric covariate
    (per area); columns ``treated``, ``synthetic`` (weights ``w`` on the
    donors ``Y0``) and ``donor_mean``.
    """
    idx = np.flatnonzero(pre)
    half = idx[: len(idx) // 2], idx[len(idx) // 2 :]
    rows = {
        "outcome, pre-period mean": (y1[idx].mean(), (w @ Y0[:, idx]).mean(), Y0[:, idx].mean()),
        "outcome, first half of pre": (
            y1[half[0]].mean(), (w @ Y0[:, half[0]]).mean(), Y0[:, half[0]].mean(),
        ),
        "outcome, second half of pre": (
            y1[half[1]].mean(), (w @ Y0[:, half[1]]).mean(), Y0[:, half[1]].mean(),
        ),
        "outcome, last pre period": (y1[idx[-1]], w @ Y0[:, idx[-1]], Y0[:, idx[-1]].mean()),
    }  # fmt: skip
    if cov is not None:
        num = cov.select_dtypes("number")
        tr = num.iloc[:n_tr].to_numpy().mean(axis=0)
        dn = num.iloc[n_tr:].to_numpy()
        for j, name in enumerate(num.columns):
            rows[f"covariate {name} (per area)"] = (tr[j], w @ dn[:, j], dn[:, j].mean())
    return pd.DataFrame(
        rows.values(),
        index=pd.Index(list(rows), name="predictor"),
        columns=["treated", "synthetic", "donor_mean"],
    ).astype(float)
