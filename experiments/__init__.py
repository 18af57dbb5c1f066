"""The experiments beside the ccloss package (not installed): papermill sweeps of the notebooks
(one process per point on one machine, SLURM job arrays across machines), reports and tables beside
the paper's numbers, the CC-Loss default study, and the notebook runner. Run from the repository
root: ``python -m experiments sweep|report|study|compare`` (README.md in this folder)."""
