"""Seeds of the tests that compare a sampler's draws with an exact posterior.

Each such test runs one seed in the suite, with bounds several Monte Carlo errors wide. That the
bound holds for *any* seed, not just the one the suite runs, is checked by running the same tests
over other seeds::

    BAYESCAL_TEST_SEEDS=0-9 python -m pytest -m seed_sweep

``BAYESCAL_TEST_SEEDS`` is a range ``a-b`` (inclusive) or a comma list; unset, each test runs its
default seed. The sweeps' results are in each test's docstring.
"""

import os


def seeds(*default: int) -> list[int]:
    """The seeds a test is parametrised over: ``default``, or those named in ``BAYESCAL_TEST_SEEDS``."""
    spec = os.environ.get("BAYESCAL_TEST_SEEDS", "").strip()
    if not spec:
        return list(default)
    out: list[int] = []
    for part in spec.split(","):
        lo, _, hi = part.partition("-")
        out.extend(range(int(lo), int(hi or lo) + 1))
    return out
