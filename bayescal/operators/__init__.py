"""From model output to what is compared with data: summaries, site series, EOFs, skill scores.

``summaries`` (the observation operator of the global route), ``timeseries`` (site series and their
likelihood), ``eof`` (Dagon et al.'s EOF space), ``scores`` (AMBER/ILAMB scores, misfits, likelihoods).
"""
