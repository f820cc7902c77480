"""Layer-wise and whole-network distillation (bmhw.train.distill) on tiny synthetic data."""

import numpy as np
import torch

from bmhw.train.distill import KDConfig, LayerwiseConfig, knowledge_distill, layerwise_distill
from bmhw.models import describe, lenet
from bmhw.nn.layers import _BMNeuron
from bmhw.train.loop import to_tensor, train_classifier
from conftest import synthetic_mnist


def small_teacher():
    images, labels = synthetic_mnist(256, seed=5)
    images = images[:, None]
    teacher = lenet("classical", widths=(4, 6, 16, 12))
    train_classifier(teacher, images, labels, epochs=2, batch_size=64, lr=3e-3, quiet=True)
    return teacher, images, labels


def test_layerwise_distill_grows_a_frozen_bm15_student_layer_by_layer():
    teacher, images, labels = small_teacher()
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    snapshots = []

    def on_step(entry, student, teacher):
        snapshots.append({k: v.clone() for k, v in student.state_dict().items()})

    cfg = LayerwiseConfig(epochs_per_layer=0.5, batch_size=32, calib_images=64)
    result = layerwise_distill(teacher, images, labels, cfg, quiet=True, on_step=on_step)

    # The teacher passed in is untouched; the student is 1.5-branch hard max everywhere.
    assert all(torch.equal(v, teacher.state_dict()[k]) for k, v in before.items())
    specs = describe(result.student)["layers"]
    assert all(s["neuron"] == "bm15" and s["reduce"] == "max" for s in specs.values())
    assert [e["layer"] for e in result.log] == list(teacher.WEIGHT_LAYERS)
    # Layer k, once trained, stays frozen through the later steps.
    names = teacher.WEIGHT_LAYERS
    for k, name in enumerate(names[:-1]):
        for key in (f"{name}.v", f"{name}.bias"):
            assert all(torch.equal(snapshots[k][key], later[key]) for later in snapshots[k + 1:]), key
    # The student is alive: every layer's output varies across inputs.
    feats = {}
    with torch.no_grad():
        result.student.forward_range(to_tensor(images[:64]), features=feats)
    for name, value in feats.items():
        assert float(value.std(0).max()) > 0, name


def test_knowledge_distill_trains_only_the_student():
    teacher, images, labels = small_teacher()
    student = lenet("bm15", widths=(4, 6, 16, 12))
    teacher_state = {k: v.clone() for k, v in teacher.state_dict().items()}
    student_state = {k: v.clone() for k, v in student.state_dict().items()}
    knowledge_distill(student, teacher, images, labels, KDConfig(epochs=1, batch_size=32), quiet=True)
    assert all(torch.equal(v, teacher.state_dict()[k]) for k, v in teacher_state.items())
    assert any(not torch.equal(v, student.state_dict()[k]) for k, v in student_state.items() if k.endswith(".v"))
    assert all(isinstance(student.get_submodule(n), _BMNeuron) for n in student.WEIGHT_LAYERS)
    assert np.isfinite([float(p.detach().sum()) for p in student.parameters()]).all()
