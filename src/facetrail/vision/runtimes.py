"""The inference runtimes, ONNX Runtime and OpenVINO, imported with their usage reporting off.

A face search engine sends nothing anywhere and keeps nothing outside its data directory. Both runtimes report
usage by default:

- ONNX Runtime (its Linux builds since 1.29), as soon as it is imported, creates a persistent device identifier
  and a queue of events (the process, each session's creation and model, errors, run times) under
  ~/.cache/Microsoft/DeveloperTools, and uploads them to Microsoft whenever the network is reachable.
  ORT_DISABLE_TELEMETRY=1 turns all of it off (nothing is created, kept or sent), but only when it is set before the
  library initialises, which it does on import, and the choice then holds for the process. So it is set here,
  before the only import, for this process and the processes it starts, whatever it was set to.
- OpenVINO's package imports its model-conversion tools, which write an identifier under ~/intel and send a usage
  event to Intel on import unless a consent file says no. They are kept out: the package skips them when they
  cannot be imported, and only the runtime is used.

Every import of either runtime in facetrail goes through this module (tests/vision/test_runtimes.py checks that a
process analysing photos with each writes nothing in its home directory).
"""

from __future__ import annotations

import os
import sys
from types import ModuleType
from typing import Any


def onnxruntime() -> ModuleType:
    os.environ["ORT_DISABLE_TELEMETRY"] = "1"
    import onnxruntime as ort

    return ort


def openvino() -> ModuleType:
    sys.modules.setdefault("openvino.tools.ovc", None)  # type: ignore[arg-type]
    import openvino as ov

    return ov


def cpu_session(model: bytes | str, threads: int) -> Any:
    """An ONNX Runtime session of `model` (its bytes, or a path) on the CPU: `threads` threads for one run, runs
    not parallelised within, and only errors logged (its warnings are about graph tuning, not about facetrail).
    Raises what onnxruntime raises for a model it cannot load."""
    ort = onnxruntime()
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(model, sess_options=options, providers=["CPUExecutionProvider"])
