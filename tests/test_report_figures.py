"""The report's marginal figure: physical units, names and descriptions, bounds flagged, "truth"
only on a twin."""

import numpy as np
import pytest
import xarray as xr

from bayescal.parameters import Parameter, ParameterSpace
from bayescal.report.figures import at_bound, plot_posterior_vs_prior, plt


def test_posteriors_piled_at_a_bound_are_flagged():
    rng = np.random.default_rng(0)
    u = np.column_stack([rng.beta(0.3, 5, 4000), rng.beta(5, 5, 4000), 1 - rng.beta(0.3, 5, 4000)])
    assert at_bound(u).tolist() == ["lower", "", "upper"]


def _steps(ax) -> tuple[np.ndarray, np.ndarray]:
    """The heights and edges of a panel's one step patch."""
    from matplotlib.patches import StepPatch

    (step,) = [a for a in ax.patches if isinstance(a, StepPatch)]
    return step.get_data().values, step.get_data().edges


def test_marginals_in_physical_units_with_names_and_flags():
    space = ParameterSpace([Parameter("k", 1e-3, 1e-4, 1e-1, "d-1", "turnover rate", scale="log"),
                            Parameter("a", 2.0, 0.0, 5.0, "gC m-2 d-1", "seasonal amplitude")])
    rng = np.random.default_rng(1)
    u = xr.DataArray(np.column_stack([rng.beta(0.3, 5, 3000), rng.beta(20, 20, 3000)]),
                     dims=("sample", "parameter"), coords={"parameter": space.labels})
    fig = plot_posterior_vs_prior(u, None, np.array([0.1, 0.5]), space)
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles[0].startswith("k [d-1]\nturnover rate -- at lower bound")
    assert titles[1] == "a [gC m-2 d-1]\nseasonal amplitude"
    assert fig.axes[0].get_xscale() == "log" and np.allclose(fig.axes[0].get_xlim(), [1e-4, 1e-1])
    assert np.allclose(fig.axes[1].get_xlim(), [0.0, 5.0])
    assert "truth" not in fig._suptitle.get_text()  # real data: no truth is drawn or named
    x = space.from_unit(u.values)
    for j, ax in enumerate(fig.axes[:2]):  # each marginal: the samples' density per unit of the cube
        dens, edges = _steps(ax)
        pts = np.full((edges.size, 2), 0.5)
        pts[:, j] = edges
        w = np.diff(space.to_unit(pts)[:, j])  # the bins' widths in the cube
        assert np.sum(dens * w) == pytest.approx(1.0)
        inside = (x[:, j] >= edges[3]) & (x[:, j] <= edges[4])
        assert dens[3] * w[3] == pytest.approx(inside.mean(), abs=1 / len(x))
    plt.close(fig)
    # a posterior equal to its prior is drawn flat, on the log axis too (a density per physical unit
    # would fall as 1/x over the three decades and look piled at the lower bound)
    flat = u.copy(data=rng.random(u.shape))
    fig = plot_posterior_vs_prior(flat, None, None, space)
    for ax in fig.axes[:2]:
        assert np.all(np.abs(_steps(ax)[0] - 1.0) < 0.25), _steps(ax)[0]
    plt.close(fig)
    fig = plot_posterior_vs_prior(u, np.array([0.2, 0.5]), None, space)
    assert fig._suptitle.get_text() == (  # two panels: two lines
        "posterior (blue) over its uniform prior range;\n"
        "truth black, optimum red dashed; red titles: piled at a bound")
    plt.close(fig)


def test_ga_convergence_per_generation_and_best_chromosome_so_far():
    """Seiler Figs. 4 and 5b: per generation the spread of misfits and the best so far (never
    rising); Fig. 5b follows the best chromosome so far, not each generation's best."""
    from bayescal.report.figures import plot_convergence
    from bayescal.report.seiler import plot_ga_parameters

    gen = np.repeat(np.arange(4), 5)
    mis = np.array([5, 6, 7, 8, 9, 3, 9, 9, 9, 9, 4, 8, 8, 8, 8, 1, 9, 9, 9, 9], float)
    u = np.column_stack([gen / 10.0 + np.arange(20) / 100.0, np.full(20, 0.5)])
    hist = xr.Dataset({"misfit": ("member", mis), "batch": ("member", gen),
                       "status": ("member", np.full(20, "done")), "u": (("member", "parameter"), u),
                       "evaluation": ("member", np.arange(1, 21)),
                       "best_misfit": ("member", np.minimum.accumulate(mis))},
                      coords={"parameter": ["a", "b"]}, attrs={"method": "ga"})
    fig = plot_convergence(hist, default=6.5)
    best = [ln for ln in fig.axes[0].lines if ln.get_label() == "best so far"][0]
    np.testing.assert_array_equal(best.get_ydata(), [5, 3, 3, 1])
    plt.close(fig)
    fig = plot_ga_parameters(hist, np.array([0.5, 0.5]))
    line_a = fig.axes[1].lines[0]  # value a of the best chromosome so far, per generation
    np.testing.assert_allclose(line_a.get_ydata(), [u[0, 0], u[5, 0], u[5, 0], u[15, 0]])
    assert fig.axes[1].get_legend() is not None  # two values: named in a legend
    plt.close(fig)
    many = hist.reindex(parameter=[f"p{i}" for i in range(30)]).fillna(0.5)  # 30 values: no legend
    fig = plot_ga_parameters(many, np.full(30, 0.5))
    assert fig.axes[1].get_legend() is None and "30 values" in fig.axes[1].get_title()
    assert len(fig.axes[1].lines) == 30
    plt.close(fig)


def test_pair_plot_draws_log_scaled_values_on_log_axes():
    """A log-scaled value (three decades) on log axes with log-spaced bins, a linear one linear."""
    from bayescal.report.figures import log_scaled, plot_pair

    space = ParameterSpace([Parameter("k", 1e-3, 1e-4, 1e-1, "d-1", "turnover rate", scale="log"),
                            Parameter("a", 2.0, 0.0, 5.0, "gC m-2 d-1", "seasonal amplitude")])
    rng = np.random.default_rng(2)
    x = space.from_unit(rng.random((4000, 2)))  # the prior: log-uniform k
    post = xr.Dataset({lab: (("chain", "draw"), x[:, j].reshape(8, 500))
                       for j, lab in enumerate(space.labels)})
    assert log_scaled(space, space.labels) == {"k"}
    fig = plot_pair(post, space.labels, log=log_scaled(space, space.labels))
    diag_k, below, diag_a = fig.axes[0], fig.axes[2], fig.axes[3]  # (0,0), (1,0), (1,1); (0,1) hidden
    assert diag_k.get_xscale() == "log" and below.get_xscale() == "log" and below.get_yscale() == "linear"
    assert diag_a.get_xscale() == "linear"
    heights = np.array([p.get_height() for p in diag_k.patches])
    assert heights.size == 40 and heights.min() > 0.6 * heights.mean()  # flat in log: log-spaced bins
    plt.close(fig)
