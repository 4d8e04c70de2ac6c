#!/usr/bin/env bash
# Fetches the real models the engine is tested on, and ONNX Runtime's outputs for them on a
# deterministic input, into a cache folder. Idempotent: a stamp file marks completion.
#
#   PP-OCRv4 rec (SVTR-LCNet, opset 12) from the rapidocr-onnxruntime==1.4.4 wheel;
#   references from onnxruntime==1.31.1 in a venv inside the cache.
#
#   scripts/fetch-real-models.sh            # into <repo>/.cache/real-models
#   EAS_REAL_MODELS_DIR=/some/dir scripts/fetch-real-models.sh
#
# Layout written: ppocr_v4_rec/model.onnx, ppocr_v4_rec/ref.json (input and output names and
# shapes) and ppocr_v4_rec/<name>.f32 (raw little-endian float32 data).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
CACHE=${EAS_REAL_MODELS_DIR:-$ROOT/.cache/real-models}
STAMP="$CACHE/.ppocr_v4_rec.complete"

if [ -f "$STAMP" ]; then
    echo "real models already in $CACHE"
    exit 0
fi
mkdir -p "$CACHE/wheels"
if ! ls "$CACHE"/wheels/rapidocr_onnxruntime-1.4.4-*.whl >/dev/null 2>&1; then
    python3 -m pip download --quiet --no-deps --only-binary=:all: \
        --dest "$CACHE/wheels" "rapidocr-onnxruntime==1.4.4"
fi
WHEEL=$(ls "$CACHE"/wheels/rapidocr_onnxruntime-1.4.4-*.whl | head -n 1)

VENV="$CACHE/venv"
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c "import onnxruntime, numpy" 2>/dev/null; then
    python3 -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet "onnxruntime==1.31.1" numpy
fi

"$VENV/bin/python" - "$WHEEL" "$CACHE" <<'PY'
import json, os, sys, tempfile, zipfile
import numpy as np
import onnxruntime as ort

wheel, cache = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as z:
    names = [n for n in z.namelist() if n.endswith(".onnx") and "rec" in n and "v4" in n.lower()]
    if len(names) != 1:
        sys.exit(f"expected one PP-OCRv4 rec model in {wheel}, found {names}")
    model = z.read(names[0])

out_dir = os.path.join(cache, "ppocr_v4_rec")
tmp = tempfile.mkdtemp(dir=cache, prefix=".ppocr.")
with open(os.path.join(tmp, "model.onnx"), "wb") as f:
    f.write(model)

sess = ort.InferenceSession(os.path.join(tmp, "model.onnx"), providers=["CPUExecutionProvider"])
inp = sess.get_inputs()[0]
# Deterministic input in the model's normalized range [-1, 1]: smooth stripes plus noise
# from a fixed seed, shaped like one text line (1x3x48x320).
shape = (1, 3, 48, 320)
rng = np.random.default_rng(20240601)
yy, xx = np.meshgrid(np.arange(48), np.arange(320), indexing="ij")
base = np.sin(xx / 7.0) * np.cos(yy / 5.0)
x = (0.7 * base[None, None] + 0.3 * rng.uniform(-1, 1, size=shape)).astype(np.float32)
outs = sess.run(None, {inp.name: x})

meta = {"source": os.path.basename(names[0]), "onnxruntime": ort.__version__,
        "input": {"name": inp.name, "shape": list(shape), "file": "input.f32"}, "outputs": []}
x.astype("<f4").tofile(os.path.join(tmp, "input.f32"))
for o, v in zip(sess.get_outputs(), outs):
    fname = f"output_{len(meta['outputs'])}.f32"
    np.asarray(v, dtype="<f4").tofile(os.path.join(tmp, fname))
    meta["outputs"].append({"name": o.name, "shape": list(v.shape), "file": fname})
with open(os.path.join(tmp, "ref.json"), "w") as f:
    json.dump(meta, f, indent=2)
if os.path.isdir(out_dir):
    import shutil
    shutil.rmtree(out_dir)
os.rename(tmp, out_dir)
print(f"wrote {out_dir}: input {shape}, outputs {[m['shape'] for m in meta['outputs']]}")
PY
touch "$STAMP"
echo "real models ready in $CACHE"
