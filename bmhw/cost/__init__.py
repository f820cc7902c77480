"""Hardware cost: the analytical model of arithmetic units (``units``), of a network's layers as five kinds
of neuron (``network``), and synthesis of the generated blocks with Yosys (``synth``). docs/gates.md."""
