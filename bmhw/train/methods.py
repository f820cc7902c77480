"""The training methods of the literature for BM networks (method.md section 3), one function each.

* ``direct``: back-propagation on a BM network from scratch (``bmhw.train.loop.train_classifier``).
* ``layerwise`` / ``layerwise-freeze`` (Limonova et al.): from a trained classical network, convert one
  weight layer at a time, in network order, and fine-tune the whole network on the labels after each
  conversion; with freezing, a converted layer stops training once its fine-tune ends.
* ``kd``: convert the whole teacher, then whole-network distillation (``bmhw.train.distill.knowledge_distill``).
* ``lwkd``: layer-wise knowledge distillation (``bmhw.train.distill.layerwise_distill``), 1.5 branches.
* ``lse-max``: any of the above with LSE, then the exact max swapped in keeping every weight, then a
  distillation fine-tune (or a direct one when there is no teacher): no approximation left.
* ``pkkd`` (Xu et al. 2020): an AdderNet student and the classical teacher trained together, kernel-mapped
  features and soft labels, progressively handed over to the ground truth (``bmhw.train.pkkd``).

α learned per layer, then frozen (what the paper did): with ``learn_alpha_epochs > 0`` the temperatures are
trainable for that many epochs at the start of ``direct`` and ``kd`` (a first, short run of the same
method), and during the step of their own layer in the layer-wise methods; they are frozen afterwards.

``surrogate_alpha``: every exact-max layer of the run trains with LSE's gradient at that temperature, its
forward pass unchanged (``bmhw.nn.layers.surrogate_gradient``; docs/training.md).
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, replace

import numpy as np
import torch
from torch import nn

from bmhw.train.distill import KDConfig, LayerwiseConfig, knowledge_distill, layerwise_distill, set_exact_max
from bmhw.errors import BmhwError
from bmhw.nn import to_bm
from bmhw.nn.layers import _BMNeuron, surrogate_gradient
from bmhw.train.loop import MethodResult, train_classifier

METHODS = ("direct", "layerwise", "layerwise-freeze", "kd", "lwkd", "lse-max", "pkkd")
NEEDS_TEACHER = ("layerwise", "layerwise-freeze", "kd", "lwkd", "pkkd")
# The methods lse-max can start from.
LSE_MAX_BASES = ("direct", "kd", "lwkd")
# The training lengths each method reads (MethodConfig fields); lse-max reads its base's too. The command line
# refuses the others when given: they would be ignored.
EPOCH_FIELDS = ("epochs", "epochs_per_layer", "finetune_epochs", "max_epochs")
METHOD_EPOCHS = {"direct": ("epochs",), "layerwise": ("epochs_per_layer",), "layerwise-freeze": ("epochs_per_layer",),
                 "kd": ("epochs",), "lwkd": ("epochs_per_layer", "max_epochs"), "pkkd": ("epochs",),
                 "lse-max": ("finetune_epochs",)}


def epoch_fields(method: str, base: str | None = None) -> tuple[str, ...]:
    """The training lengths (of :data:`EPOCH_FIELDS`) that ``method`` (from ``base``, for lse-max) reads."""
    used = METHOD_EPOCHS[method]
    return used + METHOD_EPOCHS[base] if method == "lse-max" and base in METHOD_EPOCHS else used


@dataclass
class MethodConfig:
    """Everything a method run needs besides the data; one dataclass so that results record it whole."""

    neuron: str = "bm15"  # bm15 or bm4
    reduce: str = "max"
    alpha: float | None = None
    learn_alpha_epochs: float = 0.0
    epochs: float = 6.0  # direct and kd; the fine-tune of lse-max uses finetune_epochs
    epochs_per_layer: float = 1.0  # layerwise, layerwise-freeze, lwkd
    finetune_epochs: float = 2.0
    base: str = "kd"  # what lse-max starts from
    lr: float = 3e-3
    batch_size: int = 128
    seed: int = 0
    shift: int = 0
    beta: float = 1.0  # weight of the feature MSE in kd and lwkd
    kd_alpha: float = 1.0  # weight of the cross-entropy terms in kd
    temperature: float = 4.0
    alpha_end: float | None = None  # lwkd with a smooth reduction: raise alpha to this during each step
    max_epochs: float = 0.0  # lwkd with a smooth reduction: then this many epochs with the exact max per layer
    refit: bool | None = None  # re-fit converted 1.5-branch layers (default: for the exact max)
    calib_images: int = 2000
    # lse-max: at the swap, bring each 1.5-branch layer's max term back to the scale of its LSE output (per
    # channel scale into v, offset into the bias, on a calibration batch) before the fine-tune.
    swap_refit: bool = False
    # 1.5 branches: the re-fit may mirror an output channel (sign -1: the max takes the negative part).
    signed: bool = False
    # Exact-max layers train with LSE's gradient at this temperature (forward unchanged): bmhw.nn.layers.
    surrogate_alpha: float | None = None
    # Maxima per neuron of the converted layers (bmhw.nn.groups): one value for all, or {layer name: value}.
    maxima: object = 1
    # pkkd (bmhw.train.pkkd): the adder layers' adaptive learning-rate factor (0 or None: off), the co-trained
    # teacher's peak learning rate (None: lr).
    eta: float | None = 0.1
    teacher_lr: float | None = None

    @property
    def branches(self) -> float:
        return 1.5 if self.neuron == "bm15" else 4

    def check(self, method: str) -> None:
        if method not in METHODS:
            raise BmhwError(f"unknown training method {method!r}: choose one of {', '.join(METHODS)}")
        if method == "pkkd":
            if self.neuron != "adder" or self.reduce != "max" or self.alpha is not None:
                raise BmhwError("pkkd trains an AdderNet student: --neuron adder (its default), no --reduce / --alpha")
        elif self.neuron not in ("bm15", "bm4"):
            raise BmhwError(f"the training methods make BM networks: --neuron bm15 or bm4, not {self.neuron!r}")
        if method == "lwkd" and self.neuron != "bm15":
            raise BmhwError("lwkd grows 1.5-branch students (the paper's method): use --neuron bm15")
        if method == "lse-max" and self.base not in LSE_MAX_BASES:
            raise BmhwError(f"lse-max starts from one of {', '.join(LSE_MAX_BASES)}, not {self.base!r}")
        if (method == "lse-max" or self.reduce != "max") and self.alpha is None:
            raise BmhwError(f"{'lse-max' if method == 'lse-max' else '--reduce ' + self.reduce} needs --alpha "
                            "(the temperature to start from)")
        if self.surrogate_alpha is not None and self.surrogate_alpha <= 0:
            raise BmhwError(f"--surrogate-alpha must be positive, got {self.surrogate_alpha}")
        for name in ("epochs", "epochs_per_layer", "finetune_epochs", "lr", "learn_alpha_epochs"):
            if getattr(self, name) < 0 or (name == "lr" and self.lr <= 0):
                raise BmhwError(f"{name.replace('_', '-')} must be positive, got {getattr(self, name)}")


def bm_layers(model: nn.Module) -> dict[str, _BMNeuron]:
    return {name: m for name, m in model.named_modules() if isinstance(m, _BMNeuron)}


def freeze_alpha(model: nn.Module) -> None:
    """Turn every learned temperature into a fixed one with the value it reached."""
    for layer in bm_layers(model).values():
        if isinstance(layer.alpha, nn.Parameter):
            value = layer.alpha.detach().clone()
            del layer.alpha
            layer.register_buffer("alpha", value)
            layer.learn_alpha = False


def learned_alphas(model: nn.Module) -> dict[str, float]:
    return {name: round(float(m.alpha.detach()), 4) for name, m in bm_layers(model).items() if m.alpha is not None}


def _convert(model: nn.Module, cfg: MethodConfig, reduce: str, layers=None, learn_alpha: bool = False) -> nn.Module:
    return to_bm(model, branches=cfg.branches, reduce=reduce, alpha=None if reduce == "max" else cfg.alpha,
                 learn_alpha=learn_alpha and reduce != "max", layers=layers, maxima=cfg.maxima)


def _kd_config(cfg: MethodConfig, epochs: float) -> KDConfig:
    return KDConfig(epochs=epochs, batch_size=cfg.batch_size, lr=cfg.lr, beta=cfg.beta, alpha=cfg.kd_alpha,
                    temperature=cfg.temperature, shift=cfg.shift, seed=cfg.seed)


def in_two_phases(model: nn.Module, learn_epochs: float, epochs: float, run) -> None:
    """``run(epochs)`` with the temperatures learned for the first ``learn_epochs``, then frozen."""
    learning = any(isinstance(m.alpha, nn.Parameter) for m in bm_layers(model).values())
    first = min(epochs, learn_epochs) if learning else 0
    if first > 0:
        run(first)
    freeze_alpha(model)
    if epochs - first > 0:
        run(epochs - first)


def _train(model, images, labels, cfg: MethodConfig, epochs: float, quiet: bool) -> None:
    # train_classifier counts whole epochs; a fraction of one is a prefix of the shuffled set.
    whole, part = int(epochs), epochs - int(epochs)
    if whole:
        train_classifier(model, images, labels, epochs=whole, batch_size=cfg.batch_size, lr=cfg.lr, seed=cfg.seed,
                         shift=cfg.shift, quiet=quiet)
    if part > 0:
        order = np.random.default_rng(cfg.seed).permutation(len(images))[:max(cfg.batch_size, int(part * len(images)))]
        train_classifier(model, images[order], labels[order], epochs=1, batch_size=cfg.batch_size, lr=cfg.lr,
                         seed=cfg.seed, shift=cfg.shift, quiet=quiet)


def direct(arch: str, images, labels, cfg: MethodConfig, quiet: bool = False) -> MethodResult:
    from bmhw.models import create

    start = time.perf_counter()
    torch.manual_seed(cfg.seed)
    model = create(arch, cfg.neuron, cfg.reduce, None if cfg.reduce == "max" else cfg.alpha,
                   cfg.learn_alpha_epochs > 0 and cfg.reduce != "max")
    in_two_phases(model, cfg.learn_alpha_epochs, cfg.epochs, lambda e: _train(model, images, labels, cfg, e, quiet))
    return MethodResult(model, time.perf_counter() - start, [{"alpha": learned_alphas(model)}])


def layerwise(teacher: nn.Module, images, labels, cfg: MethodConfig, freeze: bool, quiet: bool = False) -> MethodResult:
    """Convert one layer at a time (formula 2 / ln(w + dw)), fine-tuning the whole network on the labels
    after each; with ``freeze``, each converted layer is fixed after its own fine-tune."""
    start = time.perf_counter()
    model = copy.deepcopy(teacher)
    log = []
    for name in list(model.weight_layers()):
        model = _convert(model, cfg, cfg.reduce, layers={name}, learn_alpha=cfg.learn_alpha_epochs > 0)
        _train(model, images, labels, cfg, cfg.epochs_per_layer, quiet)
        freeze_alpha(model)
        if freeze:
            for p in model.get_submodule(name).parameters():
                p.requires_grad_(False)
        log.append({"layer": name})
    for p in model.parameters():
        p.requires_grad_(True)
    return MethodResult(model.eval(), time.perf_counter() - start, log + [{"alpha": learned_alphas(model)}])


def convert_teacher(teacher: nn.Module, cfg: MethodConfig, reduce: str, images=None) -> nn.Module:
    """The whole teacher converted; 1.5 branches with the exact max are re-fitted on a calibration batch
    (plain conversion puts them at chance: docs/training.md)."""
    student = _convert(teacher, cfg, reduce, learn_alpha=cfg.learn_alpha_epochs > 0)
    refit = cfg.refit if cfg.refit is not None else (cfg.neuron == "bm15" and reduce == "max")
    if refit and images is not None:
        from bmhw.train.calibrate import refit_bm15
        from bmhw.data import calibration_sample
        from bmhw.train.loop import to_tensor

        refit_bm15(student, teacher, to_tensor(calibration_sample(images, cfg.calib_images, cfg.seed)),
                   signed=cfg.signed)
    return student


def kd(teacher: nn.Module, images, labels, cfg: MethodConfig, quiet: bool = False, student: nn.Module | None = None
       ) -> MethodResult:
    """Whole-network distillation into ``student`` (a BM network, e.g. from lwkd: trained in place), or into the
    converted teacher."""
    start = time.perf_counter()
    student = convert_teacher(teacher, cfg, cfg.reduce, images) if student is None else student
    in_two_phases(student, cfg.learn_alpha_epochs, cfg.epochs,
                   lambda e: knowledge_distill(student, teacher, images, labels, _kd_config(cfg, e), quiet=quiet))
    return MethodResult(student.eval(), time.perf_counter() - start, [{"alpha": learned_alphas(student)}])


def lwkd(teacher: nn.Module, images, labels, cfg: MethodConfig, quiet: bool = False) -> MethodResult:
    refit = cfg.refit if cfg.refit is not None else cfg.reduce == "max"
    lw = LayerwiseConfig(epochs_per_layer=cfg.epochs_per_layer, batch_size=cfg.batch_size, lr=cfg.lr, beta=cfg.beta,
                         calib_images=cfg.calib_images, shift=cfg.shift, seed=cfg.seed, reduce=cfg.reduce,
                         alpha=None if cfg.reduce == "max" else cfg.alpha, alpha_end=cfg.alpha_end,
                         max_epochs=cfg.max_epochs, refit=refit, learn_alpha=cfg.learn_alpha_epochs > 0,
                         signed=cfg.signed, maxima=cfg.maxima)
    result = layerwise_distill(teacher, images, labels, lw, quiet=quiet)
    return MethodResult(result.student, result.seconds, result.log + [{"alpha": learned_alphas(result.student)}])


def lse_max(teacher: nn.Module | None, arch: str, images, labels, cfg: MethodConfig,
            quiet: bool = False) -> MethodResult:
    """Train with LSE by ``cfg.base``, swap every layer to the exact max keeping the weights, fine-tune."""
    start = time.perf_counter()
    smooth = replace(cfg, reduce="lse")
    first = run(cfg.base, teacher, arch, images, labels, smooth, quiet)
    model = first.model
    freeze_alpha(model)
    alphas = learned_alphas(model)
    swap_to_max(model, images if cfg.swap_refit and cfg.neuron == "bm15" else None, cfg)
    if cfg.finetune_epochs > 0:
        if teacher is None:
            _train(model, images, labels, cfg, cfg.finetune_epochs, quiet)
        else:
            knowledge_distill(model, teacher, images, labels, _kd_config(cfg, cfg.finetune_epochs), quiet=quiet)
    return MethodResult(model.eval(), time.perf_counter() - start, first.log + [{"alpha_before_max": alphas}])


def swap_to_max(model: nn.Module, images=None, cfg: MethodConfig | None = None) -> None:
    """Every BM layer's reduction becomes the exact max, weights kept. With ``images`` (1.5 branches), each
    layer in turn is then re-scaled to its LSE output on a calibration batch (bmhw.train.calibrate)."""
    smooth = copy.deepcopy(model).eval() if images is not None else None
    if smooth is not None:
        from bmhw.train.calibrate import capture, refit_scale_offset
        from bmhw.data import calibration_sample
        from bmhw.train.loop import to_tensor

        calib = to_tensor(calibration_sample(images, cfg.calib_images, cfg.seed))
    model.eval()
    for name, layer in bm_layers(model).items():
        set_exact_max(layer)
        if smooth is not None:
            with torch.no_grad():
                target = capture(smooth, smooth.get_submodule(name), calib, "output")
                refit_scale_offset(layer, capture(model, layer, calib, "input"), target)


def run(method: str, teacher: nn.Module | None, arch: str, images, labels, cfg: MethodConfig,
        quiet: bool = False, student: nn.Module | None = None) -> MethodResult:
    """Train a BM network by ``method`` (see the module docstring); ``teacher`` is a trained classical
    network of the same architecture, needed by every method but ``direct`` (and lse-max from direct)."""
    cfg.check(method)
    with surrogate_gradient(cfg.surrogate_alpha):
        return _run(method, teacher, arch, images, labels, cfg, quiet, student)


def _run(method, teacher, arch, images, labels, cfg, quiet, student) -> MethodResult:
    needs = method in NEEDS_TEACHER or (method == "lse-max" and cfg.base != "direct")
    if needs and teacher is None:
        raise BmhwError(f"method {method} needs a trained classical teacher (bmhw distill --teacher CKPT)")
    if method == "direct":
        return direct(arch, images, labels, cfg, quiet)
    if method in ("layerwise", "layerwise-freeze"):
        return layerwise(teacher, images, labels, cfg, freeze=method == "layerwise-freeze", quiet=quiet)
    if student is not None and method != "kd":
        raise BmhwError("a starting student is for --method kd (whole-network distillation of a BM network)")
    if method == "kd":
        return kd(teacher, images, labels, cfg, quiet, student)
    if method == "lwkd":
        return lwkd(teacher, images, labels, cfg, quiet)
    if method == "pkkd":
        from bmhw.train.pkkd import run_pkkd

        return run_pkkd(teacher, images, labels, cfg, quiet)
    return lse_max(teacher, arch, images, labels, cfg, quiet)
