"""The training methods (bmhw.train.methods) and their losses (bmhw.train.distill) on tiny synthetic data."""

import copy
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from bmhw.train.distill import kd_loss, lwkd_loss, relative_mse, set_exact_max
from bmhw.errors import BmhwError
from bmhw.train.methods import MethodConfig, bm_layers, convert_teacher, freeze_alpha, run
from bmhw.models import create, describe, lenet
from bmhw.nn import BMLinear
from bmhw.train.loop import to_tensor, train_classifier
from conftest import synthetic_mnist


def train_loss(model, images, labels) -> float:
    model.eval()
    with torch.no_grad():
        return float(F.cross_entropy(model(to_tensor(images)), torch.from_numpy(labels.astype(np.int64))))


@pytest.fixture(scope="module")
def teacher_and_data():
    # A teacher that has learned the synthetic task (train loss ~0.002), so that distillation has a target.
    images, labels = synthetic_mnist(256, seed=5)
    images = images[:, None]
    torch.manual_seed(0)
    teacher = lenet("classical", widths=(4, 6, 16, 12))
    train_classifier(teacher, images, labels, epochs=10, batch_size=32, lr=1e-2, quiet=True)
    assert train_loss(teacher, images, labels) < 0.1
    return teacher, images, labels


SMALL = dict(batch_size=32, epochs=2, epochs_per_layer=0.5, finetune_epochs=1, calib_images=64, lr=3e-3)


@pytest.mark.parametrize("method, neuron, reduce", [
    ("direct", "bm15", "lse"), ("direct", "bm4", "max"),
    ("layerwise", "bm4", "max"), ("layerwise-freeze", "bm4", "smorph"),
    ("kd", "bm4", "lse"), ("kd", "bm15", "max"),
    ("lwkd", "bm15", "max"), ("lse-max", "bm15", "max"),
    ("kd", "bm15", "max-surrogate"), ("direct", "bm4", "max-surrogate"),
])
def test_every_method_lowers_the_loss_of_its_starting_point(teacher_and_data, method, neuron, reduce):
    teacher, images, labels = teacher_and_data
    surrogate = 4.0 if reduce == "max-surrogate" else None
    reduce = "max" if surrogate else reduce
    cfg = MethodConfig(neuron=neuron, reduce=reduce, alpha=None if reduce == "max" else 2.0,
                       surrogate_alpha=surrogate, **SMALL)
    if method == "lse-max":
        cfg = MethodConfig(neuron=neuron, alpha=2.0, base="kd", **SMALL)
    # Where each method starts: a fresh BM network (direct) or the whole teacher converted.
    if method == "direct":
        torch.manual_seed(cfg.seed)  # what direct() does before creating its network: the same start
        start = create("lenet", neuron, reduce, cfg.alpha if reduce != "max" else None)
        before = train_loss(start, images, labels)
        result = run(method, None, "lenet", images, labels, cfg, quiet=True)
        after = train_loss(result.model, images, labels)
    else:
        start = convert_teacher(teacher, cfg, "max" if method == "lse-max" else reduce, images)
        before = train_loss(start, images, labels)
        result = run(method, teacher, "lenet", images, labels, cfg, quiet=True)
        after = train_loss(result.model, images, labels)
    assert math.isfinite(after) and after < before, (before, after)
    final = result.model
    layers = describe(final)["layers"]
    assert all(spec["neuron"] == neuron for spec in layers.values())  # no classical layer left
    if method == "lse-max" or surrogate:
        assert all(spec["reduce"] == "max" for spec in layers.values())
    assert all(m.surrogate_alpha is None for m in bm_layers(final).values())  # a training aid only


def test_lwkd_freezes_finished_layers_bit_for_bit_and_ends_all_bm(teacher_and_data):
    teacher, images, labels = teacher_and_data
    from bmhw.train.distill import LayerwiseConfig, layerwise_distill

    snapshots = []
    cfg = LayerwiseConfig(epochs_per_layer=0.5, batch_size=32, calib_images=64, reduce="lse", alpha=1.0,
                          alpha_end=16.0, max_epochs=0.25, refit=False, learn_delta_w=True)
    result = layerwise_distill(teacher, images, labels, cfg, quiet=True,
                               on_step=lambda e, s, t: snapshots.append({k: v.clone() for k, v in s.state_dict().items()}))
    names = teacher.WEIGHT_LAYERS
    for k, name in enumerate(names[:-1]):
        for later in snapshots[k + 1:]:
            assert torch.equal(snapshots[k][f"{name}.v"], later[f"{name}.v"])
            assert torch.equal(snapshots[k][f"{name}.bias"], later[f"{name}.bias"])
    specs = describe(result.student)["layers"]
    assert all(s["neuron"] == "bm15" and s["reduce"] == "max" for s in specs.values())
    # dw was learned during the smooth phase, then rounded to a power of two (a shift) and fixed.
    for name in names:
        layer = result.student.get_submodule(name)
        assert "delta_w" in dict(layer.named_buffers()) and "delta_w" not in dict(layer.named_parameters())
        assert math.log2(float(layer.delta_w)).is_integer()


def test_swapping_lse_for_the_max_keeps_every_weight_exactly():
    torch.manual_seed(0)
    layer = BMLinear(6, 3, reduce="lse", alpha=5.0, learn_alpha=True)
    before = {k: v.clone() for k, v in layer.state_dict().items() if k != "alpha"}
    x = torch.rand(4, 6)
    set_exact_max(layer)
    after = layer.state_dict()
    assert set(after) == set(before) and all(torch.equal(after[k], v) for k, v in before.items())
    assert layer.reduce == "max" and layer.alpha is None and "alpha" not in dict(layer.named_parameters())
    reference = BMLinear(6, 3)
    reference.load_state_dict(after)
    assert torch.equal(layer(x), reference(x))


def test_lse_max_without_fine_tune_is_the_lse_network_with_the_max(teacher_and_data, monkeypatch):
    teacher, images, labels = teacher_and_data
    import bmhw.train.methods as methods

    trained = {}
    original = methods.run

    def spy(method, *args, **kwargs):
        result = original(method, *args, **kwargs)
        if method == "kd":
            trained.update({k: v.clone() for k, v in result.model.state_dict().items()})
        return result

    monkeypatch.setattr(methods, "run", spy)
    cfg = MethodConfig(neuron="bm15", alpha=3.0, base="kd", **{**SMALL, "finetune_epochs": 0})
    result = original("lse-max", teacher, "lenet", images, labels, cfg, quiet=True)
    state = result.model.state_dict()
    assert trained and all(torch.equal(state[k], v) for k, v in trained.items() if not k.endswith("alpha"))


def test_alpha_is_learned_then_frozen():
    layer = BMLinear(4, 2, reduce="lse", alpha=3.0, learn_alpha=True)
    model = torch.nn.Sequential(layer)
    with torch.no_grad():
        layer.alpha.fill_(7.5)
    freeze_alpha(model)
    assert not any(n.endswith("alpha") for n, _ in model.named_parameters())
    assert float(layer.alpha) == 7.5 and not layer.learn_alpha and bm_layers(model)["0"] is layer


def test_relative_mse_and_lwkd_loss_match_hand_computed_values():
    s = torch.tensor([[1.0, 2.0], [0.0, -1.0]])
    t = torch.tensor([[1.0, 1.0], [2.0, -1.0]])
    # MSE = (0 + 1 + 4 + 0) / 4 = 1.25; teacher mean square = (1 + 1 + 4 + 1) / 4 = 1.75.
    assert math.isclose(float(relative_mse(s, t)), 1.25 / 1.75, rel_tol=1e-6)
    out1 = torch.tensor([[0.0, math.log(3.0)]])  # softmax (1/4, 3/4)
    out2 = torch.tensor([[0.0, 0.0]])  # softmax (1/2, 1/2)
    y = torch.tensor([1])
    loss, mse = lwkd_loss(s, t, out1, out2, y, beta=2.0)
    assert math.isclose(float(loss), 2 * 1.25 / 1.75 - math.log(0.75) - math.log(0.5), rel_tol=1e-6)
    assert math.isclose(float(mse), 1.25 / 1.75, rel_tol=1e-6)


def test_kd_loss_matches_hand_computed_value():
    logits = torch.tensor([[0.0, math.log(3.0)]])
    teacher = torch.tensor([[0.0, 2 * math.log(3.0)]])
    y = torch.tensor([0])
    feats_s = {"a": torch.tensor([[1.0, 1.0]])}
    feats_t = {"a": torch.tensor([[1.0, 3.0]])}
    # T = 2: student softmax of (0, ln 3 / 2) = (1, sqrt 3) / (1 + sqrt 3); teacher's of (0, ln 3) = (1/4, 3/4).
    q = [1 / (1 + math.sqrt(3)), math.sqrt(3) / (1 + math.sqrt(3))]
    soft = -(0.25 * math.log(q[0]) + 0.75 * math.log(q[1]))
    hard = -math.log(0.25)
    mse = (0 + 4) / 2 / ((1 + 9) / 2)
    loss, got_mse = kd_loss(logits, teacher, y, feats_s, feats_t, beta=0.5, alpha=3.0, temperature=2.0)
    assert math.isclose(float(got_mse), mse, rel_tol=1e-6)
    assert math.isclose(float(loss), 0.5 * mse + 3.0 * (4 * soft + hard), rel_tol=1e-6)


@pytest.mark.parametrize("method, cfg, message", [
    ("lwkd", MethodConfig(neuron="bm4"), "1.5-branch"),
    ("sgd", MethodConfig(), "unknown training method"),
    ("lse-max", MethodConfig(), "needs --alpha"),
    ("kd", MethodConfig(reduce="lse"), "needs --alpha"),
    ("lse-max", MethodConfig(alpha=2.0, base="layerwise"), "lse-max starts from"),
    ("kd", MethodConfig(surrogate_alpha=-1.0), "surrogate-alpha must be positive"),
])
def test_bad_configurations_are_refused_in_one_line(method, cfg, message):
    with pytest.raises(BmhwError, match=message):
        run(method, None, "lenet", np.zeros((1, 1, 28, 28), np.uint8), np.zeros(1, np.int64), cfg)


def test_methods_that_need_a_teacher_say_so():
    with pytest.raises(BmhwError, match="needs a trained classical teacher"):
        run("kd", None, "lenet", np.zeros((1, 1, 28, 28), np.uint8), np.zeros(1, np.int64), MethodConfig())


def test_a_learned_delta_w_trains_then_rounds_to_the_nearest_power_of_two():
    from bmhw.train.distill import _learn_delta_w, _round_delta_w

    layer = BMLinear(5, 2, reduce="lse", alpha=1.0)
    _learn_delta_w(layer)
    assert isinstance(layer.delta_w, torch.nn.Parameter)
    layer(torch.rand(3, 5)).sum().backward()
    assert float(layer.delta_w.grad) < 0  # y = ... - dw * sum x with x > 0: the gradient is -sum x
    with torch.no_grad():
        layer.delta_w.fill_(0.3)  # log2 0.3 = -1.74: nearest power of two 2^-2
    _round_delta_w(layer)
    assert float(layer.delta_w) == 0.25 and "delta_w" in dict(layer.named_buffers())
    assert "delta_w" in layer.state_dict()


def test_swap_refit_brings_the_max_network_closer_to_the_lse_network(teacher_and_data):
    from bmhw.train.methods import swap_to_max

    teacher, images, labels = teacher_and_data
    cfg = MethodConfig(neuron="bm15", reduce="lse", alpha=4.0, calib_images=128)
    smooth = convert_teacher(teacher, cfg, "lse")
    x = to_tensor(images[:128])
    with torch.no_grad():
        target = smooth(x)
        plain, fitted = copy.deepcopy(smooth), copy.deepcopy(smooth)
        swap_to_max(plain)
        swap_to_max(fitted, images, cfg)
        assert all(layer.reduce == "max" for layer in bm_layers(fitted).values())
        err_plain = float(((plain(x) - target) ** 2).mean())
        err_fitted = float(((fitted(x) - target) ** 2).mean())
    assert err_fitted < 0.5 * err_plain, (err_plain, err_fitted)
    # Only scale (v shifted per channel) and bias move; dw and the shape of v within a channel stay.
    for name, layer in bm_layers(fitted).items():
        ref = bm_layers(plain)[name]
        assert torch.equal(layer.delta_w, ref.delta_w)
        shift = (layer.v - ref.v).reshape(layer.out_count, -1)
        assert torch.allclose(shift, shift[:, :1].expand_as(shift), atol=1e-5)


def test_every_method_says_which_training_lengths_it_reads():
    # The command line refuses a length a method does not read; a method missing here would refuse them all.
    from bmhw.train.methods import EPOCH_FIELDS, LSE_MAX_BASES, METHOD_EPOCHS, METHODS, epoch_fields

    assert set(METHOD_EPOCHS) == set(METHODS)
    assert set(EPOCH_FIELDS) <= set(MethodConfig.__dataclass_fields__)
    assert all(set(used) <= set(EPOCH_FIELDS) for used in METHOD_EPOCHS.values())
    assert epoch_fields("layerwise") == ("epochs_per_layer",)
    assert epoch_fields("lse-max", "kd") == ("finetune_epochs", "epochs")  # its base trains for --epochs first
    assert {base: set(epoch_fields("lse-max", base)) for base in LSE_MAX_BASES} == {
        "direct": {"finetune_epochs", "epochs"}, "kd": {"finetune_epochs", "epochs"},
        "lwkd": {"finetune_epochs", "epochs_per_layer", "max_epochs"}}
