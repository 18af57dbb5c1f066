"""Shared code of the benchmarks: machine description, timing, interleaved pairs, the step.

Every benchmark measures a *ratio* of two things run side by side in one process, in
interleaved order (A B, B A, A B, ...), and reports the median of the per-pair ratios with its
interquartile range and a bootstrap 95% interval of the median. Background load on a shared
machine slows both members of a pair alike, so the per-pair ratio is far steadier than either
time; the median ignores the pairs a burst of load hit unevenly.

``train_step`` is the body of the training loop in ``ccloss/train.py`` (``_train``), line for line,
so "this repository's loop" here is the one users run; keep the two in step.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from ccloss import data as datasets
from ccloss.config import TrainConfig, build_for_config
from ccloss.runtime.devices import resolve_device, to_channels_last

__all__ = [
    "add_common_args",
    "setup",
    "resolve_device",
    "sync",
    "machine_lines",
    "load_average",
    "host_syncs",
    "interleaved_pairs",
    "interleaved_rounds",
    "RatioSummary",
    "summarize_ratio",
    "EpochBook",
    "train_step",
    "PhaseTimer",
    "build",
    "synthetic_cifar",
    "digits_train",
    "print_ratio",
]

DEVICES = ("cpu", "cuda", "auto")


# --------------------------------------------------------------------------------------------
# Command line and machine
# --------------------------------------------------------------------------------------------


def add_common_args(parser: argparse.ArgumentParser, default_device: str = "cpu") -> None:
    parser.add_argument(
        "--device",
        default=default_device,
        choices=DEVICES,
        help=f"where to run (default: {default_device}); 'auto' = cuda when available",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: few repeats, small sizes; checks that the code runs, the numbers mean little",
    )
    parser.add_argument(
        "--threads",
        default="auto",
        help="torch intra-op threads on the CPU: an integer, or 'auto' = torch's default (all cores) "
        "on an idle machine (1-minute load average < 0.5), else 1: OpenMP threads on a CPU that "
        "other processes also use run several times slower and far noisier",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the model initialisation and the data")


def load_average() -> str:
    try:
        one, five, fifteen = os.getloadavg()
    except OSError:  # pragma: no cover - not on Linux/macOS
        return "n/a"
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def _choose_threads(spec: str) -> tuple[int, str]:
    if str(spec) != "auto":
        n = int(spec)
        if n < 1:
            raise SystemExit(f"--threads must be >= 1 or 'auto', got {spec!r}")
        return n, "set by --threads"
    try:
        load = os.getloadavg()[0]
    except OSError:  # pragma: no cover
        load = 0.0
    if load >= 0.5:  # others are running: they may claim the cores at any moment
        return 1, f"auto: load average {load:.2f} >= 0.5, the CPU is shared"
    return torch.get_num_threads(), f"auto: torch default, load average {load:.2f} < 0.5"


def setup(args: argparse.Namespace, title: str) -> torch.device:
    """Device, threads, seed and backend flags (as ccloss.train sets them); prints the header."""
    device = resolve_device(args.device)
    threads, why = _choose_threads(args.threads)
    torch.set_num_threads(threads)
    torch.manual_seed(args.seed)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    print(f"== {title}")
    for line in machine_lines(device):
        print(f"   {line}")
    print(f"   torch threads: {torch.get_num_threads()} ({why})")
    print(f"   command: {' '.join([os.path.basename(sys.executable)] + sys.argv)}")
    sys.stdout.flush()
    return device


def _cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return platform.processor() or platform.machine()


def machine_lines(device: torch.device) -> list[str]:
    lines = [
        f"date: {_dt.datetime.now(_dt.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}",
        f"cpu: {_cpu_model()}, {os.cpu_count()} logical cores; python {platform.python_version()}; "
        f"torch {torch.__version__}",
        f"load average (1/5/15 min): {load_average()}",
    ]
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        lines.append(
            f"gpu: {torch.cuda.get_device_name(device)}, {props.total_memory / 2**30:.0f} GiB, "
            f"capability {props.major}.{props.minor}, CUDA {torch.version.cuda}"
        )
    return lines


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def host_syncs(fn: Callable[[], object], device: torch.device) -> list[str] | None:
    """The synchronising CUDA calls ``fn()`` makes (torch.cuda.set_sync_debug_mode("warn"));
    None on the CPU, where the question does not arise."""
    if device.type != "cuda":
        return None
    import warnings

    sync(device)
    previous = torch.cuda.get_sync_debug_mode()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            fn()
        finally:
            torch.cuda.set_sync_debug_mode(previous)
    return [str(w.message).splitlines()[0][:160] for w in caught if "synchroniz" in str(w.message).lower()]


# --------------------------------------------------------------------------------------------
# Interleaved pairs and ratios
# --------------------------------------------------------------------------------------------


def interleaved_pairs(
    run_a: Callable[[], object], run_b: Callable[[], object], pairs: int, device: torch.device
) -> tuple[list[float], list[float]]:
    """Seconds of ``run_a()`` and ``run_b()`` in ``pairs`` adjacent pairs, order alternating."""
    times_a: list[float] = []
    times_b: list[float] = []

    def timed(fn: Callable[[], object]) -> float:
        sync(device)
        start = time.perf_counter()
        fn()
        sync(device)
        return time.perf_counter() - start

    for i in range(pairs):
        if i % 2 == 0:
            ta = timed(run_a)
            tb = timed(run_b)
        else:
            tb = timed(run_b)
            ta = timed(run_a)
        times_a.append(ta)
        times_b.append(tb)
    return times_a, times_b


def interleaved_rounds(
    fns: dict[str, Callable[[], object]], rounds: int, device: torch.device
) -> dict[str, list[float]]:
    """Seconds of each function in ``rounds`` rounds; the order rotates from round to round."""
    names = list(fns)
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        k = r % len(names)
        for name in names[k:] + names[:k]:
            sync(device)
            start = time.perf_counter()
            fns[name]()
            sync(device)
            times[name].append(time.perf_counter() - start)
    return times


@dataclass
class RatioSummary:
    median: float
    q25: float
    q75: float
    ci_low: float
    ci_high: float
    n: int
    ratios: list[float] = field(repr=False)

    def describe(self) -> str:
        return (
            f"{self.median:.4f} (IQR {self.q25:.4f}-{self.q75:.4f}, 95% CI of the median "
            f"{self.ci_low:.4f}-{self.ci_high:.4f}, {self.n} pairs)"
        )


def summarize_ratio(numerators: list[float], denominators: list[float], seed: int = 0) -> RatioSummary:
    """Median of the per-pair ratios, IQR and a bootstrap 95% interval of the median."""
    r = np.asarray(numerators, dtype=float) / np.asarray(denominators, dtype=float)
    rng = np.random.default_rng(seed)
    boots = np.median(rng.choice(r, size=(2000, r.size), replace=True), axis=1) if r.size > 1 else r
    return RatioSummary(
        median=float(np.median(r)),
        q25=float(np.percentile(r, 25)),
        q75=float(np.percentile(r, 75)),
        ci_low=float(np.percentile(boots, 2.5)),
        ci_high=float(np.percentile(boots, 97.5)),
        n=int(r.size),
        ratios=[float(v) for v in r],
    )


def print_ratio(label: str, summary: RatioSummary, goal: str | None = None) -> None:
    """The last line of a benchmark: ``RATIO <label>: <median> ...``."""
    tail = f"  [goal {goal}]" if goal else ""
    print(f"RATIO {label}: {summary.describe()}{tail}", flush=True)


# --------------------------------------------------------------------------------------------
# Models and data
# --------------------------------------------------------------------------------------------


def build(
    loss: str,
    dataset: str,
    width: float,
    device: torch.device,
    *,
    backbone: str = "resnet18",
    channels_last: bool = False,
    group_size: int | None = None,
):
    """(criterion, model, channels_last) exactly as ccloss.train builds them for this config;
    ``channels_last`` is the memory format the model got (feed batches in it), which is off where
    ccloss.models.channels_last_is_safe says it would crash."""
    config = TrainConfig(dataset=dataset, backbone=backbone, width_mult=width, loss=loss, group_size=group_size)
    info = datasets.dataset_info(dataset)
    criterion, model = build_for_config(config, info, device)
    if channels_last:
        model, channels_last = to_channels_last(model, device)
    return criterion, model, channels_last


def sgd(model: torch.nn.Module) -> torch.optim.Optimizer:
    """The optimiser of ccloss.train with its defaults (lr 0.1, momentum 0.9, wd 5e-4)."""
    cfg = TrainConfig()
    return torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


def synthetic_cifar(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """CIFAR-100-shaped uint8 images (n x 3 x 32 x 32) and labels (100 classes), on the CPU."""
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 3, 32, 32), generator=g, dtype=torch.uint8)
    labels = torch.randint(0, 100, (n,), generator=g)
    return images, labels


def digits_train() -> tuple[torch.Tensor, torch.Tensor]:
    return datasets.load_tensors("digits", "train")


# --------------------------------------------------------------------------------------------
# The step of ccloss.train
# --------------------------------------------------------------------------------------------


class PhaseTimer:
    """Wall time per phase of a step, with a device sync at every boundary (instrumented runs only)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.totals: dict[str, float] = {}
        self._last = 0.0

    def start(self) -> None:
        sync(self.device)
        self._last = time.perf_counter()

    def mark(self, phase: str) -> None:
        sync(self.device)
        now = time.perf_counter()
        self.totals[phase] = self.totals.get(phase, 0.0) + now - self._last
        self._last = now

    def shares(self, compute: tuple[str, ...] = ("forward", "backward", "optimizer")) -> tuple[float, dict[str, float]]:
        """(share of the time outside the ``compute`` phases, seconds per phase)."""
        total = sum(self.totals.values())
        outside = total - sum(self.totals.get(p, 0.0) for p in compute)
        return (outside / total if total else float("nan")), dict(self.totals)


class EpochBook:
    """The per-epoch bookkeeping of ccloss.train: loss/part sums, accuracy, the finiteness check."""

    def __init__(self, device: torch.device) -> None:
        self.sums: dict[str, torch.Tensor] = {}
        self.step_losses: list[torch.Tensor] = []
        self.correct = torch.zeros((), device=device)
        self.seen = 0

    def end_epoch(self) -> bool:
        """The end-of-epoch check of ccloss.train (one host sync): all step losses finite."""
        if not self.step_losses:
            return True
        losses = torch.stack(self.step_losses)
        return bool(torch.isfinite(losses).all())


def train_step(
    model: torch.nn.Module,
    criterion: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    step: int,
    amp: bool,
    book: EpochBook,
    timer: PhaseTimer | None = None,
) -> None:
    """One iteration of the loop body of ``ccloss.train._train`` (same calls, same order).

    With ``timer`` the phases forward (model + criterion), optimizer (zero_grad + step),
    backward and bookkeeping are timed with a sync at each boundary; without it nothing syncs.
    """
    mark = timer.mark if timer is not None else (lambda phase: None)
    with torch.autocast(device_type=x.device.type, dtype=torch.bfloat16, enabled=amp):
        output = model(x)
        result = criterion(output, y, step=step)
    mark("forward")
    optimizer.zero_grad(set_to_none=True)
    mark("optimizer")
    result.loss.backward()
    mark("backward")
    optimizer.step()
    mark("optimizer")
    loss = result.loss.detach()
    book.step_losses.append(loss)
    book.sums["loss"] = book.sums.get("loss", 0) + loss.float()
    for name, value in result.parts.items():
        book.sums[name] = book.sums.get(name, 0) + value.detach().float()
    book.correct += (output.logits.detach().argmax(1) == y).sum()
    book.seen += y.shape[0]
    mark("bookkeeping")
