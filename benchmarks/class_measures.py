"""What the class measures (ccloss.measures) cost: once at the end of a run, on the CPU.

Times each measure on attention vectors of a given size: the embedded datasets' (mnist5k: 3,200 train
vectors in the study's val runs, 800 val, 128 channels, 10 classes) and CIFAR-100's (50,000 train,
10,000 test, 512 channels at full width, 100 classes). The vectors are sigmoid outputs of class-dependent
logits, so the probe converges as on real attention; each measure is timed ``--repeats`` times and the
median reported. The held-out per-pair classifier fits one LDA per class pair (45 for 10 classes, 4,950
for 100). Unlike the other benchmarks this is an absolute time, not a ratio: it answers "how long does
``class_measures=True`` add to a run", the thing to compare with the run's own length.

    python benchmarks/class_measures.py                     # both sizes
    python benchmarks/class_measures.py --size cifar100 --repeats 1
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from ccloss.measures import (
    knn_accuracy,
    pair_geometry,
    precision_at_1_and_map_at_r,
    probe_accuracy,
    unseparated_pairs,
)

SIZES = {  # name: (train vectors, eval vectors, channels, classes)
    "mnist5k": (3200, 800, 128, 10),
    "cifar100": (50000, 10000, 512, 100),
}


def attention_like(n: int, channels: int, classes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(0).normal(0, 0.25, (classes, channels))  # the same class means for both splits
    labels = rng.integers(0, classes, n)
    logits = centres[labels] + rng.normal(0, 1.0, (n, channels))
    return (1 / (1 + np.exp(-logits))).astype(np.float32), labels


def timed(function, repeats: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeats):
        started = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - started)
    return statistics.median(times), result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=[*SIZES, "all"], default="all")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    for name in SIZES if args.size == "all" else [args.size]:
        n_train, n_eval, channels, classes = SIZES[name]
        train, evaluation = attention_like(n_train, channels, classes, 1), attention_like(n_eval, channels, classes, 2)
        print(f"{name}: {n_train} train / {n_eval} eval vectors, {channels} channels, {classes} classes")
        total = 0.0
        for measure, (seconds, value) in time_measures(train, evaluation, args.repeats):
            total += seconds
            print(f"  {measure:16s} {seconds:8.2f} s   (value {value:.1f})", flush=True)
        print(f"  {'all of them':16s} {total:8.2f} s")
    return 0


def time_measures(train, evaluation, repeats: int):
    """(name, (median seconds, value)) of each measure, one after the other."""
    yield "10-NN", timed(lambda: knn_accuracy(*train, *evaluation), repeats)
    yield "linear probe", timed(lambda: probe_accuracy(*train, *evaluation), repeats)
    yield "P@1 (MAP@R)", timed(lambda: precision_at_1_and_map_at_r(*train, *evaluation)["precision_at_1"], repeats)
    yield "unseparated pairs", timed(lambda: unseparated_pairs(*train, *evaluation).below, repeats)
    yield "pair geometry", timed(lambda: pair_geometry(*evaluation).below, repeats)


if __name__ == "__main__":
    raise SystemExit(main())
