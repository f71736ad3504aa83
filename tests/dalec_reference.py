"""DALEC's daily step written out in numpy from the REFLEX equations (docs/site.md), member by
member, to check the compiled kernel against."""

import numpy as np

A = dict(a2=0.0156935, a3=4.22273, a4=208.868, a5=0.0453194, a6=0.37836, a7=7.19298, a8=0.011136,
         a9=2.1001, a10=0.789798)


def gpp(lai, tmax, tmin, rad, ca, daylen, nue, nit):
    gc = 2.0 ** A["a10"] / (A["a6"] * 1.0 + 0.5 * (tmax - tmin))
    p = nue * nit * lai / gc * np.exp(A["a8"] * tmax)
    q = A["a3"] - A["a4"]
    ci = 0.5 * (ca + q - p + np.sqrt((ca + q - p) ** 2 - 4 * (ca * q - p * A["a3"])))
    e0 = A["a7"] * lai**2 / (lai**2 + A["a9"])
    return e0 * rad * gc * (ca - ci) / (e0 * rad + gc * (ca - ci)) * (A["a2"] * daylen + A["a5"])


def step(deciduous, p, pools, phen, doy, tm, tmax, tmin, rad, ca, daylen):
    """One day; ``p`` is p1..p17 (p[1] = p1), lma, nit as a dict; returns new pools, phen, NEE, GPP."""
    cf, cw, cr, clit, csom, clab = pools
    T = 0.5 * np.exp(p[10] * tm)
    G = gpp(max(0.1, cf / p["lma"]), tmax, tmin, rad, ca, daylen, p[11], p["nit"])
    Lf, Lw, Lr = p[5] * cf, p[6] * cw, p[7] * cr
    Rh1, Rh2, D = p[8] * clit * T, p[9] * csom * T, p[1] * clit * T
    gdd, flag = phen
    Atolab = Afromlab = Ralabt = Ralabf = 0.0
    if not deciduous:
        Ra = p[2] * G
        Af = (G - Ra) * p[3]
        Ar = (G - Ra - Af) * p[4]
        Aw = G - Ra - Af - Ar
    else:
        if doy <= 100:
            gdd, flag = 0.0, 1.0
        gdd += tm
        if cf >= p[17] or doy >= 200:
            flag = 0.0
        mtf, mtl = (1.0, 0.0) if gdd < p[12] else ((0.0, 1.0) if flag else (0.0, 0.0))
        if doy >= 200 and tmin < p[13]:
            mtf = 1.0
        Ralabt = p[5] * (1 - p[14]) * p[16] * cf * mtf * T
        Ralabf = p[15] * p[16] * clab * mtl * T
        Atolab = p[5] * (1 - p[14]) * (1 - p[16]) * cf * mtf * T
        Afromlab = p[15] * (1 - p[16]) * clab * mtl * T
        Lf = p[5] * p[14] * cf * mtf
        Ra = p[2] * G + Ralabt + Ralabf
        NPP1 = (1 - p[2]) * G
        afol = min(max(p[17] - cf, 0.0), p[3] * NPP1) * mtl
        Af = afol + Afromlab
        NPP2 = NPP1 - afol
        Ar, Aw = p[4] * NPP2, (1 - p[4]) * NPP2
    new = np.array([cf + Af - Lf - Atolab - Ralabt, cw + Aw - Lw, cr + Ar - Lr, clit + Lf + Lr - Rh1 - D,
                    csom + Lw + D - Rh2, clab + Atolab - Afromlab - Ralabf])
    return new, (gdd, flag), Ra + Rh1 + Rh2 - G, G
