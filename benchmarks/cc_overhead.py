"""Benchmark 1: what CC-Loss adds to a training step.

Training-step time of ResNet18 + CAM with CC-Loss (criterion "cc") divided by the same model with
cross-entropy only (criterion "ce"): two copies with identical initial weights, the same batches,
steps taken in interleaved pairs (cc, ce, ce, cc, ...), median of the per-pair ratio. A step is
the loop body of ccloss.train (forward, criterion, zero_grad, backward, SGD step, the loop's
bookkeeping); the batches are prepared beforehand, so data loading is not part of it.

CPU mode (default): width 0.25, batch 32, 32x32 one-channel digits batches, fp32.
GPU mode (--device cuda): width 1, batch 128, CIFAR-shaped synthetic batches (100 classes),
bf16 autocast + channels_last. Goals: <= 1.02 (CPU), <= 1.01 (GPU).

A second, low-noise measurement isolates the criterion: forward+backward of the CC criterion and
of the CE criterion on the same (detached) model outputs; the difference is the CC term's cost,
reported in ms and as a share of the CE step.

    python benchmarks/cc_overhead.py                 # CPU
    python benchmarks/cc_overhead.py --device cuda   # GPU mode
The ratio is the last line printed.
"""

from __future__ import annotations

import argparse
import statistics
import sys

import torch

try:
    from . import common
except ImportError:  # run as a script: benchmarks/ is on sys.path
    import common

from ccloss import data as datasets
from ccloss.loader import TensorLoader
from ccloss.models import ModelOutput


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    common.add_common_args(p)
    p.add_argument("--pairs", type=int, default=None, help="interleaved (cc, ce) pairs (default: CPU 60, GPU 40)")
    p.add_argument(
        "--block",
        type=int,
        default=None,
        help="steps per timed sample (default: CPU 1, GPU 20: a GPU step is too short to time alone)",
    )
    p.add_argument("--warmup", type=int, default=None, help="untimed steps per model first (default: CPU 3, GPU 30)")
    p.add_argument("--width", type=float, default=None, help="width_mult (default: CPU 0.25, GPU 1.0)")
    p.add_argument("--batch-size", type=int, default=None, help="batch size (default: CPU 32, GPU 128)")
    p.add_argument(
        "--amp",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="bf16 autocast (default: on for CUDA; ccloss.train ignores it on the CPU)",
    )
    p.add_argument(
        "--channels-last",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="channels_last model and batches (default: on for CUDA)",
    )
    p.add_argument(
        "--term-pairs", type=int, default=None, help="pairs for the isolated criterion measurement (default 200)"
    )
    return p.parse_args(argv)


def _batches(device: torch.device, batch_size: int, count: int, channels_last: bool, seed: int):
    if device.type == "cuda":
        images, labels = common.synthetic_cifar(max(count * batch_size, 4096), seed)
        info = datasets.dataset_info("cifar100")
    else:
        images, labels = common.digits_train()
        info = datasets.dataset_info("digits")
    loader = TensorLoader(
        images, labels, batch_size, train=True, info=info, device=device, seed=seed, channels_last=channels_last
    )
    out = []
    epoch = 0
    while len(out) < count:
        loader.set_epoch(epoch)
        out.extend(loader)
        epoch += 1
    return out[:count], info


def main(argv=None) -> int:
    args = parse_args(argv)
    device = common.setup(args, "cc_overhead: training step with CC-Loss / with CE only (same CAM model)")
    gpu = device.type == "cuda"
    pairs = args.pairs or (40 if gpu else 60)
    block = args.block or (20 if gpu else 1)
    warmup = args.warmup if args.warmup is not None else (30 if gpu else 3)
    width = args.width or (1.0 if gpu else 0.25)
    batch_size = args.batch_size or (128 if gpu else 32)
    amp = (gpu if args.amp is None else args.amp) and gpu
    channels_last = gpu if args.channels_last is None else args.channels_last
    term_pairs = args.term_pairs or 200
    if args.quick:
        pairs, block, warmup, term_pairs = min(pairs, 4), min(block, 2), min(warmup, 1), min(term_pairs, 10)

    dataset = "cifar100" if gpu else "digits"
    n_batches = min(pairs * block, 64) if not args.quick else 2
    torch.manual_seed(args.seed)
    cc_crit, cc_model, channels_last = common.build("cc", dataset, width, device, channels_last=channels_last)
    ce_crit, ce_model, _ = common.build("ce", dataset, width, device, channels_last=channels_last)
    batches, info = _batches(device, batch_size, n_batches, channels_last, args.seed)
    ce_model.load_state_dict(cc_model.state_dict())  # identical initial weights
    cc_opt, ce_opt = common.sgd(cc_model), common.sgd(ce_model)
    cc_model.train()
    ce_model.train()
    print(
        f"   setting: ResNet18+CAM width {width}, batch {batch_size}, {tuple(batches[0][0].shape[1:])} "
        f"inputs, {info.num_classes} classes, amp(bf16)={amp}, channels_last={channels_last}, "
        f"{pairs} pairs x {block} step(s), {warmup} warm-up steps each"
    )
    print(f"   attention vectors: {cc_model.cam.channels} channels per sample")

    state = {"cc": [0, common.EpochBook(device)], "ce": [0, common.EpochBook(device)]}
    parts = {"cc": (cc_model, cc_crit, cc_opt), "ce": (ce_model, ce_crit, ce_opt)}

    def run(name: str, steps: int) -> None:
        model, crit, opt = parts[name]
        cursor, book = state[name]
        for _ in range(steps):
            x, y = batches[cursor % len(batches)]
            common.train_step(model, crit, opt, x, y, cursor, amp, book)
            cursor += 1
        state[name][0] = cursor

    run("cc", warmup)
    run("ce", warmup)
    common.sync(device)
    for name in ("cc", "ce"):  # a host sync inside a step stalls the GPU's queue: list them
        syncs = common.host_syncs(lambda name=name: run(name, 1), device)
        if syncs is not None:
            print(
                f"   host synchronisations in one {name} step: {len(syncs)}"
                + "".join(f"\n      {s}" for s in syncs[:8])
            )
    t_cc, t_ce = common.interleaved_pairs(lambda: run("cc", block), lambda: run("ce", block), pairs, device)
    for name in ("cc", "ce"):
        if not state[name][1].end_epoch():
            print(f"   warning: a non-finite loss in the {name} run")
    step_cc = statistics.median(t_cc) / block
    step_ce = statistics.median(t_ce) / block
    print(
        f"   median step: CC-Loss {step_cc * 1e3:.2f} ms, CE {step_ce * 1e3:.2f} ms "
        f"({batch_size / step_cc:.0f} vs {batch_size / step_ce:.0f} images/s)"
    )

    # The criterion alone, on the same outputs: the CC term's own cost, nearly free of noise.
    x, y = batches[0]
    with torch.no_grad(), torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=amp):
        ref = cc_model(x)

    def leaf_output() -> ModelOutput:
        return ModelOutput(
            logits=ref.logits.detach().requires_grad_(),
            attention=ref.attention.detach().requires_grad_(),
            features=ref.features,
            feature_map=ref.feature_map,
            head_weight=ref.head_weight,
        )

    def crit_step(crit) -> None:
        out = leaf_output()
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=amp):
            result = crit(out, y)
        result.loss.backward()

    for _ in range(3):
        crit_step(cc_crit)
        crit_step(ce_crit)
    tc_cc, tc_ce = common.interleaved_pairs(lambda: crit_step(cc_crit), lambda: crit_step(ce_crit), term_pairs, device)
    extra = statistics.median(a - b for a, b in zip(tc_cc, tc_ce))
    print(
        f"   criterion alone (forward+backward): CC-Loss {statistics.median(tc_cc) * 1e3:.3f} ms, "
        f"CE {statistics.median(tc_ce) * 1e3:.3f} ms; CC term {extra * 1e3:.3f} ms "
        f"= {100 * extra / step_ce:.2f}% of the CE step (attention {tuple(ref.attention.shape)} "
        f"{ref.attention.dtype}, computed in float32)"
    )
    print(f"   load average after: {common.load_average()}")
    summary = common.summarize_ratio(t_cc, t_ce, seed=args.seed)
    mode = "GPU" if gpu else "CPU"
    common.print_ratio(f"cc_overhead {mode} (step time CC-Loss / CE)", summary, goal="<= 1.01" if gpu else "<= 1.02")
    return 0


if __name__ == "__main__":
    sys.exit(main())
