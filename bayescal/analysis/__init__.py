"""What a calibration shows: sensitivity and screening, one-at-a-time maps, equifinality, propagation.

``sensitivity`` (SALib Sobol/Morris and screening through the runner), ``oat`` (Dagon et al.'s
one-at-a-time screen), ``equifinality`` (posterior correlation and PCA structure, distance-vs-score
clouds, alternative sets), ``propagate`` (parameter sets through the runner to carbon-budget bands).
"""
