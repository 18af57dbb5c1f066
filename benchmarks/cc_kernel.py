"""Benchmark 3: the CC term alone, Gram form against torch.cdist and the naive broadcast.

For B attention vectors of C = 512 channels (sigmoid-range, 10 classes) it times forward+backward
of the ratio-form CC loss, interleaved round by round, with the distances computed three ways and
the same masked means on top:

- ``gram``:  ``ccloss.pairwise_distances`` (Gram form: centred A A^T in float32, one matmul);
- ``cdist``: ``torch.cdist(A, A) ** 2`` (torch's default compute mode, which itself uses a matmul
  for more than 25 rows, without centring);
- ``naive``: ``((A[:, None] - A[None]) ** 2).sum(-1)``, the (B, B, C) broadcast;

and a fourth row, ``ccloss``: ``ccloss.cc_statistics`` as the training loop calls it (the Gram
distances plus its general reduction: forms, groups, the logged parts).

Errors: the maximum absolute error of the B x B distance matrix (diagonal included) and of the
loss against a float64 reference that takes exact differences (``torch.cdist`` in float64 with
``compute_mode="donot_use_mm_for_euclid_dist"``). An errors-only row shows a hand-written Gram
matrix under bf16 autocast, i.e. what the float32 upcast in ccloss prevents.

Memory: on the CPU, (1) the bytes autograd saves for the backward pass (unique storages seen by
``torch.autograd.graph.saved_tensors_hooks``) and (2) the peak resident-set growth of one
forward+backward in a fresh subprocess (Linux: ``VmHWM`` of /proc/self/status, reset to the
current RSS just before the call, after a small warm-up of the same code; it includes the
temporaries autograd does not keep). torch's CPU allocations are invisible to tracemalloc, and
``ru_maxrss`` is inherited from the parent through fork + exec, so it cannot be used here.
On CUDA, ``torch.cuda.max_memory_allocated``
above the memory held before the call.

The naive form is skipped where its (B, B, C) float32 difference tensor alone would exceed
``--naive-limit-gb`` (default 4 GB; B = 2048 needs 8 GiB).

    python benchmarks/cc_kernel.py                 # CPU, B in 32 128 512 2048
    python benchmarks/cc_kernel.py --device cuda
The ratios (time of cdist, naive and cc_statistics over the Gram form at the largest B where all
forms ran) are printed last.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

import torch

try:
    from . import common
except ImportError:  # run as a script
    import common

from ccloss import cc_statistics, pairwise_distances

FORMS = ("gram", "ccloss", "cdist", "naive")
CLASSES = 10
EPS = 1e-3


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    common.add_common_args(p)
    p.add_argument("--sizes", type=int, nargs="+", default=None, help="batch sizes B (default 32 128 512 2048)")
    p.add_argument("--channels", type=int, default=512, help="C, channels per attention vector (default 512)")
    p.add_argument(
        "--naive-limit-gb",
        type=float,
        default=4.0,
        help="skip the naive form where B*B*C*4 bytes exceed this many GB (default 4)",
    )
    p.add_argument("--no-rss", action="store_true", help="skip the subprocess peak-RSS measurement (CPU)")
    p.add_argument("--rss-case", nargs=3, metavar=("FORM", "B", "C"), default=None, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def _reduce(dist: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Ratio form: mean same-class distance (i != j) / (mean different-class distance + eps)."""
    n = dist.shape[0]
    same = labels[:, None] == labels[None, :]
    off = ~torch.eye(n, dtype=torch.bool, device=dist.device)
    intra, inter = same & off, ~same
    zero = dist.new_zeros(())
    d_intra = torch.where(intra, dist, zero).sum() / intra.sum().clamp_min(1)
    d_inter = torch.where(inter, dist, zero).sum() / inter.sum().clamp_min(1)
    return d_intra / (d_inter + EPS)


def distances(form: str, a: torch.Tensor) -> torch.Tensor:
    if form in ("gram", "ccloss"):
        return pairwise_distances(a)
    if form == "cdist":
        return torch.cdist(a, a).pow(2)
    if form == "naive":
        return (a[:, None, :] - a[None, :, :]).pow(2).sum(-1)
    raise ValueError(form)


def cc_loss(form: str, a: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    if form == "ccloss":
        return cc_statistics(a, labels, form="ratio", eps=EPS, relative_eps=False).loss
    return _reduce(distances(form, a), labels)


def inputs(b: int, c: int, device: torch.device, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed + b)
    a = torch.sigmoid(torch.randn(b, c, generator=g)).to(device)
    labels = torch.randint(0, CLASSES, (b,), generator=g).to(device)
    return a, labels


def fwd_bwd(form: str, a: torch.Tensor, labels: torch.Tensor) -> None:
    leaf = a.detach().requires_grad_()
    cc_loss(form, leaf, labels).backward()


def saved_bytes(form: str, a: torch.Tensor, labels: torch.Tensor) -> int:
    storages: dict[int, int] = {}

    def pack(t: torch.Tensor):
        try:
            storage = t.untyped_storage()
            storages[storage.data_ptr()] = storage.nbytes()
        except Exception:  # pragma: no cover - exotic tensors
            pass
        return t

    leaf = a.detach().requires_grad_()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = cc_loss(form, leaf, labels)
    loss.backward()
    storages.pop(leaf.untyped_storage().data_ptr(), None)  # the input itself is not extra memory
    return sum(storages.values())


def _proc_status_kib(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise KeyError(key)


def _rss_child(form: str, b: int, c: int, threads: int) -> None:
    """Fresh process: peak resident-set growth (bytes) of one forward+backward, printed as JSON.

    Reads the peak RSS of this process's memory map (``VmHWM`` in /proc/self/status), reset to the
    current RSS just before the call (``echo 5 > /proc/self/clear_refs``). ``ru_maxrss`` would be
    wrong here: Linux carries it over from the parent through fork + exec, so a child started by a
    parent that is already large reports no growth at all.
    """
    torch.set_num_threads(threads)
    small, small_labels = inputs(8, c, torch.device("cpu"))
    fwd_bwd(form, small, small_labels)  # load the code paths (their pages count in RSS)
    a, labels = inputs(b, c, torch.device("cpu"))
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset the peak (VmHWM) to the current RSS
        before = _proc_status_kib("VmRSS")
    except OSError:  # no permission to reset: growth above the peak so far
        before = _proc_status_kib("VmHWM")
    fwd_bwd(form, a, labels)
    after = _proc_status_kib("VmHWM")
    print(json.dumps({"peak_rss_growth_bytes": max(0, after - before) * 1024}))


def rss_growth(form: str, b: int, c: int) -> float:
    cmd = [
        sys.executable,
        os.path.abspath(__file__),
        "--rss-case",
        form,
        str(b),
        str(c),
        "--threads",
        str(torch.get_num_threads()),
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if out.returncode != 0:
        raise RuntimeError(f"RSS subprocess failed: {out.stderr[-2000:]}")
    return float(json.loads(out.stdout.strip().splitlines()[-1])["peak_rss_growth_bytes"])


def cuda_peak(form: str, a: torch.Tensor, labels: torch.Tensor) -> int:
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    fwd_bwd(form, a, labels)
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() - base


def _mb(n: float) -> str:
    return f"{n / 2**20:.2f}"


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.rss_case is not None:
        form, b, c = args.rss_case
        _rss_child(form, int(b), int(c), int(args.threads) if args.threads != "auto" else torch.get_num_threads())
        return 0
    device = common.setup(args, "cc_kernel: the CC term, Gram form vs torch.cdist vs naive (B,B,C) broadcast")
    gpu = device.type == "cuda"
    sizes = args.sizes or ([32, 128] if args.quick else [32, 128, 512, 2048])
    c = args.channels
    rounds_for = {32: 200, 128: 60, 512: 10, 2048: 5}
    print(
        f"   C = {c}, {CLASSES} classes, inputs sigmoid(N(0, 1)) float32; times are medians of interleaved "
        f"rounds; errors against float64 exact differences"
    )
    mem_kind = "CUDA peak above baseline (MiB)" if gpu else "autograd-saved MiB / peak RSS growth MiB (subprocess)"
    print(
        f"   {'B':>5} {'form':>6} {'fwd+bwd ms':>11} {'x Gram':>7} {'max|D err|':>11} {'|loss err|':>10}"
        f"   memory: {mem_kind}"
    )

    last_full = None
    for b in sizes:
        a, labels = inputs(b, c, device, args.seed)
        naive_bytes = b * b * c * 4
        forms = [f for f in FORMS if f != "naive" or naive_bytes <= args.naive_limit_gb * 1e9]
        skipped_naive = "naive" not in forms
        # errors against the float64 exact reference
        a64 = a.double()
        ref_d = torch.cdist(a64, a64, compute_mode="donot_use_mm_for_euclid_dist").pow(2)
        ref_loss = float(_reduce(ref_d, labels))
        typical = float(ref_d[~torch.eye(b, dtype=torch.bool, device=device)].median())
        errors = {}
        with torch.no_grad():
            for form in forms:
                d = distances(form, a)
                errors[form] = (
                    float((d.double() - ref_d).abs().max()),
                    abs(float(cc_loss(form, a, labels)) - ref_loss),
                )
            with torch.autocast(device_type=device.type, dtype=torch.bfloat16):
                gram = a @ a.T  # hand-written, runs in bf16 under autocast
                n = gram.diagonal()
                d_bf16 = (n[:, None] + n[None, :] - 2 * gram).float()
            bf16_err = float((d_bf16.double() - ref_d).abs().max())
            bf16_loss_err = abs(float(_reduce(d_bf16.double(), labels)) - ref_loss)
        # timing
        rounds = 10 if args.quick else rounds_for.get(b, max(3, int(2e6 / (b * b))))
        fns = {form: (lambda f=form, a=a, labels=labels: fwd_bwd(f, a, labels)) for form in forms}
        for fn in fns.values():  # warm-up
            fn()
        times = common.interleaved_rounds(fns, rounds, device)
        ratios = {form: common.summarize_ratio(times[form], times["gram"]) for form in forms}
        for form in forms:
            if gpu:
                mem = f"{_mb(cuda_peak(form, a, labels))}"
            else:
                saved = saved_bytes(form, a, labels)
                if args.no_rss or (args.quick and (b != sizes[0] or form != "ccloss")):
                    rss = "-"
                else:
                    rss = _mb(rss_growth(form, b, c))
                mem = f"{_mb(saved)} / {rss}"
            d_err, l_err = errors[form]
            print(
                f"   {b:>5} {form:>6} {statistics.median(times[form]) * 1e3:>11.3f} {ratios[form].median:>7.2f} "
                f"{d_err:>11.2e} {l_err:>10.2e}   {mem}",
                flush=True,
            )
        print(
            f"   {b:>5} {'bf16':>6} {'-':>11} {'-':>7} {bf16_err:>11.2e} {bf16_loss_err:>10.2e}   "
            f"(hand-written Gram under bf16 autocast, errors only; typical distance {typical:.2f})"
        )
        if skipped_naive:
            print(
                f"   {b:>5} {'naive':>6} skipped: its (B, B, C) float32 difference tensor alone would be "
                f"{naive_bytes / 2**30:.1f} GiB (> {args.naive_limit_gb:g} GB)"
            )
        else:
            last_full = (b, ratios)
    print(f"   load average after: {common.load_average()}")
    if last_full is None:
        print("RATIO cc_kernel: no size ran all three forms")
        return 0
    b, ratios = last_full
    print(
        f"RATIO cc_kernel {device.type.upper()} (fwd+bwd time over the Gram form, B={b}, C={c}): "
        f"cdist {ratios['cdist'].describe()}; naive {ratios['naive'].describe()}; "
        f"ccloss.cc_statistics {ratios['ccloss'].median:.3f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
