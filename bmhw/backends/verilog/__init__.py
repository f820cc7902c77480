"""The Verilog backend: a quantized network (.bmq IR) -> synthesizable Verilog of the layer-by-layer
architecture, verified bit for bit against the golden model by the cocotb benches in ``sim/`` (``rtlsim``).

The building blocks are hand-written, parameterised Verilog-2005 modules (``templates/verilog/lib/``, copied
unchanged into every project). Python plans, per layer, the parameter values (shapes, PE count, the width of
every signal from the IR's proven ranges) and the ROM contents (``mem/*.mem``), one module per neuron family
(``bm``, ``mac``, ``adder``, ``bise``, chosen in ``layers``; what they share in ``common``); the one template,
``bmhw_net.v.j2``, only instantiates and wires them (``export``). ``cycles`` is the cycle model. The export is
deterministic and atomic like the HLS export. NumPy only, never torch. Architecture: docs/verilog.md.
"""

from bmhw.backends.project import layer_names, resolve_pe
from bmhw.backends.verilog.cycles import DEFAULT_CLOCK_NS, cycle_model, cycle_summary
from bmhw.backends.verilog.export import (CYCLE_COUNTER_BITS, TOP, build_context, design_description, export,
                                          layer_pes, library_dir, library_files, render, verilog_value)
from bmhw.backends.verilog.layers import layer_plan

__all__ = ["CYCLE_COUNTER_BITS", "DEFAULT_CLOCK_NS", "TOP", "build_context", "cycle_model", "cycle_summary",
           "design_description", "export", "layer_names", "layer_pes", "layer_plan", "library_dir", "library_files",
           "render", "resolve_pe", "verilog_value"]
