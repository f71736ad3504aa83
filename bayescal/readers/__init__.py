"""Observation and driver files in: FLUXNET2015 daily CSV, CSV series, CF-netCDF grids, units.

Every reader returns :class:`~bayescal.observations.Product` objects (data and sigma as
DataArrays with units) or, for drivers, an xarray Dataset; every file problem raises
:class:`ReaderError` naming the file (and the config key that named it).
"""

from .fluxnet import SITES, ReaderError, read_fluxnet, read_fluxnet_drivers, read_fluxnet_product
from .gridded import read_netcdf_product, write_gridded_products
from .series import read_csv_product
from .units import UnitError, conversion_factor, convert

__all__ = [
    "SITES",
    "ReaderError",
    "UnitError",
    "conversion_factor",
    "convert",
    "read_csv_product",
    "read_fluxnet",
    "read_fluxnet_drivers",
    "read_fluxnet_product",
    "read_netcdf_product",
    "write_gridded_products",
]
