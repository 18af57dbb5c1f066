"""The experiment machinery around the training loop: comparisons over seeds, papermill sweeps and
their worker processes, reports and tables beside the paper's numbers, the notebook runner, and the
CC-Loss default study. A learner does not need to read it."""
