"""Correction runtime: verified model packages and ONNX Runtime sessions with explicit providers."""
