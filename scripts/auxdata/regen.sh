#!/usr/bin/env bash
# Regenerate fixtures/auxdata/ with real numpy 1.x, numpy 2.x and torch, then run the
# round-trip tests (our writers read by real numpy/torch). Venvs live in .cache/ (git-ignored).
#   scripts/auxdata/regen.sh            # venvs + fixtures + round trip
#   scripts/auxdata/regen.sh --check    # round trip only (fixtures untouched)
# torch's Linux wheel from PyPI pulls its CUDA libraries too (about 4.7 GB installed); CPU use only.
set -euo pipefail
cd "$(dirname "$0")/../.."

NUMPY1=numpy==1.26.4
NUMPY2=numpy==2.3.5
TORCH=torch==2.13.0
C=.cache/auxdata-py
mkdir -p "$C"

venv() { # venv NAME PACKAGES...
    local d="$C/$1"; shift
    if [ ! -x "$d/bin/python" ]; then python3 -m venv "$d"; fi
    "$d/bin/pip" install -q "$@"
}
venv np1 "$NUMPY1"
venv np2 "$NUMPY2"
venv torch "$NUMPY2" "$TORCH"

if [ "${1:-}" != "--check" ]; then
    F=fixtures/auxdata
    rm -rf "$F"
    mkdir -p "$F"
    "$C/np1/bin/python" scripts/auxdata/gen_fixtures.py numpy "$F/numpy1"
    "$C/np2/bin/python" scripts/auxdata/gen_fixtures.py numpy "$F/numpy2"
    "$C/torch/bin/python" scripts/auxdata/gen_fixtures.py torch "$F/torch"
    "$C/torch/bin/python" scripts/auxdata/gen_fixtures.py bad "$F/bad"
fi

for np in np1 np2; do
    EAS_AUXDATA_NUMPY_PYTHON="$PWD/$C/$np/bin/python" \
    EAS_AUXDATA_TORCH_PYTHON="$PWD/$C/torch/bin/python" \
        cargo test -p eas-auxdata --test roundtrip
done
cargo test -p eas-auxdata
