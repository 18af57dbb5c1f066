"""The project's own process, kept out of the installed package: ``make run``'s notebook runner
(:mod:`tools.run_all`), the exercise copies (:mod:`tools.exercises`) and the study's stage files
(:mod:`tools.study_stages`). Run them from the repository root: ``python -m tools.<name>``."""
