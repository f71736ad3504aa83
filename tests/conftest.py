"""Shared fixtures: the embedded model at its defaults (full grid) and a small, fast model."""

import numpy as np
import pytest

from bayescal.models import LandCarbonModel, make_drivers, make_grid


@pytest.fixture(scope="session")
def default_model():
    return LandCarbonModel()


@pytest.fixture(scope="session")
def default_run(default_model):
    return default_model.simulate(default_model.space.all_default)


@pytest.fixture(scope="session")
def small_model():
    """30 cells, ramp from 1941: seconds per run, same physics."""
    grid = make_grid(n_cells=30, seed=3)
    drivers = make_drivers(grid, start=1990, end=2010, ramp_start=1981, seed=3)
    return LandCarbonModel(grid=grid, drivers=drivers, chunk_size=2)


@pytest.fixture(scope="session")
def rng():
    return np.random.default_rng(12345)
