"""The whole-network bench (cocotb): real images through the generated accelerator, every result and
every layer buffer compared with the golden model, failing on the first mismatch.

Run by ``bmhw sim`` (bmhw.backends.verilog.rtlsim), which builds bmhw_net_tb.v around the project's RTL with
Verilator and passes the job through $BMHW_SIM_JOB: a folder with job.json and images.npy. The outcome
is written to the job's result.json as well as reported by cocotb.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import cocotb
import numpy as np
from cocotb.triggers import ClockCycles

from bmhw import ir
from bmhw.sim.driver import ImageDriver
from bmhw.sim.model import GoldenModel
from bmhw.sim.monitor import BufferMonitor, ResultMonitor
from bmhw.sim.scoreboard import Mismatch, Scoreboard


def _write(path: Path, result: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=1))
    os.replace(tmp, path)


@cocotb.test()
async def network(dut):
    job_dir = Path(os.environ["BMHW_SIM_JOB"])
    job = json.loads((job_dir / "job.json").read_text())
    project = Path(job["project"])
    design = json.loads((project / "design.json").read_text())
    net = ir.load_bmq(project / "model.bmq")
    images = np.load(job_dir / "images.npy")
    layer_images = len(images) if job["check_layers"] < 0 else min(job["check_layers"], len(images))

    buffers = design["buffers"]
    layer_shapes = {layer["name"]: layer["out_shape"] for layer in net.layers}
    shapes = {b["name"]: (tuple(net.input_shape) if b["layer"] is None else tuple(layer_shapes[b["layer"]]))
              for b in buffers}
    scoreboard = Scoreboard(shapes={name: s if len(s) == 3 else None for name, s in shapes.items()})
    model = GoldenModel(net, buffers)
    driver = ImageDriver(dut, design["input_size"])
    results = ResultMonitor(dut, design["classes"], design["logit_bits"])
    layers = BufferMonitor(dut, [b for b in buffers if b["layer"] is not None])

    # The harness makes its own clock: no Python on any clock edge.
    dut.rst.value = 1
    await ClockCycles(dut.clk, 4)
    dut.rst.value = 0

    outcome = {"images": 0, "layer_images": 0, "mismatch": None, "cycles": [], "times": [], "wall_s": 0.0}
    start = time.perf_counter()
    try:
        for index, (expected_buffers, expected_logits, expected_class) in enumerate(model.expected(images)):
            driver.send(images[index])
            result = await results.receive()
            observed = layers.read() if index < layer_images else None
            scoreboard.check(index, result, expected_logits, expected_class, observed, expected_buffers)
            outcome["images"], outcome["layer_images"] = scoreboard.checked, scoreboard.layer_checks
            outcome["cycles"].append(result.cycles)
            outcome["times"].append(result.time)
            if job.get("progress_every") and (index + 1) % job["progress_every"] == 0:
                (job_dir / "progress").write_text(str(index + 1))
    except Mismatch as err:
        outcome["mismatch"] = {"image": err.image, "layer": err.layer, "index": err.index, "rtl": err.rtl,
                               "golden": err.golden, "message": str(err)}
        raise
    finally:
        outcome["wall_s"] = time.perf_counter() - start
        _write(job_dir / "result.json", outcome)
