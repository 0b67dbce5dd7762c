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

EdgeRunner (scopeml.serving.edge) runs an exported folder with torch, numpy, the shared preprocessing and the VAD only.
"""

from __future__ import annotations

import sys
from pathlib import Path

from scopeml import stage

PROG = "scopeml-export"


def build_parser():
    parser = stage.parser(
        PROG,
        __doc__,
        here={
            stage.ExitCode.CHECK_FAILED: "no format could be exported, "
            "or a float export missed deploy.parity_tolerance "
            "(int8 misses are reported, not fatal)",
            stage.ExitCode.BAD_INPUT: "a bad SOURCE or argument",
        },
    )
    parser.add_argument("source", type=Path, help="selection.json, training run folder, or serving bundle folder")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--no-quantize", action="store_true", help="skip model_int8.ts (default: deploy.quantize)")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads for inference and latency (default 1)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.threads < 1:
        parser.error("--threads must be >= 1")
    from scopeml.serving.edge.artifacts import REPORT_MD
    from scopeml.serving.edge.source import EdgeError

    def work() -> stage.ExitCode:
        from scopeml.serving.edge.pipeline import (
            export_source,
        )  # torch and the exporters load only once arguments are good

        report = export_source(
            args.source, args.out, quantize=False if args.no_quantize else None, threads=args.threads
        )
        print((args.out / REPORT_MD).read_text())
        if not any(f["status"] == "ok" for f in report["formats"].values()):
            print(
                f"{PROG}: no format could be exported for network {report['network']} (reasons above)", file=sys.stderr
            )
            return stage.ExitCode.CHECK_FAILED
        if not report["float_exports_within_tolerance"]:
            print(f"{PROG}: a float export disagrees with the bundle beyond deploy.parity_tolerance", file=sys.stderr)
            return stage.ExitCode.CHECK_FAILED
        return stage.ExitCode.OK

    return stage.run(PROG, work, bad_input=(EdgeError,))


if __name__ == "__main__":
    sys.exit(main())
