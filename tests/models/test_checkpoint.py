"""Tests for bmhw.models.checkpoint: round trips, atomic saving, and one-line errors for every bad file."""

from __future__ import annotations

import os
import pickle
import zipfile

import numpy as np
import pytest
import torch

from bmhw import __version__
from bmhw.models.checkpoint import FORMAT, VERSION, load_checkpoint, save_checkpoint
from bmhw.errors import BmhwError
from bmhw.models import describe, lenet, resnet22


def make_model(neuron="classical", seed=0, **kwargs):
    torch.manual_seed(seed)
    return lenet(neuron, **kwargs).eval()


def load_error(path) -> str:
    """Load ``path``, expect a BmhwError, and return its (one-line) message."""
    with pytest.raises(BmhwError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert message.strip(), "empty error message"
    assert "\n" not in message and "\r" not in message, f"multi-line message: {message!r}"
    return message


def leftovers(folder, keep) -> list[str]:
    """Files in ``folder`` other than ``keep`` (e.g. temporary files a save left behind)."""
    return sorted(set(os.listdir(folder)) - set(keep))


class RunsCode:
    """Unpickling this calls os.system, which would create ``marker``."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch '{self.marker}'",))


# --------------------------------------------------------------------------------------------
# round trips


@pytest.mark.parametrize("neuron,kwargs", [
    ("classical", {}),
    ("bm4", {}),
    ("bm15", {}),
    ("bm15", {"reduce": "lse", "alpha": 3.0, "learn_alpha": True}),
    ("classical", {"layers": {"conv1": {"neuron": "bm15", "reduce": "lse", "alpha": 4.0}}}),
])
def test_round_trip_keeps_outputs_config_and_metadata(tmp_path, neuron, kwargs):
    model = make_model(neuron, **kwargs)
    path = save_checkpoint(tmp_path / "m.pt", model, method="direct", accuracy=0.875, seed=7, note=None)
    assert path == tmp_path / "m.pt" and path.is_file()
    ckpt = load_checkpoint(path)
    assert ckpt.config == describe(model)
    assert ckpt.metadata["bmhw_version"] == __version__
    assert ckpt.metadata["method"] == "direct"
    assert ckpt.metadata["accuracy"] == 0.875 and ckpt.metadata["seed"] == 7
    assert "note" not in ckpt.metadata  # None values are left out
    assert type(ckpt.model) is type(model) and not ckpt.model.training
    x = torch.rand(3, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(ckpt.model(x), model(x))
    sd_a, sd_b = model.state_dict(), ckpt.model.state_dict()
    assert sd_a.keys() == sd_b.keys() and all(torch.equal(sd_a[k], sd_b[k]) for k in sd_a)
    assert leftovers(tmp_path, ["m.pt"]) == []


def test_round_trip_resnet22_with_batchnorm_statistics(tmp_path):
    torch.manual_seed(0)
    model = resnet22("classical", widths=(4, 8, 16))
    model.train()
    with torch.no_grad():
        model(torch.rand(8, 3, 32, 32))  # update the running statistics
    model.eval()
    ckpt = load_checkpoint(save_checkpoint(tmp_path / "r.pt", model))
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(ckpt.model(x), model(x))
    assert ckpt.config["args"]["widths"] == [4, 8, 16]


def test_file_layout_is_plain_and_safe_to_load(tmp_path):
    model = make_model("bm15")
    path = save_checkpoint(tmp_path / "m.pt", model, accuracy=0.5)
    data = torch.load(path, map_location="cpu", weights_only=True)  # must not need unsafe loading
    assert data["format"] == FORMAT and data["version"] == VERSION
    assert set(data) == {"format", "version", "config", "state_dict", "metadata"}
    assert all(isinstance(v, torch.Tensor) for v in data["state_dict"].values())
    assert data["metadata"]["bmhw_version"] == __version__


def test_saved_tensors_are_detached_copies(tmp_path):
    model = make_model()
    path = save_checkpoint(tmp_path / "m.pt", model)
    before = load_checkpoint(path).model.conv1.weight.clone()
    with torch.no_grad():
        model.conv1.weight.add_(1.0)  # changing the live model afterwards must not matter
    assert torch.equal(load_checkpoint(path).model.conv1.weight, before)


def test_save_creates_parent_folders_and_overwrites_atomically(tmp_path):
    target = tmp_path / "deep" / "er" / "m.pt"
    save_checkpoint(target, make_model(seed=0), tag="first")
    save_checkpoint(target, make_model(seed=1), tag="second")
    ckpt = load_checkpoint(target)
    assert ckpt.metadata["tag"] == "second"
    assert torch.equal(ckpt.model.fc3.weight, make_model(seed=1).fc3.weight)
    assert leftovers(target.parent, ["m.pt"]) == []


def test_failed_save_leaves_old_file_and_no_temp_files(tmp_path, monkeypatch):
    target = tmp_path / "m.pt"
    save_checkpoint(target, make_model(seed=0), tag="old")
    original = target.read_bytes()

    def broken_save(obj, f, *args, **kwargs):
        with open(f, "wb") as out:
            out.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(BmhwError, match="cannot write checkpoint"):
        save_checkpoint(target, make_model(seed=1), tag="new")
    monkeypatch.undo()
    assert target.read_bytes() == original
    assert load_checkpoint(target).metadata["tag"] == "old"
    assert leftovers(tmp_path, ["m.pt"]) == []
    # And a failed first save leaves nothing at all.
    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(BmhwError, match="cannot write checkpoint"):
        save_checkpoint(tmp_path / "new.pt", make_model())
    assert leftovers(tmp_path, ["m.pt"]) == []


# --------------------------------------------------------------------------------------------
# bad files: each is a BmhwError with a one-line message


def test_missing_file(tmp_path):
    message = load_error(tmp_path / "nope.pt")
    assert "nope.pt" in message and "not found" in message


def random_bytes(seed: int, size: int = 4096) -> bytes:
    return np.random.default_rng(seed).bytes(size)


@pytest.mark.parametrize("seed", range(8))
def test_random_bytes(tmp_path, seed):
    # Fixed seeds, so the test is repeatable (seed 17, which once gave a traceback, is checked in
    # test_garbage_that_confuses_the_unpickler below).
    path = tmp_path / "random.pt"
    path.write_bytes(random_bytes(seed))
    assert "random.pt" in load_error(path)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.pt"
    path.write_bytes(b"")
    assert "empty.pt" in load_error(path)


@pytest.mark.parametrize("fraction", [0.5, 0.1, 0.9])
def test_truncated_checkpoint(tmp_path, fraction):
    good = save_checkpoint(tmp_path / "good.pt", make_model("bm15")).read_bytes()
    path = tmp_path / "cut.pt"
    path.write_bytes(good[: int(len(good) * fraction)])
    assert "cut.pt" in load_error(path)


def test_zip_file_of_something_else(tmp_path):
    other_zip = tmp_path / "other.pt"
    with zipfile.ZipFile(other_zip, "w") as z:
        z.writestr("hello.txt", "hi")
    load_error(other_zip)


@pytest.mark.parametrize("how", ["torch.save", "torch.save legacy", "pickle protocol 2", "pickle protocol 0",
                                 "inside a checkpoint"])
def test_pickle_that_carries_code_is_not_executed(tmp_path, how):
    marker = tmp_path / "MARKER"
    payload = RunsCode(marker)
    path = tmp_path / "evil.pt"
    if how == "torch.save":
        torch.save({"state": payload}, path)
    elif how == "torch.save legacy":
        torch.save({"state": payload}, path, _use_new_zipfile_serialization=False)
    elif how == "pickle protocol 2":
        path.write_bytes(pickle.dumps(payload, protocol=2))
    elif how == "pickle protocol 0":
        path.write_bytes(pickle.dumps(payload, protocol=0))
    else:
        good = save_checkpoint(tmp_path / "good.pt", make_model())
        data = torch.load(good, weights_only=True)
        data["metadata"]["surprise"] = payload
        torch.save(data, path)
    assert not marker.exists(), "the test itself ran the payload"
    message = load_error(path)
    assert "evil.pt" in message
    assert not marker.exists(), "loading a checkpoint executed code from it"


def test_bare_state_dict(tmp_path):
    path = tmp_path / "weights.pt"
    torch.save(make_model().state_dict(), path)
    message = load_error(path)
    assert "bare state dict" in message


@pytest.mark.parametrize("payload", [[1, 2, 3], {"format": "something-else", "version": 1}, {}, torch.zeros(3)])
def test_other_pytorch_files(tmp_path, payload):
    path = tmp_path / "other.pt"
    torch.save(payload, path)
    assert "not a bmhw checkpoint" in load_error(path)


def checkpoint_data(tmp_path, neuron="classical"):
    path = save_checkpoint(tmp_path / "good.pt", make_model(neuron))
    return torch.load(path, weights_only=True)


@pytest.mark.parametrize("version", [VERSION + 1, 99, 0, -1, None, "1", 1.0])
def test_wrong_format_version(tmp_path, version):
    data = checkpoint_data(tmp_path)
    if version is None:
        del data["version"]
    else:
        data["version"] = version
    path = tmp_path / "versioned.pt"
    torch.save(data, path)
    message = load_error(path)
    assert "version" in message


def test_newer_version_asks_for_upgrade(tmp_path):
    data = checkpoint_data(tmp_path)
    data["version"] = VERSION + 1
    torch.save(data, tmp_path / "future.pt")
    message = load_error(tmp_path / "future.pt")
    assert str(VERSION + 1) in message and "upgrade" in message


@pytest.mark.parametrize("damage", ["wrong shape", "missing key", "extra key", "other neuron", "other widths"])
def test_state_dict_does_not_fit_config(tmp_path, damage):
    data = checkpoint_data(tmp_path, "bm15")
    state, config = data["state_dict"], data["config"]
    if damage == "wrong shape":
        state["fc3.v"] = torch.zeros(3, 3)
    elif damage == "missing key":
        del state["conv2.v"]
    elif damage == "extra key":
        state["fc4.weight"] = torch.zeros(2, 2)
    elif damage == "other neuron":
        config["layers"]["fc1"] = {"neuron": "classical"}
    else:
        config["args"]["widths"] = [8, 16, 120, 84]
    path = tmp_path / "damaged.pt"
    torch.save(data, path)
    assert "damaged.pt" in load_error(path)


@pytest.mark.parametrize("damage", ["no config", "no state dict", "config not a dict", "unknown arch",
                                    "bad layer spec", "unknown layer"])
def test_damaged_config(tmp_path, damage):
    data = checkpoint_data(tmp_path)
    if damage == "no config":
        del data["config"]
    elif damage == "no state dict":
        del data["state_dict"]
    elif damage == "config not a dict":
        data["config"] = "lenet"
    elif damage == "unknown arch":
        data["config"]["arch"] = "vgg16"
    elif damage == "bad layer spec":
        data["config"]["layers"]["conv1"] = {"neuron": "bm7"}
    else:
        data["config"]["layers"]["conv9"] = {"neuron": "classical"}
    path = tmp_path / "damaged.pt"
    torch.save(data, path)
    load_error(path)


# --------------------------------------------------------------------------------------------
# regressions: each of these once failed


def test_refused_pickle_message_does_not_advise_unsafe_loading(tmp_path):
    # torch's UnpicklingError starts with generic text that suggests weights_only=False; it was quoted.
    path = tmp_path / "evil.pt"
    torch.save({"state": RunsCode(tmp_path / "MARKER")}, path)
    message = load_error(path)
    assert "weights_only" not in message
    assert "system" in message  # names what it refused (posix.system / nt.system)
    random = tmp_path / "random.pt"
    random.write_bytes(random_bytes(0))
    assert "weights_only" not in load_error(random)


# torch's weights-only unpickler raises IndexError / struct.error on these; they escaped as tracebacks.
@pytest.mark.parametrize("content", [b"these are not weights\n", b"J", b"K", b"M\x01", "random seed 17"])
def test_garbage_that_confuses_the_unpickler(tmp_path, content):
    path = tmp_path / "garbage.pt"
    path.write_bytes(random_bytes(17) if content == "random seed 17" else content)
    assert "garbage.pt" in load_error(path)


def test_refitted_resnet_round_trips(tmp_path):
    # The 1.5-branch re-fit gives bias-free ResNet convolutions a bias; the config must record it.
    from bmhw.train.calibrate import refit_bm15
    from bmhw.nn import to_bm

    torch.manual_seed(0)
    teacher = resnet22("classical", widths=(4, 8, 16), blocks=1).eval()
    student = to_bm(teacher, branches=1.5)
    refit_bm15(student, teacher, torch.rand(4, 3, 32, 32))
    ckpt = load_checkpoint(save_checkpoint(tmp_path / "r.pt", student))
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(ckpt.model(x), student(x))


def test_saved_checkpoint_has_ordinary_permissions(tmp_path):
    # mkstemp makes 0600 files: a checkpoint must be readable like any file written with open().
    path = save_checkpoint(tmp_path / "perm.pt", make_model(seed=0))
    reference = tmp_path / "reference"
    reference.write_bytes(b"")
    assert (path.stat().st_mode & 0o777) == (reference.stat().st_mode & 0o777)


# --------------------------------------------------------------------------------------------
# nothing bad gets in: sizes bounded before a model is built, every tensor finite


@pytest.mark.parametrize("arch, field, value, message", [
    ("lenet", "widths", [6, 16, 5000, 84], "args.widths[2] = 5000 is outside the allowed range 1..4096"),
    ("lenet", "widths", [0, 16, 120, 84], "args.widths[0] = 0 is outside the allowed range 1..4096"),
    ("lenet", "widths", [6, 16, 120.0, 84], "args.widths[2] = 120.0 is outside the allowed range 1..4096"),
    ("lenet", "widths", [6, 16, 120, 84, 7, 7, 7, 7, 7], "args.widths = [6, 16, 120, 84, 7, 7, 7, 7, 7] is not a list "
     "of 1..8 widths"),
    ("lenet", "widths", "6,16,120,84", "args.widths = '6,16,120,84' is not a list of 1..8 widths"),
    ("lenet", "in_channels", 100_000, "args.in_channels = 100000 is outside the allowed range 1..256"),
    ("lenet", "input_size", 8, "args.input_size = 8 is outside the allowed range 16..1024"),
    ("lenet", "input_size", 5000, "args.input_size = 5000 is outside the allowed range 16..1024"),
    ("lenet", "num_classes", True, "args.num_classes = True is outside the allowed range 1..10000"),
    ("lenet", "num_classes", -1, "args.num_classes = -1 is outside the allowed range 1..10000"),
    ("resnet22", "blocks", 1000, "args.blocks = 1000 is outside the allowed range 1..16"),
    ("resnet22", "widths", [16, 64, 8192], "args.widths[2] = 8192 is outside the allowed range 1..4096"),
])
def test_config_sizes_out_of_bounds(tmp_path, arch, field, value, message):
    model = make_model() if arch == "lenet" else resnet22("classical", widths=(4, 8, 16), blocks=1)
    data = torch.load(save_checkpoint(tmp_path / "good.pt", model), weights_only=True)
    data["config"]["args"][field] = value
    path = tmp_path / "sized.pt"
    torch.save(data, path)
    assert load_error(path) == f"{path}: model config field {message}" + (
        " (an integer)" if "allowed range" in message else "")


def test_config_of_too_many_weights_is_refused_before_building(tmp_path):
    # Every size in range, but 4096-wide layers on 1024 x 1024 images: about 10^12 weights, 4 TB.
    data = torch.load(save_checkpoint(tmp_path / "good.pt", make_model()), weights_only=True)
    data["config"]["args"].update(widths=[4096] * 4, input_size=1024)
    path = tmp_path / "huge.pt"
    torch.save(data, path)
    message = load_error(path)
    assert message.startswith(f"{path}: model config asks for a lenet of 1,074,329,186,314 weights")
    assert message.endswith("bmhw builds networks of at most 67,108,864")


def test_weight_limit_counts_the_whole_network(tmp_path, monkeypatch):
    # The LeNet-5 shapes have 44,426 weights (docs/models.md): refused under a lower limit, loaded at that count.
    from bmhw.models import bounds

    path = save_checkpoint(tmp_path / "m.pt", make_model("bm15"))
    monkeypatch.setattr(bounds, "MAX_WEIGHTS", 44_425)
    assert "asks for a lenet of 44,426 weights" in load_error(path)
    monkeypatch.setattr(bounds, "MAX_WEIGHTS", 44_426)
    load_checkpoint(path)


def test_every_shipped_example_is_within_bounds():
    from bmhw.resources import examples_dir

    examples = sorted(examples_dir().glob("*.pt"))
    assert len(examples) >= 6
    for path in examples:
        load_checkpoint(path)


@pytest.mark.parametrize("neuron, tensor, value", [
    ("classical", "conv1.weight", float("nan")),
    ("bm15", "fc3.bias", -float("inf")),
    ("bm15", "conv2.v", float("inf")),
    ("adder", "conv1.bn.running_var", float("nan")),  # a buffer, not a parameter
])
def test_non_finite_tensor_is_named(tmp_path, neuron, tensor, value):
    data = torch.load(save_checkpoint(tmp_path / "good.pt", make_model(neuron)), weights_only=True)
    data["state_dict"][tensor].view(-1)[-1] = value
    path = tmp_path / "broken.pt"
    torch.save(data, path)
    assert load_error(path) == (f"{path}: tensor {tensor!r} holds NaN or infinite values; re-train or restore the "
                                "checkpoint")


def test_raw_pickle_fails_without_a_warning(tmp_path):
    # torch warns about the pickle protocol of a raw pickle before refusing it; only the one line may remain.
    import warnings

    path = tmp_path / "raw.pt"
    path.write_bytes(pickle.dumps({"weights": torch.zeros(3)}, protocol=4))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert "raw.pt" in load_error(path)
    assert [str(w.message) for w in caught] == []
