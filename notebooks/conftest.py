"""nbval runs the numbered notebooks; the exercise copies stop at unanswered cells by design, so they
are checked by tests/tools/test_exercises.py instead."""

collect_ignore_glob = ["exercises/*"]
