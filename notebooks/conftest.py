"""nbval runs the numbered notebooks; the exercise copies stop at unanswered cells by design, so they
are checked by tests/experiments/test_exercise_copies.py instead."""

collect_ignore_glob = ["exercises/*"]
