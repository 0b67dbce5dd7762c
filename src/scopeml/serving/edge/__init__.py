"""Edge deployment: scopeml-export writes a bundle as files a device loads, EdgeRunner serves them.

source.py    which serving bundle a SOURCE names
modules.py   what an export wraps around the model (calibration, ONNX-exportable spectrogram)
export.py    one writer per format: TorchScript, int8 TorchScript, ONNX
parity.py    clips, parity with the bundle, batch shapes, latency
report.py    edge.json, edge_report.json / .md
pipeline.py  the flow; a format the network cannot take is reported and the others go on
runner.py    EdgeRunner: no model code, for the device
"""

from scopeml.serving.edge.artifacts import INT8_FILE, MANIFEST, ONNX_FILE, REPORT_JSON, REPORT_MD, TS_FILE
from scopeml.serving.edge.runner import EdgeRunner
from scopeml.serving.edge.source import EdgeError

__all__ = [
    "EdgeError",
    "EdgeRunner",
    "INT8_FILE",
    "MANIFEST",
    "ONNX_FILE",
    "REPORT_JSON",
    "REPORT_MD",
    "TS_FILE",
]
