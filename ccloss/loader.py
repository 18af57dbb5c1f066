"""Shuffled, augmented, normalised batches of uint8 images kept on the device; draws depend on (seed, epoch)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["AUGMENTS", "CROP_PADDING", "EpochPlan", "TensorLoader"]

#: ``crop_flip``: random crop of the zero-padded image and horizontal flip (the CIFAR recipe);
#: ``crop_flip_nopad``: random ``image_size`` crop of larger stored images and flip (Cars-196).
AUGMENTS = ("none", "crop_flip", "crop_flip_nopad")
CROP_PADDING = 4  # zero padding of the "crop_flip" augmentation


def _epoch_seed(seed: int, epoch: int, stream: int) -> int:
    """A 63-bit seed that depends only on (seed, epoch, stream)."""
    s, e = int(seed) % 2**64, int(epoch) % 2**64
    state = np.random.SeedSequence([s & 0xFFFFFFFF, s >> 32, e & 0xFFFFFFFF, e >> 32, stream])
    return int(state.generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))


class EpochPlan(NamedTuple):
    """One epoch's random choices by position ``i``: image ``order[i]``, crop offset (top, left), mirrored ``flip``."""

    order: torch.Tensor
    top: torch.Tensor
    left: torch.Tensor
    flip: torch.Tensor


def _check(images, labels: torch.Tensor, batch_size: int, info, shard: tuple[int, int], augment: str) -> None:
    if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8 or images.dim() != 4:
        raise ValueError("images must be a uint8 tensor N x C x S x S (ccloss.data.load_tensors gives one)")
    if images.shape[1] != info.in_channels or images.shape[2] != images.shape[3]:
        raise ValueError(f"{info.name} needs square images of {info.in_channels} channels, got {tuple(images.shape)}")
    if labels.shape != images.shape[:1] or int(batch_size) < 1:
        raise ValueError(f"labels must have shape ({len(images)},) and batch_size >= 1, got {tuple(labels.shape)}, "
                         f"{batch_size}")  # fmt: skip
    if int(shard[1]) < 1 or not 0 <= int(shard[0]) < int(shard[1]):
        raise ValueError(f"shard = (rank, world_size) needs 0 <= rank < world_size, got {tuple(shard)}")
    if augment not in AUGMENTS:
        raise ValueError(f"unknown augment {augment!r}; valid: {', '.join(AUGMENTS)}")


class TensorLoader:
    """Batches ``(x float32, y int64)`` of uint8 ``images`` on ``device``, ``(x / 255 - mean) / std`` with ``info``'s;
    ``augment`` None: ``info.augment`` in training, else centre crops. Call ``set_epoch(e)`` before each epoch.
    ``shard = (r, world_size)``: rank r's ``batch_size`` slice of every global batch (each image once an epoch)."""

    def __init__(
        self, images: torch.Tensor, labels: torch.Tensor, batch_size: int, *, train: bool, info,
        device: str | torch.device = "cpu", seed: int = 0, shard: tuple[int, int] = (0, 1),
        channels_last: bool = False, augment: str | None = None, drop_last: bool | None = None,
    ) -> None:  # fmt: skip
        labels = torch.as_tensor(labels)
        augment = (info.augment if train else "none") if augment is None else augment
        _check(images, labels, batch_size, info, shard, augment)
        self.info, self.train, self.augment, self.channels_last = info, bool(train), augment, bool(channels_last)
        self.batch_size, self.seed, self.epoch = int(batch_size), int(seed), 0
        self.rank, self.world_size = int(shard[0]), int(shard[1])
        self.drop_last = self.train if drop_last is None else bool(drop_last)
        self.device, self.image_size = torch.device(device), int(info.image_size)
        self._pad = CROP_PADDING if augment == "crop_flip" else 0
        self._max_offset = images.shape[-1] + 2 * self._pad - self.image_size
        if self._max_offset < 0:
            raise ValueError(f"stored images are {images.shape[-1]}px, too small for {self.image_size}px crops")
        self.images = images.to(self.device)  # moved once; stays uint8
        self.labels = labels.to(device=self.device, dtype=torch.int64)
        self.num_samples = int(images.shape[0])
        self._global_batch = self.batch_size * self.world_size
        self._num_batches = (self.num_samples // self._global_batch if self.drop_last
                             else -(-self.num_samples // self._global_batch))  # fmt: skip
        if self._num_batches == 0 and self.num_samples > 0:
            raise ValueError(f"{self.num_samples} images give no full batch of {self.batch_size} x "
                             f"{self.world_size} rank(s) with drop_last=True; lower batch_size")  # fmt: skip
        mean, std = (torch.tensor(v, dtype=torch.float64).view(1, -1, 1, 1) for v in (info.mean, info.std))
        self._scale = (1.0 / (255.0 * std)).to(self.device, torch.float32)  # (x / 255 - mean) / std
        self._shift = (-mean / std).to(self.device, torch.float32)  # = x * scale + shift, in place
        self._ar = torch.arange(self.image_size, device=self.device)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose order and augmentation the next iteration uses."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self._num_batches

    def epoch_plan(self, epoch: int | None = None) -> EpochPlan:
        """The order and per-position crop offsets and flips of ``epoch`` (default: the current one)."""
        epoch, n = self.epoch if epoch is None else int(epoch), self.num_samples
        order = torch.arange(n)
        if self.train:
            order = torch.randperm(n, generator=torch.Generator().manual_seed(_epoch_seed(self.seed, epoch, 0)))
        if self.augment == "none":
            top = torch.full((n,), self._max_offset // 2, dtype=torch.int64)
            return EpochPlan(order, top, top.clone(), torch.zeros(n, dtype=torch.bool))
        g = torch.Generator().manual_seed(_epoch_seed(self.seed, epoch, 1))
        top = torch.randint(0, self._max_offset + 1, (n,), generator=g)
        left = torch.randint(0, self._max_offset + 1, (n,), generator=g)
        return EpochPlan(order, top, left, torch.rand(n, generator=g) < 0.5)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order, top, left, flip = (t.to(self.device) for t in self.epoch_plan())
        c0, out = self._max_offset // 2, self.image_size
        for i in range(self._num_batches):
            g0, r, ws = i * self._global_batch, self.rank, self.world_size  # this rank's part of global batch i
            size = min(self._global_batch, self.num_samples - g0)  # a last, partial one split evenly
            start, stop = g0 + r * size // ws, g0 + (r + 1) * size // ws
            idx = order[start:stop]
            x = self.images.index_select(0, idx)  # faster than images[idx] on CPU
            if self.augment != "none":
                x = self._crop_flip(x, top[start:stop], left[start:stop], flip[start:stop])
            elif self._max_offset:  # centre crop (e.g. 224 of 256 at test time)
                x = x[:, :, c0 : c0 + out, c0 : c0 + out]
            x = x.to(torch.float32).mul_(self._scale).add_(self._shift)  # (x / 255 - mean) / std
            x = x.contiguous(memory_format=torch.channels_last) if self.channels_last else x
            yield x, self.labels.index_select(0, idx)

    def _crop_flip(self, x: torch.Tensor, top: torch.Tensor, left: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
        """Per-sample crop at (top, left) of the zero-padded image, then optional h-flip: one gather."""
        x = F.pad(x, (self._pad,) * 4) if self._pad else x
        (b, c, s, _), out = x.shape, self.image_size
        rows, cols = top[:, None] + self._ar, left[:, None] + self._ar  # B x out each
        cols = torch.where(flip[:, None], cols.flip(1), cols)  # mirrored column order
        flat = (rows[:, :, None] * s + cols[:, None, :]).view(b, 1, out * out)
        return x.reshape(b, c, s * s).gather(2, flat.expand(b, c, out * out)).view(b, c, out, out)
