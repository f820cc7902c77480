"""Monitors: the accelerator's results, one transaction per image, and the layer buffers.

ResultMonitor wakes once per image, on the harness's `result_strobe`, and reads the captured output
beat (logits, arg-max, the accelerator's own cycle count). BufferMonitor reads every layer's output
buffer (the RAMs inside the accelerator) after the image is done: they still hold that image's values.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from cocotb.triggers import RisingEdge


def to_signed(value: int, bits: int) -> int:
    return value - (1 << bits) if value >> (bits - 1) & 1 else value


@dataclass
class Result:
    logits: np.ndarray  # int64, one per class
    predicted: int
    cycles: int  # the accelerator's count: first input beat to output beat
    time: int  # harness cycle at which the output beat was taken


class ResultMonitor:
    def __init__(self, dut, classes: int, logit_bits: int):
        self._dut = dut
        self.classes, self.logit_bits = classes, logit_bits

    async def receive(self) -> Result:
        dut = self._dut
        await RisingEdge(dut.result_strobe)
        packed = int(dut.result_logits.value)
        mask = (1 << self.logit_bits) - 1
        logits = np.array([to_signed((packed >> (i * self.logit_bits)) & mask, self.logit_bits)
                           for i in range(self.classes)], dtype=np.int64)
        return Result(logits, int(dut.result_class.value), int(dut.result_cycles.value),
                      int(dut.result_time.value))


class BufferMonitor:
    """Reads the output buffer of each layer named in ``buffers`` (design.json entries)."""

    def __init__(self, dut, buffers: list[dict]):
        self._buffers = []
        for buffer in buffers:
            memory = getattr(dut.u_net, f"u_buf_{buffer['name']}").mem
            cells = [memory[i] for i in range(buffer["depth"])]
            self._buffers.append((buffer, cells))

    def read(self) -> dict:
        """``name -> int64 array`` of every monitored buffer (signed where the buffer holds logits)."""
        out = {}
        for buffer, cells in self._buffers:
            values = [int(cell.value) for cell in cells]
            if buffer["signed"]:
                values = [to_signed(v, buffer["width"]) for v in values]
            out[buffer["name"]] = np.array(values, dtype=np.int64)
        return out
