#!/usr/bin/env bash
# Issue 13 item 1: the op, Triton-kernel, fused-GAT, model-parity and compile/export tests on CUDA in
# fp32/fp16/bf16 (tests/cuda_suite.txt lists them). Run from the repository root on a GPU machine:
#   bash tests/run_cuda_suite.sh            (results in $OUT/cuda_junit.xml when $OUT is set)
# KOKOYI_TEST_DEVICE=cpu bash tests/run_cuda_suite.sh runs the same tests on the CPU path (no GPU).
# Extra arguments go to pytest (e.g. -x). Without -x every failure is collected in the one GPU run; a
# crash that poisons the CUDA context makes the later tests fail fast. Per-test limit 120 s (needs
# pytest-timeout; left out if absent); the whole run is interrupted after SUITE_TIMEOUT s (default 420)
# with SIGINT, so that pytest still writes its report.
set -u
cd "$(dirname "$0")/.."
export TRITON_INTERPRET="${TRITON_INTERPRET:-0}"          # compiled kernels (conftest defaults to 1)
export KOKOYI_TEST_DEVICE="${KOKOYI_TEST_DEVICE:-cuda}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
PY="${PYTHON:-python3}"
mapfile -t TESTS < <(sed -e 's/#.*//' -e 's/[[:space:]]*$//' tests/cuda_suite.txt | grep -v '^$')
ARGS=(-q -rfEs --durations=15)
if "$PY" -c "import pytest_timeout" 2>/dev/null; then ARGS+=(--timeout 120); fi
if [ -n "${OUT:-}" ]; then mkdir -p "$OUT"; ARGS+=("--junitxml=$OUT/cuda_junit.xml"); fi
"$PY" - <<'PYEOF'
import os, torch
print("torch", torch.__version__, "cuda", torch.version.cuda, "device", os.environ["KOKOYI_TEST_DEVICE"],
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else "(no CUDA device)", flush=True)
PYEOF
start=$(date +%s)
timeout -s INT "${SUITE_TIMEOUT:-420}" "$PY" -m pytest "${ARGS[@]}" "$@" "${TESTS[@]}"
rc=$?
echo "cuda suite: exit $rc after $(( $(date +%s) - start )) s"
exit $rc
