import numpy as np
import pytest

from bayescal.parameters import Parameter, ParameterSpace
from bayescal.parameters.design import box_around, box_spanning, latin_hypercube, sobol, uniform


@pytest.fixture
def space():
    return ParameterSpace([
        Parameter("a", 1.0, 0.0, 2.0),
        Parameter("b", [5.0, 6.0, 7.0, 8.0], 1.0, 10.0, groups="pft4"),
        Parameter("c", -1.0, -3.0, 4.0),
    ]).fix({"c": None})


@pytest.mark.parametrize("optimization", [None, "maximin", "random-cd"])
def test_latin_hypercube_one_point_per_stratum(space, optimization):
    n = 37
    d = latin_hypercube(space, n, seed=3, optimization=optimization)
    assert d.dims == ("member", "parameter") and d.shape == (n, space.n_free)
    u = space.to_unit(d.values)
    for j in range(space.n_free):
        strata = np.floor(u[:, j] * n).astype(int)
        assert sorted(strata) == list(range(n))


def test_maximin_spreads_points(space):
    from scipy.spatial.distance import pdist

    plain = min(pdist(space.to_unit(latin_hypercube(space, 20, seed=s).values)).min() for s in range(5))
    best = pdist(space.to_unit(latin_hypercube(space, 20, seed=0, optimization="maximin").values)).min()
    assert best > 0.8 * plain


@pytest.mark.parametrize("make", [latin_hypercube, sobol, uniform])
def test_same_seed_same_design(space, make):
    a, b, c = make(space, 16, seed=5), make(space, 16, seed=5), make(space, 16, seed=6)
    np.testing.assert_array_equal(a.values, b.values)
    assert not np.array_equal(a.values, c.values)


@pytest.mark.parametrize("make", [latin_hypercube, sobol, uniform])
def test_sub_box_designs_stay_inside(space, make):
    point = space.from_unit(np.array([0.02, 0.5, 0.97, 0.5, 0.3]))
    box = box_around(space, point, 0.1)
    d = make(space, 64, seed=1, box=box)
    u = space.to_unit(d.values)
    assert np.all(u >= box[0]) and np.all(u <= box[1])
    assert np.all(u >= 0) and np.all(u <= 1)
    assert np.all(d.values >= space.lower) and np.all(d.values <= space.upper)
    np.testing.assert_allclose(box[0][0], 0.0)  # clipped at the bound
    np.testing.assert_allclose(box[1][2], 1.0)


def test_box_spanning_best_runs(space):
    pts = space.from_unit(np.array([[0.2, 0.3, 0.4, 0.5, 0.6], [0.4, 0.1, 0.8, 0.7, 0.65]]))
    lo, hi = box_spanning(space, pts)
    np.testing.assert_allclose(lo, [0.2, 0.1, 0.4, 0.5, 0.6])
    np.testing.assert_allclose(hi, [0.4, 0.3, 0.8, 0.7, 0.65])
    d = latin_hypercube(space, 30, seed=2, box=(lo, hi))
    u = space.to_unit(d.values)
    assert np.all((u >= lo - 1e-12) & (u <= hi + 1e-12))
    with pytest.raises(ValueError, match="do not span 'a'"):
        box_spanning(space, pts[[0, 0]])


def test_design_errors(space):
    with pytest.raises(ValueError, match="unknown optimization"):
        latin_hypercube(space, 4, optimization="best")
    with pytest.raises(ValueError, match="positive integer"):
        sobol(space, 0)
    with pytest.raises(ValueError, match=r"box for 'b\[NDL\]'"):
        uniform(space, 4, box=(np.zeros(5), np.array([1, 0, 1, 1, 1.0])))
