"""Observation products: named products per variable with uncertainties (``products``) and the
Global Carbon Budget 2024 tables (``gcb``). File readers live in :mod:`bayescal.readers`."""
