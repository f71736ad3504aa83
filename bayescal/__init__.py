"""bayescal: Bayesian calibration of land-surface and Earth-system model parameters."""

from .parameters import PFTS, Parameter, ParameterError, ParameterSpace
from .rundir import RunResults, open_run

__version__ = "0.1.0"

__all__ = ["PFTS", "Parameter", "ParameterError", "ParameterSpace", "RunResults", "__version__", "open_run"]
