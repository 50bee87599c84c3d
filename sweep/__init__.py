"""Studies at scale: configs x seeds planned into a graph of jobs, run on Slurm or locally (``python -m sweep``)."""
