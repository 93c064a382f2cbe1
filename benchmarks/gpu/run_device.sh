#!/usr/bin/env bash
# One call on a lent GPU machine (issue 13): correctness on CUDA, then benchmarks, within a fixed budget.
#
#   bash benchmarks/gpu/run_device.sh [tests|bench|all|seq] [TEST_BUDGET_S] [BENCH_BUDGET_S] [bench args...]
#
# all: the CUDA suite beside the benchmarks (shared card: timings are preliminary); seq: the suite
# first, then the benchmarks alone on the card.
#
# The machine has torch, triton and torch_geometric but not lark or pymetis: the caller carries their
# wheels in .whl/ (see docs/notes.md, "GPU runs"). Everything lands in $OUT (or ./.gpuout): logs as they
# are written, and one results tarball at the end. Each part runs under `timeout`, so the script ends
# before the device call's own limit and always packs what it has.
set -u
MODE=${1:-all}; TEST_S=${2:-150}; BENCH_S=${3:-240}; shift 3 2>/dev/null || shift $#
OUT=${OUT:-$PWD/.gpuout}; mkdir -p "$OUT/res"
export PYTHONUNBUFFERED=1 TRITON_INTERPRET=0 KOKOYI_TEST_DEVICE=cuda TMPDIR=${TMPDIR:-/tmp}
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site:$PWD || echo "wheel install failed"
else
  export PYTHONPATH=$PWD
fi
{
  date -u; nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.mem --format=csv
  python3 -c "import torch, triton, sys; print(sys.version); print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name()); print('triton', triton.__version__)"
  python3 -c "import torch_geometric as g; print('pyg', g.__version__)"
  python3 -c "import kokoyi, lark, pymetis; print('kokoyi imports ok')"
} > "$OUT/env.txt" 2>&1
cat "$OUT/env.txt"
pack() { tar -czf "$OUT/results.tgz" -C "$OUT" res >/dev/null 2>&1; }
trap pack EXIT
test_pid=
if [ "$MODE" != bench ]; then
  XDIST=(); python3 -c "import xdist" 2>/dev/null && XDIST=(-n "${CUDA_SUITE_WORKERS:-8}")
  ( SUITE_TIMEOUT=$((TEST_S - 15)) timeout -k 5 "$TEST_S" bash tests/run_cuda_suite.sh "${XDIST[@]}" > "$OUT/tests.log" 2>&1
    echo "cuda suite rc=$?" >> "$OUT/tests.log" ) &
  test_pid=$!
  if [ "$MODE" = seq ]; then wait "$test_pid"; test_pid=; fi
fi
if [ "$MODE" != tests ]; then
  timeout -k 5 "$BENCH_S" python3 benchmarks/bench_gpu.py --out "$OUT/res" "$@" > "$OUT/bench.log" 2>&1
  echo "bench rc=$?" >> "$OUT/bench.log"
fi
[ -n "$test_pid" ] && wait "$test_pid"
cp "$OUT"/cuda_junit.xml "$OUT/res/" 2>/dev/null
echo "=== tests (tail) ==="; grep -E "passed|failed|error|rc=" "$OUT/tests.log" | tail -15
echo "=== bench (tail) ==="; tail -c 6000 "$OUT/bench.log"
