"""Build ONNX classifier/embedding models from all-MiniLM-L6-v2 safetensors weights, without PyTorch.

`weights` finds and reads the weights, `bert_onnx` writes the ONNX graph, `variants` saves it and
derives fp16/int8 files, `reference` is an independent numpy forward pass used by the tests.
"""
