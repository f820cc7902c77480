"""Hardware backends: writers that turn the quantized IR (``bmhw.ir.QuantizedNet``) into hardware
sources. They read only the IR and NumPy, never torch."""
