"""Shuffled, augmented, normalised batches from uint8 image tensors, on any device, without workers.

``TensorLoader`` replaces a ``DataLoader``: the images stay uint8 on the device, every batch is
gathered, cropped and flipped per sample with a few batched tensor ops, then normalised. Every
random draw of an epoch depends only on ``(seed, epoch)``, so a fresh loader after
``set_epoch(e)`` reproduces the same batches: that is what makes a resumed run exact.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .data import AUGMENTS, DatasetInfo, dataset_info, load_tensors

__all__ = ["CROP_PADDING", "EpochPlan", "TensorLoader", "loaders_for"]

CROP_PADDING = 4  # zero padding of the "crop_flip" augmentation (the usual CIFAR recipe)


def _epoch_seed(seed: int, epoch: int, stream: int) -> int:
    """A 63-bit seed that depends only on (seed, epoch, stream)."""
    s, e = int(seed) % 2**64, int(epoch) % 2**64
    state = np.random.SeedSequence([s & 0xFFFFFFFF, s >> 32, e & 0xFFFFFFFF, e >> 32, stream])
    return int(state.generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))


@dataclass(frozen=True)
class EpochPlan:
    """All random choices of one epoch, indexed by position in the epoch (CPU tensors).

    ``order[i]`` is the image shown at position ``i``; ``top[i]``/``left[i]`` the crop offset in
    the (padded, for ``crop_flip``) image; ``flip[i]`` whether it is mirrored horizontally.
    """

    order: torch.Tensor
    top: torch.Tensor
    left: torch.Tensor
    flip: torch.Tensor


def _check_arguments(
    images, labels: torch.Tensor, batch_size: int, info: DatasetInfo, shard: tuple[int, int], augment: str
) -> None:
    if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8 or images.dim() != 4:
        raise ValueError("images must be a uint8 tensor N x C x S x S")
    n, c, h, w = images.shape
    if h != w:
        raise ValueError(f"images must be square, got {h}x{w}")
    if c != info.in_channels:
        raise ValueError(f"images have {c} channels, {info.name} expects {info.in_channels}")
    if labels.shape != (n,):
        raise ValueError(f"labels must have shape ({n},), got {tuple(labels.shape)}")
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    rank, world_size = shard
    if int(world_size) < 1 or not 0 <= int(rank) < int(world_size):
        raise ValueError(f"shard = (rank, world_size) needs 0 <= rank < world_size, got {tuple(shard)}")
    if augment not in AUGMENTS:
        raise ValueError(f"unknown augment {augment!r}; valid: {', '.join(AUGMENTS)}")


class TensorLoader:
    """Shuffled, augmented, normalised batches from uint8 image tensors, on any device.

    Images stay uint8 on ``device``; each batch is gathered, cropped/flipped per sample with
    batched tensor ops, then converted to float32 and normalised with ``info.mean/std``.
    Call ``set_epoch(e)`` before each epoch (like ``DistributedSampler``): the order and the
    augmentation depend only on ``(seed, epoch)``.  With ``shard = (r, world_size)``, world_size > 1, every global batch
    of ``batch_size * world_size`` positions is split contiguously, rank ``r`` taking
    ``[r * batch_size, (r + 1) * batch_size)``; all ranks get the same number of batches.  With
    ``drop_last=False`` the last, partial global batch is split as evenly as possible (shard sizes
    differ by at most one), so every image is seen exactly once per epoch across ranks.
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        batch_size: int,
        *,
        train: bool,
        info: DatasetInfo,
        device: str | torch.device = "cpu",
        seed: int = 0,
        shard: tuple[int, int] = (0, 1),
        channels_last: bool = False,
        augment: str | None = None,
        drop_last: bool | None = None,
    ) -> None:
        """``shard = (rank, world_size)`` under torchrun; ``augment`` None = the dataset's for
        training, ``none`` for evaluation; ``drop_last`` None = True for training only."""
        labels = torch.as_tensor(labels)
        augment = (info.augment if train else "none") if augment is None else augment
        _check_arguments(images, labels, batch_size, info, shard, augment)
        self.info, self.train, self.augment = info, bool(train), augment
        self.batch_size, self.seed, self.epoch = int(batch_size), int(seed), 0
        self.rank, self.world_size = int(shard[0]), int(shard[1])
        self.drop_last = self.train if drop_last is None else bool(drop_last)
        self.channels_last = bool(channels_last)
        self.device = torch.device(device)
        self.stored_size, self.image_size = int(images.shape[-1]), int(info.image_size)
        self._pad = CROP_PADDING if augment == "crop_flip" else 0
        self._max_offset = self.stored_size + 2 * self._pad - self.image_size
        if self._max_offset < 0:
            raise ValueError(
                f"stored images are {self.stored_size}x{self.stored_size}, too small for "
                f"{self.image_size}x{self.image_size} crops (augment={augment!r})"
            )
        self.images = images.to(self.device)  # moved once; stays uint8
        self.labels = labels.to(device=self.device, dtype=torch.int64)
        self.num_samples = int(images.shape[0])
        self._global_batch = self.batch_size * self.world_size
        rounding = math.floor if self.drop_last else math.ceil
        self._num_batches = int(rounding(self.num_samples / self._global_batch))
        if self._num_batches == 0 and self.num_samples > 0:
            raise ValueError(
                f"{self.num_samples} images give no full batch of {self.batch_size} x "
                f"{self.world_size} rank(s) with drop_last=True; lower batch_size"
            )
        # (x / 255 - mean) / std folded into one multiply-add: x * scale + shift
        mean = torch.tensor(info.mean, dtype=torch.float64).view(1, -1, 1, 1)
        std = torch.tensor(info.std, dtype=torch.float64).view(1, -1, 1, 1)
        self._scale = (1.0 / (255.0 * std)).to(device=self.device, dtype=torch.float32)
        self._shift = (-mean / std).to(device=self.device, dtype=torch.float32)
        self._ar = torch.arange(self.image_size, device=self.device)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose order and augmentation the next iteration uses."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self._num_batches

    def epoch_plan(self, epoch: int | None = None) -> EpochPlan:
        """The order and per-position crop offsets/flips of ``epoch`` (default: current)."""
        epoch = self.epoch if epoch is None else int(epoch)
        n = self.num_samples
        if self.train:
            g = torch.Generator().manual_seed(_epoch_seed(self.seed, epoch, 0))
            order = torch.randperm(n, generator=g)
        else:
            order = torch.arange(n)
        if self.augment == "none":
            centre = self._max_offset // 2
            top = torch.full((n,), centre, dtype=torch.int64)
            left = top.clone()
            flip = torch.zeros(n, dtype=torch.bool)
        else:
            g = torch.Generator().manual_seed(_epoch_seed(self.seed, epoch, 1))
            top = torch.randint(0, self._max_offset + 1, (n,), generator=g)
            left = torch.randint(0, self._max_offset + 1, (n,), generator=g)
            flip = torch.rand(n, generator=g) < 0.5
        return EpochPlan(order=order, top=top, left=left, flip=flip)

    def _bounds(self, i: int) -> tuple[int, int]:
        """Positions [start, stop) of this rank's part of global batch ``i``."""
        g0 = i * self._global_batch
        size = min(self._global_batch, self.num_samples - g0)
        if size == self._global_batch:
            b = self.batch_size
            return g0 + self.rank * b, g0 + (self.rank + 1) * b
        # last, partial global batch (drop_last=False): split as evenly as possible
        r, ws = self.rank, self.world_size
        return g0 + r * size // ws, g0 + (r + 1) * size // ws

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        plan = self.epoch_plan()
        dev = self.device
        order = plan.order.to(dev)
        random_crop = self.augment != "none"
        if random_crop:
            top, left, flip = plan.top.to(dev), plan.left.to(dev), plan.flip.to(dev)
        c0, out = self._max_offset // 2, self.image_size
        for i in range(self._num_batches):
            start, stop = self._bounds(i)
            idx = order[start:stop]
            x = self.images.index_select(0, idx)  # faster than images[idx] on CPU
            if random_crop:
                x = self._crop_flip(x, top[start:stop], left[start:stop], flip[start:stop])
            elif self._max_offset:  # centre crop (e.g. 224 of 256 at test time)
                x = x[:, :, c0 : c0 + out, c0 : c0 + out]
            yield self._normalise(x), self.labels.index_select(0, idx)

    def _crop_flip(self, x: torch.Tensor, top: torch.Tensor, left: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
        """Per-sample crop at (top, left) of the zero-padded image, then optional h-flip."""
        if self._pad:
            x = F.pad(x, (self._pad,) * 4)
        b, c, s, _ = x.shape
        out = self.image_size
        rows = top[:, None] + self._ar  # B x out
        cols = left[:, None] + self._ar
        cols = torch.where(flip[:, None], cols.flip(1), cols)  # mirrored column order
        flat = (rows[:, :, None] * s + cols[:, None, :]).view(b, 1, out * out)
        x = x.reshape(b, c, s * s).gather(2, flat.expand(b, c, out * out))  # one gather
        return x.view(b, c, out, out)

    def _normalise(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(torch.float32).mul_(self._scale).add_(self._shift)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x


def loaders_for(
    config, shard: tuple[int, int], device: torch.device, channels_last: bool
) -> tuple[TensorLoader, TensorLoader]:
    """The training and evaluation loaders of a :class:`~ccloss.config.TrainConfig`."""
    info = dataset_info(config.dataset)
    split = config.eval_split  # "val": train on train without val (nothing is chosen on test)
    x_train, y_train = load_tensors(
        config.dataset, "train", config.data_dir, config.download, holdout_val=split == "val"
    )
    x_eval, y_eval = load_tensors(config.dataset, split, config.data_dir, False)
    train_loader = TensorLoader(
        x_train,
        y_train,
        config.batch_size,
        train=True,
        info=info,
        device=device,
        seed=config.seed,
        shard=shard,
        channels_last=channels_last,
    )
    eval_loader = TensorLoader(x_eval, y_eval, 512, train=False, info=info, device=device, channels_last=channels_last)
    return train_loader, eval_loader
