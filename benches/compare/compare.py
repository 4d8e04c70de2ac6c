#!/usr/bin/env python3
"""Side-by-side latency: eas-blade vs ONNX Runtime, same machine, same run, same threads.

For each model and thread count, the two engines are measured in alternating rounds (ours,
ORT, ours, ORT, ...) so that drift in machine load hits both alike; each round reports a
median, and the table shows the median of round medians and the ratio eas-blade / ORT
(below 1.0 means eas-blade is faster).

Each model is first optimized once at o1 (`blade bench --save-optimized`, timed: import +
passes + planning + one run + save), then eas-blade is measured on that artifact through
`blade bench ARTIFACT --data FEED --threads N --runs R --json` (so its numbers include nothing
the command does not do per run); ORT in-process with all graph optimizations on, intra-op
threads = N, inter-op threads = 1, sequential execution. The feed is one sample of the
model's test data: the one with the most elements per batch row (MiniLM: seq 128), cut to the
first sample's batch (1 for every zoo model).

--memory adds peak memory: eas-blade's whole `blade bench` process (binary, data and arena
included, so conservative) against the growth of ORT's process from just before the session
is created to after the runs (the interpreter, numpy and the onnxruntime library excluded).

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


def load_feeds(path):
    data = np.load(path, allow_pickle=True)
    if data.dtype == object:
        samples = [data.item()] if not data.shape else list(data)
        if samples and all(isinstance(s, dict) for s in samples):
            return samples
        raise SystemExit(f"{path}: expected a list of feed dicts")
    raise SystemExit(f"{path}: expected an .npy list of feed dicts (the test_data format)")


def bench_feed(samples):
    """The feed to time: the sample with the most elements per batch row (MiniLM's seq 128 rather
    than its seq 16), cut to the batch of the first sample (batch 1 unless the test data says
    otherwise)."""
    def batch(s):
        return min((np.asarray(v).shape[0] for v in s.values() if np.asarray(v).ndim), default=1)

    def per_row(s):
        return sum(np.asarray(v).size / max(batch(s), 1) for v in s.values())

    want = batch(samples[0])
    best = max(samples, key=per_row)
    if batch(best) == want:
        return best
    return {k: np.asarray(v)[:want] if np.asarray(v).ndim else v for k, v in best.items()}


def save_feed(feed, path):
    arr = np.empty(1, dtype=object)
    arr[0] = feed
    np.save(path, arr, allow_pickle=True)


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


def memory_ours(blade, model, data, threads, runs):
    """Whole-process peak RSS (VmHWM) of `blade bench` on the optimized artifact (binary, data
    and arena included: conservative)."""
    cmd = [blade, "bench", model, "--data", data, "--threads", str(threads), "--runs", str(runs),
           "--json", "--peak-memory"]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out)["peak_rss_mib"]


def vm_hwm_mib():
    """Peak RSS of this process image (VmHWM; getrusage's maxrss survives exec and would count
    the parent's peak)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise SystemExit("no VmHWM in /proc/self/status (Linux only)")


def memory_ort(onnx_file, data, threads, runs):
    """ORT's peak RSS growth from session creation and runs, MiB (the interpreter, numpy and
    the onnxruntime library loaded before the baseline are not counted)."""
    out = subprocess.run([sys.executable, os.path.abspath(__file__), "--ort-memory-child",
                          onnx_file, data, str(threads), str(runs)],
                         check=True, capture_output=True, text=True).stdout
    return float(out.strip())


def ort_memory_child(onnx_file, data, threads, runs):
    feed = bench_feed(load_feeds(data))
    base = vm_hwm_mib()
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(onnx_file, so, providers=["CPUExecutionProvider"])
    of = ort_feed(sess, feed)
    for _ in range(runs):
        sess.run(None, of)
    print(vm_hwm_mib() - base)


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
    ap.add_argument("--memory", action="store_true",
                    help="also measure peak memory (eas-blade: whole process; ORT: growth)")
    ap.add_argument("--work", default=None,
                    help="scratch folder for optimized artifacts and bench feeds")
    ap.add_argument("--ort-memory-child", nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.ort_memory_child:
        f, d, t, r = args.ort_memory_child
        return ort_memory_child(f, d, int(t), int(r))
    import tempfile
    work = args.work or tempfile.mkdtemp(prefix="eas-compare-")
    os.makedirs(work, exist_ok=True)

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
        feed = bench_feed(load_feeds(data))
        data = os.path.join(work, f"{name}.feed.npy")
        save_feed(feed, data)
        shapes = {k: list(np.asarray(v).shape) for k, v in feed.items()}
        # Optimize once (o1, what the pipeline serves), then time the saved artifact.
        art = os.path.join(work, f"{name}.o1")
        t0 = time.perf_counter()
        subprocess.run([args.blade, "bench", ours, "--data", data, "--runs", "1", "--json",
                        "--save-optimized", art], check=True, capture_output=True)
        load_opt_s = time.perf_counter() - t0
        print(f"{name}: feed {shapes}; import + o1 + plan + 1 run + save: {load_opt_s:.2f} s",
              flush=True)
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
                mine.append(time_ours(args.blade, art, data, threads, args.runs))
                theirs.append(time_ort(sess, of, args.runs))
            a, b = statistics.median(mine), statistics.median(theirs)
            row = {"model": name, "threads": threads, "eas_blade_ms": a, "ort_ms": b,
                   "ratio": a / b, "feed_shapes": shapes, "optimize_s": load_opt_s}
            line = (f"{name:<14} t={threads}  eas-blade {a:9.3f} ms   ORT {b:9.3f} ms   "
                    f"ratio {a / b:6.3f}")
            if args.memory:
                mo = memory_ours(args.blade, art, data, threads, 10)
                mt = memory_ort(onnx_file, data, threads, 10)
                row.update({"eas_blade_peak_mib": mo, "ort_peak_growth_mib": mt,
                            "memory_ratio": mo / mt if mt > 0 else None})
                line += f"   peak MiB {mo:7.1f} vs {mt:7.1f}"
            rows.append(row)
            print(line, flush=True)

    print()
    mem = args.memory
    print(f"| model | threads | eas-blade ms | ONNX Runtime {ort.__version__} ms | ratio |"
          + (" eas-blade peak MiB | ORT peak growth MiB | ratio |" if mem else ""))
    print("|---|---|---|---|---|" + ("---|---|---|" if mem else ""))
    for r in rows:
        line = (f"| {r['model']} | {r['threads']} | {r['eas_blade_ms']:.3f} | {r['ort_ms']:.3f} "
                f"| {r['ratio']:.3f} |")
        if mem:
            mr = r["memory_ratio"]
            line += (f" {r['eas_blade_peak_mib']:.1f} | {r['ort_peak_growth_mib']:.1f} | "
                     + (f"{mr:.2f} |" if mr is not None else "- |"))
        print(line)
    meta = {"date": time.strftime("%Y-%m-%d"), "machine": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(), "onnxruntime": ort.__version__, "rows": rows}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(meta, f, indent=2)


if __name__ == "__main__":
    sys.exit(main())
