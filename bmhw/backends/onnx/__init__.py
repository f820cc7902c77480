"""ONNX on the integer side: the graph builder (``graph``), the integer network as ONNX operators (``integer``)
and running ONNX files with onnxruntime (``run``); torch-free. The float BM network's export and the import of
classical CNNs work on PyTorch models and live in ``bmhw.models`` (``onnx_export``, ``onnx_import``)."""
