#!/usr/bin/env bash
# The GPU path, checked end to end on a machine with CUDA (CI has none; run it by hand where one is lent):
#   1. train a few steps with trainer=gpu (mixed precision) on a small slice of the built-in data;
#   2. export the model (TorchScript, ONNX) and check the exports agree with it;
#   3. package it with deploy.device=cuda, start `bentoml serve` on loopback and classify one clip;
#   4. print what ran where (torch's device, Lightning's accelerator, the service's /info device).
#
#   bash bench/gpu_check.sh            # from the repository root, after `make install`
#
# Exits non-zero at the first step that fails; without a CUDA device it says so and exits 2.
# DEVICE=cpu runs the same steps on the CPU (trainer=cpu, deploy.device=cpu): a dry run of the script itself.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
BIN=$(dirname "$PY")
OUT=${OUT:-$(mktemp -d /tmp/scopeml-gpu-check.XXXXXX)}
PORT=${PORT:-3917}
export BENTOML_HOME="$OUT/bentoml" BENTOML_DO_NOT_TRACK=True SCOPEML_PREDICTION_LOG="$OUT/predictions.sqlite"
export SCOPEML_CACHE_DIR="${SCOPEML_CACHE_DIR:-$OUT/cache}"
DEVICE=${DEVICE:-cuda}
TRAINER=$([ "$DEVICE" = cuda ] && echo gpu || echo cpu)

$PY - "$DEVICE" <<'EOF' || { echo "no CUDA device visible to torch: nothing to check here" >&2; exit 2; }
import sys, torch
print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, devices: {torch.cuda.device_count()}")
if torch.cuda.is_available():
    print("device 0:", torch.cuda.get_device_name(0))
sys.exit(0 if torch.cuda.is_available() or sys.argv[1] != "cuda" else 1)
EOF

echo "== 1. train on trainer=$TRAINER"
started=$(date +%s)
"$BIN/scopeml-train" hydra.run.dir="$OUT/run" trainer="$TRAINER" tracker=none trainer.progress_bar=none \
  "++data.source.voices=[en+m1,en+f1,en+m3,en+f4,en+m7,en+m2]" data.source.pitches=[50] data.source.rates=[175] \
  hparams.max_epochs=2 hparams.batch_size=16 | tail -n 20
grep -m1 -E "GPU available|accelerator" "$OUT/run/train.log" || true
echo "trained in $(( $(date +%s) - started )) s"

echo "== 2. export and parity check"
"$BIN/scopeml-export" "$OUT/run" --out "$OUT/export" | tail -n 8

echo "== 3. package with deploy.device=$DEVICE and serve one request"
"$BIN/scopeml-package" "$OUT/run" deploy.device="$DEVICE" | tail -n 2
"$BIN/bentoml" serve scopeml.serving.service:KeywordSpotting --host 127.0.0.1 --port "$PORT" \
  > "$OUT/serve.log" 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 120); do curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null && break; sleep 1; done
$PY - "$PORT" "$DEVICE" <<'EOF'
import io, sys
import httpx, numpy as np, soundfile as sf
from scopeml.data import espeak
from scopeml.data.audio import resample
url = f"http://127.0.0.1:{sys.argv[1]}"
wave = resample(espeak.synthesize("yes", voice="en+m3"), espeak.sample_rate(), 16000)
buf = io.BytesIO(); sf.write(buf, wave, 16000, format="WAV")
r = httpx.post(f"{url}/classify", files={"audio": ("yes.wav", buf.getvalue(), "audio/wav")}, timeout=60)
info = httpx.post(f"{url}/info", json={}, timeout=30).json()
print(f"/classify: {r.status_code} {r.json().get('label')} ({r.json().get('confidence')})")
print(f"== where it ran: service device {info['device']}, model {info['model']}")
sys.exit(0 if r.status_code == 200 and info["device"] == sys.argv[2] else 1)
EOF
echo "check passed on $DEVICE; outputs in $OUT"
