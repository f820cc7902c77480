"""Model: the golden model's expected values for the bench, per image and per layer buffer.

It reads the network from the project's model.bmq and computes with bmhw.golden (NumPy, the
specification), in batches, ahead of the simulation.
"""

from __future__ import annotations

import numpy as np

from bmhw import golden


class GoldenModel:
    def __init__(self, net, buffers: list[dict], batch: int = 256):
        self.net, self.buffers, self.batch = net, buffers, batch

    def expected(self, images: np.ndarray):
        """Yield, per image: ``{buffer name: flat int64 array}``, the logits and the predicted class."""
        images = np.asarray(images).reshape((-1, *self.net.input_shape))
        for start in range(0, len(images), self.batch):
            codes = images[start:start + self.batch].astype(np.int64)
            outputs = golden.forward(self.net, codes, return_all=True)
            logits = outputs[self.net.layers[-1]["name"]]
            for n in range(len(codes)):
                per_buffer = {}
                for buffer in self.buffers:
                    source = codes if buffer["layer"] is None else outputs[buffer["layer"]]
                    per_buffer[buffer["name"]] = source[n].reshape(-1)
                yield per_buffer, logits[n], int(np.argmax(logits[n]))
