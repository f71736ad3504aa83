"""Write the twin products of a config as CF-netCDF files on a lat-lon grid, for the file route.

    python examples/write_cf_products.py examples/global_twin.toml runs/cf_products
    bayescal run examples/global_files.toml

``examples/global_files.toml`` then reads these files back through ``[[observations.products]]``
(format "netcdf") exactly as it would read FLUXCOM GPP or MODIS LAI: the file route end to end.
"""

import sys
from pathlib import Path

from bayescal.readers import write_gridded_products
from bayescal.workflows import load_config, make_context


def main(config: str, out: str) -> None:
    cfg = load_config(config)
    pipe = make_context(cfg, Path(out) / "twin_run", progress=False)
    obs, truth = pipe.twin()  # the twin products (and the truth run) of this config
    for path in write_gridded_products(obs, truth, out, resolution=0.5):
        print(path)


if __name__ == "__main__":
    main(*(sys.argv[1:3] if len(sys.argv) > 2 else ("examples/global_twin.toml", "runs/cf_products")))
