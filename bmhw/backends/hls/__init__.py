"""The Vitis HLS backend: a quantized network (.bmq IR) -> a C++ project checked by C-simulation.

Python prepares a flat per-layer context (names, shapes, constants, one ap_int type per signal from the IR's
proven ranges, ROM tables as structured rows), one module per neuron family (``bm``, ``adder``, ``bise``;
``shapes`` for the ops without weights, chosen in ``layers``); the Jinja2 templates under ``templates/hls/``
only loop over it; the kernels themselves are hand-written in ``hls/bmhw_layers.h`` (and ``hls/bmhw_grouped.h``
for BM layers with several maxima per output, copied only into the projects that have one). ``cycles`` is the cycle
model, ``export`` renders and writes the project (deterministic: the same IR gives byte-identical files;
atomic: built in a temporary folder renamed into place), ``csim`` checks it with g++. NumPy only, never torch.
"""

from bmhw.backends.hls.bise import BISE_PIPELINE_DEPTH
from bmhw.backends.hls.common import (BIT_TYPE, GROUPED_PIPELINE_DEPTH, INPUT_TYPE, PE_PIPELINE_DEPTH, ap_type,
                                      c_literal, rom_type)
from bmhw.backends.hls.cycles import DEFAULT_CLOCK_NS, cycle_model, cycle_summary
from bmhw.backends.hls.export import (DEFAULT_PART, GROUPED_HEADER, KERNELS_HEADER, build_context, export,
                                      layer_pes, render)

__all__ = ["BISE_PIPELINE_DEPTH", "BIT_TYPE", "DEFAULT_CLOCK_NS", "DEFAULT_PART", "GROUPED_HEADER",
           "GROUPED_PIPELINE_DEPTH", "INPUT_TYPE", "KERNELS_HEADER", "PE_PIPELINE_DEPTH", "ap_type", "build_context",
           "c_literal", "cycle_model", "cycle_summary", "export", "layer_pes", "render", "rom_type"]
