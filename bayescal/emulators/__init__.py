"""Emulators: an exact Gaussian-process emulator of a scalar and SVD emulators of output fields.

:class:`GPEmulator` is an exact GP regression with an ARD kernel (Matérn 5/2 or squared
exponential), a fitted noise (nugget) term and a constant, linear or zero mean whose coefficients
are estimated by generalised least squares (universal kriging). Inputs are the unit cube of the
free parameters (:meth:`bayescal.parameters.ParameterSpace.to_unit`), outputs are standardised.
It follows scikit-learn's estimator conventions, so :func:`sklearn.model_selection.cross_val_score`,
:func:`sklearn.inspection.permutation_importance` and :func:`sklearn.inspection.partial_dependence`
work on it.

Why not :class:`sklearn.gaussian_process.GaussianProcessRegressor`? Its gradient of the log
marginal likelihood builds an n x n x d tensor: at the CLASSIC paper's scale (n = 1,530 runs,
d = 165 parameters) that is 3 GB per evaluation and it did not finish in 15 minutes. Here the
gradient with respect to every length scale comes from two matrix products,

    dL/dlog l_j = s2 * [ (M 1)^T z_j^2 - z_j^T M z_j ],   M = (a a^T - K^-1) o G,

with z = x / l the scaled inputs and G the kernel's radial derivative factor, so one evaluation
costs a Cholesky factorisation, an inverse and O(n^2 d) products (see ``benchmarks/bench_emulators.py``).

Leave-one-out cross-validation is exact and closed-form (Rasmussen & Williams 2006, §5.4.2,
extended to the estimated mean by Dubrule 1983): with P the top-left block of the inverse of the
bordered matrix [[K, H], [H^T, 0]], the LOO residual of point i is (P y)_i / P_ii and its
predictive variance 1 / P_ii. That equals refitting on n - 1 points with the hyper-parameters
fixed, to rounding.

:class:`SVDEmulator` reduces field outputs (members x cells/years) to their leading principal
components (centred SVD; K fixed or by explained variance) and fits one emulator per component
(a :class:`GPEmulator` or scikit-learn's MLP with early stopping); predictions are reconstructed
to the full field with the component variances and the truncation error as uncertainty, after
Lu & Ricciuto (2019) and Dagon et al. (2020).

:class:`ActiveGPEmulator` is for many inputs (history matching at d ~ 100+): per output a ridge
regression on every input plus a GP on the ridge's leave-one-out residuals over the output's most
active inputs, its nugget carrying the rest (the structure of ExeterUQ's emulators).

Saved state is netCDF (:meth:`GPEmulator.save`, :meth:`SVDEmulator.save`, :func:`load_emulator`),
never pickle; a reloaded emulator predicts identically.
"""

from .active import ActiveGPEmulator
from .base import REGISTRY, EmulatorError, NotFittedEmulatorError, load_emulator, register
from .gp import GPEmulator
from .nn import DagonNetwork
from .screen import emulator_optimum, emulator_screen
from .svd import SVDEmulator
from .validation import kfold, loo_metrics, partial_dependence, permutation_importance

__all__ = [
    "ActiveGPEmulator",
    "emulator_optimum",
    "emulator_screen",
    "GPEmulator",
    "SVDEmulator",
    "DagonNetwork",
    "EmulatorError",
    "NotFittedEmulatorError",
    "REGISTRY",
    "register",
    "loo_metrics",
    "kfold",
    "load_emulator",
    "permutation_importance",
    "partial_dependence",
]
