"""Compiled monthly step of the embedded land-carbon model (numba).

One call advances every (member, tile) pair by one month, fused into a single pass: the state,
the month's fluxes, the failure check and the aggregation to cells and to the globe are computed
element by element without temporary arrays. Members run in parallel (``prange``); each member's
tiles run in the same order whatever the batch, so a member's result does not depend on the
other members of its batch, bit for bit.

The equations are those of ``docs/model.md``; ``LandCarbonModel`` documents the physics. The
numpy version this replaced spent most of its time moving ~150 temporary arrays through memory:
``benchmarks/bench_simulate.py`` gives the figures.
"""

from __future__ import annotations

import math
import mmap

import numpy as np
from numba import njit, prange

# µmol CO2 m-2 s-1  ->  kgC m-2 yr-1
UMOL_TO_KGC_YR = 12.011e-9 * 365.25 * 86400.0
LAI_MAX = 15.0
RM_STEM = 0.30  # yr-1 at the annual-mean temperature, of live stem carbon
RM_ROOT = 0.12  # yr-1 at the annual-mean temperature
LAI_MIN = 0.3  # leaf onset from root storage below this LAI

#: Rows of the (quantity, member, PFT) array of parameters and parameter-derived constants.
PAR_ROWS = (
    "sn", "vpd0", "gamma_w", "kn", "vmax", "alpha_phtsyn", "minlvfr", "grescoef", "coldthrs",
    "omega", "kappa", "cmbcprm", "bsratelt", "humicfac", "bsratesc",
    "sla", "inv_avertmas", "chi_vpd0", "c4", "four_beta", "inv_2beta", "rml_vmax", "inv_kn",
    "cold_decid", "dry_decid", "a_leaf", "a_stem", "a_root", "shift_stem", "shift_root",
    "fire_scale", "tree", "k_leaf0", "mort", "k_root0", "log_q10", "harvest",
)
(SN, VPD0, GAMMA_W, KN, VMAX, ALPHA, MINLVFR, GRESCOEF, COLDTHRS, OMEGA, KAPPA, CMBCPRM,
 BSRATELT, HUMICFAC, BSRATESC, SLA, INV_AVERTMAS, CHI_VPD0, C4, FOUR_BETA, INV_2BETA, RML_VMAX,
 INV_KN, COLD_DECID, DRY_DECID, A_LEAF, A_STEM, A_ROOT, SHIFT_STEM, SHIFT_ROOT, FIRE_SCALE, TREE,
 K_LEAF0, MORT, K_ROOT0, LOG_Q10, HARVEST) = range(len(PAR_ROWS))

#: Rows of the (quantity, tile) array of the month's climate terms.
CLIMATE_ROWS = (
    "T", "W", "fd", "f_t", "e25", "f_q", "par_day", "gamma_star", "k_m", "half_vpd", "t10",
    "env", "fire_env", "rn", "le_per_gc", "log_co2", "season",
)
(C_T, C_W, C_FD, C_FT, C_E25, C_FQ, C_PAR_DAY, C_GAMMA_STAR, C_KM, C_HALF_VPD, C_T10, C_ENV,
 C_FIRE_ENV, C_RN, C_LE_PER_GC, C_LOG_CO2, C_SEASON) = range(len(CLIMATE_ROWS))

#: State rows, and budget rows (inflow of pool i at i, outflow at 5 + i).
POOLS = ("leaf", "stem", "root", "litter", "soil")
#: Aggregated outputs: the first nine also get global totals.
OUT_ROWS = ("gpp", "ra", "rh", "fire", "fluc", "nbp", "cveg", "clitter", "csoil", "lai", "hfls")
N_GLOBAL = 9


#: members per kernel thread below which another thread costs more than it gives: a month of one
#: member is microseconds, and a thread pool's wake-ups on a busy 2-core machine made a single
#: member 10-40x slower than on one thread (``benchmarks/bench_simulate.py --scaling``)
MEMBERS_PER_THREAD = 8


def auto_threads(n_members: int) -> int:
    """Kernel threads for a call with ``n_members``: one per ``MEMBERS_PER_THREAD``, 1 to numba's."""
    import numba

    return max(1, min(numba.get_num_threads(), n_members // MEMBERS_PER_THREAD))


@njit(inline="always")
def _logistic(x):
    return 1.0 / (1.0 + math.exp(-x))


@njit(inline="always")
def _clip01(x):
    return min(max(x, 0.0), 1.0)


@njit(inline="always")
def _one_minus_exp(x):
    """``1 - exp(-x)`` for x >= 0; exp is half the cost of expm1 and exact enough here."""
    return 1.0 - math.exp(-x)


# One long function on purpose (~270 lines): the month is fused into a single pass per
# (member, tile) so numba keeps every intermediate in registers; split into calls, the kernel
# moves temporaries through memory again (benchmarks/bench_simulate.py).
@njit(parallel=True, cache=True, nogil=True, error_model="numpy")
def month(state, par, pft_start, clim, co2, clear, dilute, receive, dt, active,
          budget, mean, tile_cell, tile_frac, tile_area, per_second,
          grid, rows, glob, k_out, m0, lai_out, bad):
    """Advance ``state`` (pool, member, tile) by one month in place.

    Parameters
    ----------
    state : (5, n_m, n_t) float64
        Carbon pools (kgC m-2), rows :data:`POOLS`; updated in place.
    par : (len(PAR_ROWS), n_m, 9) float64
        Parameters and parameter-derived constants per member and PFT.
    pft_start : (10,) int64
        Tiles are sorted by PFT: those of PFT ``p`` are ``pft_start[p]:pft_start[p + 1]``.
    clim : (len(CLIMATE_ROWS), n_t) float64
        The month's climate terms.
    co2, dt : float
        Atmospheric CO2 (ppm) and the month's length (yr).
    clear, dilute, receive : (n_t,) float64
        Land-use conversion (:class:`bayescal.models.land_use.LandUse`). ``clear``: area of the
        tile converted this month over its end-of-month area (zero for tiles that lose none);
        the converted area's vegetation is emitted (``fluc``), its litter and soil carbon move
        to the tiles of the cell that gain the area. ``dilute``: start- over end-of-month area
        of the gaining tiles (one otherwise). ``receive``: a gaining tile's share of the cell's
        moved carbon per m2 of its end-of-month area (m-2; zero otherwise). Tiles that lose
        area must come before the tiles of their cell that gain it.
    active : (n_m,) bool
        Members to advance; the others are left untouched.
    budget, mean : (10, n_m, n_t), (5, n_m, n_t) float64
        Spin-up accumulators (inflow, outflow of each pool; time-weighted pool); used only when
        ``budget.shape[0] == 10``.
    tile_cell, tile_frac, tile_area : (n_t,)
        Cell of each tile, its fraction of the cell and its area (m2), at the end of the month.
    per_second : float
        1 / seconds in the month, to turn monthly fluxes into rates.
    grid : (n_rows, n_members_total, n_write, n_cell) float64
        Cell outputs, zero before the month is written; row ``rows[i]`` holds output
        ``OUT_ROWS[i]`` (``-1``: not written).
    glob : (9, n_members_total, n_write) float64
        Global sums (kg s-1 for fluxes, kg for pools), zero before the month is written.
    k_out : int
        Output month index, ``-1`` during spin-up and ramp.
    m0 : int
        Offset of this batch's members in ``grid`` and ``glob``.
    lai_out : (n_m, n_t) float64
        The month's LAI (for failure messages).
    bad : (n_m,) bool
        Set for members whose state turned unphysical this month (non-finite or negative pool,
        LAI above :data:`LAI_MAX`).
    """
    # why long: one compiled loop body per (member, tile) keeps the month's state in registers;
    # splitting it into numba calls costs ~20 % (benchmarks/bench_simulate.py)
    n_m = state.shape[1]
    use_budget = budget.shape[0] == 10
    log_co2 = clim[C_LOG_CO2, 0]
    (r_gpp, r_ra, r_rh, r_fire, r_fluc, r_nbp, r_cveg, r_clitter, r_csoil, r_lai, r_hfls) = (
        rows[0], rows[1], rows[2], rows[3], rows[4], rows[5], rows[6], rows[7], rows[8], rows[9],
        rows[10])
    converting = clear.max() > 0.0
    n_cell = tile_cell.max() + 1 if converting else 0
    for m in prange(n_m):
        bad[m] = False
        if not active[m]:
            continue
        mm = m0 + m
        is_bad = False
        moved = np.zeros((2, n_cell))  # litter and soil carbon (kg) moving with converted area
        g_gpp = g_ra = g_rh = g_fire = g_fluc = g_nbp = g_cveg = g_clitter = g_csoil = 0.0
        for p in range(pft_start.size - 1):
            # ---------------- what depends on member and PFT only
            sla = par[SLA, m, p]
            inv_avertmas = par[INV_AVERTMAS, m, p]
            sn = par[SN, m, p]
            chi_co2 = par[CHI_VPD0, m, p] * co2
            vpd0 = par[VPD0, m, p]
            vmax_down = par[VMAX, m, p] / (1.0 + par[GAMMA_W, m, p] * log_co2)
            rml_down = par[RML_VMAX, m, p] / (1.0 + par[GAMMA_W, m, p] * log_co2)
            kn = par[KN, m, p]
            inv_kn = par[INV_KN, m, p]
            is_c4 = par[C4, m, p] > 0.5
            alpha = par[ALPHA, m, p]
            four_beta = par[FOUR_BETA, m, p]
            inv_2beta = par[INV_2BETA, m, p]
            minlvfr = par[MINLVFR, m, p]
            grescoef = par[GRESCOEF, m, p]
            cold_decid = par[COLD_DECID, m, p]
            coldthrs = par[COLDTHRS, m, p]
            dry_decid = par[DRY_DECID, m, p]
            a_leaf = par[A_LEAF, m, p]
            a_stem = par[A_STEM, m, p]
            a_root = par[A_ROOT, m, p]
            omega = par[OMEGA, m, p]
            kappa = par[KAPPA, m, p]
            shift_stem = par[SHIFT_STEM, m, p]
            shift_root = par[SHIFT_ROOT, m, p]
            fire_scale = par[FIRE_SCALE, m, p]
            cmbcprm = par[CMBCPRM, m, p]
            tree = par[TREE, m, p]
            harvest = par[HARVEST, m, p]
            has_stem = tree > 0.5
            k_leaf0 = par[K_LEAF0, m, p]
            k_stem0 = par[MORT, m, p] * tree
            k_r = par[K_ROOT0, m, p]
            f_r = _one_minus_exp(k_r * dt) / k_r
            log_q10 = par[LOG_Q10, m, p]
            bsratelt_dt = par[BSRATELT, m, p] * dt
            bsratesc_dt = par[BSRATESC, m, p] * dt
            humicfac = par[HUMICFAC, m, p]
            leaf_min = LAI_MIN / sla
            for t in range(pft_start[p], pft_start[p + 1]):
                if converting and receive[t] > 0.0:  # converted land joins with its litter and soil
                    for i in range(5):
                        state[i, m, t] *= dilute[t]
                    state[3, m, t] += moved[0, tile_cell[t]] * receive[t]
                    state[4, m, t] += moved[1, tile_cell[t]] * receive[t]
                leaf = state[0, m, t]
                stem = state[1, m, t]
                root = state[2, m, t]
                litter = state[3, m, t]
                soil = state[4, m, t]
                T = clim[C_T, t]
                W = clim[C_W, t]
                lai = leaf * sla
                # ---------------- water and stomata
                access = _one_minus_exp(root * inv_avertmas)
                weff = W * (0.6 + 0.4 * access)
                f_w = 1.0 - (1.0 - weff) ** sn
                ci = chi_co2 / (vpd0 + clim[C_HALF_VPD, t])
                # ---------------- photosynthesis (daytime rates, umol m-2 s-1)
                ext = math.exp(-kn * lai)
                lam = (1.0 - ext) * inv_kn
                gs = clim[C_GAMMA_STAR, t]
                if is_c4:
                    co2_c = ci / (ci + 60.0)
                    co2_e = 1.0
                else:
                    pos = max(ci - gs, 0.0)
                    co2_c = pos / (ci + clim[C_KM, t])
                    co2_e = pos / (ci + 2.0 * gs)
                jc = vmax_down * (clim[C_FT, t] * f_w) * lam * co2_c
                je = alpha * clim[C_PAR_DAY, t] * (1.0 - ext) * co2_e
                tot = jc + je
                j_rate = (tot - math.sqrt(max(tot * tot - four_beta * jc * je, 0.0))) * inv_2beta
                gpp_rate = j_rate * (clim[C_FD, t] * UMOL_TO_KGC_YR)  # kgC m-2 yr-1
                # ---------------- autotrophic respiration (kgC m-2 yr-1)
                r_leaf = rml_down * lam * clim[C_E25, t]
                r_stem = 0.0
                if has_stem:  # grasses and crops allocate nothing to stems: stem is zero
                    r_stem = RM_STEM * (minlvfr + (1.0 - minlvfr) * math.exp(-stem)) * stem
                r_m = r_leaf + (r_stem + RM_ROOT * root) * clim[C_FQ, t]
                r_g = grescoef * max(gpp_rate - r_m, 0.0)
                npp = gpp_rate - r_m - r_g
                # ---------------- phenology and allocation
                dormant = 0.0  # max(cold, dry); each is zero for a PFT that does not shed leaves
                if cold_decid > 0.0:
                    dormant = cold_decid * _logistic(coldthrs - T)
                if dry_decid > 0.0:
                    dormant = max(dormant, dry_decid * _logistic((0.15 - weff) * (1.0 / 0.03)))
                a_r = a_root + omega * (1.0 - f_w)
                inv_norm = 1.0 / (a_leaf + a_stem + a_r)
                support = _clip01((stem + root) / (kappa * leaf + 1e-9))
                # leaf allocation falls as the canopy closes (light at the canopy floor)
                a_l = a_leaf * support * (1.0 - dormant) * math.sqrt(ext) * clim[C_SEASON, t]
                shift = a_leaf - a_l
                a_s = (a_stem + shift * shift_stem) * inv_norm
                a_r = (a_r + shift * shift_root) * inv_norm
                a_l = a_l * inv_norm
                npp_pos = max(npp, 0.0) * dt
                npp_neg = max(-npp, 0.0) * dt
                # ---------------- fire (yr-1) and vegetation losses
                burn = fire_scale * clim[C_FIRE_ENV, t] * _clip01((leaf + litter - 0.1) * (1.0 / 0.9))
                k_l = k_leaf0 + 6.0 * dormant + burn
                k_s = k_stem0 + 0.3 * burn
                f_l = _one_minus_exp(k_l * dt) / k_l
                f_s = _one_minus_exp(k_s * dt) / k_s if has_stem and k_s > 0.0 else 0.0
                leaf_fire = f_l * burn * cmbcprm * leaf
                # crops: the harvested share of the leaves shed is respired off site
                leaf_shed = f_l * leaf * k_l - leaf_fire
                leaf_harvest = harvest * leaf_shed
                leaf_litter = leaf_shed - leaf_harvest
                stem_fire = f_s * 0.1 * burn * stem
                stem_litter = f_s * k_s * stem - stem_fire
                root_litter = f_r * k_r * root
                leaf_out = leaf_fire + leaf_harvest + leaf_litter
                stem_out = stem_fire + stem_litter
                root_out = root_litter
                # vegetation of the area converted this month is emitted (per end-of-month area)
                fluc = clear[t] * (leaf + stem + root)
                if converting and clear[t] > 0.0:
                    moved[0, tile_cell[t]] += tile_area[t] * clear[t] * litter
                    moved[1, tile_cell[t]] += tile_area[t] * clear[t] * soil
                # ---------------- decomposition
                env = math.exp(log_q10 * clim[C_T10, t]) * clim[C_ENV, t]
                fire_litter = _one_minus_exp(burn * 0.5 * dt) * litter
                decomp = _one_minus_exp(bsratelt_dt * env) * (litter - fire_litter)
                rh_lit = (1.0 - humicfac) * decomp
                humus = decomp - rh_lit
                rh_soil = _one_minus_exp(bsratesc_dt * env) * soil
                # ---------------- update vegetation (negative NPP drawn from all pools pro rata)
                leaf_n = leaf - leaf_out
                stem_n = stem - stem_out
                root_n = root - root_out
                veg_n = leaf_n + stem_n + root_n
                # respiration cannot exceed the carbon there is: a starving tile dies back to zero
                starve = max(npp_neg - veg_n, 0.0)
                share = min(npp_neg / max(veg_n, 1e-300), 1.0)
                leaf_draw = share * leaf_n
                stem_draw = share * stem_n
                root_draw = share * root_n
                leaf_a = leaf_n - leaf_draw + a_l * npp_pos
                root_a = root_n - root_draw + a_r * npp_pos
                # leaf onset from root storage (at most a fifth of the roots a month)
                onset = (1.0 - dormant) * min(max(leaf_min - leaf_a, 0.0), 0.2 * root_a)
                stem_in = a_s * npp_pos
                to_litter = leaf_litter + stem_litter + root_litter
                new_leaf = leaf_a + onset
                new_stem = stem_n - stem_draw + stem_in
                new_root = root_a - onset
                new_litter = litter - fire_litter - decomp + to_litter
                new_soil = soil - rh_soil + humus
                state[0, m, t] = new_leaf
                state[1, m, t] = new_stem
                state[2, m, t] = new_root
                state[3, m, t] = new_litter
                state[4, m, t] = new_soil
                lai_out[m, t] = lai
                # ---------------- failure: non-finite or negative pool, runaway LAI
                if not (-1e-12 <= min(new_leaf, new_stem, new_root, new_litter, new_soil)
                        and max(new_leaf, new_stem, new_root, new_litter, new_soil) < math.inf
                        and lai <= LAI_MAX):
                    is_bad = True
                if use_budget:
                    budget[0, m, t] += a_l * npp_pos + onset
                    budget[5, m, t] += leaf_out + leaf_draw
                    budget[1, m, t] += stem_in
                    budget[6, m, t] += stem_out + stem_draw
                    budget[2, m, t] += a_r * npp_pos
                    budget[7, m, t] += root_out + root_draw + onset
                    budget[3, m, t] += to_litter
                    budget[8, m, t] += fire_litter + decomp
                    budget[4, m, t] += humus
                    budget[9, m, t] += rh_soil
                    mean[0, m, t] += new_leaf * dt
                    mean[1, m, t] += new_stem * dt
                    mean[2, m, t] += new_root * dt
                    mean[3, m, t] += new_litter * dt
                    mean[4, m, t] += new_soil * dt
                if k_out < 0:
                    continue
                # ---------------- latent heat (W m-2, monthly mean)
                rn = clim[C_RN, t]
                gc = 1.6 * j_rate / max(co2 - ci, 1.0)  # mol m-2 s-1 in daylight
                le = gc * clim[C_LE_PER_GC, t] + 0.5 * rn * W * math.exp(-0.5 * lai)
                cap = max(0.95 * rn, 1e-6)
                hfls = cap * _one_minus_exp(le / cap)
                # ---------------- outputs: rates per second, aggregated to cells and the globe
                gpp = gpp_rate * dt
                ra = (r_m + r_g) * dt - starve
                rh = rh_lit + rh_soil + leaf_harvest
                fire = leaf_fire + stem_fire + fire_litter
                nbp = (gpp - ra - rh - fire - fluc) * per_second
                gpp *= per_second
                ra *= per_second
                rh *= per_second
                fire *= per_second
                fluc *= per_second
                c = tile_cell[t]
                w = tile_frac[t]
                a = tile_area[t]
                cveg = new_leaf + new_stem + new_root
                # written out one by one: a loop over a tuple of outputs costs a third more
                if r_gpp >= 0:
                    grid[r_gpp, mm, k_out, c] += w * gpp
                if r_ra >= 0:
                    grid[r_ra, mm, k_out, c] += w * ra
                if r_rh >= 0:
                    grid[r_rh, mm, k_out, c] += w * rh
                if r_fire >= 0:
                    grid[r_fire, mm, k_out, c] += w * fire
                if r_fluc >= 0:
                    grid[r_fluc, mm, k_out, c] += w * fluc
                if r_nbp >= 0:
                    grid[r_nbp, mm, k_out, c] += w * nbp
                if r_cveg >= 0:
                    grid[r_cveg, mm, k_out, c] += w * cveg
                if r_clitter >= 0:
                    grid[r_clitter, mm, k_out, c] += w * new_litter
                if r_csoil >= 0:
                    grid[r_csoil, mm, k_out, c] += w * new_soil
                if r_lai >= 0:
                    grid[r_lai, mm, k_out, c] += w * lai
                if r_hfls >= 0:
                    grid[r_hfls, mm, k_out, c] += w * hfls
                g_gpp += a * gpp
                g_ra += a * ra
                g_rh += a * rh
                g_fire += a * fire
                g_fluc += a * fluc
                g_nbp += a * nbp
                g_cveg += a * cveg
                g_clitter += a * new_litter
                g_csoil += a * new_soil
        if k_out >= 0:
            glob[0, mm, k_out] = g_gpp
            glob[1, mm, k_out] = g_ra
            glob[2, mm, k_out] = g_rh
            glob[3, mm, k_out] = g_fire
            glob[4, mm, k_out] = g_fluc
            glob[5, mm, k_out] = g_nbp
            glob[6, mm, k_out] = g_cveg
            glob[7, mm, k_out] = g_clitter
            glob[8, mm, k_out] = g_csoil
        bad[m] = is_bad


def zeros(shape: tuple[int, ...]) -> np.ndarray:
    """A zero float64 array; a large one mapped with its pages populated up front (Linux).

    The gridded outputs of a big ensemble take gigabytes, which the kernel fills a month at a
    time. Left to fault in page by page, every first touch traps, and in a virtual machine the
    traps cost seconds (100 members: 2 GiB, 7.6 s of system time, 20 s wall against 17.7 s).
    ``MAP_POPULATE`` maps them in one call.
    """
    size = int(np.prod(shape)) * 8
    if size < 1 << 26 or not hasattr(mmap, "MAP_POPULATE"):
        return np.zeros(shape)
    flags = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | mmap.MAP_POPULATE
    buf = mmap.mmap(-1, size, flags=flags)  # anonymous: zero-filled by the operating system
    return np.frombuffer(buf, dtype=np.float64).reshape(shape)


def pack_parameters(P: dict[str, np.ndarray], const: dict[str, np.ndarray]) -> np.ndarray:
    """Stack per-(member, PFT) parameters and constants into the (row, member, PFT) array."""
    n_m = P["vmax"].shape[0]
    out = np.empty((len(PAR_ROWS), n_m, 9))
    for i, name in enumerate(PAR_ROWS):
        out[i] = P[name] if name in P else const[name]
    return out


def pack_climate(terms: dict[str, np.ndarray], n_t: int) -> np.ndarray:
    """Stack the month's climate terms into the (row, tile) array."""
    out = np.empty((len(CLIMATE_ROWS), n_t))
    for i, name in enumerate(CLIMATE_ROWS):
        out[i] = terms[name]
    return out
