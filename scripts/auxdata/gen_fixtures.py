"""Generate fixtures/auxdata/ with real numpy and torch.

Run through scripts/auxdata/regen.sh, which makes the pinned venvs. Usage:
    python gen_fixtures.py numpy OUTDIR   # with numpy 1.x and again with numpy 2.x
    python gen_fixtures.py torch OUTDIR   # with torch (and its numpy)
    python gen_fixtures.py bad OUTDIR     # hostile files (any numpy)
Each good file F gets F.expected.json: the tensors as `blade data inspect --json` prints them,
plus `head`, the first 8 values in C order, which the Rust tests also compare.
"""
import io
import json
import os
import pickle
import sys
import zipfile

import numpy as np


def num(x):
    """JSON has no inf/nan: those are written as strings ("inf", "-inf", "nan")."""
    x = float(x)
    return x if np.isfinite(x) else str(x)


def np_name(a):
    if a.dtype.kind == "U":
        return "str"
    if a.dtype.kind == "S":
        return "bytes"
    return a.dtype.name


def describe_np(name, index, a):
    a = np.asarray(a)
    d = {"name": name, "index": index, "dtype": np_name(a), "shape": list(a.shape)}
    if a.dtype.kind in "US":
        d.update(sum=None, min=None, max=None, head=None)
    else:
        f = a.astype(np.float64)
        with np.errstate(invalid="ignore"):
            d["sum"] = num(f.sum())
        d["min"] = num(f.min()) if f.size else None
        d["max"] = num(f.max()) if f.size else None
        d["head"] = [num(x) for x in f.ravel(order="C")[:8]]
    return d


def describe_torch(name, index, t):
    import torch

    dtype = str(t.dtype).replace("torch.", "")
    f = t.to(torch.float64)
    return {
        "name": name,
        "index": index,
        "dtype": dtype,
        "shape": list(t.shape),
        "sum": num(f.sum()),
        "min": num(f.min()) if f.numel() else None,
        "max": num(f.max()) if f.numel() else None,
        "head": [num(x) for x in f.reshape(-1)[:8].tolist()],
    }


def sample_json(sample, describe):
    if isinstance(sample, dict):
        return {"tensors": [describe(k, i, v) for i, (k, v) in enumerate(sample.items())]}
    if isinstance(sample, (tuple, list)):
        return {"tensors": [describe(None, i, v) for i, v in enumerate(sample)]}
    return {"tensors": [describe(None, 0, sample)]}


def expect(path, samples):
    with open(path + ".expected.json", "w") as f:
        json.dump({"samples": samples}, f, indent=1)
        f.write("\n")


def rng_array(shape, dtype, seed):
    r = np.random.default_rng(seed)
    if np.dtype(dtype).kind == "b":
        return r.integers(0, 2, size=shape).astype(bool)
    if np.dtype(dtype).kind in "iu":
        info = np.iinfo(dtype)
        lo, hi = max(int(info.min), -1000), min(int(info.max), 1000)
        return r.integers(lo, hi, size=shape, endpoint=True).astype(dtype)
    return (r.standard_normal(size=shape) * 10).astype(dtype)


def gen_numpy(out):
    os.makedirs(out, exist_ok=True)

    def save_plain(name, a, **kw):
        p = os.path.join(out, name)
        with open(p, "wb") as f:
            np.lib.format.write_array(f, a, **kw)
        expect(p, [sample_json(a, describe_np)])

    for dt in ["bool", "i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8", "f2", "f4", "f8"]:
        save_plain(f"plain_{np.dtype(dt).name}.npy", rng_array((2, 3), dt, 1))
    for dt in [">i2", ">i4", ">i8", ">u2", ">u8", ">f2", ">f4", ">f8"]:
        save_plain(f"big_{dt[1:]}.npy", rng_array((3, 2), dt, 2))
    save_plain("fortran_f4.npy", np.asfortranarray(np.arange(12, dtype="f4").reshape(3, 4)))
    save_plain("fortran_i8_3d.npy", np.asfortranarray(np.arange(24, dtype="i8").reshape(2, 3, 4)))
    save_plain("scalar_0d.npy", np.array(3.25, dtype="f8"))
    save_plain("empty_0x3.npy", np.zeros((0, 3), dtype="f4"))
    save_plain("str_unicode.npy", np.array([["ab", "c"], ["", "défg"]]))
    save_plain("str_bytes.npy", np.array([b"ab", b"", b"xyz\x01"]))
    save_plain("version2.npy", rng_array((4,), "f4", 3), version=(2, 0))
    save_plain("version3.npy", rng_array((4,), "i4", 4), version=(3, 0))
    save_plain("nonfinite.npy", np.array([np.inf, -np.inf, 0.0, -0.0], dtype="f4"))

    # The Blade format: a list of feed dicts, as in the spec's example (smaller shapes)
    feeds = []
    for i in range(3):
        feeds.append({
            "image_placeholder:0": np.ones((2, 3, 4, 4), dtype=np.float32) * i,
            "threshold_placeholder:0": np.float32(0.5),
            "ids:0": np.arange(5, dtype=np.int64) + i,
            "mask:0": np.array([True, False, i % 2 == 0]),
            "text:0": np.array(["hello", "wörld"][: 1 + i % 2]),
            "big:0": np.arange(3, dtype=">f8") * 1.5,
            "fortran:0": np.asfortranarray(np.arange(6, dtype="i2").reshape(2, 3)),
            "scalar_i:0": np.int64(-7 - i),
            "half:0": np.array([0.5, -2.0], dtype="f2"),
        })
    p = os.path.join(out, "feed_dicts.npy")
    np.save(p, feeds, allow_pickle=True)
    expect(p, [sample_json(s, describe_np) for s in feeds])

    # plain Python values in a feed dict stay Python objects in the pickle
    pyvals = {"f": 0.5, "i": -3, "b": True, "s": "abc", "by": b"xy", "arr": np.zeros(2, "f4"),
              "lf": [[1.0, 2], [3, 4.5]], "li": [1, 2, 3], "lb": [True, False], "ls": ["a", "bc"],
              "t": (1, True), "empty": []}
    p = os.path.join(out, "python_values.npy")
    np.save(p, [pyvals], allow_pickle=True)
    expect(p, [sample_json(pyvals, describe_np)])

    single = {"x:0": np.arange(4, dtype="u1"), "y:0": np.float64(2.5)}
    p = os.path.join(out, "single_dict.npy")
    np.save(p, single, allow_pickle=True)
    expect(p, [sample_json(single, describe_np)])

    for proto in [0, 1, 2, 3, 4, 5]:
        p = os.path.join(out, f"feed_dicts_proto{proto}.npy")
        arr = np.empty(2, dtype=object)
        arr[0] = {"a": np.arange(3, dtype="f4"), "b": np.int32(4)}
        arr[1] = {"a": np.arange(3, dtype="f4") * 2, "b": np.int32(5)}
        # np.save always pickles with protocol 3; other writers (pickle.dump after the header)
        # use any protocol
        npy_with_pickle(p, pickle.dumps(arr, protocol=proto), shape=(2,))
        expect(p, [sample_json(s, describe_np) for s in arr])

    ragged = [(np.arange(3, dtype="f4"), np.arange(4, dtype="i8")),
              (np.arange(2, dtype="f4"), np.arange(5, dtype="i8"))]
    arr = np.empty((2, 2), dtype=object)
    for i, (a, b) in enumerate(ragged):
        arr[i, 0], arr[i, 1] = a, b
    p = os.path.join(out, "tuples_2d_object.npy")
    np.save(p, arr, allow_pickle=True)
    expect(p, [sample_json(s, describe_np) for s in ragged])

    a = {"w": rng_array((2, 2), "f4", 5), "idx": np.arange(3, dtype="i4"), "s": np.array(["q"])}
    p = os.path.join(out, "stored.npz")
    np.savez(p, **a)
    expect(p, [sample_json(a, describe_np)])
    p = os.path.join(out, "deflated.npz")
    np.savez_compressed(p, **a)
    expect(p, [sample_json(a, describe_np)])


def gen_torch(out):
    import torch

    os.makedirs(out, exist_ok=True)

    def save(name, obj, samples, **kw):
        p = os.path.join(out, name)
        torch.save(obj, p, **kw)
        expect(p, [sample_json(s, describe_torch) for s in samples])

    torch.manual_seed(0)
    spec = [(torch.ones(2, 3, 4, 4) * i, torch.tensor(0.5)) for i in range(3)]
    save("spec_tuples.pth", spec, spec)

    dts = [torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.int64, torch.int32,
           torch.int16, torch.int8, torch.uint8, torch.bool, torch.uint16, torch.uint32, torch.uint64]
    sample = []
    for dt in dts:
        base = torch.tensor([[1, 0, 3], [4, 5, 1]]).to(dt) if dt != torch.bool else torch.tensor([[True, False, True], [False, True, True]])
        if dt in (torch.uint16, torch.uint32, torch.uint64):
            base = torch.tensor([[1, 0, 3], [4, 5, 1]], dtype=torch.int64).to(dt)
        sample.append(base)
    save("all_dtypes.pth", [tuple(sample)], [tuple(sample)])

    base = torch.arange(24, dtype=torch.float32)
    m = base.view(4, 6)
    views = (base, m[1:, 2:5], m.t(), m[:, ::2], base[5:9], torch.tensor(1.5).expand(2, 3),
             m[2], torch.arange(10, dtype=torch.int64)[3:])
    save("views_shared.pth", [views], [views])

    zero_d = [(torch.tensor(7), torch.tensor(-1.25, dtype=torch.float64), torch.tensor(True))]
    save("zero_d.pth", zero_d, zero_d)

    lists = [[torch.arange(3), torch.ones(2, 2)], [torch.arange(4), torch.zeros(1, 2)]]
    save("list_of_lists.pth", lists, lists)

    dicts = [{"input_ids": torch.arange(4), "mask": torch.ones(4, dtype=torch.bool)}]
    save("list_of_dicts.pth", dicts, dicts)

    tup = tuple((torch.randn(3), torch.randint(0, 9, (2,))) for _ in range(2))
    save("tuple_of_tuples.pth", tup, tup)

    for proto in [2, 3, 4, 5]:
        data = [(torch.arange(6, dtype=torch.float32).view(2, 3)[:, 1:], torch.tensor(3))]
        save(f"proto{proto}.pth", data, data, pickle_protocol=proto)

    legacy = [(torch.arange(4, dtype=torch.float32), torch.tensor([1, 2], dtype=torch.int32))]
    save("legacy.pth", legacy, legacy, _use_new_zipfile_serialization=False)

    param = [(torch.nn.Parameter(torch.ones(2)),)]
    save("parameter.pth", param, [(torch.ones(2),)])


class Evil:
    def __init__(self, func, args):
        self.func, self.args = func, args

    def __reduce__(self):
        return (self.func, self.args)


def npy_with_pickle(path, payload, shape=(1,)):
    """An object .npy whose pickle body is `payload` (raw bytes)."""
    header = {"descr": "|O", "fortran_order": False, "shape": shape}
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(f, header)
        f.write(payload)


def gen_bad(out):
    import builtins
    import subprocess

    os.makedirs(out, exist_ok=True)
    evils = {
        "os_system": Evil(os.system, ("echo pwned",)),
        "builtins_eval": Evil(builtins.eval, ("1+1",)),
        "subprocess_popen": Evil(subprocess.Popen, (["echo", "pwned"],)),
    }
    for name, e in evils.items():
        arr = np.empty(1, dtype=object)
        arr[0] = {"x": e}
        p = os.path.join(out, f"forbidden_{name}.npy")
        with open(p, "wb") as f:
            np.lib.format.write_array(f, arr, allow_pickle=True)
    # a torch-style zip whose data.pkl calls os.system
    p = os.path.join(out, "forbidden_os_system.pth")
    with zipfile.ZipFile(p, "w") as z:
        z.writestr("forbidden_os_system/data.pkl", pickle.dumps([Evil(os.system, ("echo pwned",))], protocol=2))
        z.writestr("forbidden_os_system/version", "3\n")
    # a header that claims 10^12 float32 over a tiny body
    p = os.path.join(out, "absurd_shape.npy")
    with open(p, "wb") as f:
        np.lib.format.write_array_header_1_0(f, {"descr": "<f4", "fortran_order": False, "shape": (1000000, 1000000)})
        f.write(b"\0" * 16)
    # a pickled array whose state claims a huge shape over 4 bytes
    good = pickle.dumps(np.zeros(1, dtype="f4"), protocol=2)
    npy_with_pickle(os.path.join(out, "absurd_pickled_shape.npy"),
                    pickle.dumps([{"x": np.zeros(1, dtype="f4")}], protocol=2).replace(b"K\x01\x85", b"J\x00\x10\xa5\xd4\x85", 1))
    # npz with an entry escaping its folder
    p = os.path.join(out, "dotdot.npz")
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.arange(3))
    with zipfile.ZipFile(p, "w") as z:
        z.writestr("../evil.npy", buf.getvalue())
    # corrupt zip: a real npz with its central directory cut off
    buf2 = io.BytesIO()
    np.savez(buf2, a=np.arange(100))
    with open(os.path.join(out, "corrupt.npz"), "wb") as f:
        f.write(buf2.getvalue()[:-30])
    # a torch view reaching past its storage
    import_torch = False
    try:
        import torch  # noqa: F401
        import_torch = True
    except ImportError:
        pass
    if import_torch:
        import torch
        p = os.path.join(out, "view_out_of_range.pth")
        torch.save([(torch.arange(10, dtype=torch.float32)[2:],)], p)
        # patch the view's size 8 -> 9 (BININT1 8 then TUPLE1 in data.pkl)
        with zipfile.ZipFile(p) as z:
            items = {i.filename: z.read(i.filename) for i in z.infolist()}
        k = [n for n in items if n.endswith("data.pkl")][0]
        assert b"K\x08\x85" in items[k]
        items[k] = items[k].replace(b"K\x08\x85", b"K\x09\x85", 1)
        with zipfile.ZipFile(p, "w") as z:
            for n, d in items.items():
                z.writestr(n, d)
    with open(os.path.join(out, "random.bin"), "wb") as f:
        f.write(np.random.default_rng(7).integers(0, 256, 512, dtype=np.uint8).tobytes())


if __name__ == "__main__":
    what, out = sys.argv[1], sys.argv[2]
    {"numpy": gen_numpy, "torch": gen_torch, "bad": gen_bad}[what](out)
