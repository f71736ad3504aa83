"""Observation and driver files in: FLUXNET2015 daily CSV, CSV series, CF-netCDF grids, units.

Every reader returns :class:`~bayescal.observations.products.Product` objects (data and sigma as
DataArrays with units) or, for drivers, an xarray Dataset; every file problem raises
:class:`ReaderError` naming the file (and the config key that named it). Units go through pint
(:mod:`bayescal.readers.units`); the FLUXNET2015 site table gives a site's latitude.
"""

from .fluxnet import (
    FILL_VALUES,
    SITES,
    ReaderError,
    check_daily_calendar,
    data_path,
    read_fluxnet,
    read_fluxnet_drivers,
    read_fluxnet_product,
    site_info,
    site_table,
)
from .gridded import find_cf_coordinates, read_netcdf_product, write_gridded_products
from .series import read_csv_product
from .units import UnitError, conversion_factor, convert, parse_units

__all__ = [
    "FILL_VALUES",
    "SITES",
    "ReaderError",
    "UnitError",
    "check_daily_calendar",
    "conversion_factor",
    "convert",
    "data_path",
    "find_cf_coordinates",
    "parse_units",
    "read_csv_product",
    "read_fluxnet",
    "read_fluxnet_drivers",
    "read_fluxnet_product",
    "read_netcdf_product",
    "site_info",
    "site_table",
    "write_gridded_products",
]
