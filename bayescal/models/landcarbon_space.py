"""The embedded global model's parameter table: 22 families, 122 values (Seiler's Table 1 names)."""

from __future__ import annotations

import numpy as np

from ..parameters import Parameter, ParameterSpace

__all__ = ["default_parameter_space"]

_TREE = np.array([1, 1, 1, 1, 1, 0, 0, 0, 0], dtype=bool)
_C4 = np.array([0, 0, 0, 0, 0, 0, 1, 0, 1], dtype=bool)


def _p(name, default, lower, upper, units, description, groups="pft9") -> Parameter:
    return Parameter(name, default, lower, upper, units, description, groups)


def default_parameter_space() -> ParameterSpace:
    """The embedded model's parameters: 22 families, 122 values (Seiler's Table 1 names).

    Bounds are plausible ranges in the spirit of Seiler's Table 1 (TRY-based for ``vmax``); they
    are this model's, not CLASSIC's.
    """
    vmax = np.array([48.0, 48.0, 50.0, 52.0, 42.0, 42.0, 23.0, 48.0, 11.5])
    c3 = ~_C4
    return ParameterSpace([
        _p("vmax", vmax, 0.6 * vmax, 1.6 * vmax, "umol CO2 m-2 s-1",
           "maximum carboxylation rate at 25 degC"),
        _p("kn", [0.50, 0.50, 0.65, 0.50, 0.50, 0.46, 0.44, 0.52, 0.52], 0.3, 0.9, "1",
           "canopy extinction coefficient"),
        _p("alpha_phtsyn", np.where(c3, 0.07, 0.04), np.where(c3, 0.05, 0.025),
           np.where(c3, 0.12, 0.065), "mol CO2 mol-1 photon", "quantum efficiency"),
        _p("sn", [2.0, 2.0, 5.0, 5.0, 3.0, 2.0, 2.0, 2.0, 2.0], 1.0, 8.0, "1",
           "exponent of soil-moisture stress on photosynthesis"),
        _p("vpd0", [1.5, 1.5, 2.0, 1.5, 2.0, 1.5, 2.0, 1.5, 2.0], 0.5, 4.0, "kPa",
           "stomatal conductance VPD parameter"),
        _p("gamma_w", 0.55, 0.0, 1.5, "1", "photosynthesis down-regulation with rising CO2",
           groups=None),
        _p("beta2", 0.95, 0.80, 0.995, "1", "co-limitation curvature of photosynthesis",
           groups=None),
        _p("rmlcoef", np.where(c3, 0.015, 0.025), np.where(c3, 0.008, 0.012),
           np.where(c3, 0.030, 0.045), "1", "leaf maintenance respiration per unit vmax"),
        _p("grescoef", 0.15, 0.08, 0.30, "1", "growth respiration coefficient"),
        _p("minlvfr", 0.05, 0.02, 0.20, "1", "minimum live wood fraction", groups=None),
        _p("omega", np.where(_TREE, 0.8, 0.5), 0.0, 2.0, "1",
           "shift of allocation to roots under water stress"),
        _p("kappa", np.where(_TREE, 1.6, 1.2), 0.8, 3.0, "1",
           "minimum stem and root to leaf biomass ratio"),
        _p("lfespany", [5.0, 1.0, 1.75, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0],
           [2.0, 0.5, 1.0, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5],
           [8.0, 1.5, 3.0, 1.5, 1.5, 1.5, 1.5, 1.5, 1.5], "yr", "leaf life span"),
        _p("maxage", [250.0, 300.0, 250.0, 250.0, 200.0, 20.0, 20.0, 20.0, 20.0],
           [125.0, 150.0, 125.0, 125.0, 100.0, 10.0, 10.0, 10.0, 10.0],
           [500.0, 600.0, 500.0, 500.0, 400.0, 40.0, 40.0, 40.0, 40.0], "yr",
           "maximum plant age (stem and root mortality)"),
        _p("avertmas", [1.85, 1.45, 2.45, 2.10, 2.10, 0.10, 0.10, 0.70, 0.70],
           [0.9, 0.7, 1.2, 1.0, 1.0, 0.05, 0.05, 0.35, 0.35],
           [3.7, 2.9, 4.9, 4.2, 4.2, 0.2, 0.2, 1.4, 1.4], "kg m-2",
           "average root biomass (root water access)"),
        _p("coldthrs", [2.0, 2.0], [-3.0, -2.0], [8.0, 8.0], "degC",
           "temperature threshold of cold leaf loss and harvest", groups="pft2"),
        _p("bsratelt", 0.45, 0.2, 0.9, "yr-1", "litter respiration rate at 15 degC", groups=None),
        _p("bsratesc", 0.017, 0.008, 0.04, "yr-1", "soil carbon respiration rate at 15 degC",
           groups=None),
        _p("humicfac", 0.4, 0.2, 0.6, "1", "humified fraction of decomposed litter", groups=None),
        _p("q10_rh", 2.0, 1.4, 3.0, "1", "Q10 of heterotrophic respiration", groups=None),
        _p("extnprob", 0.5, 0.25, 0.75, "1", "fire extinction probability", groups=None),
        _p("cmbcprm", [0.5, 0.5, 0.6, 0.7], 0.2, 0.9, "1", "combusted fraction of burned leaves",
           groups="pft4"),
    ])
