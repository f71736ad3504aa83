"""Compiled daily step of DALEC (REFLEX evergreen and deciduous versions), over members in parallel.

Equations: Fox et al. (2009) and the REFLEX protocol, restated in docs/site.md; ACM of
Williams et al. (1997) with the REFLEX constants. Fluxes gC m-2 d-1, pools gC m-2.
Parameter columns (``par``): p1..p17 (index 0..16; p12..p17 used by the deciduous version), then
LMA (gC m-2 leaf) and foliar N (gN m-2 leaf).
"""

from __future__ import annotations

import numba
import numpy as np

# ACM (REFLEX Table A4): a2 .. a10
A2, A3, A4, A5, A6, A7, A8, A9, A10 = (0.0156935, 4.22273, 208.868, 0.0453194, 0.37836, 7.19298,
                                       0.011136, 2.1001, 0.789798)
PSID, RTOT = -2.0, 1.0
POOLS = ("cf", "cw", "cr", "clit", "csom", "clab")
OUTPUTS = ("gpp", "nee", "reco", "ra", "rh", "lai", *POOLS)
N_PAR = 19  # p1..p17, lma, nit
EVERGREEN, DECIDUOUS = 0, 1


@numba.njit(cache=True, inline="always")
def acm(lai, tmax, tmin, rad, ca, daylen, nue, nit):
    """Daily GPP (gC m-2 d-1) of the aggregated canopy model."""
    gc = abs(PSID) ** A10 / (A6 * RTOT + 0.5 * (tmax - tmin))
    p = nue * nit * lai / gc * np.exp(A8 * tmax)
    q = A3 - A4
    b = ca + q - p
    ci = 0.5 * (b + np.sqrt(b * b - 4.0 * (ca * q - p * A3)))
    e0 = A7 * lai * lai / (lai * lai + A9)
    dc = gc * (ca - ci)
    return e0 * rad * dc / (e0 * rad + dc) * (A2 * daylen + A5)


@numba.njit(cache=True, inline="always")
def step(kind, p, pools, phen, doy, tm, tmax, tmin, rad, ca, daylen, flux, flow):
    """Advance ``pools`` (6,) by one day in place; ``flux`` gets gpp, nee, reco, ra, rh, lai.

    ``phen`` is the deciduous phenology state (growing degree days, "maximum foliage not yet
    reached" flag); ``flow`` (6, 2) accumulates each pool's inflow and outflow (spin-up).
    """
    cf, cw, cr, clit, csom, clab = pools[0], pools[1], pools[2], pools[3], pools[4], pools[5]
    temp = 0.5 * np.exp(p[9] * tm)
    lai = max(0.1, cf / p[17])
    g = acm(lai, tmax, tmin, rad, ca, daylen, p[10], p[18])
    lf, lw, lr = p[4] * cf, p[5] * cw, p[6] * cr
    rh1, rh2, dec = p[7] * clit * temp, p[8] * csom * temp, p[0] * clit * temp
    atolab = afromlab = ralabt = ralabf = 0.0
    if kind == EVERGREEN:
        ra = p[1] * g
        af = (g - ra) * p[2]
        ar = (g - ra - af) * p[3]
        aw = g - ra - af - ar
    else:
        if doy <= 100.0:
            phen[0], phen[1] = 0.0, 1.0
        phen[0] += tm
        if cf >= p[16] or doy >= 200.0:
            phen[1] = 0.0
        if phen[0] < p[11]:
            mtf, mtl = 1.0, 0.0  # winter: leaf fall on
        elif phen[1] > 0.5:
            mtf, mtl = 0.0, 1.0  # spring: leaf out
        else:
            mtf, mtl = 0.0, 0.0  # summer
        if doy >= 200.0 and tmin < p[12]:
            mtf = 1.0  # autumn leaf fall
        ralabt = p[4] * (1.0 - p[13]) * p[15] * cf * mtf * temp
        ralabf = p[14] * p[15] * clab * mtl * temp
        atolab = p[4] * (1.0 - p[13]) * (1.0 - p[15]) * cf * mtf * temp
        afromlab = p[14] * (1.0 - p[15]) * clab * mtl * temp  # same day's (REFLEX: previous day's)
        lf = p[4] * p[13] * cf * mtf
        ra = p[1] * g + ralabt + ralabf
        npp1 = (1.0 - p[1]) * g
        afol = min(max(p[16] - cf, 0.0), p[2] * npp1) * mtl
        af = afol + afromlab
        npp2 = npp1 - afol
        ar = p[3] * npp2
        aw = (1.0 - p[3]) * npp2
    pools[0] = cf + af - lf - atolab - ralabt
    pools[1] = cw + aw - lw
    pools[2] = cr + ar - lr
    pools[3] = clit + lf + lr - rh1 - dec
    pools[4] = csom + lw + dec - rh2
    pools[5] = clab + atolab - afromlab - ralabf
    ins = (af, aw, ar, lf + lr, lw + dec, atolab)
    outs = (lf + atolab + ralabt, lw, lr, rh1 + dec, rh2, afromlab + ralabf)
    for i in range(6):
        flow[i, 0] += ins[i]
        flow[i, 1] += outs[i]
    rh = rh1 + rh2
    flux[0], flux[1], flux[2], flux[3], flux[4], flux[5] = g, ra + rh - g, ra + rh, ra, rh, lai


@numba.njit(cache=True, parallel=True)
def run(kind, par, pools, phen, doy, tm, tmax, tmin, rad, ca, daylen, out, slot, flow, bad_day, bad_pool):
    """Integrate every member over the days given, in place.

    ``par`` (n_m, 19); ``pools`` (n_m, 6) and ``phen`` (n_m, 2) are the state, updated; ``out``
    (n_out, n_m, n_days) or an empty array; ``slot`` (12,) is the row of ``out`` of each of
    :data:`OUTPUTS` (-1: not written; a caller that needs two outputs writes 2/12 of the memory);
    ``flow`` (n_m, 6, 2). A member whose pool goes negative or non-finite stops:
    ``bad_day``/``bad_pool`` (n_m,) record where (-1 while it is fine).
    """
    n_m, n_d = par.shape[0], doy.shape[0]
    write = out.shape[0] > 0
    for m in numba.prange(n_m):
        if bad_day[m] >= 0:
            continue
        flux = np.empty(6)
        p, pm, hm, fm = par[m], pools[m], phen[m], flow[m]  # views made once, not once a day
        for d in range(n_d):
            step(kind, p, pm, hm, doy[d], tm[d], tmax[d], tmin[d], rad[d], ca[d], daylen[d], flux, fm)
            for i in range(6):
                if not (pm[i] >= 0.0 and np.isfinite(pm[i])):
                    bad_day[m], bad_pool[m] = d, i
            if write:
                for k in range(6):
                    if slot[k] >= 0:
                        out[slot[k], m, d] = flux[k]
                for i in range(6):
                    if slot[6 + i] >= 0:
                        out[slot[6 + i], m, d] = pm[i]
            if bad_day[m] >= 0:
                break
