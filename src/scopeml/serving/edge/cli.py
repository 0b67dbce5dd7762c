"""scopeml-export: turn a serving bundle into on-device artifacts, and check they still agree with it.

    scopeml-export SOURCE --out DIR [--no-quantize] [--threads 1]

SOURCE is a selection.json from scopeml-select, a training run folder (its bundle is written to
DIR/bundle first) or a serving bundle folder. DIR receives:

  model.ts        TorchScript: prepared waveform (batch, clip_samples) -> calibrated probabilities
                  (softmax(logits / temperature) is inside, so a device needs no calibration code);
                  scripted, or traced where the network does not script
  model_int8.ts   the same with int8 weights and activations (unless --no-quantize or deploy.quantize=false)
  model.onnx      the same float model for ONNX runtimes (opset 17, dynamic batch axis). The STFT is a
                  conv1d with a windowed DFT basis: the TorchScript-based exporter cannot export
                  torch.stft's complex output, and this keeps the whole front end in the file.
  edge.json       manifest for the device: classes, preprocessing, temperature, VAD settings, files
  edge_report.json / edge_report.md   each format ok/failed/skipped, size, parity with the float bundle,
                  CPU latency, scoping targets

A format the network cannot be converted to is reported (format, network class, reason) and the
other formats are still written.

Exit status: 0 at least one format exported and every float export within deploy.parity_tolerance
(int8 misses are reported, not fatal); 1 no format could be exported, or a float export missed the
tolerance; 2 bad SOURCE or arguments.
EdgeRunner (scopeml.serving.edge) runs an exported folder with torch, numpy, the shared preprocessing and the VAD only.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from scopeml.serving.edge.artifacts import REPORT_MD
from scopeml.serving.edge.source import EdgeError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scopeml-export", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", type=Path, help="selection.json, training run folder, or serving bundle folder")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--no-quantize", action="store_true", help="skip model_int8.ts (default: deploy.quantize)")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads for inference and latency (default 1)")
    args = parser.parse_args(argv)
    if args.threads < 1:
        parser.error("--threads must be >= 1")
    from scopeml.serving.edge.pipeline import export_source  # torch and the exporters load only once arguments are good

    try:
        quantize = False if args.no_quantize else None
        report = export_source(args.source, args.out, quantize=quantize, threads=args.threads)
    except EdgeError as exc:
        print(f"scopeml-export: error: {exc}", file=sys.stderr)
        return 2
    print((args.out / REPORT_MD).read_text())
    if not any(f["status"] == "ok" for f in report["formats"].values()):
        print(f"scopeml-export: no format could be exported for network {report['network']} (reasons above)",
              file=sys.stderr)
        return 1
    if not report["float_exports_within_tolerance"]:
        print("scopeml-export: a float export disagrees with the bundle beyond deploy.parity_tolerance",
              file=sys.stderr)
        return 1
    return 0
