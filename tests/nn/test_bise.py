"""BiSE layers (bmhw.nn.bise): formulas, exact binarisability, projection, regularisation, gradients."""

import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from bmhw.errors import BmhwError
from bmhw.models import create
from bmhw.nn import BiSE, BiSELinear
from bmhw.nn.bise_math import binarizable, binary_forward, is_dilation, is_erosion, project
from bmhw.nn.bise_train import activable_loss, binarize_model, regularization


def morph(x, se, op):
    """Binary dilation (OR) / erosion (AND) of a 2-D image by a 3x3 structuring element centred at (1, 1),
    by explicit loops; outside the image reads 0 (so an erosion whose S reaches outside is 0 there)."""
    h, w = x.shape
    out = np.zeros_like(x)
    for i, j in itertools.product(range(h), range(w)):
        vals = [bool(x[i + di - 1, j + dj - 1]) if 0 <= i + di - 1 < h and 0 <= j + dj - 1 < w else False
                for di, dj in itertools.product(range(3), range(3)) if se[di, dj]]
        out[i, j] = any(vals) if op == "dilation" else all(vals)
    return out


def set_params(layer, w, b, p=1.0):
    with torch.no_grad():
        w = torch.as_tensor(w, dtype=torch.float32).reshape(layer.weight.shape)
        layer.weight.copy_(w)
        layer.bias.copy_(torch.as_tensor(b, dtype=torch.float32))
        layer.log_scale.fill_(float(np.log(p)))


def test_linear_formula():
    torch.manual_seed(0)
    layer = BiSELinear(7, 3)
    x = torch.rand(5, 7)
    w = layer.weight
    p = layer.log_scale.detach().exp()
    y = layer(x).detach()
    for n in range(5):
        for o in range(3):
            pre = sum(float(w[o, k].detach()) * float(x[n, k]) for k in range(7)) - float(layer.bias[o].detach())
            assert abs(float(y[n, o]) - 1 / (1 + np.exp(-float(p) * pre))) < 1e-6
    assert (w < 0).any() and (w > 0).any() and (y >= 0).all() and (y <= 1).all()  # signed weights


def test_conv_formula():
    torch.manual_seed(1)
    layer = BiSE(2, 3, 3, padding=1)
    x = torch.rand(1, 2, 5, 5)
    y = layer(x).detach()
    w = layer.weight.detach()
    xp = F.pad(x, (1, 1, 1, 1))
    for o, i, j in itertools.product(range(3), range(5), range(5)):
        pre = float((w[o] * xp[0, :, i:i + 3, j:j + 3]).sum() - layer.bias[o].detach())
        assert abs(float(y[0, o, i, j]) - float(torch.sigmoid(layer.log_scale.detach().exp() * pre))) < 1e-5


def brute(w, b, s, op):
    """Exact by enumeration: is (W . x >= b) equal to OR / AND over S for every binary x?"""
    k = len(w)
    for bits in itertools.product((0, 1), repeat=k):
        x = np.array(bits)
        got = float(np.dot(w, x)) >= b
        want = x[s].any() if op == "dilation" else x[s].all()
        if got != want:
            return False
    return True


def test_conditions_match_enumeration():
    rng = np.random.default_rng(0)
    agree = {True: 0, False: 0}
    for _ in range(400):
        k = int(rng.integers(2, 6))
        w = rng.choice([0.25, 0.5, 1.0, 1.5, 2.0, 3.0], size=k)
        b = float(rng.choice([0.25, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0]))
        for bits in itertools.product((False, True), repeat=k):
            s = np.array(bits)
            if not s.any():
                continue
            for op, cond in (("dilation", is_dilation), ("erosion", is_erosion)):
                c = cond(w, b, s)
                assert c == brute(w, b, s, op), (w, b, s, op)
                agree[c] += 1
    assert agree[True] > 50 and agree[False] > 50  # both outcomes exercised


def test_boundary_conventions():
    # dilation by {0}: W_0 = b exactly is allowed (>=), sum outside = b is not (strict)
    assert is_dilation([2.0, 1.0], 2.0, [True, False])
    assert not is_dilation([2.0, 2.0], 2.0, [True, False])
    # erosion by {0, 1}: b = sum_S W allowed, b = sum W - min_S W not
    assert is_erosion([1.0, 1.0, 0.5], 2.0, [True, True, False])
    assert not is_erosion([1.0, 1.0, 0.5], 1.5, [True, True, False])


def known_conv():
    """A 3-output 3x3 BiSE on one channel: dilation by a cross, erosion by a cross, erosion by a 2x2 block."""
    layer = BiSE(1, 3, 3, padding=1)
    cross = np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]], dtype=bool)
    block = np.array([[1, 1, 0], [1, 1, 0], [0, 0, 0]], dtype=bool)
    w = np.full((3, 1, 3, 3), 0.01)
    w[0, 0][cross] = 1.0
    w[1, 0][cross] = 1.0
    w[2, 0][block] = 2.0
    set_params(layer, w, [0.6, 4.5, 7.5], p=5.0)
    return layer, [cross, cross, block]


def test_known_operators_binarizable_and_forward():
    layer, ses = known_conv()
    result = binarizable(layer)
    assert [r[0] for r in result] == ["dilation", "erosion", "erosion"]
    for r, se in zip(result, ses):
        assert (r[1] == se.reshape(-1)).all()
    layer.binarize()
    rng = np.random.default_rng(3)
    x = (rng.random((4, 1, 9, 9)) < 0.5)
    y = layer(torch.from_numpy(x.astype(np.float32))).numpy().astype(bool)
    for n in range(4):
        np.testing.assert_array_equal(y[n, 0], morph(x[n, 0], ses[0], "dilation"))
        np.testing.assert_array_equal(y[n, 1], morph(x[n, 0], ses[1], "erosion"))
        # block: output (i, j) = AND of x[i-1:i+1, j-1:j+1]; explicit loops with zero padding
        xp = np.pad(x[n, 0], 1)
        want = np.array([[xp[i:i + 2, j:j + 2].all() for j in range(9)] for i in range(9)])
        np.testing.assert_array_equal(y[n, 2], want)
    # the float layer thresholded at 1/2 agrees with the binarised forward on binary inputs
    layer.unbinarize()
    yf = layer(torch.from_numpy(x.astype(np.float32))).detach().numpy() >= 0.5
    np.testing.assert_array_equal(yf, y)


def test_linear_binary_forward_matches_reference():
    rng = np.random.default_rng(4)
    layer = BiSELinear(12, 6)
    with torch.no_grad():
        layer.weight.normal_(0, 2, generator=torch.Generator().manual_seed(5))
        layer.bias.uniform_(0, 6, generator=torch.Generator().manual_seed(6))
    layer.binarize()
    x = (rng.random((50, 12)) < 0.4).astype(np.float32)
    got = layer(torch.from_numpy(x)).numpy().astype(np.int64)
    se, neg = layer.se.numpy(), layer.neg.numpy()
    assert neg.any() and (~neg).any()  # signed weights: both polarities occur
    np.testing.assert_array_equal(got, binary_forward(x, layer.op.numpy(), se, neg))
    counts = layer.scores(torch.from_numpy(x)).numpy()
    literals = np.where(neg[None], 1 - x[:, None, :], x[:, None, :])  # N x O x K
    np.testing.assert_array_equal(counts, (literals * se[None]).sum(2))


def test_projection_of_near_binarizable():
    # output 0: a dilation by {0, 1} whose bias is slightly too low for the outside weights; output 1: an
    # erosion by {0, 1, 2} with its bias slightly above sum_S W
    w = np.array([[3.0, 2.9, 1.0, 1.2, 0.9], [2.0, 2.1, 1.9, 0.5, 0.6]])
    b = np.array([2.95, 6.1])
    assert binarizable(w, b) == [None, None]
    op, se, neg = project(w, b)
    assert not neg.any()
    assert op.tolist() == [0, 1]
    assert se.tolist() == [[True, True, False, False, False], [True, True, True, False, False]]


def test_projection_keeps_exact_operators():
    layer, ses = known_conv()
    op, se, neg = project(layer)
    assert not neg.any()
    assert op.tolist() == [0, 1, 1]
    for s, want in zip(se, ses):
        assert (s == want.reshape(-1)).all()


def test_regularisation_zero_iff_activable():
    layer, _ = known_conv()
    assert float(activable_loss(layer).detach()) < 1e-6
    lin = BiSELinear(4, 2)
    set_params(lin, [[1.0, 1.0, 1.0, 1.0], [1.0, 1.0, 1.0, 1.0]], [2.5, 1.5])  # majority votes: not morphological
    assert binarizable(lin) == [None, None]
    assert float(activable_loss(lin).detach()) > 0.05


def test_gradients_flow():
    torch.manual_seed(0)
    model = create("lenet", "bise")
    x = torch.rand(3, 1, 28, 28)
    loss = F.cross_entropy(model(x), torch.tensor([0, 1, 2])) + 0.1 * regularization(model)
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    assert any(float(p.grad.abs().sum()) > 0 for n, p in model.named_parameters() if n.startswith("conv1"))


def test_lenet_bise_binarised_forward():
    torch.manual_seed(0)
    model = create("lenet", "bise")
    exact = binarize_model(model)
    assert set(exact) == {"conv1", "conv2", "fc1", "fc2", "fc3"}
    x = torch.rand(2, 1, 28, 28)
    s = model(x)
    assert s.shape == (2, 10) and (s == s.round()).all() and (s >= 0).all()


def test_bise_refuses_no_bias_and_resnet():
    with pytest.raises(BmhwError):
        BiSELinear(3, 2, bias=False)
    with pytest.raises(BmhwError):
        create("resnet22", "bise")


def test_checkpoint_round_trip(tmp_path):
    from bmhw.models.checkpoint import load_checkpoint, save_checkpoint
    from bmhw.models import describe

    torch.manual_seed(2)
    model = create("lenet", "bise")
    assert all(s["neuron"] == "bise" for s in describe(model)["layers"].values())
    path = tmp_path / "bise.pt"
    save_checkpoint(path, model, method="test")
    back = load_checkpoint(path).model
    x = torch.rand(2, 1, 28, 28)
    torch.testing.assert_close(back(x), model(x), rtol=0, atol=0)
    binarize_model(model)
    binarize_model(back)
    torch.testing.assert_close(back(x), model(x), rtol=0, atol=0)


def test_signed_weights_are_literals():
    """A negative weight is a positive one on the complemented input: on every binary input, the float
    neuron thresholded at 1/2 equals the projected operator over literals whenever it is exactly binarisable,
    and the folded parameters satisfy the exact conditions."""
    from bmhw.nn.bise_math import fold

    rng = np.random.default_rng(11)
    xs = np.array(list(itertools.product([0, 1], repeat=5)), dtype=np.float32)
    found = 0
    for _ in range(400):
        w = rng.normal(0, 1, size=(1, 5))
        b = rng.normal(0, 1.5, size=1)
        result = binarizable(w, b)[0]
        if result is None:
            continue
        found += 1
        op, se, neg = project(w, b)
        a, bb, _ = fold(w, b)
        check = is_dilation if op[0] == 0 else is_erosion
        assert check(a[0], bb[0], se[0])
        thresholded = (xs @ w[0] - b[0]) >= 0
        np.testing.assert_array_equal(binary_forward(xs, op, se, neg)[:, 0].astype(bool), thresholded)
    assert found > 20


def test_project_tensor_matches_search():
    """The vectorised projection equals the explicit search: exact operator if any, else the argmin of the
    activable distances (smaller set, dilation first)."""
    from bmhw.nn.bise_math import activable_distances, fold

    rng = np.random.default_rng(12)
    w = rng.normal(0, 1, size=(40, 9))
    b = rng.normal(0, 2, size=40)
    w[:10] = np.abs(w[:10]) * np.sign(w[:10]).clip(0, None) + 0.0  # some non-negative rows
    op, se, neg = project(w, b)
    a, bb, ng = fold(w, b)
    np.testing.assert_array_equal(neg, ng)
    d = activable_distances(torch.from_numpy(a), torch.from_numpy(bb)).numpy()
    exact = binarizable(w, b)
    for o in range(40):
        if exact[o] is not None:
            assert op[o] == ("dilation", "erosion").index(exact[o][0]) and (se[o] == exact[o][1]).all()
        else:
            n = int(se[o].sum())
            assert np.isclose(d[o, op[o], n - 1], d[o].min())
            assert (a[o][se[o]].min() >= a[o][~se[o]].max()) if n < 9 else True  # a top set


def test_hard_mode_forwards_the_projection():
    """Straight-through mode: the forward value is the binarised network's, the gradient reaches the weights."""
    from bmhw.nn.bise_train import set_hard

    torch.manual_seed(3)
    model = create("lenet", "bise")
    x = torch.rand(4, 1, 28, 28)
    set_hard(model, True)
    hard = model(x)
    F.cross_entropy(hard, torch.tensor([0, 1, 2, 3])).backward()
    assert all(p.grad is not None for p in model.parameters())
    assert float(model.fc3.bias.grad.abs().sum()) > 0 and float(model.conv1.weight.grad.abs().sum()) > 0
    set_hard(model, False)
    binarize_model(model)
    with torch.no_grad():
        torch.testing.assert_close(hard.detach(), model(x), rtol=0, atol=0)


def test_data_project_recovers_operators_and_canonical_parameters():
    """On an exactly binarisable layer with signed weights, the data-driven projection finds operators that
    agree with the thresholded float neuron on every sample; set_operators writes them back as canonical
    exact parameters that project() returns unchanged."""
    from bmhw.nn.bise_train import data_project, set_operators

    torch.manual_seed(4)
    lin = BiSELinear(6, 3)
    # output 0: x0 OR NOT x2; output 1: x1 AND NOT x3 AND x4; output 2: NOT x5
    w = torch.tensor([[2.0, 0.1, -2.0, 0.0, 0.05, 0.0], [0.1, 1.0, 0.0, -1.0, 1.0, 0.05],
                      [0.0, 0.0, 0.0, 0.0, 0.0, -1.5]])
    b = torch.tensor([1.0 - 2.0, 2.5 - 1.0, 0.5 - 1.5])
    with torch.no_grad():
        lin.weight.copy_(w)
        lin.bias.copy_(b)
    x = torch.from_numpy(np.array(list(itertools.product([0, 1], repeat=6)), dtype=np.float32))
    want = ((x @ w.T - b) >= 0).numpy()
    op, se, neg = data_project(lin, x)
    got = binary_forward(x.numpy(), op.numpy(), se.numpy(), neg.numpy()).astype(bool)
    np.testing.assert_array_equal(got, want)
    assert se.sum(1).tolist() == [2, 3, 1]
    set_operators(lin, op, se, neg)
    op2, se2, neg2 = project(lin)
    np.testing.assert_array_equal(op2, op.numpy())
    np.testing.assert_array_equal(se2, se.numpy())
    np.testing.assert_array_equal(neg2 & se2, (neg & se).numpy())
    with torch.no_grad():
        np.testing.assert_array_equal(lin(x).numpy() >= 0.5, want)  # the float layer agrees too


def test_cli_train_refit_widths_quantize_eval(tmp_path, synth_mnist):
    """bmhw train --neuron bise --widths --bise-refit, then bmhw eval of the checkpoint (float and binarised)
    and of its .bmq: the golden model's accuracy equals the binarised PyTorch one."""
    import contextlib
    import io
    import re

    from bmhw.models.checkpoint import load_checkpoint
    from bmhw.cli import main

    def run(argv):
        out = io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
            assert main([str(a) for a in argv]) == 0
        return out.getvalue()

    ckpt, bmq = tmp_path / "b.pt", tmp_path / "b.bmq"
    out = run(["train", "--model", "lenet", "--neuron", "bise", "--data", synth_mnist, "--epochs", "1",
               "--lr", "0.01", "--bise-refit", "1", "--widths", "4,6,12,8", "--quiet", "-o", ckpt])
    assert "binarised test accuracy" in " ".join(out.split())
    model = load_checkpoint(ckpt).model
    assert model.arch_args["widths"] == [4, 6, 12, 8]
    assert all(r is not None for m in model.weight_layers().values() for r in binarizable(m))  # refit ran
    evaluated = run(["eval", ckpt, "--data", synth_mnist])
    binarised = float(re.search(r"binarised accuracy: ([0-9.]+)%", evaluated).group(1))
    run(["quantize", ckpt, "-o", bmq])
    golden_acc = float(re.search(r"accuracy: ([0-9.]+)%", run(["eval", bmq, "--data", synth_mnist])).group(1))
    assert golden_acc == binarised
