"""Dagon et al.'s one-at-a-time screen on an analytic gridded model with known answers."""

import numpy as np
import pytest
import xarray as xr

from bayescal.analysis.oat import dagon_oat
from bayescal.parameters import Parameter, ParameterSpace

N_CELL = 40


def _patterns():
    rng = np.random.default_rng(3)
    g = np.abs(rng.normal(size=(3, N_CELL))) + 0.1
    g[2] = g[0] * 2.0 + 0.05  # parameter c's pattern is (almost) parameter a's
    return g


def _model(space, g, coef):
    """field_v[cell] = sum_p coef[p, v] * g[p, cell] * x_p (linear: the effects are known exactly)."""
    def sim(theta):
        theta = np.atleast_2d(theta)
        out = {v: (("member", "cell"), (theta[:, :, None] * coef[None, :, j, None] * g[None]).sum(1))
               for j, v in enumerate(("gpp", "lh"))}
        return xr.Dataset({**out, "status": ("member", np.full(theta.shape[0], "done"))})
    return sim


def test_parameter_effect_pattern_correlation_and_ranks_are_eqs_1_and_2():
    space = ParameterSpace([Parameter("a", 1.0, 0.0, 2.0), Parameter("b", 1.0, 0.5, 1.5),
                            Parameter("c", 1.0, 0.0, 1.0)])
    g = _patterns()
    coef = np.array([[1.0, 0.5], [3.0, 2.0], [0.2, 0.1]])
    area = np.random.default_rng(0).uniform(1.0, 3.0, N_CELL)
    res = dagon_oat(_model(space, g, coef), space,
                    {"gpp": lambda ds: ds["gpp"], "lh": lambda ds: ds["lh"]}, area)
    span = space.upper - space.lower
    want_pe = np.array([[(abs(coef[p, v]) * g[p] * span[p]) @ area / area.sum() for v in range(2)]
                        for p in range(3)])
    np.testing.assert_allclose(res.pe.values, want_pe, rtol=1e-12)
    # PE maps are proportional to the patterns: PC(p, q) is their area-weighted correlation
    w = area / area.sum()
    def corr(x, y):
        xc, yc = x - x @ w, y - y @ w
        return (xc * yc) @ w / np.sqrt((xc**2 @ w) * (yc**2 @ w))
    for p in range(3):
        for q in range(3):
            np.testing.assert_allclose(res.pc_pairs.values[p, q], corr(g[p], g[q]), rtol=1e-10)
    np.testing.assert_allclose(res.pc.values, res.pc_pairs.sum("output").mean("parameter2").values)
    # a and c share a pattern: their PC is high, b's is lowest (rank 1)
    assert int(res.pc_rank.sel(parameter="b")) == 1
    # ranks per output from the highest effect; the combined rank averages PE and PC ranks
    for v in range(2):
        assert list(np.argsort(res.pe_rank_by_output.values[:, v])) == list(np.argsort(-want_pe[:, v]))
    np.testing.assert_allclose(res.combined, 0.5 * (res.pe_rank + res.pc_rank))
    assert res.attrs["runs"] == 7


def test_bad_field_named():
    space = ParameterSpace([Parameter("a", 1.0, 0.0, 2.0)])
    sim = _model(space, _patterns()[:1], np.ones((1, 2)))
    with pytest.raises(ValueError, match="field 'gpp' must be on"):
        dagon_oat(sim, space, {"gpp": lambda ds: ds["gpp"].isel(cell=0)}, np.ones(N_CELL))


def test_a_parameter_without_effect_does_not_rank_as_a_distinct_pattern():
    """Zero-effect maps have undefined pattern correlations; they must rank last, not first."""
    space = ParameterSpace([Parameter("a", 1.0, 0.0, 2.0), Parameter("b", 1.0, 0.5, 1.5),
                            Parameter("c", 1.0, 0.0, 1.0), Parameter("z", 1.0, 0.0, 1.0)])
    g = np.vstack([_patterns(), np.ones(N_CELL)])
    coef = np.array([[1.0, 0.5], [3.0, 2.0], [0.2, 0.1], [0.0, 0.0]])  # z does nothing
    area = np.random.default_rng(0).uniform(1.0, 3.0, N_CELL)
    res = dagon_oat(_model(space, g, coef), space,
                    {"gpp": lambda ds: ds["gpp"], "lh": lambda ds: ds["lh"]}, area)
    assert int(res.pc_rank.sel(parameter="z")) == 4 and int(res.pe_rank.sel(parameter="z")) == 4
    assert int(res.combined_rank.sel(parameter="z")) == 4
    assert int(res.pc_rank.sel(parameter="b")) == 1  # the others' ranks are as without z
    assert np.isfinite(res.pc.values).all()
