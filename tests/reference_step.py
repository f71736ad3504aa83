"""The embedded model's monthly step in plain numpy: the reference the compiled kernel is tested on.

This is the vectorised numpy implementation that ``bayescal.models._kernel.month`` replaced
(commit 4409e3f). ``P`` and ``c`` hold parameters and constants broadcastable to (member, tile),
``cl`` the month's climate terms on (tile,).
"""

import numpy as np

from bayescal.models._kernel import LAI_MIN as _LAI_MIN
from bayescal.models._kernel import RM_ROOT as _RM_ROOT
from bayescal.models._kernel import RM_STEM as _RM_STEM
from bayescal.models._kernel import UMOL_TO_KGC_YR as _UMOL_TO_KGC_YR


def _logistic(x):
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def reference_step(s, P, c, cl, co2, clear, dt, budget=None):
    """Advance the state ``s`` by one month in place; return the month's fluxes (kgC m-2).

    ``clear`` (tile,) is the land-use conversion term of the kernel: the vegetation carbon of the
    converted area is emitted; the tile's own pools follow the intact dynamics.
    """
    leaf, stem, root, litter, soil = s["leaf"], s["stem"], s["root"], s["litter"], s["soil"]
    T, W = cl["T"], cl["W"]
    lai = leaf * c["sla"]
    # ---------------- water and stomata
    access = 1.0 - np.exp(-root * c["inv_avertmas"])
    weff = W * (0.6 + 0.4 * access)
    f_w = 1.0 - np.exp(P["sn"] * np.log1p(-weff))
    ci = c["chi_vpd0"] * co2 / (P["vpd0"] + cl["half_vpd"])
    # ---------------- photosynthesis (daytime rates, umol m-2 s-1)
    down = 1.0 / (1.0 + P["gamma_w"] * cl["log_co2"])
    ext = np.exp(-P["kn"] * lai)
    lam = (1.0 - ext) * c["inv_kn"]
    gs = cl["gamma_star"]
    pos = np.maximum(ci - gs, 0.0)
    c4 = c["c4"]
    co2_c = np.where(c4, ci / (ci + 60.0), pos / (ci + cl["k_m"]))
    co2_e = np.where(c4, 1.0, pos / (ci + 2.0 * gs))
    jc = (P["vmax"] * down) * (cl["f_t"] * f_w) * lam * co2_c
    je = P["alpha_phtsyn"] * cl["par_day"] * (1.0 - ext) * co2_e
    tot = jc + je
    j = (tot - np.sqrt(np.maximum(tot * tot - c["four_beta"] * jc * je, 0.0))) * c["inv_2beta"]
    gpp_rate = j * (cl["fd"] * _UMOL_TO_KGC_YR)  # kgC m-2 yr-1
    # ---------------- autotrophic respiration (kgC m-2 yr-1)
    r_leaf = c["rml_vmax"] * down * lam * cl["e25"]
    # stem and root respiration acclimated to the local annual-mean temperature
    live = P["minlvfr"] + (1.0 - P["minlvfr"]) * np.exp(-stem)
    r_m = r_leaf + (_RM_STEM * live * stem + _RM_ROOT * root) * cl["f_q"]
    r_g = P["grescoef"] * np.maximum(gpp_rate - r_m, 0.0)
    npp = gpp_rate - r_m - r_g
    # ---------------- phenology and allocation
    cold = c["cold_decid"] * _logistic(P["coldthrs"] - T)
    dry = c["dry_decid"] * _logistic((0.15 - weff) / 0.03)
    dormant = np.maximum(cold, dry)
    a_l = c["a_leaf"]
    a_s = c["a_stem"]
    a_r = c["a_root"] + P["omega"] * (1.0 - f_w)
    norm = a_l + a_s + a_r
    support = np.clip((stem + root) / (P["kappa"] * leaf + 1e-9), 0.0, 1.0)
    # leaf allocation falls as the canopy closes (light at the canopy floor, ext**0.5)
    a_l_eff = a_l * support * (1.0 - dormant) * np.sqrt(ext) * cl["season"]
    shift = a_l - a_l_eff
    a_s = a_s + shift * c["shift_stem"]
    a_r = a_r + shift * c["shift_root"]
    a_l, a_s, a_r = a_l_eff / norm, a_s / norm, a_r / norm
    npp_pos = np.maximum(npp, 0.0) * dt
    npp_neg = np.maximum(-npp, 0.0) * dt
    # ---------------- fire (rates, yr-1)
    fuel = np.clip((leaf + litter - 0.1) / 0.9, 0.0, 1.0)
    burn = c["fire_scale"] * cl["fire_env"] * fuel
    cmb = P["cmbcprm"]
    # ---------------- vegetation losses
    k_l = c["k_leaf0"] + 6.0 * dormant + burn
    k_s = c["mort"] * c["tree"] + 0.3 * burn
    k_r = c["k_root0"]
    f_l = -np.expm1(-k_l * dt) / k_l
    f_s = -np.expm1(-k_s * dt) / np.where(k_s > 0, k_s, 1.0)
    f_r = -np.expm1(-k_r * dt) / k_r
    leaf_fire = f_l * burn * cmb * leaf
    leaf_shed = f_l * leaf * k_l - leaf_fire
    leaf_harvest = c["harvest"] * leaf_shed  # crops: respired off site
    leaf_litter = leaf_shed - leaf_harvest
    stem_fire = f_s * 0.1 * burn * stem
    stem_litter = f_s * k_s * stem - stem_fire
    root_litter = f_r * k_r * root
    leaf_out = leaf_fire + leaf_harvest + leaf_litter
    stem_out = stem_fire + stem_litter
    root_out = root_litter
    fluc = clear * (leaf + stem + root)
    # ---------------- decomposition
    env = np.exp(c["log_q10"] * cl["t10"]) * cl["env"]
    fire_litter = -np.expm1(-burn * 0.5 * dt) * litter
    decomp = -np.expm1(-P["bsratelt"] * env * dt) * (litter - fire_litter)
    rh_lit = (1.0 - P["humicfac"]) * decomp
    humus = decomp - rh_lit
    rh_soil = -np.expm1(-P["bsratesc"] * env * dt) * soil
    # ---------------- update vegetation (negative NPP drawn from all pools pro rata)
    leaf_n = leaf - leaf_out
    stem_n = stem - stem_out
    root_n = root - root_out
    veg_n = leaf_n + stem_n + root_n
    # respiration cannot exceed the carbon there is: a starving tile dies back to zero
    starve = np.maximum(npp_neg - veg_n, 0.0)
    share = np.minimum(npp_neg / np.maximum(veg_n, 1e-300), 1.0)
    leaf_draw, stem_draw, root_draw = share * leaf_n, share * stem_n, share * root_n
    leaf_a = leaf_n - leaf_draw + a_l * npp_pos
    root_a = root_n - root_draw + a_r * npp_pos
    # leaf onset from root storage (at most a fifth of the roots a month)
    leaf_min = _LAI_MIN / c["sla"]
    onset = (1.0 - dormant) * np.minimum(np.maximum(leaf_min - leaf_a, 0.0), 0.2 * root_a)
    leaf_in = a_l * npp_pos + onset
    stem_in = a_s * npp_pos
    s["leaf"] = leaf_a + onset
    s["stem"] = stem_n - stem_draw + stem_in
    s["root"] = root_a - onset
    to_litter = leaf_litter + stem_litter + root_litter
    s["litter"] = litter - fire_litter - decomp + to_litter
    s["soil"] = soil - rh_soil + humus
    if budget is not None:
        inflow, outflow = budget
        inflow["leaf"] += leaf_in
        outflow["leaf"] += leaf_out + leaf_draw
        inflow["stem"] += stem_in
        outflow["stem"] += stem_out + stem_draw
        inflow["root"] += a_r * npp_pos
        outflow["root"] += root_out + root_draw + onset
        inflow["litter"] += to_litter
        outflow["litter"] += fire_litter + decomp
        inflow["soil"] += humus
        outflow["soil"] += rh_soil
    gpp = gpp_rate * dt
    ra = (r_m + r_g) * dt - starve
    rh = rh_lit + rh_soil + leaf_harvest
    fire = leaf_fire + stem_fire + fire_litter
    # ---------------- latent heat (W m-2, monthly mean)
    rn = cl["rn"]
    gc = 1.6 * j / np.maximum(co2 - ci, 1.0)  # mol m-2 s-1 in daylight
    le_tr = gc * cl["le_per_gc"]
    le_soil = 0.5 * rn * W * np.exp(-0.5 * lai)
    cap = np.maximum(0.95 * rn, 1e-6)
    hfls = cap * -np.expm1(-(le_tr + le_soil) / cap)
    return {
        "gpp": gpp,
        "ra": ra,
        "rh": rh,
        "fire": fire,
        "fluc": fluc,
        "nbp": gpp - ra - rh - fire - fluc,
        "hfls": hfls,
        "lai": lai,
    }

