"""Priors, likelihoods, emcee sampling to ArviZ InferenceData, emulator trust (refinement: its own module).

The sampler works in the unit cube of the free parameters (``ParameterSpace.to_unit``), where
every prior has support [0, 1]; results are reported in physical units.

Which likelihood?

* :class:`GaussianLikelihood` — when the model's outputs (or their reduced components) can be
  compared with observations that have an error model: ``y_obs ~ N(f(theta), sigma_obs^2 +
  sigma_emulator^2(theta) + sigma_discrepancy^2)``. This is a proper likelihood; credible
  intervals mean what they say if the sigmas are honest. Use it whenever you can.
* :class:`ScoreLikelihood` — for AMBER/ILAMB-style misfits (``1 - score``), which have no
  error model: the pseudo-likelihood ``exp(-misfit / T)``. The temperature ``T`` sets the
  width. Rule (DFO-LS paper): ``T`` = the baseline misfit, the misfit of the truth against
  noisy observations, i.e. what noise alone costs; misfit differences of one baseline are one
  e-fold of probability (:func:`baseline_temperature`). The sampled target is the emulator's
  *mean* misfit, ``-m/T``. The "expected likelihood" ``log E[exp(-f/T)] = -m/T + s^2/(2 T^2)``
  is not offered: it rewards emulator ignorance and pulls posterior mass into untrained regions
  (issue 15: means 1-6 sd off). The emulator's uncertainty is spent on choosing new runs
  instead (:func:`bayescal.posterior.refinement.refine`). With a misfit that is a Gaussian negative
  log-likelihood and ``T = 1`` the posterior is the exact one.

Both likelihoods give ``loglik_sd(u)``: the standard deviation of the log-likelihood caused by
the emulator's predictive uncertainty, which drives the acquisition of new runs.

:class:`PosteriorSampler` runs :class:`emcee.EnsembleSampler` with a vectorised log-probability,
a differential-evolution / stretch move mix (suited to ridge-shaped, correlated posteriors; see
``benchmarks/bench_posterior.py``), walkers started at the best design points, and emcee's HDF5
backend as checkpoint so a killed run resumes. :meth:`PosteriorSampler.to_inference_data`
discards burn-in and thins from the integrated autocorrelation time; its InferenceData has
``posterior``, ``sample_stats``, pointwise ``log_likelihood``, ``posterior_predictive``,
``observed_data``, ``prior`` and ``constant_data``.

ArviZ 0.2x and 1.x: :mod:`bayescal.posterior.inference_data` builds, saves, loads and reads
InferenceData for either line (``load_inference_data``, ``get_group``, ``group_names``).
"""

from .diagnostics import diagnose, emulator_trust
from .errors import PosteriorError, PosteriorWarning
from .history_matching import HistoryMatch, NotRuledOut, history_match, implausibility, ranked_max
from .inference_data import (
    get_group,
    group_names,
    load_inference_data,
    make_inference_data,
    save_inference_data,
)
from .likelihoods import GaussianLikelihood, ScoreLikelihood, baseline_temperature
from .moves import DESubspaceMove, IndependenceMove
from .priors import PRIOR_KINDS, Priors
from .sampler import PosteriorSampler, default_moves, unit_samples
from .subspace import Subspace, SubspacePosterior, informed_subspace, subspace_posterior

__all__ = [
    "PosteriorError",
    "PosteriorWarning",
    "Priors",
    "PRIOR_KINDS",
    "GaussianLikelihood",
    "ScoreLikelihood",
    "baseline_temperature",
    "PosteriorSampler",
    "unit_samples",
    "diagnose",
    "emulator_trust",
    "default_moves",
    "DESubspaceMove",
    "IndependenceMove",
    "get_group",
    "group_names",
    "load_inference_data",
    "make_inference_data",
    "save_inference_data",
    "HistoryMatch",
    "NotRuledOut",
    "history_match",
    "implausibility",
    "ranked_max",
    "Subspace",
    "SubspacePosterior",
    "informed_subspace",
    "subspace_posterior",
]

