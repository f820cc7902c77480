"""The unit benches (cocotb): each library block of one BM layer on its own, compared exactly with an
independent Python reference (the formulas of docs/datapath.md through bmhw.ir.intmath, the IR's tables,
bmhw.golden), failing on the first mismatch with a message naming the block, the layer and the index.

Two harnesses (sim/hdl/): ``bmhw_blocks_tb`` brings the ports of every block of a layer out
(the tests ``rom_ln`` .. ``requantize``) and ``bmhw_layer_tb`` wraps one whole ``bmhw_bm_layer`` between an
input and an output RAM (the test ``bm_layer``). Run by sim/block_runner.py, which passes the job through
$BMHW_BLOCK_JOB: a folder with job.json ({"project", "layer", "seed", "samples", "array_pe", "clock_ns"})
and, for the layer bench, codes.npy (the input codes of a few images). Each test's outcome is also
written into the job's results.json (test -> {"passed", "message", "detail"}).
"""

from __future__ import annotations

import functools
import json
import operator
import os
from pathlib import Path

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, FallingEdge, RisingEdge, SimTimeoutError, Timer, with_timeout

from bmhw import golden, ir
from bmhw.backends.project import layer_names
from bmhw.backends.verilog.adder import plan as adder_layer_plan
from bmhw.backends.verilog.bise import plan as bise_layer_plan
from bmhw.backends.verilog.bm import plan as bm_layer_plan
from bmhw.ir import ADDER_OPS, BISE_OPS
from bmhw.ir.intmath import round_shift
from bmhw.sim.scoreboard import Mismatch, Scoreboard

# Cycles from M into bmhw_exp_shift to E out (its documented pipeline).
EXP_SHIFT_LATENCY = 4
# Settling time of a combinational block after its input changes (no clock involved).
SETTLE_NS = 1
# Above this many values a combinational block's range is sampled instead of swept.
EXHAUSTIVE_LIMIT = 1 << 14


class BlockMismatch(AssertionError):
    """The first difference between a block's output and its reference: ``index`` is the position in the
    bench's sequence (``label``: "address" for a ROM, "step" for a PE, else "index"), ``where`` says which
    input gave it."""

    def __init__(self, block: str, layer: str, index: int, where: str, rtl: int, reference: int,
                 label: str = "index"):
        self.block, self.layer, self.index, self.rtl, self.reference = block, layer, index, rtl, reference
        super().__init__(f"block {block}, layer {layer}: {label} {index}{where}: RTL {rtl}, reference {reference}")


# ---------------------------------------------------------------------------------------------- the job


class Job:
    """What a test needs: the job, the network, the layer under test and its export plan."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.spec = json.loads((folder / "job.json").read_text())
        self.project = Path(self.spec["project"])
        self.net = ir.load_bmq(self.project / "model.bmq")
        design = json.loads((self.project / "design.json").read_text())
        names = layer_names(self.net)
        self.name = self.spec["layer"]
        if self.name not in names:
            raise ValueError(f"no layer {self.name!r} in {self.project} (layers: {', '.join(names)})")
        self.layer = self.net.layers[names.index(self.name)]
        self.pe = int(design["pe"][self.name])
        plan = (adder_layer_plan if self.layer["op"] in ADDER_OPS else bise_layer_plan if self.layer["op"] in BISE_OPS
                else bm_layer_plan)
        self.plan = plan(self.net, self.layer, self.name, self.pe)
        self.params = self.plan["params"]
        self.ranges = {key: (int(lo), int(hi)) for key, (lo, hi) in self.layer["ranges"].items()}
        self.seed = int(self.spec.get("seed", 0))
        self.samples = int(self.spec.get("samples", 2000))
        self.array_pe = int(self.spec.get("array_pe", 4))
        self.clock_ns = float(self.spec.get("clock_ns", 10.0))

    def rng(self, test: str) -> np.random.Generator:
        return np.random.default_rng([self.seed, sum(test.encode())])

    def record(self, test: str, passed: bool, message: str = "", detail: dict | None = None) -> None:
        path = self.folder / "results.json"
        results = json.loads(path.read_text()) if path.is_file() else {}
        results[test] = {"passed": passed, "message": message, "detail": detail or {}}
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(results, indent=1))
        os.replace(tmp, path)


def bench(fn):
    """A cocotb test that gets the Job and records its outcome (pass, or the failure's message)."""

    @functools.wraps(fn)
    async def test(dut):
        job = Job(Path(os.environ["BMHW_BLOCK_JOB"]))
        try:
            detail = await fn(dut, job)
        except (BlockMismatch, Mismatch) as err:
            job.record(fn.__name__, False, str(err), {key: getattr(err, key) for key in
                                                     ("block", "layer", "index", "rtl", "reference", "golden",
                                                      "image") if hasattr(err, key)})
            raise
        except BaseException as err:
            job.record(fn.__name__, False, f"{type(err).__name__}: {err}")
            raise
        job.record(fn.__name__, True, "", detail)

    return cocotb.test()(test)


def compare(block: str, layer: str, rtl, reference, label: str = "index", inputs=None,
            input_name: str = "") -> None:
    """Exact comparison of two sequences; the first difference raises BlockMismatch. ``inputs`` (one per
    element) are named in the message, e.g. the M that gave a wrong E."""
    rtl, reference = np.asarray(rtl, dtype=object), np.asarray(reference, dtype=object)
    if rtl.shape != reference.shape:
        raise BlockMismatch(block, layer, -1, f" (shape {rtl.shape} vs {reference.shape})", -1, -1, label)
    if not np.array_equal(rtl, reference):
        index = int(np.flatnonzero(rtl != reference)[0])
        where = f" ({input_name} = {inputs[index]})" if inputs is not None else ""
        raise BlockMismatch(block, layer, index, where, int(rtl[index]), int(reference[index]), label)


def signed(value: int, bits: int) -> int:
    value &= (1 << bits) - 1
    return value - (1 << bits) if value >> (bits - 1) else value


def with_ends(rng: np.random.Generator, lo: int, hi: int, count: int) -> list:
    """Every integer of [lo, hi] when there are few, else the ends and ``count`` random values."""
    if hi - lo + 1 <= EXHAUSTIVE_LIMIT:
        return list(range(lo, hi + 1))
    return [lo, hi] + [int(v) for v in rng.integers(lo, hi, size=count, endpoint=True)]


async def stream(dut, drive, read, inputs, latency: int = 1) -> list:
    """A pipeline of ``latency`` cycles: input i is driven after a falling edge and its output read
    ``latency`` falling edges later (after the rising edges that carry it through), one input per cycle.
    Returns the outputs in input order."""
    out, inputs = [], list(inputs)
    await FallingEdge(dut.clk)
    for cycle in range(len(inputs) + latency - 1):
        if cycle < len(inputs):
            drive(inputs[cycle])
        await FallingEdge(dut.clk)
        if cycle >= latency - 1:
            out.append(read())
    return out


# ---------------------------------------------------------------------------------------------- blocks


@bench
async def rom_ln(dut, job: Job):
    """bmhw_rom with the layer's ln LUT file: every one of the 2^Q_W addresses against the IR's ln table
    (zeros past its Qin + 1 entries, as the export pads it)."""
    Clock(dut.clk, job.clock_ns, unit="ns").start()
    q_w, ln_w = job.params["Q_W"], job.params["LN_W"]
    table = job.net.table(job.layer, "ln_lut")
    reference = [int(table[a]) if a < len(table) else 0 for a in range(1 << q_w)]

    def drive(a):
        dut.ln_addr.value = a

    rtl = await stream(dut, drive, lambda: signed(int(dut.ln_data.value), ln_w), range(1 << q_w))
    compare("bmhw_rom (ln LUT)", job.name, rtl, reference, "address")
    return {"entries": len(rtl)}


@bench
async def rom_exp(dut, job: Job):
    """bmhw_rom with the layer's exp LUT file: all 2^F addresses against the IR's exp table."""
    Clock(dut.clk, job.clock_ns, unit="ns").start()
    f = job.params["F"]
    table = job.net.table(job.layer, "exp_lut")
    reference = [int(v) for v in table]

    def drive(a):
        dut.exp_addr.value = a

    rtl = await stream(dut, drive, lambda: int(dut.exp_data.value), range(1 << f))
    compare("bmhw_rom (exp LUT)", job.name, rtl, reference, "address")
    return {"entries": len(rtl)}


@bench
async def exp_shift(dut, job: Job):
    """bmhw_exp_shift on every M of the layer's proven range: E = round_shift(EXP[M mod 2^F],
    P - G - floor(M / 2^F)), one M per cycle."""
    Clock(dut.clk, job.clock_ns, unit="ns").start()
    f, p, g = (int(job.layer[key]) for key in ("F", "P", "G"))
    m_w = job.params["M_W"]
    table = [int(v) for v in job.net.table(job.layer, "exp_lut")]
    lo, hi = job.ranges["M"]
    ms = range(lo, hi + 1)
    reference = [round_shift(table[m % (1 << f)], p - g - (m >> f)) for m in ms]

    def drive(m):
        dut.es_m.value = m & ((1 << m_w) - 1)

    rtl = await stream(dut, drive, lambda: int(dut.es_e.value), ms, EXP_SHIFT_LATENCY)
    compare("bmhw_exp_shift", job.name, rtl, reference, "index", list(ms), "M")
    return {"values": len(rtl)}


def pe_steps(job: Job, test: str, lanes: int):
    """Random add-max steps: (en, first, ln, [w per lane]) with LN and W over their proven ranges (their
    ends included), ``first`` now and then and ``en`` low now and then. Step 0 starts a maximum."""
    rng = job.rng(test)
    (ln_lo, ln_hi), (w_lo, w_hi) = job.ranges["LN"], job.ranges["W"]
    steps = []
    for i in range(job.samples):
        en = i == 0 or rng.random() < 0.8
        first = i == 0 or rng.random() < 0.1
        pick = rng.random()
        if pick < 0.05:  # the ends of the ranges
            ln = int(rng.choice([ln_lo, ln_hi]))
            w = [int(rng.choice([w_lo, w_hi])) for _ in range(lanes)]
        else:
            ln = int(rng.integers(ln_lo, ln_hi, endpoint=True))
            w = [int(v) for v in rng.integers(w_lo, w_hi, size=lanes, endpoint=True)]
        steps.append((en, first, ln, w))
    return steps


def running(steps, lanes: int, term, combine) -> list:
    """The PE references: per lane, the running value after each step (en, first, x, per-lane tables): ``first``
    starts over with the step's ``term(x, lane's table)``, otherwise ``combine(value, term)``; en low holds."""
    value, out = [None] * lanes, []
    for en, first, x, tables in steps:
        if en:
            for lane in range(lanes):
                t = term(x, tables[lane])
                value[lane] = t if first or value[lane] is None else combine(value[lane], t)
        out.append(list(value))
    return out


def pack_lanes(values, width: int) -> int:
    """Per-lane values as one word, lane 0 in the low bits (two's complement in ``width`` bits each)."""
    word = 0
    for value in reversed(values):
        word = (word << width) | (value & ((1 << width) - 1))
    return word


async def check_lanes(dut, job: Job, block: str, steps, reference, drive, out_port, out_w: int, out_signed: bool,
                      describe) -> int:
    """The PE benches' loop: apply each step (en, first, x, per-lane tables) with ``drive`` before a clock edge,
    then compare every lane of ``out_port`` (``out_w`` bits a lane) with ``reference`` (per step, per lane);
    a mismatch names block, layer, step and lane (``describe(x, lane's table)``). Returns the largest reference
    value seen."""
    Clock(dut.clk, job.clock_ns, unit="ns").start()
    await FallingEdge(dut.clk)
    largest = 0
    for index, (en, first, x, tables) in enumerate(steps):
        drive(en, first, x, tables)
        await FallingEdge(dut.clk)
        packed = int(out_port.value)
        for lane, expected in enumerate(reference[index]):
            rtl = (packed >> (lane * out_w)) & ((1 << out_w) - 1)
            rtl = signed(rtl, out_w) if out_signed else rtl
            if rtl != expected:
                where = f" (lane {lane}: en {int(en)}, first {int(first)}, {describe(x, tables[lane])})"
                raise BlockMismatch(block, job.name, index, where, rtl, expected, "step")
            largest = max(largest, expected or 0)
    return largest


async def check_word_pe(dut, job: Job, block: str, prefix: str, ports: tuple, widths: tuple, steps, reference,
                        out_signed: bool, describe) -> int:
    """check_lanes for a PE (array) with ports PREFIX_en, PREFIX_first, PREFIX_<in>, PREFIX_w (every lane's
    table, packed) and PREFIX_<out>; ``ports`` = (in, out), ``widths`` = (in, table, out) bits."""
    (in_name, out_name), (in_w, wt_w, out_w) = ports, widths
    en_port, first_port, in_port, w_port, out_port = (getattr(dut, f"{prefix}_{port}")
                                                      for port in ("en", "first", in_name, "w", out_name))

    def drive(en, first, x, w):
        en_port.value, first_port.value = int(en), int(first)
        in_port.value = x & ((1 << in_w) - 1)
        w_port.value = pack_lanes(w, wt_w)

    largest = await check_lanes(dut, job, block, steps, reference, drive, out_port, out_w, out_signed, describe)
    en_port.value = 0
    return largest


async def check_pe(dut, job: Job, test: str, block: str, lanes: int, prefix: str) -> dict:
    steps = pe_steps(job, test, lanes)
    await check_word_pe(dut, job, block, prefix, ("ln", "m"),
                        (job.params["LN_W"], job.params["WT_W"], job.params["M_W"]), steps,
                        running(steps, lanes, lambda ln, w: ln + w, max), True, lambda ln, w: f"LN {ln}, W {w}")
    return {"steps": len(steps), "lanes": lanes}


@bench
async def addmax_pe(dut, job: Job):
    """bmhw_addmax_pe on random vectors: m after each step against a Python running maximum."""
    return await check_pe(dut, job, "addmax_pe", "bmhw_addmax_pe", 1, "pe")


@bench
async def pe_array(dut, job: Job):
    """bmhw_pe_array (array_pe lanes) on random vectors: every lane against its running maximum."""
    return await check_pe(dut, job, "pe_array", f"bmhw_pe_array (PE={job.array_pe})", job.array_pe, "pa")


@bench
async def correction(dut, job: Job):
    """bmhw_correction: C = round_shift(S * CSUM, H) over the proven range of S (every S when it is small,
    else the ends and random values)."""
    h, csum = int(job.layer["H"]), int(job.layer["csum"])
    lo, hi = job.ranges["S"]
    inputs = with_ends(job.rng("correction"), lo, hi, job.samples)
    rtl = []
    for s in inputs:
        dut.corr_s.value = s
        await Timer(SETTLE_NS, unit="ns")
        rtl.append(int(dut.corr_c.value))
    compare("bmhw_correction", job.name, rtl, [round_shift(s * csum, h) for s in inputs], "index", inputs, "S")
    return {"values": len(inputs)}


@bench
async def requantize(dut, job: Job):
    """bmhw_requantize (hidden layers): q = clamp(round_shift(Y, G + e_out), 0, 2^A - 1) over the proven
    range of Y: its ends, every Y around the rounding and clamping edges at 0 and at the top, and random
    values."""
    if not job.layer["relu"]:
        return {"values": 0, "skipped": "the logits layer has no requantization"}
    shift = int(job.layer["G"]) + int(job.layer["out_scale_exp"])
    top = int(job.layer["out_max"])
    y_w = job.params["Y_W"]
    lo, hi = job.ranges["Y"]
    rng = job.rng("requantize")
    edges = []
    half = 1 << max(shift, 0)
    for centre in (0, top << shift if shift >= 0 else top >> -shift):
        edges += range(centre - half - 2, centre + half + 3)
    inputs = sorted({v for v in with_ends(rng, lo, hi, job.samples) + edges if lo <= v <= hi})
    rtl = []
    for y in inputs:
        dut.rq_y.value = y & ((1 << y_w) - 1)
        await Timer(SETTLE_NS, unit="ns")
        rtl.append(int(dut.rq_q.value))
    reference = [min(max(round_shift(y, shift), 0), top) for y in inputs]
    compare("bmhw_requantize", job.name, rtl, reference, "index", inputs, "Y")
    return {"values": len(inputs)}


# ---------------------------------------------------------------------------------------------- one layer


@bench
async def bm_layer(dut, job: Job):
    """One bmhw_bm_layer on the images of codes.npy: its whole output buffer against golden.bm_layer (in
    (C, H, W) order), exactly one done pulse and one write per output, and the documented latency
    positions * folds * K + (outputs in the last fold) + 11 cycles from start to done."""
    codes = np.load(job.folder / "codes.npy").astype(np.int64)
    expected = golden.bm_layer(job.net, job.layer, codes).reshape(len(codes), -1)
    out_shape = tuple(job.layer["out_shape"])
    scoreboard = Scoreboard(shapes={job.name: out_shape if len(out_shape) == 3 else None})
    k, o, pe = int(job.layer["fan_in"]), int(job.layer["out_count"]), job.pe
    folds = -(-o // pe)
    positions = int(np.prod(out_shape[1:])) if job.layer["op"] == "bm_conv2d" else 1
    latency = positions * folds * k + (o - (folds - 1) * pe) + 11
    out_bits, logits = job.params["OUT_D"], not job.layer["relu"]
    in_cells = [dut.u_in.mem[i] for i in range(codes[0].size)]
    out_cells = [dut.u_out.mem[i] for i in range(expected.shape[1])]

    Clock(dut.clk, job.clock_ns, unit="ns").start()
    dut.start.value = 0
    dut.rst.value = 1
    await ClockCycles(dut.clk, 3)
    await FallingEdge(dut.clk)
    dut.rst.value = 0
    cycles = []
    for image, image_codes in enumerate(codes):
        for cell, value in zip(in_cells, image_codes.reshape(-1).tolist()):
            cell.value = int(value)
        await FallingEdge(dut.clk)
        dut.start.value = 1
        await FallingEdge(dut.clk)
        dut.start.value = 0
        try:  # a layer that never finishes fails instead of hanging the bench
            await with_timeout(RisingEdge(dut.done), (2 * latency + 100) * job.clock_ns, "ns")
        except SimTimeoutError:
            raise BlockMismatch("bmhw_bm_layer", job.name, image, " (done pulses, none within twice the "
                                "documented latency)", int(dut.done_count.value), image + 1, "image") from None
        await ClockCycles(dut.clk, 4)  # nothing may follow done: no write, no second pulse
        await FallingEdge(dut.clk)
        values = [int(cell.value) for cell in out_cells]
        if logits:
            values = [signed(v, out_bits) for v in values]
        scoreboard.compare(image, job.name, values, expected[image])
        measured = int(dut.done_time.value) - int(dut.start_time.value)
        cycles.append(measured)
        for what, rtl, ref in (("start-to-done cycles", measured, latency),
                               ("done pulses", int(dut.done_count.value), image + 1),
                               ("output writes", int(dut.writes.value), expected.shape[1])):
            if rtl != ref:
                raise BlockMismatch("bmhw_bm_layer", job.name, image, f" ({what})", rtl, ref, "image")
    return {"images": len(codes), "cycles": cycles, "expected_cycles": latency}


# ---------------------------------------------------------------------------------------------- AdderNet blocks


def adder_steps(job: Job, test: str, lanes: int):
    """Random adder steps (en, first, x, [w per lane]) in runs of at most K enabled steps, each lane using the
    templates of one output of the layer in order (so every sum stays in the proven range of ACC). Some runs
    take the extremes: x at the end of [0, Qin] farthest from each template (the largest |x - w|, up to
    ACC's maximum), or the templates at the ends of W's range. ``en`` is low now and then."""
    rng = job.rng(test)
    w_table = job.net.table(job.layer, "weights")
    o, k = w_table.shape
    q_max = int(job.layer["in_max"])
    steps, count = [], 0
    while count < job.samples:
        outs = [int(v) for v in rng.integers(0, o, size=lanes)]
        mode = rng.random()
        length = k if mode < 0.3 else int(rng.integers(1, k, endpoint=True))
        step = 0
        while step < length:
            en = step == 0 or rng.random() < 0.85
            w = [int(w_table[out, step]) for out in outs]
            if mode < 0.15:  # the largest distance for lane 0's template (the end of [0, Qin] farthest away)
                x = 0 if abs(w[0]) >= abs(q_max - w[0]) else q_max
            elif mode < 0.2:
                x = int(rng.choice([0, q_max]))
            else:
                x = int(rng.integers(0, q_max, endpoint=True))
            steps.append((bool(en), step == 0, x, w))
            step += int(en)
            count += 1
    return steps


async def check_adder(dut, job: Job, test: str, block: str, lanes: int, prefix: str) -> dict:
    steps = adder_steps(job, test, lanes)
    largest = await check_word_pe(dut, job, block, prefix, ("x", "acc"),
                                  (job.params["Q_W"], job.params["WT_W"], job.params["ACC_W"]), steps,
                                  running(steps, lanes, lambda x, w: abs(x - w), operator.add), False,
                                  lambda x, w: f"x {x}, W {w}")
    return {"steps": len(steps), "lanes": lanes, "largest_acc": largest, "acc_max": job.ranges["ACC"][1]}


@bench
async def adder_pe(dut, job: Job):
    """bmhw_adder_pe on random vectors and extremes: acc after each step against a Python running sum of
    |x - w|."""
    return await check_adder(dut, job, "adder_pe", "bmhw_adder_pe", 1, "pe")


@bench
async def adder_array(dut, job: Job):
    """bmhw_adder_array (array_pe lanes) on random vectors: every lane against its running sum."""
    return await check_adder(dut, job, "adder_array", f"bmhw_adder_array (PE={job.array_pe})", job.array_pe, "pa")


@bench
async def adder_requantize(dut, job: Job):
    """bmhw_requantize of an adder layer: q = clamp(round_shift(Y, R), 0, 2^A - 1) over the proven range
    of Y (its ends, the rounding and clamping edges, random values)."""
    if not job.layer["relu"]:
        return {"values": 0, "skipped": "the logits layer has no requantization"}
    shift, top, y_w = int(job.layer["R"]), int(job.layer["out_max"]), job.params["Y_W"]
    lo, hi = job.ranges["Y"]
    rng = job.rng("adder_requantize")
    edges = []
    half = 1 << max(shift, 0)
    for centre in (0, top << shift):
        edges += range(centre - half - 2, centre + half + 3)
    inputs = sorted({v for v in with_ends(rng, lo, hi, job.samples) + edges if lo <= v <= hi})
    rtl = []
    for y in inputs:
        dut.rq_y.value = y & ((1 << y_w) - 1)
        await Timer(SETTLE_NS, unit="ns")
        rtl.append(int(dut.rq_q.value))
    reference = [min(max(round_shift(y, shift), 0), top) for y in inputs]
    compare("bmhw_requantize", job.name, rtl, reference, "index", inputs, "Y")
    return {"values": len(inputs)}


# ---------------------------------------------------------------------------------------------- BiSE blocks


def bise_steps(job: Job, test: str, lanes: int):
    """Random BiSE steps (en, first, x, [(se, neg) per lane]) in runs of at most K enabled steps, each lane
    using the tables of one output of the layer in order (so every count stays in C's proven range). Some
    runs make every literal true (x = 1 - neg: the count reaches |S_o|) or false; ``en`` is low now and then."""
    rng = job.rng(test)
    se, neg = job.net.table(job.layer, "se"), job.net.table(job.layer, "neg")
    o, k = se.shape
    steps, count = [], 0
    while count < job.samples:
        outs = [int(v) for v in rng.integers(0, o, size=lanes)]
        mode = rng.random()
        length = k if mode < 0.3 else int(rng.integers(1, k, endpoint=True))
        step = 0
        while step < length:
            en = step == 0 or rng.random() < 0.85
            tables = [(int(se[out, step]), int(neg[out, step])) for out in outs]
            if mode < 0.15:  # every literal of lane 0 true
                x = 1 - tables[0][1]
            elif mode < 0.2:  # every literal of lane 0 false
                x = tables[0][1]
            else:
                x = int(rng.integers(0, 2))
            steps.append((bool(en), step == 0, x, tables))
            step += int(en)
            count += 1
    return steps


def literal(x: int, table) -> int:
    """The BiSE PE's count step: the literal x XOR neg, counted inside the structuring element se."""
    se, neg = table
    return se * (1 - x if neg else x)


async def check_bise(dut, job: Job, test: str, block: str, lanes: int) -> dict:
    steps = bise_steps(job, test, lanes)

    def drive(en, first, x, tables):
        if lanes == 1:
            dut.pe_en.value, dut.pe_first.value, dut.pe_x.value = int(en), int(first), x
            dut.pe_se.value, dut.pe_neg.value = tables[0]
        else:
            dut.pa_en.value, dut.pa_first.value, dut.pa_x.value = int(en), int(first), x
            dut.pa_w.value = pack_lanes([(se << 1) | neg for se, neg in tables], 2)

    largest = await check_lanes(dut, job, block, steps, running(steps, lanes, literal, operator.add), drive,
                                dut.pe_acc if lanes == 1 else dut.pa_acc, job.params["ACC_W"], False,
                                lambda x, table: f"x {x}, se {table[0]}, neg {table[1]}")
    dut.pe_en.value, dut.pa_en.value = 0, 0
    return {"steps": len(steps), "lanes": lanes, "largest_acc": largest, "acc_max": job.ranges["C"][1]}


@bench
async def bise_pe(dut, job: Job):
    """bmhw_bise_pe on random vectors and extremes: C after each step against a Python running count of the
    literals (x XOR neg) inside se."""
    return await check_bise(dut, job, "bise_pe", "bmhw_bise_pe", 1)


@bench
async def bise_array(dut, job: Job):
    """bmhw_bise_array (array_pe lanes) on random vectors: every lane against its running count."""
    return await check_bise(dut, job, "bise_array", f"bmhw_bise_array (PE={job.array_pe})", job.array_pe)
