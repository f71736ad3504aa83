"""Simulators: the embedded global land-carbon model and adapters for external models."""

from .drivers import BIOMES, VEGETATED_LAND_AREA, make_drivers, make_grid
from .landcarbon import OUTPUT_VARIABLES, LandCarbonModel, default_parameter_space

__all__ = [
    "BIOMES",
    "VEGETATED_LAND_AREA",
    "make_drivers",
    "make_grid",
    "OUTPUT_VARIABLES",
    "LandCarbonModel",
    "default_parameter_space",
]
