"""The fused C++ max-plus kernels (bmhw.nn.kernels, csrc/maxplus.cpp) against the chunked PyTorch reference
(bmhw.nn.maxplus.reference_maxplus): values, gradients (gradcheck in double), ties, awkward shapes, large
temperatures, the image-side logarithm of BMConv2d, and the fallback when the kernels cannot be built."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bmhw.nn import BMConv2d, kernels
from bmhw.nn.maxplus import maxplus, reference_maxplus


@pytest.fixture(scope="module", autouse=True)
def fused():
    # The kernels must build here (g++ is a dependency of the project's C-simulation too): no silent fallback.
    assert kernels.extension() is not None, kernels.status()


def pair(n, o, k, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    u = torch.randn(n, k, generator=g, dtype=dtype).requires_grad_(True)
    v = torch.randn(o, k, generator=g, dtype=dtype).requires_grad_(True)
    return u, v


SHAPES = [(1, 1, 1), (1, 5, 7), (3, 8, 8), (5, 17, 13), (37, 19, 29), (64, 33, 150), (9, 3, 401)]


@pytest.mark.parametrize("n, o, k", SHAPES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_hard_max_equals_the_reference_exactly(n, o, k, dtype):
    u, v = pair(n, o, k, dtype)
    y = maxplus(u, v)
    ref = reference_maxplus(u, v)
    assert torch.equal(y, ref)
    g = torch.randn_like(y)
    for got, want in zip(torch.autograd.grad(y, (u, v), g), torch.autograd.grad(ref, (u, v), g)):
        assert torch.allclose(got, want, rtol=0, atol=1e-6 if dtype == torch.float32 else 1e-12)


@pytest.mark.parametrize("n, o, k", SHAPES)
@pytest.mark.parametrize("alpha", [0.5, 4.0, 1e3, 1e6])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_lse_equals_the_reference(n, o, k, alpha, dtype):
    u, v = pair(n, o, k, dtype, seed=1)
    a = torch.tensor(alpha, dtype=dtype, requires_grad=True)
    y, ref = maxplus(u, v, "lse", a), reference_maxplus(u, v, "lse", a)
    tol = {"rtol": 1e-5, "atol": 1e-5} if dtype == torch.float32 else {"rtol": 1e-11, "atol": 1e-11}
    assert torch.isfinite(y).all() and torch.allclose(y, ref, **tol)
    # The softmax weights exp(a (t - y)) inherit y's rounding error times a: both implementations carry it.
    eps = torch.finfo(dtype).eps
    g = torch.randn_like(y)
    for got, want in zip(torch.autograd.grad(y, (u, v, a), g), torch.autograd.grad(ref, (u, v, a), g)):
        bound = tol["rtol"] * 10 + 16 * alpha * eps
        assert torch.allclose(got, want, rtol=bound, atol=bound), float((got - want).abs().max())


def test_gradcheck_in_double():
    u, v = pair(6, 5, 11, torch.float64, seed=2)
    assert torch.autograd.gradcheck(lambda a, b: maxplus(a, b), (u, v))
    alpha = torch.tensor(2.5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b, c: maxplus(a, b, "lse", c), (u, v, alpha))


def test_ties_go_to_the_first_index():
    # Integer-valued inputs: many equal sums. Every output's gradient lands on its smallest arg-max k.
    g = torch.Generator().manual_seed(3)
    u = torch.randint(0, 3, (40, 23), generator=g).float().requires_grad_(True)
    v = torch.randint(0, 3, (11, 23), generator=g).float().requires_grad_(True)
    y = maxplus(u, v)
    (grad_u,) = torch.autograd.grad(y.sum(), (u,))
    t = u.detach()[:, None, :] + v.detach()[None, :, :]
    first = (t == t.max(-1, keepdim=True).values).float().argmax(-1)  # first maximal k
    expected = torch.zeros_like(u).scatter_add_(1, first, torch.ones_like(y))
    assert torch.equal(grad_u, expected)
    assert torch.equal(y, reference_maxplus(u, v))


@pytest.mark.parametrize("reduce, alpha", [("max", None), ("lse", 3.0), ("smorph", 2.0), ("lmorph", 2.0)])
def test_conv_takes_the_log_on_the_image_with_the_same_result(reduce, alpha):
    torch.manual_seed(4)
    layer = BMConv2d(3, 5, 3, stride=2, padding=1, reduce=reduce, alpha=alpha).double()
    x = torch.rand(2, 3, 7, 7, dtype=torch.float64, requires_grad=True)
    with torch.no_grad():
        x[0, 0, :3] = 0  # zeros inside the image as well as in the padding
    y = layer(x)
    ref = layer.neuron(layer.patches(x)).reshape(2, 4, 4, 5).permute(0, 3, 1, 2)
    assert torch.allclose(y, ref, rtol=1e-12, atol=1e-12)
    g = torch.randn_like(y)
    for got, want in zip(torch.autograd.grad(y, (x, layer.v), g), torch.autograd.grad(ref, (x, layer.v), g)):
        assert torch.allclose(got, want, rtol=1e-10, atol=1e-10)


def test_without_kernels_the_layers_fall_back_with_one_warning(monkeypatch):
    monkeypatch.setattr(kernels, "_state", {"tried": False, "module": None, "reason": None})

    def no_compiler():
        raise RuntimeError("error: no C++ compiler found")

    monkeypatch.setattr(kernels, "_build", no_compiler)
    u, v = pair(7, 4, 9, torch.float32)
    with pytest.warns(RuntimeWarning, match="could not be built.*no C\\+\\+ compiler"):
        y = maxplus(u, v)
    assert torch.equal(y, reference_maxplus(u, v))
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the warning comes once only
        maxplus(u, v, "lse", 2.0)
    assert kernels.status().startswith("PyTorch fallback (build failed: error: no C++ compiler found")


def test_the_environment_can_turn_the_kernels_off():
    code = "from bmhw.nn import kernels; print(kernels.status())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**__import__("os").environ, "BMHW_KERNELS": "0"}, check=True).stdout
    assert out.strip() == "PyTorch fallback (turned off by BMHW_KERNELS=0)"


# --- the build cache (nothing is compiled here) ----------------------------------------------------------------


def key(**changes):
    values = {"source": b"float f();", "cflags": ("-O3", "-march=native"), "ldflags": ("-fopenmp",),
              "torch_version": "2.13.0+cpu", "torch_dir": "/venv/a/torch", "python": (3, 11)}
    return kernels.build_key(**{**values, **changes})


def test_the_build_folder_is_keyed_by_source_flags_and_pytorch():
    base = key()
    assert base.startswith("torch2.13.0_cpu-py311-") and "/" not in base
    assert key() == base
    others = [key(source=b"float g();"), key(cflags=("-O2", "-march=native")), key(ldflags=()),
              key(torch_dir="/venv/b/torch"), key(torch_version="2.14.0"), key(python=(3, 12)),
              # A flag moved from compiling to linking is another command.
              key(cflags=("-O3", "-march=native", "-fopenmp"), ldflags=())]
    assert len({base, *others}) == 1 + len(others)


def test_installs_with_other_sources_get_other_folders(tmp_path, monkeypatch):
    monkeypatch.setenv("BMHW_CACHE_DIR", str(tmp_path))
    mine = kernels.build_dir()
    assert mine.parent == tmp_path / "kernels"
    other = tmp_path / "maxplus.cpp"
    other.write_bytes(kernels.SOURCE.read_bytes() + b"\n// changed\n")
    monkeypatch.setattr(kernels, "SOURCE", other)
    assert kernels.build_dir() != mine and kernels.build_dir().parent == mine.parent


def test_a_compile_is_announced_and_a_cached_build_is_not(tmp_path, monkeypatch, capsys):
    import torch.utils.cpp_extension as cpp_extension

    monkeypatch.setenv("BMHW_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("PATH", __import__("os").environ["PATH"])  # _build prepends a folder
    calls = []

    def fake_load(name, sources, build_directory, **options):
        calls.append((name, sources, build_directory))
        (Path(build_directory) / f"{name}.so").write_bytes(b"")  # what a compile leaves
        return "module"

    monkeypatch.setattr(cpp_extension, "load", fake_load)
    assert kernels._build() == "module"
    notice = capsys.readouterr().err
    assert notice.startswith("bmhw: compiling the fused max-plus kernels (once per install, about a minute)")
    assert notice.count("\n") == 1
    assert kernels._build() == "module"
    assert capsys.readouterr().err == ""  # built already: loaded without a word
    # Both calls compile the copy of the source inside the build folder (one path for every install).
    folder = kernels.build_dir()
    assert [c[1] for c in calls] == [[str(folder / "maxplus.cpp")]] * 2 and calls[0][2] == str(folder)
    assert (folder / "maxplus.cpp").read_bytes() == kernels.SOURCE.read_bytes()
