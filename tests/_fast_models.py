"""A small configuration of the embedded model for the optimiser and posterior twins, and its misfit
without the runner's files.

The twins there need hundreds to thousands of model runs; what they test is the optimiser or the
calibration, not the size of the grid. :func:`small_land_model` keeps the physics and every PFT and
biome of the embedded model but, over 2009-2010, costs about 3 ms of CPU per member in a batch of
64 (14 ms for a member alone), against 9 ms and 50 ms on 24 cells over 1995-2010 with 24 cycles:

* 18 cells, two per biome (the fewest :func:`make_grid` allows; every PFT present);
* ``start``-2010 written, without a ramp (2009: 24 monthly steps after the spin-up);
* 12 spin-up cycles instead of 24 (every member still converges to the default tolerance of 1 %:
  none of nearly 1,000 points over the unit cubes of the tests' parameters failed).
"""

from functools import cache

import numpy as np

from bayescal.models import LandCarbonModel, make_drivers, make_grid
from bayescal.optimize import ModelObjective


@cache
def small_land_model(start: int = 2009) -> LandCarbonModel:
    """The embedded model on 18 cells for ``start``-2010 with 12 spin-up cycles (module docstring)."""
    grid = make_grid(n_cells=18, seed=3)
    drivers = make_drivers(grid, start=start, end=2010, ramp_start=start, seed=3)
    # one kernel thread: the batches are small (one to a hundred members), and with -n 0 on a busy
    # machine a thread pool waits for its slowest thread at every month
    return LandCarbonModel(grid=grid, drivers=drivers, chunk_size=64, spinup_cycles=12, n_threads=1)


def direct_objective(model, space, observations, measure: str = "residuals"):
    """:class:`ModelObjective`'s misfit of runs made in memory.

    The same misfit (``ModelObjective.measure_runs``) of the same unit-cube points (clipped and
    expanded as ``ModelObjective`` does), but the model is called directly: the runner writes and
    reads one netCDF file per member, several times the small model's run. The runner's
    route is tested in ``test_ensemble.py`` and by ``test_cmaes_replay_resume_equals_uninterrupted``.
    """
    measured = ModelObjective(model, space, observations, measure=measure)
    variables = list(measured.observations.variables)

    def objective(u: np.ndarray):
        theta = space.expand(space.from_unit(np.clip(np.atleast_2d(u), 0.0, 1.0)))
        return measured.measure_runs(model.simulate(theta, variables=variables))

    return objective
