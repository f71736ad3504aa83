"""Run the DALEC-style site model (a separate program) as a bayescal ensemble.

    python examples/dalec/run_dalec_ensemble.py [RUN_DIR] [N_MEMBERS] [N_WORKERS]

Each member renders ``params.template`` into its own run directory, runs ``dalec_model.py`` with
the real Metolius drivers (Williams et al., 2005) through ``ExternalModel`` (an argument list, no
shell, with a timeout), and the runner stores the daily NEE and LAI. Re-running the same command
resumes: only missing members run.
"""

import sys
from importlib import resources
from pathlib import Path

from bayescal.models.external import ExternalModel
from bayescal.parameters import ParameterSpace
from bayescal.parameters.design import latin_hypercube
from bayescal.run.ensemble import EnsembleStore, run_ensemble

HERE = Path(__file__).resolve().parent


def main(run_dir: str = "runs/dalec", n_members: int = 8, workers: int = 2) -> None:
    space = ParameterSpace.from_toml(HERE / "dalec_space.toml")
    drivers = resources.files("bayescal") / "data" / "metolius" / "dalec_drivers.OREGON.no_obs.dat"
    model = ExternalModel(
        command=[sys.executable, str(HERE / "dalec_model.py"), "{param_file}", str(drivers), "{output}"],
        template=HERE / "params.template",
        space=space,
        workdir=Path(run_dir) / "work",
        timeout=120,
        variables=["nee", "gpp", "lai"],
    )
    design = latin_hypercube(space, n_members, seed=42)
    summary = run_ensemble(model, design, Path(run_dir) / "store", executor=workers or None)
    print(summary)
    ens = EnsembleStore(Path(run_dir) / "store").load()
    print("\nmember  status  annual NEE (gC m-2 yr-1)  mean LAI")
    for m in ens.member.values:
        st = str(ens.status.sel(member=m).values)
        if st == "done":
            nee = float(ens.nee.sel(member=m).sum()) / 3
            print(f"{m:6d}  {st:6s}  {nee:10.1f}                {float(ens.lai.sel(member=m).mean()):.2f}")
        else:
            print(f"{m:6d}  {st:6s}  {str(ens.reason.sel(member=m).values)}")


if __name__ == "__main__":
    args = sys.argv[1:]
    main(args[0] if args else "runs/dalec", int(args[1]) if len(args) > 1 else 8,
         int(args[2]) if len(args) > 2 else 2)
