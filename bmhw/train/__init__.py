"""Training: the loop and evaluation (``loop``), the methods of the literature by name (``methods``), layer-wise
and whole-network distillation (``distill``), AdderNet's PKKD (``pkkd``) and the re-fit after conversion
(``calibrate``). Uses PyTorch; nothing below ``bmhw.ir`` imports it."""
