"""bmhw checkpoints: one ``.pt`` file with a format version, the model config, weights and metadata.

Layout (a plain dict of plain types and tensors, so ``torch.load(weights_only=True)`` reads it and
nothing in the file is ever executed)::

    {"format": "bmhw-checkpoint", "version": 1,
     "config": {"arch": ..., "args": {...}, "layers": {name: neuron spec}},   # bmhw.models.describe
     "state_dict": {...},
     "metadata": {"method": ..., "accuracy": ..., "seed": ..., "bmhw_version": ..., ...}}
"""

from __future__ import annotations

import pickle
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from bmhw import __version__
from bmhw.atomic import write_atomically
from bmhw.errors import BmhwError
from bmhw.models import build, describe

FORMAT = "bmhw-checkpoint"
VERSION = 1


@dataclass
class Checkpoint:
    model: nn.Module
    config: dict
    metadata: dict = field(default_factory=dict)


def save_checkpoint(path, model: nn.Module, **metadata) -> Path:
    """Write ``model`` and ``metadata`` to ``path`` atomically (a temporary file, then a rename)."""
    meta = {"bmhw_version": __version__, **{k: v for k, v in metadata.items() if v is not None}}
    payload = {"format": FORMAT, "version": VERSION, "config": describe(model),
               "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
               "metadata": meta}
    return write_atomically(path, lambda tmp: torch.save(payload, tmp), "checkpoint", "model.pt")


def _read(path: Path):
    if not path.is_file():
        raise BmhwError(f"checkpoint {path} not found: give the path of a .pt file written by bmhw train or bmhw convert")
    try:
        # A raw pickle makes torch warn (an unexpected protocol, ...) before it fails: the one-line error says it all.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        # torch's own message ends by suggesting weights_only=False: exactly what must not be done here.
        found = re.search(r"GLOBAL ([\w.]+)", str(err))
        if found is None:
            raise BmhwError(f"{path} is not a readable PyTorch file (corrupt or another format); re-create it "
                            "with bmhw train or bmhw convert") from None
        raise BmhwError(f"{path} is not a bmhw checkpoint: it holds Python objects such as {found.group(1)} "
                        "that a safe load refuses; nothing in it was executed") from None
    except Exception as err:  # noqa: BLE001 - garbage makes the unpickler raise almost anything
        raise BmhwError(f"{path} is not a readable PyTorch file (truncated, corrupt or another format: "
                        f"{type(err).__name__}); re-create it with bmhw train or bmhw convert") from None


def _check_finite(path: Path, model: nn.Module) -> None:
    """A NaN or infinity in any parameter or buffer would be evaluated (accuracy 0%) or quantized (tables of
    garbage) without a word: refuse it, naming the tensor."""
    for name, tensor in model.state_dict().items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise BmhwError(f"{path}: tensor {name!r} holds NaN or infinite values; re-train or restore the checkpoint")


def load_checkpoint(path) -> Checkpoint:
    """Load a bmhw checkpoint; anything else raises :class:`BmhwError` with a one-line reason."""
    path = Path(path)
    data = _read(path)
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        if isinstance(data, dict) and data and all(isinstance(v, torch.Tensor) for v in data.values()):
            raise BmhwError(f"{path} is a bare state dict, not a bmhw checkpoint: it lacks the model config; "
                            "save models with bmhw.models.checkpoint.save_checkpoint (or bmhw train / convert)")
        raise BmhwError(f"{path} is a PyTorch file but not a bmhw checkpoint (no '{FORMAT}' format tag)")
    version = data.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise BmhwError(f"{path} is a damaged bmhw checkpoint: its format version {version!r} is not a positive "
                        "integer")
    if version > VERSION:
        raise BmhwError(f"{path} has checkpoint format version {version!r}; this bmhw {__version__} reads "
                        f"version {VERSION}: upgrade bmhw")
    config, state = data.get("config"), data.get("state_dict")
    if not isinstance(config, dict) or not isinstance(state, dict):
        raise BmhwError(f"{path} is a damaged bmhw checkpoint: its config or state dict is missing")
    try:
        model = build(config)
    except BmhwError as err:
        raise BmhwError(f"{path}: {err}") from None
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        detail = " ".join(str(err).split())[:200]
        raise BmhwError(f"{path} is a damaged bmhw checkpoint: weights do not fit its config ({detail})") from None
    _check_finite(path, model)
    model.eval()
    metadata = data.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise BmhwError(f"{path} is a damaged bmhw checkpoint: its metadata is not a table of entries")
    return Checkpoint(model=model, config=config, metadata=dict(metadata))
