#!/usr/bin/env bash
# Fetches ONNX's backend test data (node, pytorch-converted, pytorch-operator, simple) from
# the onnx==1.17.0 wheel on PyPI into a cache folder. Idempotent: a stamp file marks a
# complete extraction, so a second run returns at once.
#
#   scripts/fetch-onnx-tests.sh            # into <repo>/.cache/onnx-tests
#   EAS_ONNX_TESTS_DIR=/some/dir scripts/fetch-onnx-tests.sh
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
CACHE=${EAS_ONNX_TESTS_DIR:-$ROOT/.cache/onnx-tests}
VERSION=1.17.0
STAMP="$CACHE/.onnx-$VERSION.complete"
SUITES="node pytorch-converted pytorch-operator simple"

if [ -f "$STAMP" ]; then
    echo "ONNX $VERSION backend tests already in $CACHE"
    exit 0
fi

mkdir -p "$CACHE"
WHEELS="$CACHE/wheels"
mkdir -p "$WHEELS"
if ! ls "$WHEELS"/onnx-"$VERSION"-*.whl >/dev/null 2>&1; then
    python3 -m pip download --quiet --no-deps --only-binary=:all: \
        --dest "$WHEELS" "onnx==$VERSION"
fi
WHEEL=$(ls "$WHEELS"/onnx-"$VERSION"-*.whl | head -n 1)

# Extract into a temporary folder, then move each suite into place, so an interrupted run
# never leaves a half-extracted suite that looks complete.
TMP=$(mktemp -d "$CACHE/.extract.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
python3 - "$WHEEL" "$TMP" $SUITES <<'PY'
import sys, zipfile, os
wheel, dest, suites = sys.argv[1], sys.argv[2], sys.argv[3:]
prefix = "onnx/backend/test/data/"
n = 0
with zipfile.ZipFile(wheel) as z:
    for info in z.infolist():
        name = info.filename
        if not name.startswith(prefix) or name.endswith("/"):
            continue
        rel = name[len(prefix):]
        if rel.split("/", 1)[0] not in suites or ".." in rel.split("/"):
            continue
        out = os.path.join(dest, rel)
        os.makedirs(os.path.dirname(out), exist_ok=True)
        with z.open(info) as src, open(out, "wb") as dst:
            dst.write(src.read())
        n += 1
if n == 0:
    sys.exit(f"no test data found in {wheel}")
print(f"extracted {n} files from {os.path.basename(wheel)}")
PY
for s in $SUITES; do
    if [ ! -d "$TMP/$s" ]; then
        echo "suite $s missing from $WHEEL" >&2
        exit 1
    fi
    rm -rf "${CACHE:?}/$s"
    mv "$TMP/$s" "$CACHE/$s"
done
touch "$STAMP"
echo "ONNX $VERSION backend tests ready in $CACHE"
