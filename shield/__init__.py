"""Shared core of LLM Shield Workers: settings, the producer/worker contract, the result cache and the
model catalog. Nothing in this package imports onnxruntime."""

__version__ = "0.1.0"
