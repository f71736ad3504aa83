"""bayescal: Bayesian calibration of land-surface and Earth-system model parameters."""

__version__ = "0.2.0"  # first: the workflow engine, imported below, hashes it into stage keys

from bayescal.parameters import PFTS, Parameter, ParameterError, ParameterSpace  # noqa: E402
from bayescal.workflow.rundir import RunResults, open_run  # noqa: E402

__all__ = ["PFTS", "Parameter", "ParameterError", "ParameterSpace", "RunResults", "__version__", "open_run"]
