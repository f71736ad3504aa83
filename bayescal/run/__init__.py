"""Running a model over a design: the fault-tolerant, resumable store (``ensemble``) and where the
members run -- serial, a process pool, Dask or SLURM (``cluster``)."""
