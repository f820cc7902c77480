"""Layer-wise knowledge distillation into a 1.5-branch BM network (method.md section 3.4).

The student is built one weight layer at a time. At step k the BM layers 1..k-1 are trained and
frozen; layer k is converted from the teacher's (current) layer k, re-fitted on a calibration batch
(``bmhw.train.calibrate``) and then trained. Its output runs on through the teacher's layers k+1..n, which
keep training (giving ``output1``); the teacher's own path gives ``output2``::

    L = beta * relMSE(student stage k, teacher stage k) + CE(output1, y) + CE(output2, y)

A stage is a weight layer and the operations after it (ReLU, pooling), so the MSE compares what the
next layer sees. Our reading of "output2": the teacher's full forward pass on the same images, whose
layers k+1..n are the ones shared with output1 (docs/training.md). ``relMSE`` is the MSE divided by the teacher stage's mean square, so
that every layer's term is of order one (see :func:`relative_mse`).

The model must offer ``WEIGHT_LAYERS``, ``layer_input(name, h)``, ``stage(name, h)`` and
``forward_range(h, start, stop)``
(the LeNet does).
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from bmhw.train.calibrate import is_grouped, power_of_two_delta_w, refit_layer
from bmhw.data import calibration_sample
from bmhw.nn import to_bm
from bmhw.nn.convert import maxima_for
from bmhw.train.loop import make_progress, random_shift, to_tensor


def _batches(n: int, batch_size: int, steps: int, gen: torch.Generator):
    """``steps`` index batches of full size, reshuffling whenever a pass over the ``n`` images ends."""
    order, pos = torch.randperm(n, generator=gen), 0
    for _ in range(steps):
        if pos + batch_size > n:
            order, pos = torch.randperm(n, generator=gen), 0
        yield order[pos:pos + batch_size].numpy()
        pos += batch_size


def relative_mse(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """MSE divided by the teacher's mean square: scale-free, so that a layer with large activations
    (the logits) does not drown the cross-entropy terms."""
    return F.mse_loss(student, teacher) / teacher.pow(2).mean().clamp_min(1e-12)


def lwkd_loss(out_s, out_t, out1, out2, y, beta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The layer-wise step's loss ``beta relMSE(out_s, out_t) + CE(out1, y) + CE(out2, y)`` and its MSE term."""
    mse = relative_mse(out_s, out_t)
    return beta * mse + F.cross_entropy(out1, y) + F.cross_entropy(out2, y), mse


def kd_loss(logits, teacher_logits, y, feats_s: dict, feats_t: dict, beta: float, alpha: float,
            temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``beta sum_layers relMSE + alpha [T^2 CE_T(student, teacher) + CE(student, y)]`` and its MSE sum; CE_T is
    the cross-entropy of the student's softmax at temperature T against the teacher's (soft targets)."""
    mse = sum(relative_mse(feats_s[n], feats_t[n]) for n in feats_t)
    soft = -(F.softmax(teacher_logits / temperature, 1) * F.log_softmax(logits / temperature, 1)).sum(1).mean()
    return beta * mse + alpha * (temperature ** 2 * soft + F.cross_entropy(logits, y)), mse


@dataclass
class LayerwiseConfig:
    epochs_per_layer: float = 1.0
    batch_size: int = 128
    lr: float = 1e-3
    beta: float = 1.0
    calib_images: int = 2000
    shift: int = 0
    seed: int = 0
    reduce: str = "max"
    alpha: float | None = None
    # A smooth start (reduce "lse" etc.): the temperature rises geometrically from ``alpha`` to
    # ``alpha_end`` over the layer's step; then ``max_epochs`` more with the exact max (LSE -> MAX per layer).
    alpha_end: float | None = None
    max_epochs: float = 0.0
    # Re-fit each converted layer on a calibration batch (bmhw.train.calibrate); a conversion to LSE at alpha 1
    # is exact and needs none.
    refit: bool = True
    # Each new layer's temperature is trained during its step (then frozen with the layer).
    learn_alpha: bool = False
    # Train the layer's offset dw during the smooth phase, then round it to the nearest power of two (the
    # hardware's shift) before the exact-max phase.
    learn_delta_w: bool = False
    # The re-fit may give an output channel the mirrored sign (bmhw.train.calibrate.refit_layer).
    signed: bool = False
    # Maxima per neuron of each new layer (bmhw.nn.groups): one value for all, or {layer name: value}.
    maxima: object = 1


def set_exact_max(layer) -> None:
    """Swap a BM layer's reduction for the exact max, keeping its weights (LSE -> MAX)."""
    layer.reduce = "max"
    if isinstance(getattr(layer, "alpha", None), nn.Parameter):
        del layer.alpha
    layer.alpha = None
    layer.learn_alpha = False


def _learn_delta_w(layer) -> None:
    """Make dw a trainable parameter (kept under the same name, so checkpoints do not change)."""
    value = layer.delta_w.detach().clone()
    del layer.delta_w
    layer.delta_w = nn.Parameter(value)


def _round_delta_w(layer) -> None:
    """Back to a fixed power of two, the nearest to the learned dw in log scale (at least 2^-16)."""
    value = power_of_two_delta_w(float(layer.delta_w.detach()))
    del layer.delta_w
    layer.register_buffer("delta_w", torch.tensor(value))


def _set_alpha(layer, value: float) -> None:
    with torch.no_grad():
        layer.alpha.fill_(value)


@dataclass
class LayerwiseResult:
    student: nn.Module
    teacher: nn.Module
    log: list = field(default_factory=list)
    seconds: float = 0.0


def layerwise_distill(teacher: nn.Module, images: np.ndarray, labels: np.ndarray, cfg: LayerwiseConfig,
                      quiet: bool = False, on_step=None) -> LayerwiseResult:
    """Grow a 1.5-branch BM student from ``teacher`` (a copy is trained; the argument stays as it is)."""
    start = time.perf_counter()
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    teacher = copy.deepcopy(teacher).train()
    student = copy.deepcopy(teacher)
    names = list(teacher.WEIGHT_LAYERS)
    labels_t = torch.from_numpy(np.asarray(labels, dtype=np.int64))
    calib = to_tensor(calibration_sample(images, cfg.calib_images, cfg.seed))
    steps = max(1, int(round(cfg.epochs_per_layer * len(images) / cfg.batch_size)))
    log = []
    with make_progress(disable=quiet) as progress:
        for k, name in enumerate(names):
            layer = to_bm(getattr(teacher, name), branches=1.5, reduce=cfg.reduce, alpha=cfg.alpha,
                          learn_alpha=cfg.learn_alpha and cfg.reduce != "max" and cfg.alpha_end is None,
                          maxima=maxima_for(cfg.maxima, name))
            fit = {"r2": None}
            if cfg.refit and not is_grouped(layer):
                with torch.no_grad():
                    x_in = student.layer_input(name, student.forward_range(calib, 0, k))
                    target = getattr(teacher, name)(teacher.layer_input(name, teacher.forward_range(calib, 0, k)))
                fit = refit_layer(layer, x_in, target, getattr(teacher, name).weight, signed=cfg.signed)
            setattr(student, name, layer)
            learn_dw = cfg.learn_delta_w and cfg.reduce != "max"
            if learn_dw:
                _learn_delta_w(layer)
            phases = [("", steps)]
            if cfg.max_epochs > 0 and layer.reduce != "max":
                phases.append((" max", max(1, int(round(cfg.max_epochs * len(images) / cfg.batch_size)))))
            for suffix, phase_steps in phases:
                if suffix:
                    set_exact_max(layer)
                    if learn_dw:
                        _round_delta_w(layer)
                        learn_dw = False
                trainable = list(layer.parameters()) + [p for n in names[k + 1:] for p in getattr(teacher, n).parameters()]
                opt = torch.optim.Adam(trainable, lr=cfg.lr)
                sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=phase_steps)
                anneal = not suffix and cfg.alpha_end is not None and layer.alpha is not None
                task = progress.add_task(f"layer {name}{suffix}", total=phase_steps, info="")
                for i, idx in enumerate(_batches(len(images), cfg.batch_size, phase_steps, gen)):
                    if anneal:
                        _set_alpha(layer, cfg.alpha * (cfg.alpha_end / cfg.alpha) ** (i / max(1, phase_steps - 1)))
                    x = random_shift(to_tensor(images[idx]), cfg.shift, gen)
                    y = labels_t[idx]
                    with torch.no_grad():
                        h_s = student.forward_range(x, 0, k)
                        h_t_in = teacher.forward_range(x, 0, k)
                    out_s = student.stage(name, h_s)
                    with torch.no_grad():
                        out_t = teacher.stage(name, h_t_in)
                    out1 = teacher.forward_range(out_s, k + 1)
                    out2 = teacher.forward_range(out_t, k + 1)
                    loss, loss_mse = lwkd_loss(out_s, out_t, out1, out2, y, cfg.beta)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    sched.step()
                    progress.update(task, advance=1, info=f"mse {float(loss_mse.detach()):.4f} loss {float(loss.detach()):.4f}")
            if learn_dw:
                _round_delta_w(layer)
            for p in layer.parameters():
                p.requires_grad_(False)
            entry = {"layer": name, "delta_w": float(layer.delta_w), "refit_r2": fit["r2"], "final_mse": float(loss_mse.detach()), "final_loss": float(loss.detach())}
            log.append(entry)
            if on_step is not None:
                on_step(entry, student, teacher)
    for p in student.parameters():
        p.requires_grad_(True)
    student.eval()
    return LayerwiseResult(student=student, teacher=teacher.eval(), log=log, seconds=time.perf_counter() - start)


@dataclass
class KDConfig:
    epochs: float = 1.0
    batch_size: int = 128
    lr: float = 1e-3
    beta: float = 1.0
    alpha: float = 1.0
    temperature: float = 4.0
    shift: int = 0
    seed: int = 0


def knowledge_distill(student: nn.Module, teacher: nn.Module, images: np.ndarray, labels: np.ndarray, cfg: KDConfig,
                      quiet: bool = False) -> float:
    """Whole-network distillation (method.md section 3.3), in place on ``student``; returns seconds.

    ``L = beta * sum_stages MSE(student stage, teacher stage) + alpha * [CE_T(student, teacher) + CE(student, y)]``
    where ``CE_T`` is the soft-target cross-entropy at temperature T (scaled by T^2, as Hinton et al.).
    Stages as in :func:`layerwise_distill`; the teacher is frozen.
    """
    start = time.perf_counter()
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    teacher = teacher.eval()
    names = list(student.WEIGHT_LAYERS)
    labels_t = torch.from_numpy(np.asarray(labels, dtype=np.int64))
    steps = max(1, int(round(cfg.epochs * len(images) / cfg.batch_size)))
    opt = torch.optim.Adam([p for p in student.parameters() if p.requires_grad], lr=cfg.lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=steps)
    student.train()
    with make_progress(disable=quiet) as progress:
        task = progress.add_task("distillation", total=steps, info="")
        for idx in _batches(len(images), cfg.batch_size, steps, gen):
            x = random_shift(to_tensor(images[idx]), cfg.shift, gen)
            y = labels_t[idx]
            feats_s, feats_t = {}, {}
            logits = student.forward_range(x, features=feats_s)
            with torch.no_grad():
                soft = teacher.forward_range(x, features=feats_t)
            loss, mse = kd_loss(logits, soft, y, {n: feats_s[n] for n in names}, {n: feats_t[n] for n in names},
                                cfg.beta, cfg.alpha, cfg.temperature)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            progress.update(task, advance=1, info=f"mse {float(mse.detach()):.4f} loss {float(loss.detach()):.4f}")
    student.eval()
    return time.perf_counter() - start
