"""bayescal: Bayesian calibration of land-surface and Earth-system model parameters."""

from .parameters import PFTS, Parameter, ParameterError, ParameterSpace

__version__ = "0.1.0"

__all__ = ["PFTS", "Parameter", "ParameterError", "ParameterSpace", "__version__"]
