"""Run an ONNX model with onnxruntime: the networks bmhw exports (float BM or integer) and others.

``load(path)`` gives an :class:`OnnxModel` whose ``run`` feeds uint8 images (N, C, H, W) the way the
model expects them and returns every output, in batches; ``predict`` gives the classes. What a model
takes is read from its input's type:

* int64 (``bmhw export --target onnx-int``): the image bytes as codes, 0 .. 255;
* uint8: the bytes as they are;
* float: pixel intensities in [0, 1], bytes / 255, as bmhw trains (``bmhw.train.to_tensor``).

NumPy, onnx and onnxruntime only, never torch.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bmhw.backends.onnx.graph import load_model, metadata
from bmhw.errors import BmhwError

# Elements of the largest intermediate tensor (an add-max or LSE tensor) per batch: the batch is sized so
# that it stays below this (2^25 int64 or float32 elements: at most 256 MiB).
BATCH_ELEMENTS = 1 << 25
DEFAULT_BATCH = 64
MAX_BATCH = 500
# Which dataset a network takes, by its input's per-image shape.
DATASETS = {(1, 28, 28): "mnist", (3, 32, 32): "cifar10"}
_INPUT_TYPES = {"tensor(int64)": np.int64, "tensor(uint8)": np.uint8, "tensor(float)": np.float32}


def session_options(threads: int | None = None):
    """onnxruntime options: ``threads`` intra-op threads (default: OMP_NUM_THREADS when set, else
    onnxruntime's own choice); quiet: failures come back as exceptions."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads is None:
        env = os.environ.get("OMP_NUM_THREADS", "")
        threads = int(env) if env.isdigit() else 0
    options.intra_op_num_threads = threads
    options.log_severity_level = 4  # errors reach the caller as exceptions, not as log lines
    return options


@dataclass
class OnnxModel:
    path: Path
    session: object
    kind: str  # "integer", "float" (bmhw's exports) or "other"
    input_name: str
    input_dtype: type
    input_shape: tuple | None  # per image (C, H, W) where the file says it
    output_names: list
    batch_size: int

    @property
    def dataset(self) -> str:
        """The dataset whose images this network takes (MNIST 1x28x28, CIFAR-10 3x32x32)."""
        if self.input_shape not in DATASETS:
            shape = "unknown" if self.input_shape is None else "x".join(map(str, self.input_shape))
            raise BmhwError(f"{self.path} takes inputs of shape {shape}; bmhw eval feeds MNIST (1x28x28) or "
                            "CIFAR-10 (3x32x32) images")
        return DATASETS[self.input_shape]

    def feed(self, images: np.ndarray) -> np.ndarray:
        """uint8 images (N, C, H, W) as this model's input."""
        images = np.asarray(images)
        if images.ndim != 4 or (self.input_shape is not None and tuple(images.shape[1:]) != self.input_shape):
            want = "(N, " + ", ".join(map(str, self.input_shape or ("C", "H", "W"))) + ")"
            raise BmhwError(f"{self.path} takes inputs of shape {want}, got {tuple(images.shape)}")
        if self.input_dtype is np.float32:
            return images.astype(np.float32) / np.float32(255.0)
        return images.astype(self.input_dtype)

    def run(self, images, outputs=None, batch_size: int | None = None, inputs_ready: bool = False) -> dict:
        """Every output (or those named in ``outputs``) on all ``images``, batch by batch, concatenated.
        With ``inputs_ready`` the images are passed as they are (e.g. codes that are not bytes)."""
        names = list(outputs or self.output_names)
        unknown = sorted(set(names) - set(self.output_names))
        if unknown:
            raise BmhwError(f"{self.path} has no output {', '.join(unknown)}; it has {', '.join(self.output_names)}")
        step = batch_size or self.batch_size
        parts = {name: [] for name in names}
        for start in range(0, len(images), step):
            chunk = images[start:start + step]
            feed = np.asarray(chunk, dtype=self.input_dtype) if inputs_ready else self.feed(chunk)
            try:
                values = self.session.run(names, {self.input_name: feed})
            except Exception as err:  # noqa: BLE001 - onnxruntime raises its own exception types
                detail = " ".join(str(err).split())[:200]
                raise BmhwError(f"onnxruntime failed to run {self.path}: {detail}") from None
            for name, value in zip(names, values):
                parts[name].append(value)
        return {name: np.concatenate(values) if values else np.zeros((0,)) for name, values in parts.items()}

    def predict(self, images) -> np.ndarray:
        """The first index of the largest value of the first output, per image."""
        first = self.output_names[0]
        logits = self.run(images, [first])[first]
        return logits.reshape(len(logits), -1).argmax(axis=1) if len(logits) else np.zeros(0, dtype=np.int64)


def _static_shape(value_info) -> tuple | None:
    dims = value_info.type.tensor_type.shape.dim
    shape = tuple(d.dim_value if d.HasField("dim_value") else None for d in dims[1:])
    return shape if len(dims) == 4 and all(shape) else None


def load(path, threads: int | None = None) -> OnnxModel:
    """An onnxruntime session for the model in ``path``; a file that is not ONNX, or that onnxruntime cannot
    run, is a one-line error."""
    path = Path(path)
    return session_from_model(load_model(path), path, threads)


def session_from_model(model, path=None, threads: int | None = None) -> OnnxModel:
    """An onnxruntime session for an in-memory ``onnx.ModelProto`` (``path`` names it in messages)."""
    import onnxruntime as ort

    path = Path(path) if path is not None else Path(f"<{model.graph.name or 'onnx model'}>")
    initializers = {t.name for t in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializers]
    if len(inputs) != 1:
        raise BmhwError(f"{path} has {len(inputs)} inputs; bmhw runs networks with one input (the images)")
    try:
        session = ort.InferenceSession(model.SerializeToString(), session_options(threads),
                                       providers=["CPUExecutionProvider"])
    except Exception as err:  # noqa: BLE001 - onnxruntime raises its own exception types
        detail = " ".join(str(err).split())[:200]
        raise BmhwError(f"onnxruntime cannot run {path}: {detail}") from None
    dtype = _INPUT_TYPES.get(session.get_inputs()[0].type)
    if dtype is None:
        raise BmhwError(f"{path} takes {session.get_inputs()[0].type} inputs; bmhw feeds int64, uint8 or float images")
    meta = metadata(model)
    per_image = int(meta.get("bmhw.elements_per_image", 0) or 0)
    batch = max(1, min(MAX_BATCH, BATCH_ELEMENTS // per_image)) if per_image else DEFAULT_BATCH
    return OnnxModel(path=path, session=session, kind=meta.get("bmhw.kind", "other"), input_name=inputs[0].name,
                     input_dtype=dtype, input_shape=_static_shape(inputs[0]),
                     output_names=[o.name for o in session.get_outputs()], batch_size=batch)


def golden_mismatch(net, model: OnnxModel, images) -> str | None:
    """Compare an integer ONNX model (``bmhw export --target onnx-int``) with the golden model on ``images``:
    the logits and every layer output the graph exposes, exactly. None when all are equal, else where the
    first difference is (output, image, index, both values)."""
    from bmhw import golden

    codes = np.asarray(images).astype(np.int64)
    want = golden.forward(net, codes, return_all=True)
    want["logits"] = want[net.layers[-1]["name"]]
    got = model.run(codes, inputs_ready=True)
    for name in model.output_names:
        if name not in want:
            return f"output {name!r} is not a layer of the network"
        a, b = got[name], want[name]
        if a.shape != b.shape or a.dtype != np.int64:
            return f"output {name!r} has shape {a.shape} ({a.dtype}), the golden model {b.shape} (int64)"
        if not np.array_equal(a, b):
            index = tuple(int(i) for i in np.argwhere(a != b)[0])
            return (f"output {name!r}, image {index[0]}, index {index[1:]}: onnxruntime {a[index]} != golden "
                    f"{b[index]} ({int((a != b).sum())} of {a.size} values differ)")
    return None
