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


def _value_model(coef, g):
    """field_v[cell] = sum_i coef[i, v] * g[i, cell] * theta_i over every value i (linear)."""
    def sim(theta):
        theta = np.atleast_2d(theta)
        out = {v: (("member", "cell"), (theta[:, :, None] * coef[None, :, j, None] * g[None]).sum(1))
               for j, v in enumerate(("gpp", "lh"))}
        return xr.Dataset({**out, "status": ("member", np.full(theta.shape[0], "done"))})
    return sim


def test_family_perturbation_moves_every_value_of_a_family_and_gives_the_exact_effect():
    """Dagon perturbed each parameter with all its PFT values together: a family's PE map is the
    summed change of its values, each from its own lower to its own upper bound."""
    from bayescal.analysis.oat import group_oat_design, oat_groups

    space = ParameterSpace([
        Parameter("v", [1.0, 2.0, 0.5], [0.0, 1.0, 0.2], [2.0, 4.0, 0.6], groups=["A", "B", "C"]),
        Parameter("s", 1.0, 0.5, 1.5), Parameter("w", [1.0, 1.0], 0.0, 3.0, groups=["A", "B"])])
    assert oat_groups(space, "family") == {"v": [0, 1, 2], "s": [3], "w": [4, 5]}
    theta, names = group_oat_design(space, "family")
    assert names == ["v", "s", "w"] and theta.shape == (7, 6)
    np.testing.assert_array_equal(theta[1], [0.0, 1.0, 0.2, 1.0, 1.0, 1.0])  # v at its lower bounds
    np.testing.assert_array_equal(theta[2], [2.0, 4.0, 0.6, 1.0, 1.0, 1.0])  # ... and upper
    np.testing.assert_array_equal(theta[6], [1.0, 2.0, 0.5, 1.0, 3.0, 3.0])
    rng = np.random.default_rng(5)
    g = np.abs(rng.normal(size=(6, N_CELL))) + 0.1
    coef = rng.normal(size=(6, 2))
    area = rng.uniform(1.0, 3.0, N_CELL)
    res = dagon_oat(_value_model(coef, g), space, {"gpp": lambda ds: ds["gpp"], "lh": lambda ds: ds["lh"]},
                    area, unit="family")
    span = space.upper - space.lower
    for p, cols in enumerate(([0, 1, 2], [3], [4, 5])):
        for v in range(2):
            want = np.abs(sum(coef[i, v] * g[i] * span[i] for i in cols))  # Eq. 1 per cell
            np.testing.assert_allclose(res.pe_map.values[p, v], want, rtol=1e-12)
            np.testing.assert_allclose(res.pe.values[p, v], want @ area / area.sum(), rtol=1e-12)
    assert list(res.parameter.values) == ["v", "s", "w"] and res.attrs["runs"] == 7
    assert res.attrs["unit"] == "family"
    # each value alone is the other unit: 2 x 6 + 1 runs, the effects of single values
    alone = dagon_oat(_value_model(coef, g), space, {"gpp": lambda ds: ds["gpp"]}, area, unit="value")
    assert alone.attrs["runs"] == 13 and alone.sizes["parameter"] == 6
    np.testing.assert_allclose(alone.pe_map.values[1, 0], np.abs(coef[1, 0] * g[1] * span[1]), rtol=1e-12)


@pytest.mark.parametrize(("oat", "match"), [
    ({"unit": "pft"}, "'oat.unit' must be 'family' or 'value'"),
    ({"outputs": ["gpp", "mrso"]}, "'oat.outputs': unknown output 'mrso'"),
    ({"outputs": []}, "'oat.outputs' must name at least one"),
    ({"outputs": "gpp"}, "'oat.outputs' must be a list"),
    ({"top_k": 7, "unit": "family"}, r"'oat.top_k' = 7 keeps more than the 2 units"),
    ({"top_k": 5, "unit": "value"}, r"'oat.top_k' = 5 keeps more than the 3 units")])
def test_oat_keys_are_checked_by_name(oat, match):
    from bayescal.workflows import ConfigError, validate_config

    # the screened units: the families (or values) of the candidates -- 2 families, 3 values here
    params = {"candidates": ["gamma_w", "vmax[NDL-EVG]", "vmax[GRASS-C3]"]}
    with pytest.raises(ConfigError, match=match):
        validate_config({"run": {"workflow": "dagon"}, "oat": oat, "parameters": params})
    if "top_k" in oat:  # at the number of units it is taken
        validate_config({"run": {"workflow": "dagon"}, "oat": {**oat, "top_k": 2 if oat["unit"] == "family"
                                                              else 3}, "parameters": params})


def test_dagon_defaults_screen_families_on_the_models_outputs_among_dagons_seven():
    from bayescal.models.landcarbon import OUTPUT_VARIABLES
    from bayescal.workflows import validate_config

    cfg = validate_config({"run": {"workflow": "dagon"}})
    assert cfg["oat"]["unit"] == "family" and cfg["oat"]["select"] == "effect"
    # Dagon's seven: GPP, ET, transpiration fraction, sensible heat, two soil moistures, water
    # table depth; the embedded model writes GPP, latent heat (ET in energy units) and sensible heat
    assert cfg["oat"]["outputs"] == ["gpp", "hfls", "hfss"]
    assert {"gpp", "hfls", "hfss"} <= set(OUTPUT_VARIABLES)
