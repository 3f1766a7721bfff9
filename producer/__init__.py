"""Producer side: read inputs, enqueue scan batches, write ordered results.

`from llm_shield.producer import Scanner` is the Python API; `run_scan` is what `llm-shield scan` calls.
"""

from llm_shield.producer.api import Scanner
from llm_shield.producer.runner import ReadOptions, ScanRequest, run_scan

__all__ = ["ReadOptions", "ScanRequest", "Scanner", "run_scan"]
