"""Parameter spaces: scalars and per-plant-functional-type vectors, bounds, defaults.

A :class:`ParameterSpace` is an ordered set of :class:`Parameter` families. Each family is a
scalar or a vector over a named grouping (the nine CLASSIC plant functional types, or the 4- and
2-group splits of Seiler's Table 1). The space flattens to one vector of parameter *values* with
stable labels (``"vmax[BDL-EVG]"``), maps those values to and from the unit cube (Seiler, Eq. 1:
``u = (x - lower) / (upper - lower)``), and can fix any subset at chosen values so that designs,
emulators and samplers only see the *free* values.

Conventions
-----------
* ``x`` is a physical parameter vector (or an ``(n, k)`` batch of them); ``u`` lives in ``[0, 1]``.
* Methods that take or return "free" vectors work on the ``n_free`` values not fixed;
  :meth:`ParameterSpace.expand` turns a free batch into the full batch a simulator takes.
"""

from .parameter import GROUPINGS, PFTS, Parameter, ParameterError, family, group_index, split_label
from .space import UNIT_CUBE, ParameterSpace

__all__ = [
    "UNIT_CUBE",
    "split_label",
    "family",
    "PFTS",
    "GROUPINGS",
    "group_index",
    "Parameter",
    "ParameterSpace",
    "ParameterError",
]
