"""Driver: hands one image at a time to the harness's stream source (bmhw_net_tb.v).

A transaction is a whole image: its codes are written into the harness's image memory through the
simulator interface (no simulated time passes), then `image_count` is raised and the Verilog source
streams the codes into the accelerator with the valid/ready handshake. Python never waits on a clock.
"""

from __future__ import annotations

import numpy as np


class ImageDriver:
    def __init__(self, dut, input_size: int):
        self._slots = [dut.image[i] for i in range(input_size)]
        self._count = dut.image_count
        self.sent = 0

    def send(self, codes: np.ndarray) -> None:
        """Queue one image (its codes in (C, H, W) order). The previous image must have been streamed
        already (the bench waits for each result before sending the next)."""
        values = np.asarray(codes).reshape(-1).tolist()
        if len(values) != len(self._slots):
            raise ValueError(f"an image has {len(self._slots)} codes, got {len(values)}")
        for slot, value in zip(self._slots, values):
            slot.value = int(value)
        self.sent += 1
        self._count.value = self.sent
