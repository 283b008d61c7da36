#!/usr/bin/env bash
# The test suite on a busy machine: one busy loop per core (two on the 2-core machines we test
# on) for as long as the suite runs, stopped however it ends. Arguments go to pytest.
#   bash benchmarks/busy_suite.sh            # the whole suite, as README's test command runs it
#   BUSY_LOOPS=4 bash benchmarks/busy_suite.sh -x
set -uo pipefail
cd "$(dirname "$0")/.."
loops="${BUSY_LOOPS:-$(nproc)}"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done; wait "${pids[@]}" 2>/dev/null; }
trap cleanup EXIT INT TERM
for _ in $(seq "$loops"); do
    python3 -c "while True: pass" &
    pids+=($!)
done
echo "busy_suite: $loops busy loops running (pids ${pids[*]}); load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
start=$(date +%s)
python -m pytest "$@"
rc=$?
echo "busy_suite: pytest exit $rc after $(( $(date +%s) - start )) s with $loops busy loops; load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
exit $rc
