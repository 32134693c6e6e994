"""Model training: samples, architectures (ConvGRU-SA, ConvGRU), training loop and ONNX package export.

Submodules are imported explicitly (torch is heavy); nothing here imports Prefect.
"""
