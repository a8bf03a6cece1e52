#!/usr/bin/env bash
# The GPU checks in one call: the CUDA tests, then the layer and ghost-batch benchmarks on CUDA,
# each written to a file under OUT (default gpu-results/). On a machine without CUDA it says so
# and exits 0 without running anything.
#
#   benchmarks/gpu.sh                  # or: make gpu-check
#   OUT=results/h100 ROUNDS=30 benchmarks/gpu.sh
#
# Files: tests.txt (pytest -k cuda: every layer's reference test, float64 gradcheck, ghost
# batches, the evolved-layer primitives on CUDA; SyncBGN over NCCL with >= 2 GPUs), layers.txt
# (benchmarks/layers.py --device cuda: forward and forward+backward / BatchNorm2d on the three
# shapes), ghost.txt (benchmarks/ghost.py --device cuda), env.txt (GPU, driver, torch).
set -u
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
OUT=${OUT:-gpu-results}
ROUNDS=${ROUNDS:-15}
if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "gpu.sh: no CUDA device visible to torch; nothing to run"
    exit 0
fi
mkdir -p "$OUT"
status=0
{ nvidia-smi 2>/dev/null || true
  "$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(), 'x', torch.cuda.device_count())"
} > "$OUT/env.txt"
echo "== CUDA tests -> $OUT/tests.txt"
"$PY" -m pytest -q -p no:cacheprovider -k "cuda or nccl" tests/ 2>&1 | tee "$OUT/tests.txt" | tail -3
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1
echo "== layers on CUDA -> $OUT/layers.txt"
"$PY" benchmarks/layers.py --device cuda --rounds "$ROUNDS" 2>&1 | tee "$OUT/layers.txt" | tail -20
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1
echo "== layers on CUDA, bfloat16 -> $OUT/layers-bf16.txt"
"$PY" benchmarks/layers.py --device cuda --rounds "$ROUNDS" --dtype bfloat16 > "$OUT/layers-bf16.txt" 2>&1 || status=1
echo "== ghost batches on CUDA -> $OUT/ghost.txt"
"$PY" benchmarks/ghost.py --device cuda --rounds "$ROUNDS" 2>&1 | tee "$OUT/ghost.txt" | tail -10
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1
echo "gpu.sh: results in $OUT/ (exit $status)"
exit $status
