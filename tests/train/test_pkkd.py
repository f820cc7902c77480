"""PKKD (bmhw.train.pkkd): the kernel maps against hand-computed values, the loss, and short runs on synthetic data."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from bmhw.models.checkpoint import load_checkpoint, save_checkpoint
from bmhw.errors import BmhwError
from bmhw.train.methods import MethodConfig, run
from bmhw.models import lenet
from bmhw.nn import AdderConv2d, AdderLinear
from bmhw.train.pkkd import (KernelAlign, PKKDConfig, gaussian_kernel_map, laplace_kernel_map, pkkd_distill, pkkd_loss,
                       progressive_weight)
from bmhw.train.loop import to_tensor, train_classifier
from conftest import synthetic_mnist

WIDTHS = (4, 6, 16, 12)


def test_gaussian_kernel_map_of_a_linear_layer_by_hand():
    layer = nn.Linear(2, 2)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
        layer.bias.copy_(torch.tensor([0.5, -1.0]))
    x = torch.tensor([[1.0, 2.0]])
    # ||x - w_0||^2 = 0 + 4 = 4, ||x - w_1||^2 = 1 + 1 = 2 (the bias plays no part)
    got = gaussian_kernel_map(layer, x, layer(x).detach(), sigma=1.0)
    assert torch.allclose(got, torch.tensor([[math.exp(-2.0), math.exp(-1.0)]]))
    # median heuristic: 2 sigma^2 = median(4, 2) = 2 (torch's median is the lower middle value)
    got = gaussian_kernel_map(layer, x, layer(x).detach())
    assert torch.allclose(got, torch.tensor([[math.exp(-2.0), math.exp(-1.0)]]))


def test_gaussian_kernel_map_of_a_convolution_against_loops():
    torch.manual_seed(0)
    layer = nn.Conv2d(2, 3, 3, stride=2, padding=1).double()
    x = torch.rand(1, 2, 5, 5, dtype=torch.float64)
    got = gaussian_kernel_map(layer, x, layer(x).detach(), sigma=0.7)
    padded = F.pad(x, (1, 1, 1, 1))
    for o in range(3):
        for i in range(3):
            for j in range(3):
                patch = padded[0, :, 2 * i:2 * i + 3, 2 * j:2 * j + 3]
                d2 = float(((patch - layer.weight[o].detach()) ** 2).sum())
                assert math.isclose(float(got[0, o, i, j]), math.exp(-d2 / (2 * 0.7**2)), rel_tol=1e-9)


def test_laplace_kernel_map_by_hand():
    neg_l1 = torch.tensor([[-3.0, -1.0, -2.0]])
    assert torch.allclose(laplace_kernel_map(neg_l1, sigma=2.0), torch.exp(torch.tensor([[-1.5, -0.5, -1.0]])))
    # median distance 2
    assert torch.allclose(laplace_kernel_map(neg_l1), torch.exp(torch.tensor([[-1.5, -0.5, -1.0]])))


def test_the_kernel_alignment_starts_as_the_identity():
    k = torch.rand(2, 3, 4, 4)
    assert torch.equal(KernelAlign(3, 3, spatial=True)(k), k)
    v = torch.rand(5, 4)
    assert torch.allclose(KernelAlign(4, 4, spatial=False)(v), v)


def test_progressive_weight_is_linear_from_start_to_end():
    assert progressive_weight(0, 5, 0.9, 0.1) == 0.9
    assert math.isclose(progressive_weight(2, 5, 0.9, 0.1), 0.5)
    assert math.isclose(progressive_weight(4, 5, 0.9, 0.1), 0.1)
    assert progressive_weight(0, 1, 0.9, 0.1) == 0.9


def test_pkkd_loss_by_hand():
    logits_s = torch.tensor([[0.0, math.log(3.0)]])  # softmax (1/4, 3/4)
    logits_t = torch.tensor([[0.0, 0.0]])  # softmax (1/2, 1/2) at any temperature
    y = torch.tensor([1])
    k_s, k_t = {"a": torch.tensor([[1.0, 1.0]])}, {"a": torch.tensor([[1.0, 3.0]])}
    feat = (0 + 4) / 2 / ((1 + 9) / 2)
    # T = 1: soft = -(ln(1/4) + ln(3/4)) / 2; hard = -ln(3/4)
    soft = -(math.log(0.25) + math.log(0.75)) / 2
    loss, got_feat = pkkd_loss(logits_s, logits_t, y, k_s, k_t, lam=0.25, beta=2.0, temperature=1.0)
    assert math.isclose(float(got_feat), feat, rel_tol=1e-6)
    assert math.isclose(float(loss), 0.25 * (2.0 * feat + soft) + 0.75 * -math.log(0.75), rel_tol=1e-6)


@pytest.fixture(scope="module")
def teacher_and_data():
    images, labels = synthetic_mnist(256, seed=5)
    images = images[:, None]
    torch.manual_seed(0)
    teacher = lenet("classical", widths=WIDTHS)
    train_classifier(teacher, images, labels, epochs=8, batch_size=32, lr=1e-2, quiet=True)
    return teacher, images, labels


def student_loss(model, images, labels) -> float:
    model.eval()
    with torch.no_grad():
        return float(F.cross_entropy(model(to_tensor(images)), torch.from_numpy(labels.astype(np.int64))))


def test_pkkd_trains_student_and_teacher_together(teacher_and_data):
    teacher, images, labels = teacher_and_data
    before = copy.deepcopy(teacher.state_dict())
    torch.manual_seed(0)
    fresh = lenet("adder", widths=WIDTHS)  # what pkkd starts from with the same seed
    start = student_loss(fresh, images, labels)
    cfg = PKKDConfig(epochs=6, batch_size=32, lr=1e-2, teacher_lr=1e-3)
    result = pkkd_distill(teacher, images, labels, cfg, quiet=True)
    assert torch.equal(next(iter(teacher.state_dict().values())), next(iter(before.values())))  # argument untouched
    after = student_loss(result.student, images, labels)
    assert math.isfinite(after) and after < 0.7 * start, (start, after)
    assert all(isinstance(m, (AdderConv2d, AdderLinear)) for m in result.student.weight_layers().values())
    moved = [not torch.equal(v, result.teacher.state_dict()[k]) for k, v in before.items()]
    assert all(moved)  # every teacher tensor trained
    assert student_loss(result.teacher, images, labels) < 0.5  # and it still knows the task
    log = [e for e in result.log if "lam" in e]
    assert log[0]["lam"] > log[-1]["lam"] and math.isclose(log[-1]["lam"], cfg.soft_end)
    assert log[-1]["kernel_loss"] < log[0]["kernel_loss"]
    # no hook left behind: a forward pass stores nothing
    assert not any(m._forward_hooks for m in result.student.modules())
    assert not any(m._forward_hooks for m in result.teacher.modules())


def test_pkkd_through_the_methods_api_and_its_checks(teacher_and_data):
    teacher, images, labels = teacher_and_data
    cfg = MethodConfig(neuron="adder", epochs=0.25, batch_size=32, eta=0)
    result = run("pkkd", teacher, "lenet", images, labels, cfg, quiet=True)
    assert all(m.eta is None for m in result.model.weight_layers().values())  # eta 0: scaling off
    assert result.log[-1]["pkkd"]["eta"] is None
    with pytest.raises(BmhwError, match="AdderNet student"):
        run("pkkd", teacher, "lenet", images, labels, MethodConfig(neuron="bm15"))
    with pytest.raises(BmhwError, match="needs a trained classical teacher"):
        run("pkkd", None, "lenet", images, labels, MethodConfig(neuron="adder"))
    with pytest.raises(BmhwError, match="soft-end"):
        pkkd_distill(teacher, images, labels, PKKDConfig(soft_end=1.5), quiet=True)


def test_distill_pkkd_from_the_command_line(teacher_and_data, tmp_path, mnist_writer):
    from cli_runner import ok, run_main

    teacher, _, _ = teacher_and_data
    data = mnist_writer(tmp_path / "data", n_train=128, n_test=64)
    ckpt = save_checkpoint(tmp_path / "teacher.pt", teacher, method="test")
    out = tmp_path / "adder.pt"
    ok(["distill", "--teacher", ckpt, "--method", "pkkd", "--epochs", "1", "--batch-size", "32", "--eta", "0.2",
        "--teacher-lr", "1e-3", "--data", data, "--quiet", "-o", out])
    student = load_checkpoint(out)
    assert all(s["neuron"] == "adder" for s in student.config["layers"].values())
    assert student.metadata["method"] == "pkkd" and student.metadata["config"]["eta"] == 0.2
    assert "accuracy" in student.metadata
    code, _, err = run_main(["distill", "--teacher", ckpt, "--method", "pkkd", "--neuron", "bm15", "--data", data,
                             "-o", tmp_path / "bad.pt"])
    assert code == 2 and "AdderNet student" in err and not (tmp_path / "bad.pt").exists()
