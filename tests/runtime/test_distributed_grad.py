"""Data-parallel CC-Loss: the DDP-averaged gradient equals single-process full-batch training.

Two CPU processes (gloo) are spawned once per module (a module-scoped fixture) and run every
scenario; each rank writes its losses and (DDP-averaged) parameter gradients to a file, and the
tests compare them with single-process references computed here, in float64.
"""

from __future__ import annotations

import io
import os
import socket
import sys
import time
import traceback
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP

from ccloss import CCLoss
from ccloss.runtime import distributed as cdist
from tests.helpers import built_once

WORLD = 2
B = 6  # per-rank batch
D, C, K = 5, 7, 3  # input dim, attention channels, classes
LAM = 0.7
TOL = 1e-6
CC_CASES = [(form, gs) for form in ("ratio", "difference") for gs in (None, 4)]


# ----------------------------------------------------------------------------- shared setup


def _data(seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(WORLD * B, D, generator=g, dtype=torch.float64)
    y = torch.randint(0, K, (WORLD * B,), generator=g)
    return x, y


class _AttnNet(nn.Module):
    """Attention vectors in (0, 1) from a linear layer, so there are parameter gradients."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.fc = nn.Linear(D, C).double()

    def forward(self, x):
        return torch.sigmoid(self.fc(x))


class _TinyClassifier(nn.Module):
    """Attention -> logits: CE and CC both reach the first layer."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.fc = nn.Linear(D, C).double()
        self.head = nn.Linear(C, K).double()

    def forward(self, x):
        a = torch.sigmoid(self.fc(x))
        return a, self.head(a)


def _grads(model: nn.Module) -> dict:
    return {n: p.grad.detach().clone() for n, p in model.named_parameters()}


# ----------------------------------------------------------------------------- the worker


def _run_rank(rank: int) -> dict:
    info = cdist.init_distributed("cpu")
    assert info.is_distributed and info.backend == "gloo" and info.world_size == WORLD and info.rank == rank
    out: dict = {"info": info}
    x, y = _data()
    sl = slice(rank * B, (rank + 1) * B)
    xr, yr = x[sl], y[sl]

    # global scope: lam * CC on the gathered batch, real DDP averaging
    for form, gs in CC_CASES:
        model = DDP(_AttnNet())
        cc = CCLoss(form=form, group_size=gs)
        cc.gather = cdist.make_cc_gather("global")
        loss = LAM * cc(model(xr), yr)
        loss.backward()
        out[("global", form, gs)] = {"loss": loss.item(), "grads": _grads(model.module)}

    # local scope: per-rank CC with group_size = per-rank batch, no gather
    for form in ("ratio", "difference"):
        model = DDP(_AttnNet())
        cc = CCLoss(form=form, group_size=B)
        cc.gather = cdist.make_cc_gather("local")
        assert cc.gather is None
        loss = LAM * cc(model(xr), yr)
        loss.backward()
        out[("local", form)] = {"loss": loss.item(), "grads": _grads(model.module)}

    # CE + lam * CC (global scope) through a real DDP model
    model = DDP(_TinyClassifier())
    cc = CCLoss()
    cc.gather = cdist.make_cc_gather("global")
    attention, logits = model(xr)
    loss = nn.functional.cross_entropy(logits, yr) + LAM * cc(attention, yr)
    loss.backward()
    out["ce"] = {"loss": loss.item(), "grads": _grads(model.module)}

    # manual averaging (all_reduce / world size) and the gather's forward values
    model = _AttnNet()
    a = model(xr)
    gathered = cdist.all_gather_with_grad(a)
    out["gathered_attention"] = gathered.detach().clone()
    out["gathered_labels"] = cdist.all_gather_labels(yr)
    (LAM * CCLoss()(gathered, cdist.all_gather_labels(yr))).backward()
    for p in model.parameters():
        cdist.all_reduce_sum(p.grad)
        p.grad /= WORLD
    out["manual"] = _grads(model)

    # unequal per-rank batch sizes: a clear error, on every rank (no hang)
    for name, fn, t in (
        ("attention", cdist.all_gather_with_grad, torch.zeros(3 + rank, C, requires_grad=True)),
        ("labels", cdist.all_gather_labels, torch.zeros(3 + rank, dtype=torch.long)),
    ):
        try:
            fn(t)
            out[("unequal", name)] = None
        except ValueError as err:
            out[("unequal", name)] = str(err)

    # helpers
    out["is_main"] = cdist.is_main_process()
    out["broadcast"] = cdist.broadcast_object({"from": rank})
    out["reduced"] = cdist.all_reduce_sum(torch.tensor([rank + 1.0]))
    return out


def _worker(rank: int, port: int, out_dir: str) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(WORLD)
    )
    torch.set_num_threads(1)
    try:
        result = _run_rank(rank)
        torch.save(result, Path(out_dir) / f"rank{rank}.pt")
    except BaseException:
        (Path(out_dir) / f"rank{rank}.err").write_text(traceback.format_exc())
        raise
    finally:
        cdist.cleanup_distributed()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _spawn(out_dir: Path) -> Exception | None:
    """Run the ranks once; the exception of a rank that failed, or None."""
    ctx = mp.spawn(_worker, args=(_free_port(), str(out_dir)), nprocs=WORLD, join=False)
    deadline = time.monotonic() + 120
    try:
        while not ctx.join(timeout=0.2):
            if time.monotonic() > deadline:
                pytest.fail("distributed workers did not finish within 120 s")
    except Exception as err:  # a rank raised or died
        return err
    finally:
        for p in ctx.processes:
            if p.is_alive():
                p.terminate()
    return None


def _run_ranks(out_dir: Path) -> None:
    error = _spawn(out_dir)
    if isinstance(error, mp.ProcessExitedException):  # killed by a signal (gloo aborts when its free port is
        error = _spawn(out_dir)  # taken by another process in between): once more, on a new port
    if error is not None:  # a rank raised: show its traceback
        errors = "\n".join(p.read_text() for p in sorted(out_dir.glob("*.err")))
        pytest.fail(f"distributed worker failed: {error}\n{errors}")


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    out_dir = built_once(tmp_path_factory, "ddp-grad", _run_ranks)  # once for all workers
    return [torch.load(out_dir / f"rank{r}.pt", weights_only=False) for r in range(WORLD)]


def _reference(model: nn.Module, loss_fn) -> tuple[float, dict]:
    x, y = _data()
    loss = loss_fn(model, x, y)
    loss.backward()
    return loss.item(), _grads(model)


def _assert_grads_close(got: dict, want: dict) -> None:
    assert got.keys() == want.keys()
    for name in want:
        diff = (got[name] - want[name]).abs().max().item()
        assert diff < TOL, f"{name}: max |DDP grad - single-process grad| = {diff:.3g}"
        assert want[name].abs().max().item() > 1e-4, f"{name}: reference gradient is trivially small"


# ----------------------------------------------------------------------------- distributed tests


@pytest.mark.distributed
@pytest.mark.parametrize("form,group_size", CC_CASES)
def test_global_scope_matches_single_process(ranks, form, group_size):
    want_loss, want = _reference(_AttnNet(), lambda m, x, y: LAM * CCLoss(form=form, group_size=group_size)(m(x), y))
    for r in range(WORLD):
        got = ranks[r][("global", form, group_size)]
        assert abs(got["loss"] - want_loss) < TOL  # every rank computes the same global value
        _assert_grads_close(got["grads"], want)


@pytest.mark.distributed
@pytest.mark.parametrize("form", ["ratio", "difference"])
def test_local_scope_matches_grouped_single_process(ranks, form):
    # single process with group_size = per-rank batch: the mean over groups = DDP's mean over ranks
    want_loss, want = _reference(_AttnNet(), lambda m, x, y: LAM * CCLoss(form=form, group_size=B)(m(x), y))
    mean_loss = sum(ranks[r][("local", form)]["loss"] for r in range(WORLD)) / WORLD
    assert abs(mean_loss - want_loss) < TOL
    for r in range(WORLD):
        _assert_grads_close(ranks[r][("local", form)]["grads"], want)
    # and it is a different objective from the global one
    _, global_grads = _reference(_AttnNet(), lambda m, x, y: LAM * CCLoss(form=form)(m(x), y))
    assert (global_grads["fc.weight"] - want["fc.weight"]).abs().max() > 1e-4


@pytest.mark.distributed
def test_ce_plus_cc_with_ddp_matches_full_batch(ranks):
    def full_batch(m, x, y):
        attention, logits = m(x)
        return nn.functional.cross_entropy(logits, y) + LAM * CCLoss()(attention, y)

    want_loss, want = _reference(_TinyClassifier(), full_batch)
    for r in range(WORLD):
        _assert_grads_close(ranks[r]["ce"]["grads"], want)
    assert abs(sum(ranks[r]["ce"]["loss"] for r in range(WORLD)) / WORLD - want_loss) < TOL


@pytest.mark.distributed
def test_gather_values_and_manual_averaging(ranks):
    x, y = _data()
    a = _AttnNet()(x).detach()
    for r in range(WORLD):
        assert torch.equal(ranks[r]["gathered_labels"], y)
        assert (ranks[r]["gathered_attention"] - a).abs().max() < 1e-12
    _, want = _reference(_AttnNet(), lambda m, x, y: LAM * CCLoss()(m(x), y))
    for r in range(WORLD):
        _assert_grads_close(ranks[r]["manual"], want)


@pytest.mark.distributed
def test_unequal_batch_sizes_raise_on_every_rank(ranks):
    for r in range(WORLD):
        for name in ("attention", "labels"):
            msg = ranks[r][("unequal", name)]
            assert msg is not None, f"rank {r}: no error for unequal {name} batch sizes"
            assert "equal per-rank" in msg and "rank 0: (3" in msg and "rank 1: (4" in msg


@pytest.mark.distributed
def test_process_group_helpers(ranks):
    assert [ranks[r]["is_main"] for r in range(WORLD)] == [True, False]
    assert all(ranks[r]["broadcast"] == {"from": 0} for r in range(WORLD))
    assert all(ranks[r]["reduced"].item() == 3.0 for r in range(WORLD))
    assert [ranks[r]["info"].rank for r in range(WORLD)] == [0, 1]


# ----------------------------------------------------------------------------- single process


def test_unknown_scope_lists_valid_scopes():
    with pytest.raises(ValueError, match="unknown CC-Loss scope") as err:
        cdist.make_cc_gather("world")
    assert "'global'" in str(err.value) and "'local'" in str(err.value)
    assert cdist.make_cc_gather("local") is None


def test_not_distributed_is_a_no_op(monkeypatch):
    for var in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)
    info = cdist.init_distributed("cpu")
    assert info == cdist.DistInfo(rank=0, local_rank=0, world_size=1, is_distributed=False, backend=None)
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert not cdist.init_distributed("cuda").is_distributed
    assert not torch.distributed.is_initialized()

    a = torch.rand(4, 3, requires_grad=True)
    y = torch.tensor([0, 1, 0, 1])
    gather = cdist.make_cc_gather("global")
    ga, gy = gather(a, y)
    assert ga is a and torch.equal(gy, y)
    assert cdist.is_main_process()
    assert cdist.broadcast_object([1, 2]) == [1, 2]
    t = torch.ones(2)
    assert cdist.all_reduce_sum(t) is t and torch.equal(t, torch.ones(2))
    cdist.cleanup_distributed()
    # the gathered loss is the plain loss without a process group
    cc = CCLoss()
    cc.gather = gather
    assert torch.equal(cc(a, y), CCLoss()(a, y))


def test_bad_device_type_for_distributed(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ValueError, match="'cuda'.*'cpu'"):
        cdist.init_distributed("mps")


def test_exit_process_without_a_process_group_is_sys_exit():
    assert not torch.distributed.is_initialized()
    with pytest.raises(SystemExit) as stopped:
        cdist.exit_process(143)
    assert stopped.value.code == 143


def test_exit_process_on_a_rank_destroys_the_group_then_skips_the_teardown(monkeypatch):
    """os._exit (no interpreter teardown, where gloo can abort), after the group is gone and stdout flushed."""

    class Exited(Exception):
        pass

    def fake_exit(code):
        seen.update(code=code, group_alive=torch.distributed.is_initialized(), logged=log.getvalue())
        raise Exited

    seen, log = {}, io.BytesIO()
    stdout = io.TextIOWrapper(log, encoding="utf-8")  # buffered, as a pipe to a log file is
    monkeypatch.setattr(sys, "stdout", stdout)
    monkeypatch.setattr(cdist.os, "_exit", fake_exit)
    torch.distributed.init_process_group("gloo", store=torch.distributed.HashStore(), rank=0, world_size=1)
    try:
        print("done: test_acc 99.00%")
        assert log.getvalue() == b""  # still in the buffer: os._exit alone would lose it
        with pytest.raises(Exited):
            cdist.exit_process(0)
    finally:
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
    assert seen == {"code": 0, "group_alive": False, "logged": b"done: test_acc 99.00%\n"}
