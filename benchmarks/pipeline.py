"""Benchmark 2: this repository's training loop against the loop a typical tutorial writes.

Ours: ``ccloss.data.TensorLoader`` (uint8 tensors on the device, a per-epoch permutation, batched
crop/flip, one multiply-add to normalise) feeding the step of ``ccloss.train`` (forward, criterion,
zero_grad, backward, SGD step, bookkeeping without host syncs; bf16 autocast + channels_last on
CUDA). Tutorial: a ``torch.utils.data.Dataset`` holding ndarrays that returns PIL images through
per-image torchvision transforms, a ``DataLoader`` (shuffle, batch 32), fp32, NCHW, and the usual
``loss.item()`` / ``.sum().item()`` bookkeeping every step. Same model (ResNet18 + CAM, CC-Loss,
identical initial weights), same batch size, same number of images per epoch (both drop the last
partial batch), one process, epochs interleaved (ours, tutorial, tutorial, ours, ...).

CPU mode (default): the embedded digits (1,347 train images, 32x32 grey), width 0.25; the
tutorial's transforms are ToTensor + Normalize (no augmentation, like our digits loader),
num_workers=0. Goal: >= 1.15x.
GPU mode (--device cuda): CIFAR-shaped synthetic uint8 data (content does not change speed),
width 1; tutorial transforms RandomCrop(32, padding=4), RandomHorizontalFlip, ToTensor,
Normalize with num_workers=2 (the PyTorch CIFAR tutorial's choice). Goal: >= 3x.

It also reports each loop's overhead: the share of step time outside forward (model +
criterion), backward and the optimiser (zero_grad + step), from separate instrumented epochs with
perf_counter around each part (and torch.cuda.synchronize on the GPU). Goal for ours: <= 5%.
``--profile`` prints where each loop spends its time (torch.profiler, top operators).

    python benchmarks/pipeline.py                  # CPU, digits
    python benchmarks/pipeline.py --device cuda    # GPU, CIFAR-shaped
The ratio is the last line printed.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time

import numpy as np
import torch

try:
    from . import common
except ImportError:  # run as a script
    import common

from ccloss import data as datasets
from ccloss.config import TrainConfig
from ccloss.loader import TensorLoader


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    common.add_common_args(p)
    p.add_argument(
        "--data",
        choices=("digits", "cifar"),
        default=None,
        help="digits (the embedded set) or cifar (synthetic CIFAR-shaped); default: CPU digits, GPU cifar",
    )
    p.add_argument("--pairs", type=int, default=None, help="interleaved pairs of epochs (default: CPU 3, GPU 2)")
    p.add_argument("--steps", type=int, default=None, help="cap on batches per epoch (default: the whole epoch)")
    p.add_argument("--dataset-size", type=int, default=20000, help="images of the synthetic CIFAR-shaped set")
    p.add_argument("--width", type=float, default=None, help="width_mult (default: CPU 0.25, GPU 1.0)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--workers", type=int, default=None, help="tutorial DataLoader num_workers (default: CPU 0, GPU 2)")
    p.add_argument(
        "--amp",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="ours: bf16 autocast (default: on for CUDA; off on the CPU, as ccloss.train)",
    )
    p.add_argument(
        "--channels-last",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="ours: channels_last (default: ccloss.train.TrainConfig's, on)",
    )
    p.add_argument(
        "--compile", action="store_true", help="ours: torch.compile the model (as --compile of ccloss.train)"
    )
    p.add_argument(
        "--overhead-steps",
        type=int,
        default=None,
        help="steps of each instrumented (overhead) epoch (default: CPU 42 = a digits epoch, GPU 300)",
    )
    p.add_argument("--profile", action="store_true", help="also profile both loops (torch.profiler, top operators)")
    p.add_argument(
        "--check-train",
        action="store_true",
        help="also run ccloss.train.train for one epoch and print its logged images_per_sec",
    )
    return p.parse_args(argv)


# --------------------------------------------------------------------------------------------
# The tutorial's loop
# --------------------------------------------------------------------------------------------


class ArrayImageDataset(torch.utils.data.Dataset):
    """What torchvision's MNIST/CIFAR datasets do: ndarrays in memory, a PIL image per access."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, transform) -> None:
        arr = images.numpy()
        self.grey = arr.shape[1] == 1
        self.data = arr[:, 0] if self.grey else np.ascontiguousarray(arr.transpose(0, 2, 3, 1))  # N x H x W (x C)
        self.targets = [int(t) for t in labels]
        self.transform = transform

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int):
        from PIL import Image

        img = Image.fromarray(self.data[index])  # H x W uint8 -> mode "L", H x W x 3 -> "RGB"
        return self.transform(img), self.targets[index]


def tutorial_transform(info: datasets.DatasetInfo, augment: bool):
    from torchvision import transforms

    steps = [transforms.RandomCrop(info.image_size, padding=4), transforms.RandomHorizontalFlip()] if augment else []
    return transforms.Compose(steps + [transforms.ToTensor(), transforms.Normalize(info.mean, info.std)])


def tutorial_epoch(model, criterion, optimizer, loader, device, max_steps=None, timer=None) -> int:
    """The loop of a typical tutorial (fp32, NCHW, .item() every step)."""
    mark = timer.mark if timer is not None else (lambda phase: None)
    model.train()
    running_loss, correct, total = 0.0, 0, 0
    if timer is not None:
        timer.start()
    for i, (x, y) in enumerate(loader):
        if max_steps is not None and i >= max_steps:
            break
        x, y = x.to(device), y.to(device)
        mark("data")
        output = model(x)
        loss = criterion(output, y).loss
        mark("forward")
        optimizer.zero_grad()
        mark("optimizer")
        loss.backward()
        mark("backward")
        optimizer.step()
        mark("optimizer")
        running_loss += loss.item()
        correct += (output.logits.argmax(1) == y).sum().item()
        total += y.size(0)
        mark("bookkeeping")
    return total


# --------------------------------------------------------------------------------------------
# Ours
# --------------------------------------------------------------------------------------------


def ours_epoch(model, criterion, optimizer, loader, epoch, amp, device, step0=0, max_steps=None, timer=None) -> int:
    """An epoch of ccloss.train's loop (without the evaluation and the checkpoint)."""
    loader.set_epoch(epoch)
    model.train()
    book = common.EpochBook(device)
    if timer is not None:
        timer.start()
    for i, (x, y) in enumerate(loader):
        if max_steps is not None and i >= max_steps:
            break
        if timer is not None:
            timer.mark("data")
        common.train_step(model, criterion, optimizer, x, y, step0 + i, amp, book, timer)
    book.end_epoch()
    if timer is not None:
        timer.mark("bookkeeping")
    return book.seen


def _profile(name: str, fn, device: torch.device) -> None:
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        fn()
    key = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    print(f"   --- profile: {name} (top operators by {key}) ---")
    print(prof.key_averages().table(sort_by=key, row_limit=18, max_name_column_width=48))


def main(argv=None) -> int:
    args = parse_args(argv)
    device = common.setup(args, "pipeline: images/s of this repository's loop / a typical tutorial loop")
    gpu = device.type == "cuda"
    data_name = args.data or ("cifar" if gpu else "digits")
    pairs = args.pairs or (2 if gpu else 3)
    width = args.width or (1.0 if gpu else 0.25)
    workers = args.workers if args.workers is not None else (2 if gpu else 0)
    amp = (gpu if args.amp is None else args.amp) and gpu
    channels_last = TrainConfig().channels_last if args.channels_last is None else args.channels_last
    max_steps = args.steps
    overhead_steps = args.overhead_steps or (300 if gpu else 42)
    if args.quick:
        pairs, max_steps, overhead_steps = 1, min(max_steps or 3, 3), 3

    if data_name == "digits":
        images, labels = common.digits_train()
        info = datasets.dataset_info("digits")
        dataset = "digits"
    else:
        n = 512 if args.quick else args.dataset_size
        images, labels = common.synthetic_cifar(n, args.seed)
        info = datasets.dataset_info("cifar100")
        dataset = "cifar100"
    augment = info.augment != "none"

    torch.manual_seed(args.seed)
    crit_ours, model_ours, channels_last = common.build("cc", dataset, width, device, channels_last=channels_last)
    crit_tut, model_tut, _ = common.build("cc", dataset, width, device)
    model_tut.load_state_dict(model_ours.state_dict())
    opt_ours, opt_tut = common.sgd(model_ours), common.sgd(model_tut)
    train_model = torch.compile(model_ours) if args.compile else model_ours

    loader_ours = TensorLoader(
        images,
        labels,
        args.batch_size,
        train=True,
        info=info,
        device=device,
        seed=args.seed,
        channels_last=channels_last,
    )
    g = torch.Generator().manual_seed(args.seed)
    loader_tut = torch.utils.data.DataLoader(
        ArrayImageDataset(images, labels, tutorial_transform(info, augment)),
        batch_size=args.batch_size,
        shuffle=True,
        num_workers=workers,
        drop_last=True,
        generator=g,
    )
    per_epoch = min(len(loader_ours), max_steps or len(loader_ours)) * args.batch_size
    print(
        f"   setting: {data_name} {tuple(images.shape)} uint8, ResNet18+CAM width {width}, CC-Loss, batch "
        f"{args.batch_size}, {per_epoch} images per timed epoch, {pairs} pairs of epochs"
    )
    print(
        f"   ours: TensorLoader on {device.type}, augment={loader_ours.augment}, amp(bf16)={amp}, "
        f"channels_last={channels_last}, compile={args.compile}"
    )
    print(
        f"   tutorial: DataLoader(num_workers={workers}) over PIL images, transforms "
        f"{[type(t).__name__ for t in loader_tut.dataset.transform.transforms]}, fp32, NCHW"
    )

    steps = {"ours": 0}
    epoch_counter = {"ours": 0}

    def run_ours(limit=max_steps, timer=None) -> int:
        e = epoch_counter["ours"]
        seen = ours_epoch(train_model, crit_ours, opt_ours, loader_ours, e, amp, device, steps["ours"], limit, timer)
        epoch_counter["ours"] += 1
        steps["ours"] += seen // args.batch_size
        return seen

    def run_tut(limit=max_steps, timer=None) -> int:
        return tutorial_epoch(model_tut, crit_tut, opt_tut, loader_tut, device, limit, timer)

    # warm-up: a few steps of each (allocator, cudnn autotuning, compile)
    warm = 3 if args.quick else (30 if gpu else 5)
    run_ours(warm)
    run_tut(warm)

    seen: dict[str, list[int]] = {"ours": [], "tut": []}

    def timed_ours():
        seen["ours"].append(run_ours())

    def timed_tut():
        seen["tut"].append(run_tut())

    t_ours, t_tut = common.interleaved_pairs(timed_ours, timed_tut, pairs, device)
    ips_ours = [n / t for n, t in zip(seen["ours"], t_ours)]
    ips_tut = [n / t for n, t in zip(seen["tut"], t_tut)]
    print(
        f"   images/s per epoch: ours {', '.join(f'{v:.0f}' for v in ips_ours)}; "
        f"tutorial {', '.join(f'{v:.0f}' for v in ips_tut)}"
    )
    print(f"   median images/s: ours {statistics.median(ips_ours):.1f}, tutorial {statistics.median(ips_tut):.1f}")

    # overhead: instrumented epochs (sync at every phase boundary), not part of the throughput
    shares = {}
    for name, fn in (("ours", run_ours), ("tutorial", run_tut)):
        timer = common.PhaseTimer(device)
        fn(overhead_steps, timer)
        share, totals = timer.shares()
        shares[name] = share
        total = sum(totals.values())
        parts = ", ".join(f"{k} {100 * v / total:.1f}%" for k, v in sorted(totals.items(), key=lambda kv: -kv[1]))
        print(
            f"   overhead {name}: {100 * share:.2f}% of step time outside forward/backward/optimizer "
            f"({overhead_steps} steps: {parts})"
        )

    if args.profile:
        n = max_steps or 20
        _profile("ours", lambda: run_ours(n), device)
        _profile("tutorial", lambda: run_tut(n), device)

    if args.check_train and data_name == "digits":
        from ccloss.train import fit

        with tempfile.TemporaryDirectory() as tmp:
            started = time.perf_counter()
            metrics = fit(
                TrainConfig(
                    dataset="digits",
                    width_mult=width,
                    epochs=1,
                    batch_size=args.batch_size,
                    device=device.type,
                    amp=amp,
                    channels_last=channels_last,
                    out=tmp,
                    quiet=True,
                    seed=args.seed,
                )
            )
            print(
                f"   ccloss.train.train, 1 digits epoch: images_per_sec {metrics['history'][0]['images_per_sec']:.1f} "
                f"(wall {time.perf_counter() - started:.1f}s with evaluation)"
            )

    print(f"   load average after: {common.load_average()}")
    print(
        f"OVERHEAD pipeline {device.type.upper()} (ours, outside fwd/bwd/opt): {100 * shares['ours']:.2f}% "
        f"[goal <= 5%]; tutorial: {100 * shares['tutorial']:.2f}%"
    )
    summary = common.summarize_ratio(ips_ours, ips_tut, seed=args.seed)
    goal = ">= 3" if gpu else ">= 1.15"
    common.print_ratio(f"pipeline {device.type.upper()} {data_name} (images/s ours / tutorial)", summary, goal=goal)
    return 0


if __name__ == "__main__":
    sys.exit(main())
