"""emcee in unit-cube coordinates, to ArviZ InferenceData in physical units."""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import emcee
import numpy as np
import xarray as xr
from threadpoolctl import threadpool_limits

from ..parameters import ParameterSpace
from .backends import HDFBackend, kept_open
from .diagnostics import integrated_time
from .errors import PosteriorError, PosteriorWarning
from .inference_data import family_dataset, make_inference_data, unit_samples
from .moves import default_moves, describe_moves
from .priors import Priors

__all__ = ["PosteriorSampler", "default_moves", "unit_samples"]


class PosteriorSampler:
    """emcee ensemble sampler of ``prior x likelihood`` in unit-cube coordinates.

    Parameters
    ----------
    log_likelihood : callable
        ``f(u) -> (points,)`` log-likelihood of unit-cube points (vectorised), e.g. a
        :class:`GaussianLikelihood`.
    priors : Priors or ParameterSpace
        A ParameterSpace means uniform priors on its bounds.
    n_walkers : int, optional
        Default ``max(2 * n_parameters + 2, 32)``, rounded up to even; fewer than twice the
        dimension is an error.
    moves : list of (emcee move, weight), optional
        Default :func:`default_moves`.
    backend : path, optional
        emcee HDF5 backend file: every step is written; running again resumes from it.
    seed : int or numpy.random.Generator, optional
    """

    def __init__(
        self,
        log_likelihood: Callable[[np.ndarray], np.ndarray],
        priors: Priors | ParameterSpace,
        n_walkers: int | None = None,
        moves: list | None = None,
        backend: str | Path | None = None,
        seed: int | np.random.Generator | None = None,
    ) -> None:
        self.log_likelihood = log_likelihood
        self.priors = priors if isinstance(priors, Priors) else Priors(priors)
        self.space = self.priors.space
        d = self.space.n_free
        if n_walkers is None:
            n_walkers = max(2 * d + 2, 32)
            n_walkers += n_walkers % 2
        if n_walkers < 2 * d:
            raise PosteriorError(f"need at least 2 x {d} = {2 * d} walkers, got {n_walkers}")
        self.n_walkers = int(n_walkers)
        self.moves = moves
        self.backend_path = None if backend is None else Path(backend)
        self.seed = seed
        # the prior draws' and predictive noise's seed, fixed here: with a Generator as seed, a run
        # resumed from its backend (which skips the start's draws) draws the same as an unbroken one
        self._output_seed = int(seed.integers(2**62)) if isinstance(seed, np.random.Generator) else seed
        self._sampler: emcee.EnsembleSampler | None = None
        self.discard = 0  # steps before :meth:`adapt` switched the moves: burn-in, never draws
        self._first_moves: list | None = None  # the moves before the first switch
        self._switches: list[int] = []  # the steps where :meth:`adapt` switched

    # ------------------------------------------------------------------ log-probability
    def log_prob(self, u: np.ndarray) -> np.ndarray:
        """(points, 3): log posterior, log-likelihood, log prior (the last two as emcee blobs)."""
        u = np.atleast_2d(u)
        lp = self.priors.logpdf(u)
        ll = np.full(u.shape[0], -np.inf)
        ok = np.isfinite(lp)
        if ok.any():
            ll[ok] = np.asarray(self.log_likelihood(u[ok]), dtype=float).reshape(-1)
        bad = ok & np.isnan(ll)
        if bad.any() or np.any(ll == np.inf):
            i = int(np.flatnonzero(bad | (ll == np.inf))[0])
            pars = dict(zip(self.space.labels, self.space.from_unit(u[i]).round(6).tolist(), strict=True))
            raise PosteriorError(f"log-likelihood is {ll[i]} (not finite) at {pars}")
        return np.column_stack([lp + ll, ll, lp])

    # ------------------------------------------------------------------ running
    def initial_state(
        self, candidates: np.ndarray | None = None, seed: int | np.random.Generator | None = None
    ):
        """Walkers at the best of ``candidates`` (unit cube, e.g. the design), or prior draws.

        With fewer distinct candidates than walkers (or walkers where the model fails), the rest are
        drawn in a small ball (1 % of the range) around the best ones.
        """
        rng = np.random.default_rng(seed)
        d = self.space.n_free
        if candidates is None:
            cand = self.priors.sample(4 * self.n_walkers, rng)
        else:
            cand = np.atleast_2d(np.asarray(candidates, dtype=float))
            if cand.shape[1] != d:
                raise PosteriorError(f"initial points have {cand.shape[1]} parameters; the space has {d}")
            outside = np.flatnonzero(~np.isfinite(self.priors.logpdf(cand)))
            if outside.size:
                raise PosteriorError(
                    f"{outside.size} initial point(s) are outside the prior (first: point {outside[0]}); "
                    "walkers must start inside the unit cube where the prior is positive"
                )
        cand = np.unique(cand, axis=0)
        lp = self.log_prob(cand)[:, 0]
        order = np.argsort(-lp)
        best = cand[order[: self.n_walkers]]
        if best.shape[0] < self.n_walkers:
            extra = best[rng.integers(best.shape[0], size=self.n_walkers - best.shape[0])]
            extra = np.clip(extra + rng.normal(0, 0.01, extra.shape), 0, 1)
            best = np.vstack([best, extra])
        ok = np.isfinite(self.log_prob(best)[:, 0])
        for _ in range(20):  # walkers where the model fails (or the likelihood is -inf): moved near others
            if ok.all() or not ok.any():
                break
            bad = np.flatnonzero(~ok)
            near = best[ok][rng.integers(int(ok.sum()), size=bad.size)]
            best[bad] = np.clip(near + rng.normal(0, 0.01, near.shape), 0, 1)
            ok[bad] = np.isfinite(self.log_prob(best[bad])[:, 0])
        if not ok.all():
            raise PosteriorError(f"{int((~ok).sum())} of the {self.n_walkers} initial walkers have zero "
                                 "posterior probability (the model fails, or the likelihood is -inf, there)")
        return best

    def run(
        self, n_steps: int, initial: np.ndarray | None = None, progress: bool = False
    ) -> PosteriorSampler:
        """Run until the chain holds ``n_steps`` steps, continuing the chain this sampler already
        holds (in memory, or in its backend file after a restart).

        ``initial`` are candidate starting points (unit cube), e.g. the emulator's training
        design; the best ``n_walkers`` of them start the walkers.
        """
        # one BLAS thread: small matrices (walkers x training runs), where OpenBLAS's threads cost
        # more than they give (a 30-run SVD-GP step took 20x longer with 2 beside another job)
        with threadpool_limits(1, user_api="blas"):
            return self._run(n_steps, initial, progress)

    def _run(self, n_steps: int, initial: np.ndarray | None, progress: bool) -> PosteriorSampler:
        if self._sampler is not None and self._sampler.iteration:
            if self._sampler.iteration < n_steps:
                with kept_open(self._sampler.backend):
                    self._sampler.run_mcmc(None, n_steps - self._sampler.iteration, store=True,
                                           **progress_bar(progress, self._sampler.iteration, n_steps))
            return self
        d = self.space.n_free
        backend = None
        done = 0
        if self.backend_path is not None:
            backend = HDFBackend(str(self.backend_path))
            if self.backend_path.exists():
                try:
                    done = backend.whole_iteration()
                except PermissionError:  # this user's, not the file's: said, the chain kept
                    raise
                except (KeyError, AttributeError, OSError, ValueError) as err:
                    if _locked(err):  # another process is writing it: not a damaged file
                        raise PosteriorError(f"chain file {self.backend_path} is in use by another "
                                             f"process ({err}); wait for it, or use another file") from None
                    warnings.warn(f"chain file {self.backend_path} cannot be read ({err}: killed, or a "
                                  "full disk, as it was written); it starts afresh", PosteriorWarning,
                                  stacklevel=3)
                    self.backend_path.unlink()
                if done and backend.shape != (self.n_walkers, d):
                    raise PosteriorError(
                        f"checkpoint {self.backend_path} holds {backend.shape[0]} walkers x "
                        f"{backend.shape[1]} "
                        f"parameters; this sampler has {self.n_walkers} x {d}. Use another file."
                    )
            if not done:
                backend.reset(self.n_walkers, d)
        rng = np.random.default_rng(self.seed)
        sampler = emcee.EnsembleSampler(
            self.n_walkers,
            d,
            self.log_prob,
            vectorize=True,
            moves=self.moves or default_moves(),
            backend=backend,
        )
        # called directly, not through emcee's wrapper, which prints every walker's position on
        # any exception (a Ctrl-C in the model included) before re-raising it
        sampler.log_prob_fn = self.log_prob
        self._sampler = sampler
        if done >= n_steps:
            return self
        start = None
        if not done:  # a resumed run continues with the random state stored in the checkpoint
            sampler.random_state = np.random.RandomState(int(rng.integers(2**31))).get_state()
            start = self.initial_state(initial, rng)
        with kept_open(backend):
            sampler.run_mcmc(start, n_steps - done, store=True, **progress_bar(progress, done, n_steps))
        return self

    def adapt(self, moves: list, at: int | None = None) -> PosteriorSampler:
        """Propose with ``moves`` from step ``at`` on (default: the next step); the steps before
        are a pilot, burn-in.

        For moves fitted to the pilot (an :class:`~bayescal.posterior.IndependenceMove`): the
        pilot's steps are left out of the autocorrelation times, the 50-tau length checks and the
        draws, so the posterior is the chain of fixed moves that follows. Call it after
        :meth:`run` has made the pilot's ``at`` steps; after a restart whose backend holds more,
        with the same ``at`` and moves, and the chain goes on as it would have.
        """
        s = self.sampler
        at = s.iteration if at is None else int(at)
        if not 0 < at <= s.iteration:
            raise PosteriorError(f"adapt at step {at}: the chain has {s.iteration} steps "
                                 "(run the pilot first)")
        items = [m if isinstance(m, tuple) else (m, 1.0) for m in moves]
        weights = np.array([w for _, w in items], dtype=float)
        s._moves, s._weights = [m for m, _ in items], weights / weights.sum()  # emcee's move schedule
        if self._first_moves is None:
            self._first_moves = self.moves
        self._switches.append(at)
        self.moves, self.discard = items, at
        return self

    def run_adaptive(
        self,
        max_steps: int = 20000,
        initial: np.ndarray | None = None,
        min_steps: int = 1000,
        factor: float = 50.0,
        progress: bool = False,
    ) -> PosteriorSampler:
        """Run until the chain is ``factor`` autocorrelation times long (emcee's advice).

        Starts with ``min_steps`` and extends the chain (by at least half its length) until it
        holds ``factor * max(tau)`` steps or ``max_steps``. A chain that is still too short is
        reported by :meth:`to_inference_data` as a :class:`PosteriorWarning`.

        Each decision reads the chain's first ``target`` steps only (the lengths ``min_steps``,
        then each extension's target), not the length the chain has now: a run resumed from its
        backend after a kill takes the same decisions and ends with the same chain. After
        :meth:`adapt`, lengths and times count from the switch.
        """
        if min_steps > max_steps:
            raise PosteriorError(f"min_steps ({min_steps}) must not exceed max_steps ({max_steps})")
        target = int(min_steps)
        self.run(target, initial=initial, progress=progress)
        while target < max_steps:
            start, tau = self._start_and_tau(target)
            need = start + int(np.ceil(1.05 * factor * np.nanmax(tau)))
            if target >= need:
                break
            target = min(max_steps, max(need, target * 3 // 2))
            self.run(target, progress=progress)
        return self

    @property
    def sampler(self) -> emcee.EnsembleSampler:
        """The emcee sampler; with a backend file that holds a chain, opened on it (no step run):
        a finished chain is read back by a new ``PosteriorSampler`` with the same backend."""
        if self._sampler is None and self._stored_steps():
            self._run(0, None, False)
        if self._sampler is None:
            raise PosteriorError("run the sampler first")
        return self._sampler

    def _stored_steps(self) -> int:
        """Steps in the backend file (0: none), read only: one in use or damaged is left (PosteriorError)."""
        if self.backend_path is None or not self.backend_path.exists():
            return 0
        try:
            return int(HDFBackend(str(self.backend_path), read_only=True).iteration)
        except (KeyError, AttributeError, OSError, ValueError) as err:
            raise PosteriorError(f"chain file {self.backend_path} cannot be read ({err})") from None

    @property
    def iteration(self) -> int:
        """Steps in the chain (0 before any run, as emcee's)."""
        return self._stored_steps() if self._sampler is None else self._sampler.iteration

    def autocorr_time(self) -> np.ndarray:
        """Integrated autocorrelation time per parameter (no length check; see :meth:`to_inference_data`);
        after :meth:`adapt`, of the steps since the switch; after a start's transient longer than
        two of them (:meth:`settled`), of the steps since it ended."""
        return self._start_and_tau()[1]

    def settled(self, upto: int | None = None) -> int:
        """The step by which every walker that reaches the bulk of the posterior has reached it
        once: the first step where its log posterior is at least the 5 % quantile of the last half
        of the chain's (all walkers; of the first ``upto`` steps, counted after :meth:`adapt`'s
        pilot). Walkers started far out (a wide prior's draws) take tens to hundreds of steps to
        get there; a walker that never does (stuck in a minor part) is not waited for."""
        lp = self.sampler.get_log_prob()[self.discard:upto]
        ref = lp[lp.shape[0] // 2:]
        ref = ref[np.isfinite(ref)]
        if lp.shape[0] < 4 or not ref.size:
            return self.discard
        above = lp >= np.quantile(ref, 0.05)
        arrived = above.any(axis=0)
        return self.discard + (int(above.argmax(axis=0)[arrived].max()) if arrived.any() else 0)

    def _start_and_tau(self, upto: int | None = None) -> tuple[int, np.ndarray]:
        """Where the chain's draws may start and its autocorrelation times from there: after
        :meth:`adapt`'s pilot, or after the start's transient when it outlasts the usual burn-in
        of two autocorrelation times (emcee's advice assumes the walkers start in the posterior)."""
        chain = self.sampler.get_chain()[:upto]
        if chain.shape[0] - self.discard < 2:
            raise PosteriorError(f"the chain has {chain.shape[0] - self.discard} step(s) after the moves "
                                 f"were adapted at step {self.discard}; run it on")
        tau = integrated_time(chain[self.discard:])
        end = self.settled(upto)
        if not end > self.discard + 2 * np.nanmax(tau):
            return self.discard, tau
        # the times of the steps after the transient, when there are enough of them; else the
        # whole chain's, so that 50 of them from ``end`` ask for more steps than it holds
        if chain.shape[0] - end >= max(50, (chain.shape[0] - self.discard) // 4):
            after = integrated_time(chain[end:])
            if np.all(np.isfinite(after)) and np.nanmax(after) > 0:
                return end, after
        return end, tau

    # ------------------------------------------------------------------ output
    def _warn_if_short(self, n: int, start: int, tau: np.ndarray) -> None:
        """A :class:`PosteriorWarning` when the chain from ``start`` is shorter than 50 tau."""
        if n - start >= 50 * np.nanmax(tau):
            return
        less = [f"the {self.discard} that adapted its proposal"] if self.discard else []
        less += [f"the {start - self.discard} its walkers took to reach the posterior"] \
            if start > self.discard else []
        name = "" if self.backend_path is None else f" ({self.backend_path.name})"
        warnings.warn(f"chain{name} of {n - start} steps is shorter than 50 autocorrelation times (max tau "
                      f"{np.nanmax(tau):.1f}" + (f"; {n} steps less {' and '.join(less)}" if less else "")
                      + "); estimates are unreliable - run longer", PosteriorWarning, stacklevel=3)

    def _burn_thin(self, tau, n: int, burn: int | None, thin: int | None,
                   max_draws: int | None, start: int | None = None) -> tuple[int, int]:
        """emcee's advice (burn 2 max tau, thin tau/2 min; both after ``start``: the steps
        :meth:`adapt` left out, or the start's transient), at most ``max_draws`` draws kept."""
        start = self.discard if start is None else start
        burn = start + int(2 * np.nanmax(tau)) if burn is None else max(int(burn), self.discard)
        thin = max(1, int(0.5 * np.nanmin(tau))) if thin is None else int(thin)
        if burn >= n:
            burn = (start + n) // 2
        # emcee keeps steps burn + thin - 1, burn + 2 thin - 1, ...: at least one per walker (a walker
        # that reached the posterior near the chain's end left fewer steps than thin, and none)
        thin = max(1, min(thin, n - burn))
        if max_draws is not None:
            kept = -(-(n - burn) // thin)  # draws per walker
            if kept * self.n_walkers > max_draws:
                thin = int(np.ceil((n - burn) / max(1, max_draws // self.n_walkers)))
        return burn, thin

    def _observed_and_constant(self, observed: Any) -> tuple[xr.Dataset | None, xr.Dataset]:
        """The ``observed_data`` (from the likelihood, or ``observed``) and ``constant_data`` groups."""
        like = self.log_likelihood
        constant = xr.Dataset(
            {"lower": ("parameter", self.space.lower), "upper": ("parameter", self.space.upper)},
            coords={"parameter": self.space.labels},
        )
        if hasattr(like, "observed_data"):
            obs_ds = like.observed_data()
        else:
            obs = observed if observed is not None else getattr(like, "observed", None)
            obs_ds = None if obs is None else xr.Dataset(
                {"y": ("observation", np.atleast_1d(np.asarray(obs, dtype=float)))},
                coords={"observation": np.arange(np.size(obs))},
            )
        if hasattr(like, "constant_data"):
            constant = xr.merge([constant, like.constant_data()], combine_attrs="drop_conflicts")
        return obs_ds, constant

    def to_inference_data(
        self,
        burn: int | None = None,
        thin: int | None = None,
        n_prior: int = 2000,
        observed: Any = None,
        max_draws: int | None = None,
        predictive: bool = True,
    ) -> Any:
        """Posterior as ArviZ InferenceData in physical units (an ``arviz.InferenceData`` with
        ArviZ 0.2x, an ``xarray.DataTree`` with 1.x; see :mod:`bayescal.posterior.inference_data`).

        ``burn`` defaults to twice the largest autocorrelation time (emcee's advice), counted
        from the end of the start's transient when the walkers took longer than that to reach
        the posterior (:meth:`settled`: walkers started over a prior much wider than the
        posterior); ``thin`` to half the smallest; with ``max_draws`` the thinning grows until
        at most that many draws (walkers x draws) are kept. A :class:`PosteriorWarning` is
        issued when the chain is shorter than 50 autocorrelation times.

        Groups: ``posterior`` (one variable per parameter family, a vector family on its
        groups' dimension, shared by families over the same groups: ``pft``, ``pft4``,
        ``pft2`` or ``<family>_group``; walkers are chains), ``sample_stats`` (``lp``,
        ``loglik``, ``log_prior``, ``acceptance_rate``), ``prior`` (``n_prior`` draws),
        ``observed_data`` (the likelihood's observations ``y`` on their named dimension with
        coordinates and units, when it has them), ``constant_data`` (bounds, and the
        likelihood's sds), and, when the likelihood has ``pointwise_predictive(u, rng)`` (both
        Gaussian likelihoods do) and ``predictive`` is true, ``log_likelihood`` (``y``: the
        per-observation terms at every retained draw, for ``az.loo``) and
        ``posterior_predictive`` (``y``: a draw of the observations at each retained draw).
        """
        s = self.sampler
        n = s.iteration
        start, tau = self._start_and_tau()
        self._warn_if_short(n, start, tau)
        burn, thin = self._burn_thin(tau, n, burn, thin, max_draws, start)
        chain = s.get_chain(discard=burn, thin=thin)  # (draw, walker, d)
        blobs = s.get_blobs(discard=burn, thin=thin)  # (draw, walker, 2)
        lp = s.get_log_prob(discard=burn, thin=thin)
        u = np.swapaxes(chain, 0, 1)  # (chain, draw, d)
        n_chain, n_draw = u.shape[:2]
        sample = {"chain": np.arange(n_chain), "draw": np.arange(n_draw)}
        acc = np.broadcast_to(self._acceptance()[:, None], u.shape[:2])
        sample_stats = xr.Dataset(
            {
                "lp": (("chain", "draw"), lp.T, {"long_name": "log posterior (unit cube)"}),
                "loglik": (("chain", "draw"), np.swapaxes(blobs[..., 0], 0, 1),
                           {"long_name": "log-likelihood"}),
                "log_prior": (("chain", "draw"), np.swapaxes(blobs[..., 1], 0, 1),
                              {"long_name": "log prior (unit cube)"}),
                "acceptance_rate": (("chain", "draw"), acc, {"long_name": "walker's acceptance fraction"}),
            },
            coords=sample,
        )
        attrs = dict(
            burn=burn,
            thin=thin,
            n_steps=n,
            n_walkers=self.n_walkers,
            tau_max=float(np.nanmax(tau)),
            tau_min=float(np.nanmin(tau)),
            tau_from=start,  # tau is of the steps from here: after adaptation and the start's transient
            sampler="emcee",
            moves=describe_moves(self.moves),
        )
        if self._switches:  # what adapted the moves, by steps: none of it among the draws
            attrs.update(adaptation_steps=self.discard, adaptation=(
                f"{describe_moves(self._first_moves)} to step {self._switches[0]}, then the moves "
                f"refitted at steps {', '.join(map(str, self._switches))}"))
        prior_u = self.priors.sample(n_prior, self._output_seed)[None]
        like = self.log_likelihood
        obs_ds, constant = self._observed_and_constant(observed)
        groups = {
            "posterior": self._families(u, sample, attrs),
            "sample_stats": sample_stats,
            "log_likelihood": None,
            "posterior_predictive": None,
            "observed_data": obs_ds,
            "prior": self._families(prior_u, {"chain": [0], "draw": np.arange(prior_u.shape[1])}, {}),
            "constant_data": constant,
        }
        if predictive and obs_ds is not None and hasattr(like, "pointwise_predictive"):
            ll, pp = like.pointwise_predictive(u.reshape(-1, u.shape[-1]), _noise_rng(self._output_seed))
            y = obs_ds["y"]
            dims = ("chain", "draw", *y.dims)
            coords = {**sample, **{k: c for k, c in y.coords.items()}}
            shape = (n_chain, n_draw, *y.shape)
            groups["log_likelihood"] = xr.Dataset(
                {"y": xr.DataArray(np.asarray(ll).reshape(shape), dims=dims, coords=coords,
                                   attrs={"long_name": "pointwise log-likelihood"})})
            groups["posterior_predictive"] = xr.Dataset(
                {"y": xr.DataArray(np.asarray(pp).reshape(shape), dims=dims, coords=coords,
                                   attrs={**y.attrs, "long_name": "posterior-predictive draw"})})
        return make_inference_data(groups)

    def _acceptance(self) -> np.ndarray:
        """Each walker's acceptance fraction (after the adaptation: steps that moved it)."""
        if not self.discard:
            return self.sampler.acceptance_fraction
        chain = self.sampler.get_chain()[self.discard - 1:]
        return np.any(np.diff(chain, axis=0) != 0, axis=-1).mean(axis=0)

    def _families(self, u: np.ndarray, sample: dict, attrs: dict) -> xr.Dataset:
        return family_dataset(self.space, u, attrs, sample)


def _locked(err: BaseException) -> bool:
    """Whether an HDF5 open failed because another process holds the file (errno 11)."""
    return getattr(err, "errno", None) == 11 or "unable to lock file" in str(err)


def _noise_rng(seed: Any) -> np.random.Generator:
    """The generator of the posterior-predictive noise: its own stream of an integer seed."""
    if seed is None:
        return np.random.default_rng()
    return np.random.default_rng([int(seed), 20240])


def progress_bar(show: bool, done: int, total: int) -> dict[str, Any]:
    """emcee's progress bar (tqdm: steps, rate, ETA) on stderr; sparse when stderr is a log file."""
    if not show:
        return {"progress": False}
    return {"progress": True, "progress_kwargs": {
        "desc": f"emcee (steps {done}-{total})", "mininterval": 0.5 if sys.stderr.isatty() else 30.0}}
