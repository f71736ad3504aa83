"""Sensitivity analysis: analytic indices (Ishigami, Sobol G), screening the embedded model,
failed members."""

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
import xarray as xr
from SALib.test_functions import Ishigami, Sobol_G

from bayescal.analysis.sensitivity import (
    SensitivityError,
    analyze,
    evaluate,
    one_at_a_time,
    sample,
    screen,
)
from bayescal.models import LandCarbonModel, make_drivers, make_grid
from bayescal.parameters import Parameter, ParameterSpace
from bayescal.report import plot_heatmap, plot_ranking


def analytic(fn, space, fail_fraction=0.0, seed=0):
    """Wrap an analytic function as a simulator; optionally fail a random fraction of members."""
    rng = np.random.default_rng(seed)

    def sim(theta):
        y = fn(theta)
        failed = rng.random(theta.shape[0]) < fail_fraction
        return xr.Dataset({"y": ("member", np.where(failed, np.nan, y)), "failed": ("member", failed)},
                          coords={"member": np.arange(theta.shape[0])})
    return sim


TARGET = {"y": lambda ds: ds["y"]}


@pytest.fixture(scope="module")
def ishigami_space():
    return ParameterSpace([Parameter(f"x{i}", 0.0, -np.pi, np.pi) for i in (1, 2, 3)])


def test_ishigami_sobol_within_bootstrap_intervals(ishigami_space):
    space = ishigami_space
    design = sample(space, "sobol", 2048, seed=1)
    res = evaluate(analytic(Ishigami.evaluate, space), design, TARGET)
    ind = analyze(space, design, res, seed=2)["indices"].sel(target="y")
    s1_true, st_true = np.array([0.3139, 0.4424, 0.0]), np.array([0.5576, 0.4424, 0.2437])
    s1, s1c = ind.sel(index="S1").values, ind.sel(index="S1_conf").values
    st, stc = ind.sel(index="ST").values, ind.sel(index="ST_conf").values
    assert np.all(np.abs(s1 - s1_true) <= s1c), (s1, s1c)
    assert np.all(np.abs(st - st_true) <= stc), (st, stc)


def test_sobol_g_function_analytic(ishigami_space):
    a = np.array([0.0, 1.0, 4.5, 9.0, 99.0])
    space = ParameterSpace([Parameter(f"x{i}", 0.5, 0.0, 1.0) for i in range(a.size)])
    design = sample(space, "sobol", 2048, seed=3)
    res = evaluate(analytic(lambda x: Sobol_G.evaluate(x, a), space), design, TARGET)
    ind = analyze(space, design, res, seed=4)["indices"].sel(target="y")
    s1_true = Sobol_G.sensitivity_index(a)
    st_true = Sobol_G.total_sensitivity_index(a)
    assert np.all(np.abs(ind.sel(index="S1").values - s1_true) <= ind.sel(index="S1_conf").values)
    assert np.all(np.abs(ind.sel(index="ST").values - st_true) <= ind.sel(index="ST_conf").values)


def test_failed_members_refused_or_dropped_by_blocks(ishigami_space):
    space = ishigami_space
    design = sample(space, "sobol", 2048, seed=5)
    res = evaluate(analytic(Ishigami.evaluate, space, fail_fraction=0.1, seed=6), design, TARGET)
    assert 0.05 < float((res.status != "done").mean()) < 0.15
    with pytest.raises(SensitivityError, match=r"members \(10%\) failed.*on_failure='drop'"):
        analyze(space, design, res)
    out = analyze(space, design, res, on_failure="drop", seed=7)
    assert out.attrs["blocks_dropped"] > 0
    assert out.attrs["members_used"] % 5 == 0  # whole Saltelli blocks of d + 2 rows
    ind = out["indices"].sel(target="y")
    st_true = np.array([0.5576, 0.4424, 0.2437])
    assert np.all(np.abs(ind.sel(index="ST").values - st_true) <= ind.sel(index="ST_conf").values)
    morris = sample(space, "morris", 50, seed=8)
    mres = evaluate(analytic(Ishigami.evaluate, space, fail_fraction=0.1, seed=9), morris, TARGET)
    with pytest.raises(SensitivityError, match="failed"):
        analyze(space, morris, mres)
    assert analyze(space, morris, mres, on_failure="drop").attrs["blocks_dropped"] > 0


def test_groups_and_fast(ishigami_space):
    space = ParameterSpace([Parameter("a", [0.0, 0.0], -np.pi, np.pi, groups=["1", "2"]),
                            Parameter("b", 0.0, -np.pi, np.pi)])
    design = sample(space, "sobol", 1024, seed=1, groups=True)
    res = evaluate(analytic(Ishigami.evaluate, space), design, TARGET)
    ind = analyze(space, design, res)["indices"].sel(target="y")
    assert list(ind.parameter.values) == ["a", "b"]
    # group {x1, x2}: S1 of the group = S1 + S2 + S12 (S12 = 0) -> 0.756; ST of x3 = 0.2437
    assert ind.sel(parameter="a", index="S1") == pytest.approx(0.7563, abs=0.05)
    fdesign = sample(ishigami_space, "fast", 1000, seed=2)
    fres = evaluate(analytic(Ishigami.evaluate, ishigami_space), fdesign, TARGET)
    find = analyze(ishigami_space, fdesign, fres)["indices"].sel(target="y")
    np.testing.assert_allclose(find.sel(index="S1").values, [0.3139, 0.4424, 0.0], atol=0.05)


@pytest.fixture(scope="module")
def screening_model():
    """A small embedded model with no C4 crops: vmax[CROP-C4] is inert for every output."""
    grid = make_grid(n_cells=30, seed=3)
    frac = grid.pft_frac.values.copy()
    frac[:, 6] = 0.0
    frac /= frac.sum(axis=1, keepdims=True)
    grid["pft_frac"] = (("cell", "pft"), frac)
    drivers = make_drivers(grid, start=2001, end=2005, ramp_start=1996, seed=3)
    model = LandCarbonModel(grid=grid, drivers=drivers, chunk_size=64)
    space = model.space.only(["vmax[BDL-EVG]", "vmax[CROP-C4]", "kn[BDL-EVG]", "alpha_phtsyn[GRASS-C3]",
                              "extnprob", "bsratesc", "q10_rh", "lfespany[NDL-EVG]"])
    return model, space


SCREEN_TARGETS = {
    "gpp": lambda ds: ds.gpp_global.mean("year"),
    "csoil": lambda ds: ds.csoil_global.mean("year"),
}


@pytest.mark.slow
def test_embedded_model_screening(screening_model, tmp_path):
    model, space = screening_model
    design = sample(space, "sobol", 128, seed=11)
    res = evaluate(model, design, SCREEN_TARGETS, store=tmp_path / "sobol", batch_size=128,
                   keep=["gpp_global", "csoil_global"])
    sob = analyze(space, design, res, on_failure="drop")
    st = sob["indices"].sel(index="ST")
    assert str(st.sel(target="gpp").idxmax("parameter").values) == "vmax[BDL-EVG]"
    kept = screen(sob, threshold=0.02)
    assert "vmax[CROP-C4]" not in kept and "vmax[BDL-EVG]" in kept
    assert abs(float(st.sel(parameter="vmax[CROP-C4]", target="gpp"))) < 0.01
    reduced = space.only(kept)
    assert "vmax[CROP-C4]" not in reduced.labels
    # Morris agrees on the top set
    mdesign = sample(space, "morris", 30, seed=12)
    mres = evaluate(model, mdesign, SCREEN_TARGETS, batch_size=128)
    mor = analyze(space, mdesign, mres, on_failure="drop")
    assert set(screen(sob, top_k=3, targets=["gpp"])) == set(screen(mor, top_k=3, targets=["gpp"]))
    assert float(mor["indices"].sel(parameter="vmax[CROP-C4]", target="gpp", index="mu_star")) == 0.0
    ax = plot_ranking(sob, "gpp")
    ax.figure.savefig(tmp_path / "rank.png")
    ax = plot_heatmap(sob)
    ax.figure.savefig(tmp_path / "heat.png")
    assert (tmp_path / "rank.png").stat().st_size > 1000


def test_one_at_a_time(screening_model):
    model, space = screening_model
    maps = {"gpp": lambda ds: ds.gpp.mean("time")}
    oat = one_at_a_time(model, space, SCREEN_TARGETS, maps=maps)
    eff = oat["indices"].sel(index="effect", target="gpp")
    assert float(eff.sel(parameter="vmax[CROP-C4]")) == 0.0
    top2 = [str(p) for p in eff.sortby(eff, ascending=False).parameter.values[:2]]
    assert "vmax[BDL-EVG]" in top2  # with kn[BDL-EVG]: the paper's two most influential
    assert oat["mean_rank"].sel(parameter="vmax[BDL-EVG]") <= 3
    pc = oat["pattern_correlation_gpp"]
    assert float(pc.sel(parameter="vmax[BDL-EVG]", parameter2="vmax[BDL-EVG]")) == pytest.approx(1.0)
    assert "vmax[CROP-C4]" not in screen(oat, threshold=0.01)


def test_errors(ishigami_space):
    with pytest.raises(SensitivityError, match="power of two"):
        sample(ishigami_space, "sobol", 100)
    with pytest.raises(SensitivityError, match="unknown method"):
        sample(ishigami_space, "pawn2", 8)
    for method, n, least in (("sobol", 0, 1), ("morris", 1, 2), ("fast", 10, 65)):
        with pytest.raises(SensitivityError, match=rf"{method}: n must be an integer >= {least}, got {n}"):
            sample(ishigami_space, method, n)
    assert sample(ishigami_space, "fast", 65, seed=0).sizes["member"] == 65 * 3  # the least FAST takes
    other = ParameterSpace([Parameter("z", 0.0, -1.0, 1.0)])
    design = sample(ishigami_space, "sobol", 8, seed=0)
    res = evaluate(analytic(Ishigami.evaluate, ishigami_space), design, TARGET)
    with pytest.raises(SensitivityError, match="another parameter space"):
        analyze(other, design, res)


def test_a_generator_seed_is_its_next_draw(ishigami_space):
    """SALib takes int seeds: a numpy Generator gives its next draw (the same design as that int,
    the same again from a Generator seeded alike); anything else is named."""
    from bayescal.parameters.design import int_seed

    drawn = int(np.random.default_rng(5).integers(2**31))
    a = sample(ishigami_space, "sobol", 8, seed=np.random.default_rng(5))
    np.testing.assert_array_equal(a.values, sample(ishigami_space, "sobol", 8, seed=drawn).values)
    np.testing.assert_array_equal(a.values, sample(ishigami_space, "sobol", 8,
                                                   seed=np.random.default_rng(5)).values)
    assert int_seed(None) is None and int_seed(np.int64(3)) == 3
    with pytest.raises(TypeError, match="seed must be an int or a numpy.random.Generator, got float"):
        int_seed(1.5)
