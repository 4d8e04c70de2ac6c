#!/usr/bin/env bash
# Builds the release `blade`, makes a venv with the pinned ONNX Runtime (once, in .cache/), and
# runs compare.py with the given arguments. Example:
#   benches/compare/run.sh --zoo .cache/zoo/models --threads 1 2
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
venv=${EAS_BENCH_VENV:-$root/.cache/bench-venv}
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q -r "$root/benches/compare/requirements.txt"
fi
(cd "$root" && cargo build --release -q -p eas-blade --bin blade)
cd "$root"
exec "$venv/bin/python" "$root/benches/compare/compare.py" --blade "$root/target/release/blade" "$@"
