"""Benchmark 4: training images/s on one GPU (runs only where CUDA is present).

ResNet18 and VGG16 (CIFAR stems, width 1, CAM, CC-Loss) at batch 32, 128 and 512 in fp32,
bf16 autocast, bf16 + channels_last, and bf16 + channels_last + torch.compile; and batch 512 with
the CC statistic over groups of 32 (``group_size=32``). Data: synthetic CIFAR-100-shaped uint8
tensors held on the GPU and served by ``ccloss.data.TensorLoader`` (per-sample crop + flip as
batched tensor ops); content does not change speed. The step is ccloss.train's loop body, with
its end-of-epoch finiteness check; evaluation and checkpoints are not part of it.

Without CUDA it prints "CUDA not available: not yet measured" and exits 0. ``--device cpu``
runs the same code on the CPU (for the smoke test, with small sizes; not a GPU number).

Time: the eager cells take about two minutes on a recent GPU; each compiled cell costs a
compilation (tens of seconds). Compiled cells run in priority order (ResNet18 batch 512 first)
while the elapsed time stays under ``--budget-s`` (default 330 s), so that
``python benchmarks/gpu_throughput.py && python benchmarks/cc_overhead.py --device cuda``
fits in about eight minutes; cells left out are listed as skipped.

The last line is the ratio of ResNet18 batch-512 images/s with bf16 + channels_last + compile
(or the best configuration that ran) over fp32, with the images/s (issue goal on an H200:
>= 40,000 images/s).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time

import torch

try:
    from . import common
except ImportError:  # run as a script
    import common

from ccloss import data as datasets
from ccloss.loader import TensorLoader

PRECISIONS = ("fp32", "bf16", "bf16+cl", "bf16+cl+compile")
BACKBONES = ("resnet18", "vgg16")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    common.add_common_args(p, default_device="cuda")
    p.add_argument("--backbones", nargs="+", choices=BACKBONES, default=list(BACKBONES))
    p.add_argument("--batches", type=int, nargs="+", default=[32, 128, 512])
    p.add_argument("--precisions", nargs="+", choices=PRECISIONS, default=list(PRECISIONS))
    p.add_argument("--group-batch", type=int, default=512, help="batch of the group_size rows (default 512)")
    p.add_argument("--group-size", type=int, default=32, help="group_size of the group rows (default 32; 0 = none)")
    p.add_argument("--width", type=float, default=1.0, help="width_mult (default 1)")
    p.add_argument("--dataset-size", type=int, default=50000, help="synthetic images held on the device")
    p.add_argument("--seconds", type=float, default=1.0, help="target seconds per timed repeat (default 1)")
    p.add_argument("--repeats", type=int, default=3, help="timed repeats per cell; the median is reported")
    p.add_argument("--warmup", type=int, default=15, help="untimed steps per cell after the first (default 15)")
    p.add_argument(
        "--budget-s",
        type=float,
        default=330.0,
        help="no compiled cell starts once this many seconds have passed (default 330)",
    )
    p.add_argument("--json", default=None, help="also write the results to this JSON file")
    return p.parse_args(argv)


class Stream:
    """Batches of a TensorLoader forever, with ccloss.train's per-epoch bookkeeping."""

    def __init__(self, loader: TensorLoader, device: torch.device) -> None:
        self.loader, self.device = loader, device
        self.epoch = 0
        self.book = common.EpochBook(device)
        self.step = 0
        loader.set_epoch(0)
        self.it = iter(loader)

    def next(self):
        try:
            return next(self.it)
        except StopIteration:
            self.book.end_epoch()
            self.book = common.EpochBook(self.device)
            self.epoch += 1
            self.loader.set_epoch(self.epoch)
            self.it = iter(self.loader)
            return next(self.it)


def run_cell(backbone, batch, precision, group_size, images, labels, info, device, args) -> dict:
    amp = precision != "fp32"
    channels_last = "cl" in precision
    compiled = precision.endswith("compile")
    if compiled:
        torch._dynamo.reset()
    torch.manual_seed(args.seed)
    criterion, model, channels_last = common.build(
        "cc",
        "cifar100",
        args.width,
        device,
        backbone=backbone,
        channels_last=channels_last,
        group_size=group_size or None,
    )
    optimizer = common.sgd(model)
    train_model = torch.compile(model) if compiled else model
    model.train()
    loader = TensorLoader(
        images, labels, batch, train=True, info=info, device=device, seed=args.seed, channels_last=channels_last
    )
    stream = Stream(loader, device)

    def steps(n: int, train_model=train_model, criterion=criterion, optimizer=optimizer) -> None:
        for _ in range(n):
            x, y = stream.next()
            common.train_step(train_model, criterion, optimizer, x, y, stream.step, amp, stream.book)
            stream.step += 1

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    common.sync(device)
    t0 = time.perf_counter()
    steps(1)  # includes the compilation
    common.sync(device)
    first = time.perf_counter() - t0
    steps(args.warmup)
    common.sync(device)
    t0 = time.perf_counter()
    steps(5)
    common.sync(device)
    per_step = (time.perf_counter() - t0) / 5
    n = int(min(3000, max(10, math.ceil(args.seconds / max(per_step, 1e-6)))))
    rates = []
    for _ in range(args.repeats):
        common.sync(device)
        t0 = time.perf_counter()
        steps(n)
        common.sync(device)
        rates.append(n * batch / (time.perf_counter() - t0))
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")
    del train_model, model, optimizer, criterion, steps
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return {
        "backbone": backbone,
        "batch": batch,
        "precision": precision,
        "group_size": group_size or None,
        "images_per_sec": statistics.median(rates),
        "ms_per_step": 1e3 * batch / statistics.median(rates),
        "steps_timed": n,
        "repeats": args.repeats,
        "first_step_s": first,
        "peak_gib": peak,
    }


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.device in ("cuda", "auto") and not torch.cuda.is_available():
        print(f"gpu_throughput: load average {common.load_average()}, torch {torch.__version__}")
        print("CUDA not available: not yet measured")
        return 0
    device = common.setup(args, "gpu_throughput: training images/s, ResNet18 / VGG16, CIFAR-shaped, CC-Loss")
    started = time.perf_counter()
    size = min(args.dataset_size, 2048) if args.quick else args.dataset_size
    if args.quick:
        args.seconds, args.repeats, args.warmup = min(args.seconds, 0.2), 1, min(args.warmup, 2)
    info = datasets.dataset_info("cifar100")
    images, labels = common.synthetic_cifar(size, args.seed)
    images, labels = images.to(device), labels.to(device)  # once; TensorLoader keeps them there
    print(
        f"   data: {size} synthetic CIFAR-shaped uint8 images on {device}, crop_flip; width {args.width}; "
        f"median of {args.repeats} repeats of ~{args.seconds:g} s per cell; compile budget {args.budget_s:g} s"
    )

    eager = [p for p in args.precisions if not p.endswith("compile")]
    compiled = [p for p in args.precisions if p.endswith("compile")]
    cells = [(bb, b, p, None) for bb in args.backbones for b in args.batches for p in eager]
    if args.group_size:
        cells += [(bb, args.group_batch, "bf16+cl", args.group_size) for bb in args.backbones if "bf16+cl" in eager]
    # compiled cells in priority order: the headline cell first
    ccells = []
    if compiled:
        for b in sorted(args.batches, reverse=True):
            for bb in args.backbones:
                ccells.append((bb, b, compiled[0], None))
                if args.group_size and b == args.group_batch:
                    ccells.append((bb, b, compiled[0], args.group_size))
    results, skipped = [], []
    header = (
        f"   {'backbone':<9} {'batch':>5} {'precision':<16} {'group':>5} {'images/s':>10} {'ms/step':>8} "
        f"{'peak GiB':>8} {'1st step s':>10}"
    )
    print(header, flush=True)

    def show(r: dict) -> None:
        print(
            f"   {r['backbone']:<9} {r['batch']:>5} {r['precision']:<16} {str(r['group_size'] or '-'):>5} "
            f"{r['images_per_sec']:>10.0f} {r['ms_per_step']:>8.2f} {r['peak_gib']:>8.2f} {r['first_step_s']:>10.1f}",
            flush=True,
        )

    for cell in cells:
        r = run_cell(*cell, images, labels, info, device, args)
        results.append(r)
        show(r)
    compile_estimate = 60.0
    for cell in ccells:
        elapsed = time.perf_counter() - started
        if elapsed + compile_estimate > args.budget_s:
            skipped.append(cell)
            continue
        r = run_cell(*cell, images, labels, info, device, args)
        compile_estimate = max(compile_estimate * 0.5, r["first_step_s"] + 5.0)
        results.append(r)
        show(r)
    for bb, b, p, g in skipped:
        print(f"   {bb:<9} {b:>5} {p:<16} {str(g or '-'):>5}   skipped: time budget (--budget-s {args.budget_s:g})")
    print(f"   total {time.perf_counter() - started:.0f} s; load average after: {common.load_average()}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {"machine": common.machine_lines(device), "results": results, "skipped": [list(c) for c in skipped]},
                f,
                indent=1,
            )

    def find(bb, b, p, g=None):
        for r in results:
            if (r["backbone"], r["batch"], r["precision"], r["group_size"]) == (bb, b, p, g):
                return r
        return None

    bb = args.backbones[0]
    b = max(args.batches)
    base = find(bb, b, "fp32")
    best = None
    for p in ("bf16+cl+compile", "bf16+cl", "bf16"):
        best = find(bb, b, p)
        if best is not None:
            break
    if base is None or best is None:
        print("RATIO gpu_throughput: the fp32 or bf16 cell of the headline row did not run")
        return 0
    print(
        f"RATIO gpu_throughput {device.type.upper()} ({bb}, batch {b}, images/s {best['precision']} / fp32): "
        f"{best['images_per_sec'] / base['images_per_sec']:.2f} ({best['images_per_sec']:.0f} vs "
        f"{base['images_per_sec']:.0f} images/s) [issue goal on an H200: >= 40000 images/s for ResNet18 "
        f"batch 512 bf16+cl+compile]"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
