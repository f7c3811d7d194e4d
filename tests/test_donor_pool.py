"""A large city's donor pool: the areas nearest the market, used by every design; smaller pools whole."""

from __future__ import annotations

import numpy as np
import pytest

from dmi_eval import evaluation
from dmi_eval.donor_pool import level_trend, nearest_donors, restrict_donors
from dmi_eval.inference.parallel import compute
from tests.test_did import simulate_site
from tests.test_evaluation import _study


def _brute_force(target: np.ndarray, pool: np.ndarray, n: int) -> set[int]:
    """The n nearest rows, with the scale written out (MAD, else SD)."""
    scale = []
    for j in range(pool.shape[1]):
        col = pool[:, j]
        mad = 1.4826 * float(np.median(np.abs(col - np.median(col))))
        scale.append(mad if mad > 0 else (float(col.std()) or 1.0))
    dist = [
        float(np.sqrt(sum(((row[j] - target[j]) / scale[j]) ** 2 for j in range(2))))
        for row in pool
    ]
    order = sorted(range(len(pool)), key=lambda i: (dist[i], i))
    return set(order[:n])


def test_nearest_donors_are_the_n_closest():
    rng = np.random.default_rng(3)
    pool = np.column_stack([rng.normal(1.5, 0.8, 500), rng.normal(0.0, 0.2, 500)])
    target = np.array([2.8, 0.1])
    keep = nearest_donors(target, pool, 40)
    assert keep.size == 40 and np.all(np.diff(keep) > 0)
    assert set(keep.tolist()) == _brute_force(target, pool, 40)
    # a pool no larger than the cap is kept whole
    assert np.array_equal(nearest_donors(target, pool[:40], 40), np.arange(40))
    with pytest.raises(ValueError, match="at least 1"):
        nearest_donors(target, pool, 0)


def test_level_trend_reads_level_and_rise():
    flat = np.full(24, 9.0)
    rising = np.r_[np.full(12, 4.0), np.full(12, 10.0)]
    f = level_trend(np.vstack([flat, rising]))
    assert f[0, 0] == pytest.approx(np.log(10.0)) and f[0, 1] == pytest.approx(0.0)
    assert f[1, 0] == pytest.approx(np.log(8.0))
    assert f[1, 1] == pytest.approx(np.log(10.5 / 4.5))


def test_restrict_donors_keeps_the_nearest_areas_in_order():
    sd, _ = simulate_site(5, n_areas=60, base=6.0)
    donors = sd.donor_areas
    same, note = restrict_donors(sd, len(donors))
    assert same is sd and note is None
    view, note = restrict_donors(sd, 15)
    assert note is not None and f"15 of {len(donors)}" in note and "trend of drug," in note
    _, worded = restrict_donors(sd, 15, label="drug offences")
    assert "trend of drug offences," in worded  # the outcome in words on a report page
    assert len(view.donor_areas) == 15
    # original order, and exactly the 15 nearest in pre-period level and trend
    positions = [donors.index(a) for a in view.donor_areas]
    assert positions == sorted(positions)
    pre = sd.pre_mask
    market = sd.treated_series("drug").to_numpy(float)[pre] / len(sd.treated_areas)
    pool = level_trend(sd.donor_matrix("drug").to_numpy(float)[:, pre])
    assert set(positions) == _brute_force(level_trend(market)[0], pool, 15)
    assert view.treated_areas == sd.treated_areas and view.site is sd.site


def test_every_design_gets_the_restricted_pool_and_smaller_pools_whole(monkeypatch):
    sd, _ = simulate_site(2, n_areas=40, catchment=(6, 7))
    study = _study(sd, {})
    seen: dict[str, tuple[str, ...]] = {}

    def recorder(name):
        def fit(data, study):
            seen[name] = data.donor_areas
            return f"recorded {name}"

        return fit

    monkeypatch.setattr(evaluation, "DESIGNS", {n: recorder(n) for n in evaluation.DESIGNS})
    full = sd.panel.site_data(study, "site").donor_areas
    for cap, expected in ((len(full), full), (10, None)):
        seen.clear()
        monkeypatch.setattr(evaluation, "MAX_DONORS", cap)
        # in this process: the recorder sees the calls (the designs may run in workers)
        with compute(n_jobs=1), pytest.raises(Exception, match="cannot be fitted") as info:
            evaluation.evaluate_site(sd.panel, study, "site")
        pools = set(seen.values())
        assert len(pools) == 1 and set(seen) == set(evaluation.DESIGNS)
        (pool,) = pools
        if expected is not None:
            assert pool == full and "donor pool" not in str(info.value)
        else:
            assert len(pool) == 10 and set(pool) < set(full)
            assert "donor pool: the 10 of" in str(info.value)


def test_areas_that_can_be_placebos_come_first(monkeypatch):
    from dmi_eval import donor_pool

    sd, _ = simulate_site(7, n_areas=60, base=6.0)
    donors = sd.donor_areas
    pre = sd.pre_mask
    counts = sd.donor_matrix("drug").to_numpy(float)[:, pre]
    totals = counts.sum(axis=1)
    threshold = float(np.sort(totals)[-8])  # the 8 busiest areas (no ties in this draw)
    monkeypatch.setattr(donor_pool, "MIN_PRE_COUNT", threshold)
    busy = set(np.flatnonzero(totals >= threshold).tolist())
    assert len(busy) == 8
    view, note = restrict_donors(sd, 20)
    kept = {donors.index(a) for a in view.donor_areas}
    assert busy <= kept and len(kept) == 20
    market = sd.treated_series("drug").to_numpy(float)[pre] / len(sd.treated_areas)
    quiet = sorted(set(range(len(donors))) - busy)
    nearest = _brute_force(level_trend(market)[0], level_trend(counts[quiet]), 12)
    assert kept - busy == {quiet[i] for i in nearest}
    # with many busy areas, the pool is the nearest among them only
    monkeypatch.setattr(donor_pool, "MIN_PRE_COUNT", 0.0)
    view, _ = restrict_donors(sd, 20)
    kept = [donors.index(a) for a in view.donor_areas]
    assert set(kept) == _brute_force(level_trend(market)[0], level_trend(counts), 20)
