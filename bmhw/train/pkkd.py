"""PKKD: kernel-based progressive knowledge distillation into an AdderNet (Xu et al., NeurIPS 2020).

Our reading (docs/training.md, "AdderNet and PKKD"): a classical CNN teacher of the same architecture and
the adder student train in the same loop, on the same batches::

    teacher:  L_t = CE(y_t, y)
    student:  L_s = lam(t) [beta sum_l relMSE(A_l(K_s,l), K_t,l) + T^2 CE_T(y_s, y_t)] + (1 - lam(t)) CE(y_s, y)

* ``K_t,l``: the teacher's weight layer l mapped by the Gaussian kernel between every input patch and every
  filter, ``exp(-||x - w||_2^2 / (2 sigma_t^2))``, computed from the layer's own output
  (``||x - w||^2 = ||x||^2 - 2 x.w + ||w||^2``, with ``x.w`` the convolution without its bias);
* ``K_s,l``: the student's adder distance mapped by the Laplacian kernel ``exp(-||x - w||_1 / sigma_s)``: the
  kernel that is a function of the L1 distance the adder layer computes (before its batch normalisation);
* bandwidths by the median heuristic, per layer and batch: ``2 sigma_t^2 = median ||x - w||_2^2`` and
  ``sigma_s = median ||x - w||_1`` (no gradient through them), so both maps are ``e^-1`` at their median;
* ``A_l``: a learned 1x1 convolution (a linear map over channels, with bias; starts as the identity) on the
  student's kernel map: the channels of two independently trained networks need not correspond one to one.
  It is trained with the student and thrown away afterwards;
* progressive: ``lam`` falls linearly from ``soft_start`` to ``soft_end`` over the run: first mostly the
  teacher (features and soft labels), finally mostly the ground truth. The teacher keeps training on the
  labels at the same time, so the student always learns from a teacher at the same stage of training.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from bmhw.train.distill import _batches, relative_mse
from bmhw.errors import BmhwError
from bmhw.nn.adder import DEFAULT_ETA, _AdderNeuron, adder_layers, set_eta, to_adder
from bmhw.train.loop import MethodResult, make_progress, random_shift, to_tensor


@dataclass
class PKKDConfig:
    epochs: float = 6.0
    batch_size: int = 128
    lr: float = 3e-3  # peak of the student's one-cycle schedule
    teacher_lr: float | None = None  # peak of the teacher's (default: lr)
    # The adder weights' peak learning rate is lr times this: a template lives on the scale of its inputs (about 1),
    # ten times that of a classical weight, and Adam's step is about the learning rate whatever the gradient's size
    # (the adaptive learning rate of AdderNet, made for SGD, does not change that).
    adder_lr_scale: float = 10.0
    beta: float = 1.0  # weight of the kernel feature loss (summed over the weight layers)
    temperature: float = 4.0
    soft_start: float = 0.9  # weight lam of the teacher's terms at the first step ...
    soft_end: float = 0.1  # ... and at the last; 1 - lam goes to the ground truth
    eta: float | None = DEFAULT_ETA  # adaptive learning rate of the adder layers (None: off)
    init: str = "fresh"  # student: "fresh" (a new adder network, as in the paper) or "copy" (the teacher's weights)
    shift: int = 0
    seed: int = 0

    def check(self) -> None:
        if self.init not in ("fresh", "copy"):
            raise BmhwError(f"PKKD starts the student 'fresh' or as a 'copy' of the teacher, not {self.init!r}")
        for name in ("soft_start", "soft_end"):
            if not 0 <= getattr(self, name) <= 1:
                raise BmhwError(f"{name.replace('_', '-')} must lie in [0, 1], got {getattr(self, name)}")
        for name in ("epochs", "lr", "temperature", "batch_size", "adder_lr_scale"):
            if not getattr(self, name) > 0:
                raise BmhwError(f"{name.replace('_', '-')} must be positive, got {getattr(self, name)}")
        if self.teacher_lr is not None and not self.teacher_lr > 0:
            raise BmhwError(f"teacher-lr must be positive, got {self.teacher_lr}")
        if self.eta is not None and not self.eta > 0:
            raise BmhwError(f"eta must be positive, got {self.eta}")


def progressive_weight(step: int, steps: int, start: float, end: float) -> float:
    """``lam`` at ``step`` of ``steps``: linear from ``start`` (first step) to ``end`` (last step)."""
    return start if steps <= 1 else start + (end - start) * step / (steps - 1)


def _median_scale(d: torch.Tensor) -> torch.Tensor:
    return d.detach().median().clamp_min(torch.finfo(d.dtype).tiny)


def patch_sq_norms(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``||x_patch||^2`` of every input patch of a linear (N x 1) or convolutional (B x 1 x Ho x Wo) layer."""
    if isinstance(layer, nn.Linear) or x.dim() == 2:
        return x.pow(2).sum(-1, keepdim=True)
    sq = x.pow(2).sum(1, keepdim=True)
    ones = x.new_ones(1, 1, *layer.kernel_size)
    return F.conv2d(sq, ones, stride=layer.stride, padding=layer.padding)


def gaussian_kernel_map(layer: nn.Module, x: torch.Tensor, y: torch.Tensor, sigma: float | None = None) -> torch.Tensor:
    """``exp(-||x_patch - w_o||_2^2 / (2 sigma^2))`` for every output of a classical layer, from its input ``x``
    and output ``y`` (``x.w = y - bias``); ``sigma=None``: ``2 sigma^2`` is the median of the squared distances."""
    w = layer.weight.detach()
    w_sq = w.reshape(w.shape[0], -1).pow(2).sum(1)
    shape = (1, -1) + (1,) * (y.dim() - 2)
    dot = y if layer.bias is None else y - layer.bias.detach().reshape(shape)
    d2 = (patch_sq_norms(layer, x) - 2 * dot + w_sq.reshape(shape)).clamp_min(0)
    scale = _median_scale(d2) if sigma is None else 2 * sigma**2
    return torch.exp(-d2 / scale)


def laplace_kernel_map(neg_l1: torch.Tensor, sigma: float | None = None) -> torch.Tensor:
    """``exp(-||x_patch - w_o||_1 / sigma)`` from an adder layer's distance output ``-||x - w||_1``;
    ``sigma=None``: the median distance."""
    d1 = (-neg_l1).clamp_min(0)
    scale = _median_scale(d1) if sigma is None else sigma
    return torch.exp(-d1 / scale)


class KernelAlign(nn.Module):
    """The linear map after the student's kernel: a 1x1 convolution over channels (or a linear layer for
    vectors), starting as the identity."""

    def __init__(self, channels_in: int, channels_out: int, spatial: bool):
        super().__init__()
        self.map = nn.Conv2d(channels_in, channels_out, 1) if spatial else nn.Linear(channels_in, channels_out)
        with torch.no_grad():
            self.map.weight.zero_()
            self.map.weight.view(channels_out, channels_in)[:, :].copy_(torch.eye(channels_out, channels_in))
            self.map.bias.zero_()

    def forward(self, k: torch.Tensor) -> torch.Tensor:
        return self.map(k)


def pkkd_loss(logits_s, logits_t, y, kernel_s: dict, kernel_t: dict, lam: float, beta: float,
              temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The student's loss ``lam [beta sum relMSE(K_s, K_t) + T^2 CE_T] + (1 - lam) CE`` and its kernel term; the
    kernel maps ``kernel_s`` are already aligned (A_l applied); the teacher's terms carry no gradient."""
    feat = sum(relative_mse(kernel_s[n], kernel_t[n].detach()) for n in kernel_t)
    soft = -(F.softmax(logits_t.detach() / temperature, 1) * F.log_softmax(logits_s / temperature, 1)).sum(1).mean()
    loss = lam * (beta * feat + temperature**2 * soft) + (1 - lam) * F.cross_entropy(logits_s, y)
    return loss, feat


def adder_student(teacher: nn.Module, init: str = "fresh", eta: float | None = DEFAULT_ETA) -> nn.Module:
    """An adder network of the teacher's architecture: fresh (new weights) or with the teacher's weights copied."""
    from bmhw.models import build, describe

    if init == "copy":
        return to_adder(teacher, eta=eta)
    config = describe(teacher)
    student = build({**config, "layers": {name: {"neuron": "adder"} for name in config["layers"]}})
    set_eta(student, eta)
    return student


@dataclass
class PKKDResult:
    student: nn.Module
    teacher: nn.Module
    log: list = field(default_factory=list)
    seconds: float = 0.0


def _capture(modules: dict, store: dict, what) -> list:
    handles = []
    for name, module in modules.items():
        def hook(_module, inp, out, name=name):
            store[name] = what(inp, out)

        handles.append(module.register_forward_hook(hook))
    return handles


def pkkd_distill(teacher: nn.Module, images: np.ndarray, labels: np.ndarray, cfg: PKKDConfig,
                 quiet: bool = False) -> PKKDResult:
    """Train an adder student and a copy of ``teacher`` (a classical network, the teacher's starting point)
    together by PKKD; the argument stays as it is."""
    cfg.check()
    start = time.perf_counter()
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    teacher = copy.deepcopy(teacher).train()
    for p in teacher.parameters():
        p.requires_grad_(True)
    student = adder_student(teacher, cfg.init, cfg.eta).train()
    t_layers = teacher.weight_layers()
    s_layers = student.weight_layers()
    if not all(isinstance(s_layers[n], _AdderNeuron) and s_layers[n].bn is not None for n in s_layers):
        raise BmhwError("PKKD needs an adder student with batch normalisation in every weight layer")
    align = nn.ModuleDict({n.replace(".", "/"): KernelAlign(s_layers[n].out_count, t_layers[n].weight.shape[0],
                                                          isinstance(t_layers[n], nn.Conv2d)) for n in t_layers})
    labels_t = torch.from_numpy(np.asarray(labels, dtype=np.int64))
    steps = max(1, int(round(cfg.epochs * len(images) / cfg.batch_size)))
    templates = [layer.weight for layer in adder_layers(student).values()]
    others = [p for p in student.parameters() if all(p is not t for t in templates)] + list(align.parameters())
    lrs = [cfg.lr * cfg.adder_lr_scale, cfg.lr]
    opt_s = torch.optim.Adam([{"params": templates, "lr": lrs[0]}, {"params": others, "lr": lrs[1]}])
    teacher_lr = cfg.lr if cfg.teacher_lr is None else cfg.teacher_lr
    opt_t = torch.optim.Adam(teacher.parameters(), lr=teacher_lr)
    sched_s = torch.optim.lr_scheduler.OneCycleLR(opt_s, max_lr=lrs, total_steps=steps)
    sched_t = torch.optim.lr_scheduler.OneCycleLR(opt_t, max_lr=teacher_lr, total_steps=steps)
    # Inputs and outputs of the teacher's weight layers; the raw distance of the student's (the input of its BN).
    t_io, s_dist = {}, {}
    handles = _capture(t_layers, t_io, lambda inp, out: (inp[0].detach(), out.detach()))
    handles += _capture({n: s_layers[n].bn for n in s_layers}, s_dist, lambda inp, out: inp[0])
    steps_per_epoch = max(1, (len(images) + cfg.batch_size - 1) // cfg.batch_size)
    log, sums = [], np.zeros(6)
    try:
        with make_progress(disable=quiet) as progress:
            task = progress.add_task("pkkd", total=steps, info="")
            for step, idx in enumerate(_batches(len(images), cfg.batch_size, steps, gen)):
                x = random_shift(to_tensor(images[idx]), cfg.shift, gen)
                y = labels_t[idx]
                logits_t = teacher(x)
                loss_t = F.cross_entropy(logits_t, y)
                logits_s = student(x)
                with torch.no_grad():
                    k_t = {n: gaussian_kernel_map(t_layers[n], *t_io[n]) for n in t_layers}
                k_s = {n: align[n.replace(".", "/")](laplace_kernel_map(s_dist[n])) for n in s_layers}
                lam = progressive_weight(step, steps, cfg.soft_start, cfg.soft_end)
                loss_s, feat = pkkd_loss(logits_s, logits_t, y, k_s, k_t, lam, cfg.beta, cfg.temperature)
                opt_s.zero_grad(set_to_none=True)
                opt_t.zero_grad(set_to_none=True)
                (loss_s + loss_t).backward()
                opt_s.step()
                opt_t.step()
                sched_s.step()
                sched_t.step()
                n = len(idx)
                sums += [n, float(loss_s.detach()) * n, float(feat.detach()) * n, float(loss_t.detach()) * n,
                         float((logits_s.argmax(1) == y).sum()), float((logits_t.argmax(1) == y).sum())]
                progress.update(task, advance=1, info=f"lam {lam:.2f} student {sums[1] / sums[0]:.4f} "
                                f"acc {sums[4] / sums[0]:.2%} teacher acc {sums[5] / sums[0]:.2%}")
                if (step + 1) % steps_per_epoch == 0 or step + 1 == steps:
                    mean = [float(v) / float(sums[0]) for v in sums[1:]]  # plain floats: they go into checkpoints
                    log.append({"step": step + 1, "lam": round(lam, 4), "student_loss": mean[0], "kernel_loss": mean[1],
                                "teacher_loss": mean[2], "student_train_accuracy": mean[3],
                                "teacher_train_accuracy": mean[4], "seconds": round(time.perf_counter() - start, 1)})
                    sums[:] = 0
    finally:
        for handle in handles:
            handle.remove()
    return PKKDResult(student.eval(), teacher.eval(), log, time.perf_counter() - start)


def run_pkkd(teacher: nn.Module, images, labels, cfg, quiet: bool = False):
    """``bmhw.train.methods.run("pkkd", ...)``: a MethodConfig in, a MethodResult (the adder student) out."""

    eta = getattr(cfg, "eta", DEFAULT_ETA)
    if eta is not None and eta < 0:
        raise BmhwError(f"--eta must be positive (or 0 to turn the adaptive learning rate off), got {eta}")
    pk = PKKDConfig(epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr,
                    teacher_lr=getattr(cfg, "teacher_lr", None),
                    beta=cfg.beta, temperature=cfg.temperature, eta=eta if eta and eta > 0 else None,
                    shift=cfg.shift, seed=cfg.seed)
    result = pkkd_distill(teacher, images, labels, pk, quiet=quiet)
    return MethodResult(result.student, result.seconds, result.log + [{"pkkd": vars(pk)}])
