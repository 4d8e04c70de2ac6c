"""Load a file that eas-auxdata wrote, with real numpy or torch, and print what it holds as
JSON (the shape of fixtures' .expected.json). Warnings are errors: a file that numpy or torch
reads only with a deprecation warning is a bug to fix.

    python roundtrip.py npy FILE     # numpy.load(FILE, allow_pickle=True)
    python roundtrip.py torch FILE   # torch.load(FILE, weights_only=True)
"""
import json
import os
import sys
import warnings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
warnings.simplefilter("error")

import numpy as np  # noqa: E402

from gen_fixtures import describe_np, describe_torch, sample_json  # noqa: E402

kind, path = sys.argv[1], sys.argv[2]
if kind == "npy":
    arr = np.load(path, allow_pickle=True)
    assert arr.dtype == object and arr.ndim == 1, (arr.dtype, arr.shape)
    samples = [sample_json(s, describe_np) for s in arr]
    for s in arr:
        vals = s.values() if isinstance(s, dict) else s
        assert all(isinstance(v, np.ndarray) for v in vals), [type(v) for v in vals]
else:
    import torch

    data = torch.load(path, weights_only=True)
    assert isinstance(data, list), type(data)
    samples = [sample_json(s, describe_torch) for s in data]
print(json.dumps({"samples": samples}))
