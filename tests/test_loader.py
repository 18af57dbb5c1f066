"""ccloss.loader: the TensorLoader's batches, shuffling, sharding over ranks and per-sample augmentation."""

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from ccloss.data import dataset_info, load_tensors
from ccloss.loader import TensorLoader


@pytest.fixture(scope="module")
def digits_train():
    return load_tensors("digits", "train")


def _collect(loader, epoch=None):
    if epoch is not None:
        loader.set_epoch(epoch)
    xs, ys = zip(*list(loader)) if len(loader) else ((), ())
    return list(xs), list(ys)


def _fake(n=100, c=3, s=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, c, s, s), dtype=torch.uint8, generator=g), torch.arange(n)


def test_loader_batches_and_drop_last(digits_train):
    x, y = digits_train
    info = dataset_info("digits")
    train = TensorLoader(x, y, 32, train=True, info=info)
    assert len(train) == 1347 // 32 == 42
    xs, ys = _collect(train)
    assert len(xs) == 42
    assert all(b.shape == (32, 1, 32, 32) and b.dtype == torch.float32 for b in xs)
    assert all(b.shape == (32,) and b.dtype == torch.int64 for b in ys)

    test = TensorLoader(x, y, 32, train=False, info=info)
    assert len(test) == 43
    xs, ys = _collect(test)
    assert [len(b) for b in ys] == [32] * 42 + [3]
    assert torch.equal(torch.cat(ys), y)  # test: no shuffle

    partial = TensorLoader(x, y, 32, train=True, info=info, drop_last=False)
    assert len(partial) == 43 and len(_collect(partial)[1][-1]) == 3
    with pytest.raises(ValueError, match="no full batch"):
        TensorLoader(x[:10], y[:10], 32, train=True, info=info)


def test_loader_visits_every_index_once():
    x, y = _fake(103)
    info = dataset_info("cifar100")
    loader = TensorLoader(x, y, 10, train=True, info=info, drop_last=False)
    for epoch in range(3):
        ys = torch.cat(_collect(loader, epoch)[1])
        assert torch.equal(ys.sort().values, torch.arange(103))
    dropped = torch.cat(_collect(TensorLoader(x, y, 10, train=True, info=info), 0)[1])
    assert len(dropped) == 100 and len(set(dropped.tolist())) == 100


def test_loader_determinism_and_epochs():
    x, y = _fake(64)
    info = dataset_info("cifar100")
    make = lambda seed=0: TensorLoader(x, y, 16, train=True, info=info, seed=seed)  # noqa: E731
    a = make()
    for epoch in range(3):  # a long-running loader ...
        xa, ya = _collect(a, epoch)
    b = make()  # ... and a fresh one resumed at epoch 2 give identical batches
    xb, yb = _collect(b, 2)
    assert all(torch.equal(p, q) for p, q in zip(xa + ya, xb + yb))
    x0, y0 = _collect(make(), 0)
    assert not torch.equal(torch.cat(y0), torch.cat(yb))  # different epoch, different order
    _, ys1 = _collect(make(seed=1), 2)
    assert not torch.equal(torch.cat(ys1), torch.cat(yb))  # different seed, different order
    assert not torch.equal(xa[0], x0[0])


@pytest.mark.parametrize("drop_last", [True, False])
def test_loader_ddp_sharding(drop_last):
    x, y = _fake(101)
    info = dataset_info("cifar100")
    b = 8
    single = TensorLoader(x, y, 2 * b, train=True, info=info, seed=3, drop_last=drop_last)
    ranks = [TensorLoader(x, y, b, train=True, info=info, seed=3, drop_last=drop_last, shard=(r, 2)) for r in range(2)]
    assert len(ranks[0]) == len(ranks[1]) == len(single) == (6 if drop_last else 7)
    sx, sy = _collect(single, 5)
    (x0, y0), (x1, y1) = (_collect(r, 5) for r in ranks)
    for i in range(len(single)):
        assert torch.equal(torch.cat([y0[i], y1[i]]), sy[i])
        assert torch.equal(torch.cat([x0[i], x1[i]]), sx[i])  # same augmentation too
        assert abs(len(y0[i]) - len(y1[i])) <= 1
    if drop_last:
        assert all(len(t) == b for t in y0 + y1)
    else:
        assert [len(y0[-1]), len(y1[-1])] == [2, 3]  # last global batch of 5 split evenly


def _reference(images, plan, positions, info, augment, out):
    """Slow per-sample reference: pad, crop at the plan's offsets, flip, normalise."""
    mean = torch.tensor(info.mean).view(-1, 1, 1)
    std = torch.tensor(info.std).view(-1, 1, 1)
    result = []
    for p in positions:
        img = images[plan.order[p]].float()
        if augment == "crop_flip":
            img = F.pad(img, (4, 4, 4, 4))
        top, left = int(plan.top[p]), int(plan.left[p])
        img = img[:, top : top + out, left : left + out]
        if plan.flip[p]:
            img = img.flip(-1)
        result.append((img / 255 - mean) / std)
    return torch.stack(result)


@pytest.mark.parametrize("name", ["cifar100", "cars196"])
def test_augmentation_matches_reference(name):
    info = dataset_info(name)
    x, y = _fake(40 if name == "cifar100" else 12, s=info.stored_size, seed=4)
    bs = 8 if name == "cifar100" else 4
    loader = TensorLoader(x, y, bs, train=True, info=info, seed=7)
    loader.set_epoch(2)
    plan = loader.epoch_plan()
    assert int(plan.top.max()) <= (8 if name == "cifar100" else 32)
    offsets = set(zip(plan.top.tolist(), plan.left.tolist()))
    assert len(offsets) > len(x) // 2  # per-sample offsets
    for i, (xb, yb) in enumerate(loader):
        positions = range(i * bs, (i + 1) * bs)
        assert torch.equal(yb, plan.order[i * bs : (i + 1) * bs])
        ref = _reference(x, plan, positions, info, info.augment, info.image_size)
        assert xb.shape == (bs, 3, info.image_size, info.image_size)
        torch.testing.assert_close(xb, ref, atol=1e-5, rtol=1e-5)


def test_flip_differs_per_sample():
    # Only flips are random here (stored size == image size, no padding): a batch of one
    # asymmetric image must come out both mirrored and not mirrored.
    info = dataclasses.replace(dataset_info("cifar100"), augment="crop_flip_nopad")
    img = torch.arange(32, dtype=torch.uint8).mul(7).expand(3, 32, 32)  # left-right ramp
    x = img.expand(64, 3, 32, 32).contiguous()
    loader = TensorLoader(x, torch.zeros(64, dtype=torch.int64), 32, train=True, info=info)
    plain = TensorLoader(x[:1], torch.zeros(1, dtype=torch.int64), 1, train=False, info=info)
    ref = next(iter(plain))[0][0]
    n_flipped = 0
    for xb, _ in loader:
        flipped = torch.tensor([torch.equal(s, ref.flip(-1)) for s in xb])
        same = torch.tensor([torch.equal(s, ref) for s in xb])
        assert torch.all(flipped ^ same)
        assert flipped.any() and same.any()  # within one batch
        n_flipped += int(flipped.sum())
    assert 16 <= n_flipped <= 48


def test_test_loader_centre_crop_and_normalisation():
    info = dataset_info("cars196")
    x, y = _fake(5, s=256, seed=2)
    loader = TensorLoader(x, y, 4, train=False, info=info)
    assert loader.augment == "none"
    xs, ys = _collect(loader)
    assert [len(b) for b in ys] == [4, 1]
    out = torch.cat(xs)
    mean = torch.tensor(info.mean).view(1, 3, 1, 1)
    std = torch.tensor(info.std).view(1, 3, 1, 1)
    expected = (x[:, :, 16:240, 16:240].float() / 255 - mean) / std
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    # the same on a 32x32 dataset: no crop at all, for any epoch
    info = dataset_info("cifar100")
    x, y = _fake(10)
    loader = TensorLoader(x, y, 10, train=False, info=info)
    for epoch in (0, 9):
        xb = _collect(loader, epoch)[0][0]
        std = torch.tensor(info.std).view(1, 3, 1, 1)
        recovered = (xb * std + torch.tensor(info.mean).view(1, 3, 1, 1)) * 255
        torch.testing.assert_close(recovered, x.float(), atol=1e-3, rtol=0)


def test_loader_options_and_bad_inputs(digits_train):
    x, y = digits_train
    info = dataset_info("digits")
    loader = TensorLoader(x, y, 32, train=True, info=info, channels_last=True)
    xb, _ = next(iter(loader))
    assert xb.is_contiguous(memory_format=torch.channels_last)
    assert TensorLoader(x, y, 32, train=True, info=info, augment="none").augment == "none"
    assert TensorLoader(x, y, 32, train=True, info=info, augment="crop_flip").augment == "crop_flip"
    cifar = dataset_info("cifar100")
    xc, yc = _fake(20)
    assert TensorLoader(xc, yc, 4, train=True, info=cifar, augment="none").augment == "none"
    assert TensorLoader(xc, yc, 4, train=False, info=cifar).augment == "none"
    with pytest.raises(ValueError, match="augment"):
        TensorLoader(x, y, 32, train=True, info=info, augment="mixup")
    with pytest.raises(ValueError, match="rank"):
        TensorLoader(x, y, 32, train=True, info=info, shard=(2, 2))
    with pytest.raises(ValueError, match="channels"):
        TensorLoader(x, y, 32, train=True, info=cifar)
    with pytest.raises(ValueError, match="uint8"):
        TensorLoader(x.float(), y, 32, train=True, info=info)
    with pytest.raises(ValueError, match="too small"):
        TensorLoader(xc, yc, 4, train=True, info=dataset_info("cars196"))
