"""Tests for bmhw.train.loop: augmentation, training on the synthetic dataset, evaluation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from bmhw.models import lenet
from bmhw.train.loop import TrainResult, evaluate, predict, random_shift, to_tensor, train_classifier


def shifted(image: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """``image`` (C x H x W) with its content moved down by dy and right by dx, zero filled."""
    out = torch.zeros_like(image)
    _, h, w = image.shape
    out[:, max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = \
        image[:, max(-dy, 0):h - max(dy, 0), max(-dx, 0):w - max(dx, 0)]
    return out


# --------------------------------------------------------------------------------------------
# random_shift


def test_to_tensor_scales_bytes():
    images = np.array([[[[0, 51, 255]]]], dtype=np.uint8)
    x = to_tensor(images)
    assert x.dtype == torch.float32 and x.shape == (1, 1, 1, 3)
    assert torch.allclose(x, torch.tensor([[[[0.0, 0.2, 1.0]]]]))


def test_shifted_helper():
    image = torch.zeros(1, 5, 5)
    image[0, 2, 2] = 1
    assert shifted(image, 1, -2)[0, 3, 0] == 1 and shifted(image, 1, -2).sum() == 1
    assert shifted(image, 3, 0).sum() == 0


def test_random_shift_zero_is_identity():
    x = torch.rand(4, 1, 8, 8)
    gen = torch.Generator().manual_seed(0)
    assert torch.equal(random_shift(x, 0, gen), x)


@pytest.mark.parametrize("max_shift", [1, 2, 3])
def test_random_shift_moves_content_by_at_most_max_shift(max_shift):
    torch.manual_seed(0)
    b, c, h, w = 600, 3, 12, 10
    # Content well inside a zero border, with one unique brightest pixel per image to locate it.
    x = torch.zeros(b, c, h, w)
    x[:, :, 3:9, 3:7] = torch.rand(b, c, 6, 4) * 0.5
    x[:, 0, 5, 4] = 1.0
    gen = torch.Generator().manual_seed(123)
    y = random_shift(x, max_shift, gen)
    assert y.shape == x.shape and y.dtype == x.dtype
    seen = set()
    for i in range(b):
        row, col = divmod(int(y[i, 0].argmax()), w)
        dy, dx = row - 5, col - 4
        assert abs(dy) <= max_shift and abs(dx) <= max_shift
        # Every channel moves by the same amount and nothing else changes.
        assert torch.equal(y[i], shifted(x[i], dy, dx)), (i, dy, dx)
        seen.add((dy, dx))
    # All (2 m + 1)^2 shifts occur, in both directions on both axes (seeded; 600 draws leave a chance
    # below 1e-3 that a fair generator misses one, so a failure means a biased or clipped range).
    assert seen == {(dy, dx) for dy in range(-max_shift, max_shift + 1) for dx in range(-max_shift, max_shift + 1)}


def test_random_shift_fills_with_zeros_and_drops_what_leaves():
    x = torch.ones(200, 1, 6, 6)
    y = random_shift(x, 2, torch.Generator().manual_seed(0))
    assert set(y.unique().tolist()) <= {0.0, 1.0}
    # For a shift (dy, dx) exactly (6 - |dy|) * (6 - |dx|) pixels keep a value.
    counts = y.sum((1, 2, 3))
    possible = {float((6 - a) * (6 - b)) for a in range(3) for b in range(3)}
    assert set(counts.tolist()) <= possible
    assert (counts < 36).any() and (counts == 36).any()


def test_random_shift_is_reproducible_with_the_generator():
    x = torch.rand(16, 1, 8, 8)
    a = random_shift(x, 2, torch.Generator().manual_seed(5))
    b = random_shift(x, 2, torch.Generator().manual_seed(5))
    c = random_shift(x, 2, torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)


# --------------------------------------------------------------------------------------------
# training


def mean_loss(model: nn.Module, images: np.ndarray, labels: np.ndarray) -> float:
    model.eval()
    with torch.no_grad():
        logits = model(to_tensor(images))
    return float(F.cross_entropy(logits, torch.from_numpy(labels)))


def fresh_lenet(neuron="classical", seed=0):
    torch.manual_seed(seed)
    return lenet(neuron)


def test_train_classifier_learns_the_synthetic_data(synth_arrays):
    images, labels = synth_arrays["train"]
    test_images, test_labels = synth_arrays["test"]
    model = fresh_lenet()
    before = mean_loss(model, images, labels)
    result = train_classifier(model, images, labels, epochs=2, batch_size=32, lr=1e-2, seed=0, quiet=True)
    assert isinstance(result, TrainResult)
    after = mean_loss(model, images, labels)
    assert before > 2.0  # about ln 10 for an untrained network
    assert after < 0.5 * before, (before, after)
    assert not model.training  # left in eval mode
    assert 0.0 <= result.train_accuracy <= 1.0 and result.train_loss > 0 and result.seconds > 0
    assert evaluate(model, test_images, test_labels) > 0.8


def test_train_classifier_is_deterministic(synth_arrays):
    images, labels = synth_arrays["train"]
    images, labels = images[:192], labels[:192]
    runs = []
    for _ in range(2):
        model = fresh_lenet(seed=0)
        result = train_classifier(model, images, labels, epochs=1, batch_size=32, lr=3e-3, seed=11, shift=2,
                                  quiet=True)
        runs.append((model.state_dict(), result))
    (a, ra), (b, rb) = runs
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert ra.train_loss == rb.train_loss and ra.train_accuracy == rb.train_accuracy
    # ... and the seed matters: another seed gives other weights from the same start.
    model = fresh_lenet(seed=0)
    train_classifier(model, images, labels, epochs=1, batch_size=32, lr=3e-3, seed=12, shift=2, quiet=True)
    assert not all(torch.equal(a[k], model.state_dict()[k]) for k in a)


def test_train_classifier_bm15_steps_and_stays_finite(synth_arrays):
    images, labels = synth_arrays["train"]
    model = fresh_lenet("bm15")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = train_classifier(model, images[:64], labels[:64], epochs=1, batch_size=32, lr=3e-3, quiet=True)
    after = model.state_dict()
    assert np.isfinite(result.train_loss)
    assert all(torch.isfinite(v).all() for v in after.values())
    assert not torch.equal(before["fc3.v"], after["fc3.v"])


def test_train_classifier_custom_loss_and_frozen_parameters(synth_arrays):
    images, labels = synth_arrays["train"]
    model = fresh_lenet()
    model.conv1.weight.requires_grad_(False)
    frozen = model.conv1.weight.detach().clone()
    calls = []

    def loss_fn(m, x, y):
        calls.append(len(x))
        logits = m(x)
        return F.cross_entropy(logits, y), logits

    result = train_classifier(model, images[:100], labels[:100], epochs=2, batch_size=40, quiet=True,
                              loss_fn=loss_fn)
    assert calls == [40, 40, 20] * 2  # every image once per epoch, last batch short
    assert torch.equal(model.conv1.weight, frozen)
    assert np.isfinite(result.train_loss)


def test_train_classifier_rejects_empty_data():
    with pytest.raises(ValueError):
        train_classifier(fresh_lenet(), np.zeros((0, 1, 28, 28), np.uint8), np.zeros(0, np.int64), quiet=True)


# --------------------------------------------------------------------------------------------
# evaluation


class PickBrightest(nn.Module):
    """Predicts the index of the brightest of the first 10 pixels of row 0."""

    def forward(self, x):
        return x[:, 0, 0, :10] * 10.0


def test_evaluate_matches_a_hand_count():
    n = 23
    rng = np.random.default_rng(0)
    predicted = rng.integers(0, 10, size=n)
    images = np.zeros((n, 1, 28, 28), dtype=np.uint8)
    images[np.arange(n), 0, 0, predicted] = 200
    labels = predicted.copy()
    wrong = [0, 3, 4, 10, 17, 22]
    labels[wrong] = (labels[wrong] + 1 + rng.integers(0, 9, size=len(wrong))) % 10
    model = PickBrightest()
    assert (predict(model, images, batch_size=5) == predicted).all()
    expected = (n - len(wrong)) / n
    for batch_size in (1, 5, 23, 500):
        assert evaluate(model, images, labels, batch_size=batch_size) == pytest.approx(expected, abs=1e-12)
    assert evaluate(model, images, predicted) == 1.0
    assert np.isnan(evaluate(model, images[:0], labels[:0]))


def test_predict_restores_training_mode():
    model = PickBrightest()
    model.train()
    predict(model, np.zeros((3, 1, 28, 28), np.uint8))
    assert model.training
    model.eval()
    predict(model, np.zeros((3, 1, 28, 28), np.uint8))
    assert not model.training


def test_evaluate_real_model_equals_manual_argmax(synth_arrays):
    images, labels = synth_arrays["test"]
    model = fresh_lenet().eval()
    with torch.no_grad():
        manual = (model(to_tensor(images)).argmax(1).numpy() == labels).sum() / len(labels)
    assert evaluate(model, images, labels, batch_size=100) == pytest.approx(manual)
