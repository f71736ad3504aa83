"""Dagon et al.'s Fig. 2: the emulator network drawn from its saved weights -- the calibrated
parameters in, the hidden layers with their activations, the PC scores out; each connection's width
is the ensemble's mean |weight|. Part of :mod:`.dagon`'s report; the data come from
:func:`network_diagram_data` (``tests/test_dagon_figures.py`` checks it against the weights) and
:func:`plot_network` draws exactly those data.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from .figures import plt

__all__ = ["network_diagram_data", "plot_network"]


def network_diagram_data(net, inputs: list[str], output: str) -> xr.Dataset:
    """The layers of a fitted :class:`~bayescal.emulators.nn.DagonNetwork` and the mean |weight|
    over its ensemble of every connection.

    Returns a Dataset with ``weight_<i>`` on (``layer<i-1>``, ``layer<i>``) for each weight matrix
    ``W<i>``, node names on each ``layer<i>`` coordinate (``layer0``: ``inputs``; the last: ``output``
    PC1, PC2, ...), and each layer's activation in ``attrs["activations"]``.
    """
    n = len(net.weights_[0]) // 2  # W1, b1, ..., Wn, bn
    sizes = [net.weights_[0]["W1"].shape[0]] + [net.weights_[0][f"W{i}"].shape[1] for i in range(1, n + 1)]
    if sizes[0] != len(inputs):
        raise ValueError(f"the network has {sizes[0]} inputs, {len(inputs)} names given")
    names = [list(inputs)] + [[f"h{i}.{j + 1}" for j in range(s)] for i, s in enumerate(sizes[1:-1], 1)] \
        + [[f"{output} PC{j + 1}" for j in range(sizes[-1])]]
    mean_abs = [np.mean([np.abs(w[f"W{i}"]) for w in net.weights_], axis=0) for i in range(1, n + 1)]
    data = {f"weight_{i}": ((f"layer{i - 1}", f"layer{i}"), m) for i, m in enumerate(mean_abs, 1)}
    acts = ["input", *net.hidden_activations(), "linear"]
    return xr.Dataset(data, coords={f"layer{i}": nm for i, nm in enumerate(names)},
                      attrs={"activations": acts, "n_networks": len(net.weights_)})


def plot_network(data: list[xr.Dataset]):
    """One panel per network: nodes in columns (one per layer, its activation above), connections
    as lines whose width and opacity grow with the mean |weight| (scaled by the largest of each
    matrix)."""
    rows = [max(d[f"layer{i}"].size for i in range(len(d.attrs["activations"]))) for d in data]
    n_layers = max(len(d.attrs["activations"]) for d in data)
    fig, axes = plt.subplots(len(data), 1, figsize=(2.2 * n_layers + 2, sum(0.3 * r + 1.2 for r in rows)),
                             squeeze=False)
    for ax, d in zip(axes[:, 0], data, strict=True):
        _draw(ax, d)
    fig.tight_layout()
    return fig


def _draw(ax, data: xr.Dataset) -> None:
    acts = data.attrs["activations"]
    layers = [data[f"layer{i}"].values for i in range(len(acts))]
    pos = [np.linspace(1, 0, len(nodes)) if len(nodes) > 1 else np.array([0.5]) for nodes in layers]
    for i in range(1, len(layers)):
        w = data[f"weight_{i}"].values
        w = w / w.max() if w.max() > 0 else w
        for a in range(w.shape[0]):
            for b in range(w.shape[1]):
                ax.plot([i - 1, i], [pos[i - 1][a], pos[i][b]], color="tab:blue", lw=0.2 + 2.3 * w[a, b],
                        alpha=0.15 + 0.7 * w[a, b], zorder=1)
    for i, nodes in enumerate(layers):
        ax.scatter(np.full(len(nodes), i), pos[i], s=90, color="white", edgecolor="black", zorder=2)
        ax.text(i, 1.08, str(acts[i]), ha="center", fontsize=9)
        if i in (0, len(layers) - 1):
            for name, y in zip(nodes, pos[i], strict=True):
                ax.text(i + (-0.08 if i == 0 else 0.08), y, str(name), ha="right" if i == 0 else "left",
                        va="center", fontsize=8)
    ax.set_xlim(-1.4, len(layers) + 0.2)
    ax.set_ylim(-0.08, 1.15)
    ax.axis("off")
    ax.set_title(f"{layers[-1][0].split()[0]} network (ensemble of {data.attrs['n_networks']}; "
                 "line width: mean |weight|)")
