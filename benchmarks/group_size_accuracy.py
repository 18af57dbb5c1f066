"""Benchmark 5: what ``group_size`` does to accuracy on digits (several seeds).

Three settings, trained with ``ccloss.train.train`` (quiet, into a temporary folder), same epochs,
same seeds, CC-Loss (lambda 1), ResNet18 + CAM:

- ``b32``:      true batch-32 training (the paper's setting);
- ``b256_g32``: batch 256 with the CC statistic over groups of 32 (``group_size=32``);
- ``b256``:     batch 256 with the CC statistic over the whole batch.

By default every setting uses lr 0.1 (``--lr-scaling none``); ``--lr-scaling linear`` or ``sqrt``
scales it with the batch size (0.8 or 0.28 at batch 256). Batch 256 takes 8x fewer steps per
epoch, so at equal epochs it also sees 8x fewer updates: the ``b256`` row is the fair reference for
``b256_g32`` (same steps, only the statistic differs), ``b32`` the paper's target. Reported: mean
+/- std (over seeds, ddof=1) of the final test accuracy and of the test-set intra/inter ratio of
the attention vectors (``dataset_intra_inter``: lower is more compact classes), and seconds.

    python benchmarks/group_size_accuracy.py            # about ten minutes on a 2-core CPU
The last line compares b256_g32 with b32 and b256.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

try:
    from . import common
except ImportError:  # run as a script
    import common

from ccloss.train import NonFiniteLossError, TrainConfig, fit

SETTINGS = {  # name: (batch size, group_size)
    "b32": (32, None),
    "b256_g32": (256, 32),
    "b256": (256, None),
}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    common.add_common_args(p)
    p.add_argument("--epochs", type=int, default=12, help="epochs of every run (default 12)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds (default 0 1 2)")
    p.add_argument(
        "--width", type=float, default=0.125, help="width_mult (default 0.125: twice as fast as 0.25 on a CPU)"
    )
    p.add_argument("--lr", type=float, default=0.1, help="lr at batch 32 (default 0.1)")
    p.add_argument(
        "--lr-scaling",
        choices=("none", "linear", "sqrt"),
        default="none",
        help="how the lr grows with the batch size (default none: 0.1 everywhere)",
    )
    p.add_argument("--settings", nargs="+", choices=tuple(SETTINGS), default=list(SETTINGS))
    p.add_argument("--json", default=None, help="also write every run's final metrics to this JSON file")
    return p.parse_args(argv)


def lr_for(batch: int, base: float, scaling: str) -> float:
    factor = batch / 32
    return base * {"none": 1.0, "linear": factor, "sqrt": math.sqrt(factor)}[scaling]


def _mean_std(values: list[float]) -> str:
    """mean +/- std of the defined values; NaNs (diverged runs, or an undefined ratio) are counted."""
    undefined = sum(1 for v in values if math.isnan(v))
    values = [v for v in values if not math.isnan(v)]
    if not values:
        return "undefined"
    text = (
        f"{values[0]:.3f}" if len(values) == 1 else f"{statistics.mean(values):.3f} +/- {statistics.stdev(values):.3f}"
    )
    return text + (f" ({undefined} of {undefined + len(values)} undefined)" if undefined else "")


def main(argv=None) -> int:
    args = parse_args(argv)
    device = common.setup(args, "group_size_accuracy: batch 256 with group_size 32 vs true batch 32 (digits)")
    if args.quick:
        args.epochs, args.seeds = 1, args.seeds[:1]
    print(
        f"   digits, ResNet18+CAM width {args.width}, CC-Loss lambda 1, {args.epochs} epochs (lr x0.1 at 50% "
        f"and 75%), SGD momentum 0.9 wd 5e-4, lr {args.lr} at batch 32, scaling {args.lr_scaling}, "
        f"seeds {args.seeds}"
    )
    runs: dict[str, list[dict]] = {name: [] for name in args.settings}
    n_train = len(common.digits_train()[1])
    with tempfile.TemporaryDirectory(prefix="ccloss_group_") as tmp:
        for seed in args.seeds:  # seeds outermost: a slow spell of load hits every setting alike
            for name in args.settings:
                batch, group = SETTINGS[name]
                lr = lr_for(batch, args.lr, args.lr_scaling)
                config = TrainConfig(
                    dataset="digits",
                    width_mult=args.width,
                    loss="cc",
                    batch_size=batch,
                    group_size=group,
                    epochs=args.epochs,
                    lr=lr,
                    seed=seed,
                    device=device.type,
                    out=str(Path(tmp) / f"{name}_{seed}"),
                    quiet=True,
                )
                started = time.perf_counter()
                try:
                    final = dict(fit(config)["final"])
                except NonFiniteLossError as error:  # recorded, not hidden: lr too high for this batch
                    print(f"   {name:<9} seed {seed}: diverged ({str(error).split(';')[0]})")
                    final = {"test_acc": float("nan"), "test_intra_inter": float("nan"), "diverged": True}
                final.setdefault("test_intra_inter", float("nan"))
                final.update(
                    setting=name,
                    seed=seed,
                    batch=batch,
                    group_size=group,
                    lr=lr,
                    wall_s=time.perf_counter() - started,
                    steps_per_epoch=n_train // batch,
                )  # the train loader drops the last batch
                runs[name].append(final)
                print(
                    f"   {name:<9} seed {seed}: test_acc {final['test_acc']:.2f}  test_intra/inter "
                    f"{final.get('test_intra_inter', float('nan')):.4f}  {final['wall_s']:.0f}s  "
                    f"(load {common.load_average()})",
                    flush=True,
                )

    print()
    print("   | setting | batch | group_size | lr | steps/epoch | test acc (%) | test intra/inter | diverged | s/run |")
    print("   |---|---|---|---|---|---|---|---|---|")
    for name in args.settings:
        rs = runs[name]
        batch, group = SETTINGS[name]
        print(
            f"   | {name} | {batch} | {group or '-'} | {rs[0]['lr']:g} | {rs[0]['steps_per_epoch']} | "
            f"{_mean_std([r['test_acc'] for r in rs])} | {_mean_std([r['test_intra_inter'] for r in rs])} | "
            f"{sum(1 for r in rs if r.get('diverged'))} | {statistics.mean(r['wall_s'] for r in rs):.0f} |"
        )
    print(
        f"   (mean +/- std over {len(args.seeds)} seed(s); final-epoch numbers; an undefined intra/inter "
        f"is 0/0: every test attention vector identical (an input-independent CAM); load average after: "
        f"{common.load_average()})"
    )
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "runs": runs}, f, indent=1)

    def mean(name: str, key: str) -> float:
        values = [r[key] for r in runs[name] if not math.isnan(r.get(key, float("nan")))]
        return statistics.mean(values) if values else float("nan")

    if all(n in runs for n in ("b32", "b256_g32", "b256")):
        print(
            f"RATIO group_size_accuracy (test intra/inter over b32): b256_g32 "
            f"{mean('b256_g32', 'test_intra_inter') / mean('b32', 'test_intra_inter'):.2f}, b256 "
            f"{mean('b256', 'test_intra_inter') / mean('b32', 'test_intra_inter'):.2f}; test acc b32 "
            f"{mean('b32', 'test_acc'):.2f}, b256_g32 {mean('b256_g32', 'test_acc'):.2f}, b256 "
            f"{mean('b256', 'test_acc'):.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
