"""Ranges of a config's numbers and its choices among named options (:func:`check_ranges`), below
:mod:`.validate`, which runs it for every workflow; errors name the key."""

from __future__ import annotations

from .config import _OPT_METHODS, ConfigError

__all__ = ["BOUNDS", "check_ranges"]


#: (section, key) -> (lowest, highest) value of a number (None: no bound). A seed is numpy's and
#: scikit-learn's (< 2**32); the upper bounds of sizes stop a typo from asking for terabytes
_SEED = (0, 2**32 - 1)
BOUNDS: dict[tuple[str, str], tuple[float | None, float | None]] = {
    ("run", "seed"): _SEED, ("run", "workers"): (0, 10_000),
    ("model", "n_cells"): (1, 100_000), ("model", "grid_seed"): _SEED, ("model", "chunk_size"): (1, 10**6),
    ("model", "spinup_years"): (1, 1000), ("model", "spinup_cycles"): (0, 1000),
    ("model", "diurnal_range"): (0, 40), ("model", "timeout"): (1e-3, None),
    ("observations", "twin_seed"): _SEED, ("observations", "gcb_block"): (1, 1000),
    ("observations", "sigma_floor"): (0, None),
    ("site", "ml_evaluations"): (1, 10**8),
    ("screen", "trajectories"): (2, 10**5), ("screen", "top_k"): (1, None),
    ("optimize", "max_evaluations"): (2, 10**8), ("optimize", "pop_size"): (2, 10**6),
    ("optimize", "n_generations"): (1, 10**6),
    ("design", "n_runs"): (10, 10**7), ("design", "batch_size"): (1, 10**6),
    ("emulator", "n_restarts"): (0, 1000), ("emulator", "eof_modes"): (1, None),
    ("oat", "top_k"): (1, None),
    ("emulator_screen", "n_points"): (1000, 10**9), ("emulator_screen", "keep"): (1, None),
    ("emulator_screen", "refine_rounds"): (0, 1000),
    ("posterior", "n_steps"): (100, 10**8), ("posterior", "max_steps"): (100, 10**8),
    ("posterior", "n_walkers"): (0, 100_000),
    ("posterior", "refine_rounds"): (1, 1000), ("posterior", "n_new"): (1, 10**6),
    ("posterior", "n_particles"): (0, 10**7), ("posterior", "hm_waves"): (0, 1000),
    ("posterior", "hm_runs"): (1, 10**7), ("posterior", "hm_discrepancy"): (0, None),
    ("posterior", "hm_active"): (1, 10**4), ("posterior", "hm_floor"): (0, None),
    ("posterior", "hm_max_rank"): (0, None), ("posterior", "left_out_runs"): (0, 10**6),
    ("equifinality", "n_alternatives"): (1, 1000), ("equifinality", "cloud_points"): (100, 10**8),
    ("equifinality", "seiler_points"): (100, 10**8),
    ("propagate", "n_draws"): (2, 10**6),
}


def check_ranges(cfg: dict) -> None:
    """Every number within its :data:`BOUNDS`; the posterior's and optimiser's choices."""
    for (section, key), (lo, hi) in BOUNDS.items():
        v = cfg[section][key]
        if v is None:
            continue
        if lo is not None and v < lo:
            raise ConfigError(f"'{section}.{key}' must be >= {lo}, got {v}")
        if hi is not None and v > hi:
            raise ConfigError(f"'{section}.{key}' must be <= {hi:,}, got {v:,}")
    if cfg["emulator"]["eof_modes"] >= cfg["design"]["n_runs"]:
        raise ConfigError(f"'emulator.eof_modes' ({cfg['emulator']['eof_modes']}) must be below "
                          f"'design.n_runs' ({cfg['design']['n_runs']}): the design's runs give the EOFs")
    if cfg["run"]["workflow"] == "dagon" and cfg["model"]["kind"] == "global" \
            and cfg["emulator"]["eof_modes"] > cfg["model"]["n_cells"]:
        raise ConfigError(f"'emulator.eof_modes' ({cfg['emulator']['eof_modes']}) must be at most "
                          f"'model.n_cells' ({cfg['model']['n_cells']}): a map of that many cells has no "
                          "more modes (Dagon et al. keep 3)")
    if cfg["emulator_screen"]["keep"] > cfg["emulator_screen"]["n_points"]:
        raise ConfigError(f"'emulator_screen.keep' ({cfg['emulator_screen']['keep']}) must be <= "
                          f"'emulator_screen.n_points' ({cfg['emulator_screen']['n_points']})")
    if cfg["posterior"]["max_steps"] < cfg["posterior"]["n_steps"]:
        raise ConfigError(
            f"'posterior.max_steps' ({cfg['posterior']['max_steps']}) must be >= 'posterior.n_steps' "
            f"({cfg['posterior']['n_steps']})"
        )
    if cfg["posterior"]["method"] not in ("refine", "history_matching"):
        raise ConfigError("'posterior.method' must be 'refine' or 'history_matching', got "
                          f"{cfg['posterior']['method']!r}")
    hm = cfg["posterior"]
    if hm["hm_train"] not in ("all", "region") or hm["hm_design"] not in ("random", "maximin"):
        raise ConfigError("'posterior.hm_train' must be 'all' or 'region' and 'posterior.hm_design' "
                          "'random' or 'maximin'")
    if hm["hm_cutoff"] <= 0:
        raise ConfigError(f"'posterior.hm_cutoff' must be > 0, got {hm['hm_cutoff']}")
    if cfg["posterior"]["left_out"] not in ("marginalise", "fix"):
        raise ConfigError(
            f"'posterior.left_out' must be 'marginalise' or 'fix', got {cfg['posterior']['left_out']!r}"
        )
    if cfg["posterior"]["left_out"] == "marginalise" and cfg["posterior"]["left_out_runs"] < 8:
        raise ConfigError(
            "'posterior.left_out_runs' must be >= 8 to estimate a spread, got "
            f"{cfg['posterior']['left_out_runs']}"
        )
    if cfg["equifinality"]["local_box"] not in ("range", "value"):
        raise ConfigError("'equifinality.local_box' must be 'range' or 'value', got "
                          f"{cfg['equifinality']['local_box']!r}")
    e = cfg["emulator"]
    if e["training"] not in ("all", "optimize"):
        raise ConfigError(f"'emulator.training' must be 'all' or 'optimize', got {e['training']!r}")
    if not 0.0 <= e["drop_worst"] < 1.0:
        raise ConfigError(f"'emulator.drop_worst' must be in [0, 1), got {e['drop_worst']}")
    if cfg["observations"]["gcb_errors"] not in ("correlated", "independent"):
        raise ConfigError("'observations.gcb_errors' must be 'correlated' or 'independent', got "
                          f"{cfg['observations']['gcb_errors']!r}")
    if cfg["optimize"]["misfit"] not in ("residuals", "score", "seiler"):
        raise ConfigError(
            f"'optimize.misfit' must be 'residuals', 'score' or 'seiler', got {cfg['optimize']['misfit']!r}"
        )
    if cfg["optimize"]["method"] not in _OPT_METHODS:
        raise ConfigError(
            f"'optimize.method' must be one of {', '.join(_OPT_METHODS)}, got {cfg['optimize']['method']!r}"
        )
    if not 0 < cfg["emulator"]["variance_threshold"] <= 1:
        raise ConfigError("'emulator.variance_threshold' must be in (0, 1]")
