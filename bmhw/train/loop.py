"""Direct training and evaluation of classifiers on in-memory image arrays.

Images come from ``bmhw.data`` as uint8 arrays (N x C x H x W) and are scaled to [0, 1] here, the one
place where pixels become floats; the hardware reads the same bytes as activation codes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from torch import nn


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 pixels -> float32 intensities in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(images)).float().div_(255.0)


def make_progress(disable: bool = False) -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
                    TimeElapsedColumn(), TimeRemainingColumn(), disable=disable, transient=False)


@torch.no_grad()
def predict(model: nn.Module, images: np.ndarray, batch_size: int = 500) -> np.ndarray:
    """Class predictions (int64) for uint8 images."""
    was_training = model.training
    model.eval()
    out = [model(to_tensor(images[i:i + batch_size])).argmax(1) for i in range(0, len(images), batch_size)]
    model.train(was_training)
    return torch.cat(out).numpy() if out else np.zeros(0, dtype=np.int64)


def evaluate(model: nn.Module, images: np.ndarray, labels: np.ndarray, batch_size: int = 500) -> float:
    """Top-1 accuracy in [0, 1]."""
    if len(labels) == 0:
        return float("nan")
    return float((predict(model, images, batch_size) == labels).mean())


def random_shift(x: torch.Tensor, max_shift: int, generator: torch.Generator) -> torch.Tensor:
    """Translate each image by a random whole number of pixels in [-max_shift, max_shift] (zero fill)."""
    if max_shift <= 0:
        return x
    b, _, h, w = x.shape
    padded = F.pad(x, (max_shift,) * 4)
    dy = torch.randint(0, 2 * max_shift + 1, (b,), generator=generator)
    dx = torch.randint(0, 2 * max_shift + 1, (b,), generator=generator)
    rows = (dy[:, None] + torch.arange(h)[None, :])[:, None, :, None]
    cols = (dx[:, None] + torch.arange(w)[None, :])[:, None, None, :]
    batch = torch.arange(b)[:, None, None, None]
    chan = torch.arange(x.shape[1])[None, :, None, None]
    return padded[batch, chan, rows, cols]


@dataclass
class MethodResult:
    """A trained network from one of the methods (bmhw.train.methods, bmhw.train.pkkd), its wall time and log."""

    model: nn.Module
    seconds: float
    log: list = field(default_factory=list)


@dataclass
class TrainResult:
    train_loss: float
    train_accuracy: float
    seconds: float


def train_classifier(model: nn.Module, images: np.ndarray, labels: np.ndarray, epochs: int = 6, batch_size: int = 128,
                     lr: float = 3e-3, seed: int = 0, shift: int = 0, quiet: bool = False,
                     loss_fn=None) -> TrainResult:
    """Adam with a one-cycle learning-rate schedule and cross-entropy (or ``loss_fn(model, x, y)``)."""
    if len(images) == 0:
        raise ValueError("no training images")
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    steps_per_epoch = (len(images) + batch_size - 1) // batch_size
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=max(1, epochs * steps_per_epoch))
    labels_t = torch.from_numpy(np.asarray(labels, dtype=np.int64))
    start = time.perf_counter()
    loss_sum = correct = seen = 0.0
    model.train()
    with make_progress(disable=quiet) as progress:
        task = progress.add_task("training", total=epochs * steps_per_epoch, info="")
        for epoch in range(epochs):
            order = torch.randperm(len(images), generator=gen).numpy()
            loss_sum = correct = seen = 0.0
            for step in range(steps_per_epoch):
                idx = order[step * batch_size:(step + 1) * batch_size]
                x = random_shift(to_tensor(images[idx]), shift, gen)
                y = labels_t[idx]
                if loss_fn is None:
                    logits = model(x)
                    loss = F.cross_entropy(logits, y)
                else:
                    loss, logits = loss_fn(model, x, y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                loss_sum += float(loss.detach()) * len(idx)
                correct += float((logits.argmax(1) == y).sum())
                seen += len(idx)
                progress.update(task, advance=1,
                                info=f"epoch {epoch + 1}/{epochs} loss {loss_sum / seen:.4f} acc {correct / seen:.2%}")
    model.eval()
    return TrainResult(loss_sum / max(seen, 1), correct / max(seen, 1), time.perf_counter() - start)
