#!/usr/bin/env python3
"""Side-by-side latency: eas-blade vs ONNX Runtime, same machine, same run, same threads.

For each model and thread count, the two engines are measured in alternating rounds (ours,
ORT, ours, ORT, ...) so that drift in machine load hits both alike; each round reports a
median, and the table shows the median of round medians and the ratio eas-blade / ORT
(below 1.0 means eas-blade is faster).

eas-blade is measured through `blade bench MODEL --data FILE --threads N --runs R --json`
(so its numbers include nothing the command does not do per run); ORT in-process with all
graph optimizations on, intra-op threads = N, inter-op threads = 1, sequential execution.

Usage:
  python3 benches/compare/compare.py --model NAME ONNX_FILE OURS_MODEL DATA_NPY [--model ...]
      [--threads 1 2] [--rounds 5] [--runs 50] [--blade target/release/blade] [--json OUT]
Or, for every model of a built zoo (benches/zoo/), --zoo DIR.
The venv with the pinned peer is made by benches/compare/run.sh.
"""
import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

import numpy as np
import onnxruntime as ort


def load_first_feed(path):
    data = np.load(path, allow_pickle=True)
    if data.dtype == object:
        sample = data[0] if data.shape else data.item()
        if isinstance(sample, dict):
            return sample
        raise SystemExit(f"{path}: expected a list of feed dicts")
    raise SystemExit(f"{path}: expected an .npy list of feed dicts (the test_data format)")


def ort_feed(sess, feed):
    """Maps test_data keys (TF style 'x:0' or plain) to the ONNX input names, in order."""
    names = [i.name for i in sess.get_inputs()]
    out = {}
    for idx, name in enumerate(names):
        for k in (name, name + ":0", name.split(":")[0]):
            if k in feed:
                out[name] = feed[k]
                break
        else:
            # Fall back to position: dicts keep file order.
            out[name] = list(feed.values())[idx]
    types = {i.name: i.type for i in sess.get_inputs()}
    for name, v in out.items():
        want = {"tensor(float)": np.float32, "tensor(int64)": np.int64,
                "tensor(int32)": np.int32, "tensor(double)": np.float64,
                "tensor(bool)": np.bool_}.get(types[name])
        if want is not None:
            out[name] = np.asarray(v).astype(want)
    return out


def time_ort(sess, feed, runs, warmup=5):
    for _ in range(warmup):
        sess.run(None, feed)
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        sess.run(None, feed)
        times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)


def time_ours(blade, model, data, threads, runs):
    cmd = [blade, "bench", model, "--data", data, "--threads", str(threads),
           "--runs", str(runs), "--json"]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out)["median_ms"]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", nargs=4, action="append", default=[],
                    metavar=("NAME", "ONNX", "OURS", "DATA"))
    ap.add_argument("--zoo", help="a built zoo directory (benches/zoo/build_zoo.py output)")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--blade", default="target/release/blade")
    ap.add_argument("--json", help="write the results here too")
    args = ap.parse_args()

    models = list(args.model)
    if args.zoo:
        for name in sorted(os.listdir(args.zoo)):
            man = os.path.join(args.zoo, name, "manifest.json")
            if not os.path.exists(man):
                continue
            files = json.load(open(man))["files"]
            d = os.path.join(args.zoo, name)
            if not files.get("onnx"):
                continue
            onnx_file = os.path.join(d, files["onnx"])
            # Ours runs what the user deploys: the GraphDef where there is one.
            ours = os.path.join(d, files.get("graphdef") or files["onnx"])
            data = os.path.join(d, files["test_data"])
            models.append((name, onnx_file, ours, data))
    if not models:
        raise SystemExit("no models: pass --model or --zoo")

    rows = []
    for name, onnx_file, ours, data in models:
        feed = load_first_feed(data)
        for threads in args.threads:
            so = ort.SessionOptions()
            so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            so.intra_op_num_threads = threads
            so.inter_op_num_threads = 1
            so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
            sess = ort.InferenceSession(onnx_file, so, providers=["CPUExecutionProvider"])
            of = ort_feed(sess, feed)
            mine, theirs = [], []
            for _ in range(args.rounds):
                mine.append(time_ours(args.blade, ours, data, threads, args.runs))
                theirs.append(time_ort(sess, of, args.runs))
            a, b = statistics.median(mine), statistics.median(theirs)
            rows.append({"model": name, "threads": threads, "eas_blade_ms": a, "ort_ms": b,
                         "ratio": a / b})
            print(f"{name:<14} t={threads}  eas-blade {a:9.3f} ms   ORT {b:9.3f} ms   "
                  f"ratio {a / b:6.3f}", flush=True)

    print()
    print(f"| model | threads | eas-blade ms | ONNX Runtime {ort.__version__} ms | ratio |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['threads']} | {r['eas_blade_ms']:.3f} | {r['ort_ms']:.3f} | {r['ratio']:.3f} |")
    meta = {"date": time.strftime("%Y-%m-%d"), "machine": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(), "onnxruntime": ort.__version__, "rows": rows}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(meta, f, indent=2)


if __name__ == "__main__":
    sys.exit(main())
