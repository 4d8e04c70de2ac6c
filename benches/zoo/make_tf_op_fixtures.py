#!/usr/bin/env python3
"""Generate fixtures/tf-ops/: tiny single-op TensorFlow GraphDefs with inputs and TF's outputs.

Each case is one folder:
    model.pb        a GraphDef (binary protobuf), built in TF1 graph mode with tf.raw_ops so the
                    op, its attributes and its node names are exactly what the case says
    in_K.npy        input K, a plain .npy array (feed order = case.json "inputs")
    out_K.npy       TensorFlow's output K (fetch order = case.json "outputs")
    case.json       {"op", "inputs": [{"name", "file", "dtype", "shape"}],
                     "outputs": [{"name", "file", "dtype", "shape"}], "expect_error"}
"expect_error" is null for cases the importer must run, or a kind the importer must report
clearly: "control_flow" (TF1 Enter/Exit/Merge/Switch/NextIteration, functional While/If,
TensorList), "unsupported" (with "unsupported_ops": the op names it must list, all at once),
"string_input".

Run inside the zoo venv (see benches/zoo/README.md):
    .cache/zoo/venv/bin/python benches/zoo/make_tf_op_fixtures.py [--out fixtures/tf-ops]
The output is deterministic (fixed seed); re-running rewrites the folder.
"""

import argparse
import json
import os
import shutil
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from tensorflow.python.framework.convert_to_constants import (  # noqa: E402
    convert_variables_to_constants_v2,
)

raw = tf.raw_ops
RNG = np.random.default_rng(1234)


def rnd(*shape, lo=-2.0, hi=2.0, dtype=np.float32):
    return RNG.uniform(lo, hi, size=shape).astype(dtype)


def irnd(*shape, lo=0, hi=10, dtype=np.int32):
    return RNG.integers(lo, hi, size=shape).astype(dtype)


class Case:
    """One graph under construction: placeholders record their feed values."""

    def __init__(self, name, op):
        self.name = name
        self.op = op
        self.graph = tf.Graph()
        self.feeds = []  # (placeholder name, value)

    def ph(self, name, value, shape=None):
        value = np.asarray(value)
        dtype = tf.as_dtype(value.dtype)
        shp = list(value.shape) if shape is None else shape
        p = tf.compat.v1.placeholder(dtype, shape=shp, name=name)
        self.feeds.append((name, value))
        return p


CASES = []


def case(name, op=None):
    def deco(fn):
        CASES.append((name, op or name.split("__")[0], fn))
        return fn

    return deco


def c(value, dtype=None):
    return tf.constant(np.asarray(value, dtype=dtype))


# --- convolution and pooling (NHWC) -------------------------------------------------------
def _conv(name, x_shape, w_shape, strides, padding, dilations=(1, 1, 1, 1)):
    @case(name, "Conv2D")
    def _(k):
        x = k.ph("x", rnd(*x_shape))
        w = c(rnd(*w_shape))
        return [raw.Conv2D(input=x, filter=w, strides=list(strides), padding=padding,
                           dilations=list(dilations), name="out")]


_conv("Conv2D__same_s1", (1, 5, 5, 3), (3, 3, 3, 4), (1, 1, 1, 1), "SAME")
_conv("Conv2D__valid_s2", (2, 7, 6, 3), (3, 3, 3, 5), (1, 2, 2, 1), "VALID")
_conv("Conv2D__same_s2_asym", (1, 6, 6, 2), (3, 3, 2, 3), (1, 2, 2, 1), "SAME")
_conv("Conv2D__same_dilated", (1, 7, 7, 2), (3, 3, 2, 2), (1, 1, 1, 1), "SAME", (1, 2, 2, 1))
_conv("Conv2D__1x1", (1, 4, 4, 8), (1, 1, 8, 6), (1, 1, 1, 1), "VALID")


@case("Conv2D__explicit_pad", "Conv2D")
def _(k):
    x = k.ph("x", rnd(1, 5, 5, 2))
    w = c(rnd(3, 3, 2, 3))
    return [raw.Conv2D(input=x, filter=w, strides=[1, 1, 1, 1], padding="EXPLICIT",
                       explicit_paddings=[0, 0, 1, 2, 2, 0, 0, 0], name="out")]


def _dw(name, x_shape, w_shape, strides, padding):
    @case(name, "DepthwiseConv2dNative")
    def _(k):
        x = k.ph("x", rnd(*x_shape))
        w = c(rnd(*w_shape))
        return [raw.DepthwiseConv2dNative(input=x, filter=w, strides=list(strides),
                                          padding=padding, name="out")]


_dw("DepthwiseConv2dNative__same_s1", (1, 5, 5, 3), (3, 3, 3, 1), (1, 1, 1, 1), "SAME")
_dw("DepthwiseConv2dNative__valid_s2", (2, 7, 7, 4), (3, 3, 4, 1), (1, 2, 2, 1), "VALID")
_dw("DepthwiseConv2dNative__same_s2", (1, 6, 6, 2), (3, 3, 2, 1), (1, 2, 2, 1), "SAME")
_dw("DepthwiseConv2dNative__mult2", (1, 5, 4, 2), (3, 3, 2, 2), (1, 1, 1, 1), "SAME")


def _pool(name, opname, x_shape, ksize, strides, padding):
    @case(name, opname)
    def _(k):
        x = k.ph("x", rnd(*x_shape))
        fn = getattr(raw, opname)
        arg = "input" if opname == "MaxPool" else "value"
        return [fn(**{arg: x}, ksize=list(ksize), strides=list(strides), padding=padding,
                   name="out")]


_pool("MaxPool__same_k3_s2", "MaxPool", (1, 7, 7, 2), (1, 3, 3, 1), (1, 2, 2, 1), "SAME")
_pool("MaxPool__valid_k2_s2", "MaxPool", (2, 6, 5, 3), (1, 2, 2, 1), (1, 2, 2, 1), "VALID")
_pool("AvgPool__same_k3_s2", "AvgPool", (1, 6, 6, 2), (1, 3, 3, 1), (1, 2, 2, 1), "SAME")
_pool("AvgPool__same_k3_s1", "AvgPool", (1, 4, 5, 2), (1, 3, 3, 1), (1, 1, 1, 1), "SAME")
_pool("AvgPool__valid_k2_s1", "AvgPool", (1, 5, 5, 3), (1, 2, 2, 1), (1, 1, 1, 1), "VALID")


@case("FusedBatchNormV3")
def _(k):
    x = k.ph("x", rnd(2, 3, 3, 4))
    y = raw.FusedBatchNormV3(x=x, scale=c(rnd(4)), offset=c(rnd(4)), mean=c(rnd(4)),
                             variance=c(rnd(4, lo=0.1, hi=2.0)), epsilon=1e-3,
                             is_training=False, data_format="NHWC", name="out")
    return [y.y]


@case("BiasAdd__4d")
def _(k):
    return [raw.BiasAdd(value=k.ph("x", rnd(1, 2, 3, 4)), bias=c(rnd(4)), name="out")]


@case("BiasAdd__2d")
def _(k):
    return [raw.BiasAdd(value=k.ph("x", rnd(3, 5), shape=[None, 5]), bias=c(rnd(5)),
                        name="out")]


# --- matmul ---------------------------------------------------------------------------------
@case("MatMul")
def _(k):
    return [raw.MatMul(a=k.ph("x", rnd(3, 4), shape=[None, 4]), b=c(rnd(4, 5)), name="out")]


@case("MatMul__transpose_a_b")
def _(k):
    return [raw.MatMul(a=k.ph("x", rnd(4, 3)), b=k.ph("y", rnd(5, 4)), transpose_a=True,
                       transpose_b=True, name="out")]


@case("BatchMatMulV2__broadcast")
def _(k):
    return [raw.BatchMatMulV2(x=k.ph("x", rnd(2, 3, 4, 5)), y=k.ph("y", rnd(3, 5, 2)),
                              name="out")]


@case("BatchMatMulV2__adj")
def _(k):
    return [raw.BatchMatMulV2(x=k.ph("x", rnd(2, 5, 4)), y=k.ph("y", rnd(2, 3, 5)),
                              adj_x=True, adj_y=True, name="out")]


# --- element-wise -----------------------------------------------------------------------------
for _op in ["Relu", "Relu6", "Elu", "Selu", "Sigmoid", "Tanh", "Softplus", "Erf", "Neg", "Abs",
            "Exp", "Floor"]:
    def _mk(opname):
        @case(opname)
        def _(k):
            x = k.ph("x", rnd(3, 7, lo=-8.0, hi=8.0))
            return [getattr(raw, opname)(**{("features" if opname.startswith(("Relu", "Elu",
                                                                              "Selu", "Softplus"))
                                              else "x"): x}, name="out")]
    _mk(_op)

for _op in ["Rsqrt", "Sqrt", "Square", "Log", "Reciprocal"]:
    def _mk(opname):
        @case(opname)
        def _(k):
            return [getattr(raw, opname)(x=k.ph("x", rnd(2, 5, lo=0.1, hi=4.0)), name="out")]
    _mk(_op)

for _op in ["Add", "AddV2", "Sub", "Mul", "RealDiv", "Maximum", "Minimum", "SquaredDifference"]:
    def _mk(opname):
        @case(opname + "__broadcast", opname)
        def _(k):
            x = k.ph("x", rnd(2, 3, 4))
            y = k.ph("y", rnd(3, 1, lo=0.5, hi=2.0) if opname == "RealDiv" else rnd(3, 1))
            return [getattr(raw, opname)(x=x, y=y, name="out")]
    _mk(_op)


@case("AddV2__int32", "AddV2")
def _(k):
    return [raw.AddV2(x=k.ph("x", irnd(2, 3)), y=c(np.int32(7)), name="out")]


@case("Mul__const_scalar", "Mul")
def _(k):
    return [raw.Mul(x=k.ph("x", rnd(2, 3)), y=c(np.float32(0.5)), name="out")]


@case("Pow")
def _(k):
    return [raw.Pow(x=k.ph("x", rnd(2, 4, lo=0.1, hi=3.0)), y=k.ph("y", rnd(4, lo=-2, hi=3)),
                    name="out")]


@case("Pow__square", "Pow")
def _(k):
    return [raw.Pow(x=k.ph("x", rnd(2, 4)), y=c(np.float32(2.0)), name="out")]


for _op in ["Greater", "Less", "Equal", "GreaterEqual"]:
    def _mk(opname):
        @case(opname)
        def _(k):
            x = k.ph("x", np.round(rnd(3, 4)))
            return [getattr(raw, opname)(x=x, y=c(np.float32(0.0)), name="out")]
    _mk(_op)


# --- reductions -----------------------------------------------------------------------------
def _red(name, opname, axes, keep):
    @case(name, opname)
    def _(k):
        x = k.ph("x", rnd(2, 3, 4, lo=0.5, hi=1.5))
        return [getattr(raw, opname)(input=x, axis=c(axes, np.int32), keep_dims=keep,
                                     name="out")]


_red("Mean__axes12_keep", "Mean", [1, 2], True)
_red("Mean__last", "Mean", [-1], False)
_red("Sum__axis0", "Sum", [0], False)
_red("Sum__scalar_axis_keep", "Sum", 1, True)
_red("Max__axis1", "Max", [1], False)
_red("Min__axis2", "Min", [2], True)
_red("Prod__axes02", "Prod", [0, 2], False)


@case("Softmax")
def _(k):
    return [raw.Softmax(logits=k.ph("x", rnd(3, 6, lo=-5, hi=5)), name="out")]


@case("Softmax__3d", "Softmax")
def _(k):
    return [raw.Softmax(logits=k.ph("x", rnd(2, 3, 5, lo=-5, hi=5)), name="out")]


@case("ArgMax__axis1_i64", "ArgMax")
def _(k):
    return [raw.ArgMax(input=k.ph("x", rnd(3, 5, 2)), dimension=c(1, np.int32),
                       output_type=tf.int64, name="out")]


@case("ArgMax__last_i32", "ArgMax")
def _(k):
    return [raw.ArgMax(input=k.ph("x", rnd(4, 6)), dimension=c(-1, np.int32),
                       output_type=tf.int32, name="out")]


def _cumsum(name, exclusive, reverse, axis):
    @case(name, "Cumsum")
    def _(k):
        return [raw.Cumsum(x=k.ph("x", rnd(3, 4)), axis=c(axis, np.int32),
                           exclusive=exclusive, reverse=reverse, name="out")]


_cumsum("Cumsum__axis1", False, False, 1)
_cumsum("Cumsum__exclusive", True, False, 1)
_cumsum("Cumsum__reverse_axis0", False, True, 0)
_cumsum("Cumsum__exclusive_reverse", True, True, -1)


# --- shape and data movement ------------------------------------------------------------------
@case("Reshape__minus1", "Reshape")
def _(k):
    return [raw.Reshape(tensor=k.ph("x", rnd(2, 3, 4)), shape=c([-1, 4], np.int32), name="out")]


@case("Reshape__dynamic", "Reshape")
def _(k):
    x = k.ph("x", rnd(2, 12), shape=[None, 12])
    b = raw.StridedSlice(input=raw.Shape(input=x), begin=c([0], np.int32),
                         end=c([1], np.int32), strides=c([1], np.int32), shrink_axis_mask=1)
    shp = raw.Pack(values=[b, c(3, np.int32), c(4, np.int32)], axis=0)
    return [raw.Reshape(tensor=x, shape=shp, name="out")]


@case("Shape__i32", "Shape")
def _(k):
    return [raw.Shape(input=k.ph("x", rnd(2, 3, 4), shape=[None, 3, 4]), out_type=tf.int32,
                      name="out")]


@case("Shape__i64", "Shape")
def _(k):
    return [raw.Shape(input=k.ph("x", rnd(2, 5)), out_type=tf.int64, name="out")]


@case("Transpose")
def _(k):
    return [raw.Transpose(x=k.ph("x", rnd(2, 3, 4)), perm=c([2, 0, 1], np.int32), name="out")]


@case("ConcatV2")
def _(k):
    return [raw.ConcatV2(values=[k.ph("x", rnd(2, 3)), k.ph("y", rnd(2, 1)), c(rnd(2, 2))],
                         axis=c(-1, np.int32), name="out")]


@case("ConcatV2__axis0_int", "ConcatV2")
def _(k):
    return [raw.ConcatV2(values=[k.ph("x", irnd(1, 3)), k.ph("y", irnd(2, 3))],
                         axis=c(0, np.int32), name="out")]


@case("Pack__axis1", "Pack")
def _(k):
    return [raw.Pack(values=[k.ph("x", rnd(2, 3)), k.ph("y", rnd(2, 3))], axis=1, name="out")]


@case("Unpack__axis1", "Unpack")
def _(k):
    return raw.Unpack(value=k.ph("x", rnd(2, 3, 2)), num=3, axis=1, name="out")


@case("Split__axis1", "Split")
def _(k):
    return raw.Split(axis=c(1, np.int32), value=k.ph("x", rnd(2, 6)), num_split=3, name="out")


@case("SplitV__minus1", "SplitV")
def _(k):
    return raw.SplitV(value=k.ph("x", rnd(7, 2)), size_splits=c([1, -1, 2], np.int32),
                      axis=c(0, np.int32), num_split=3, name="out")


def _ss(name, shape, begin, end, strides, **masks):
    @case(name, "StridedSlice")
    def _(k):
        x = k.ph("x", np.arange(np.prod(shape), dtype=np.float32).reshape(shape))
        return [raw.StridedSlice(input=x, begin=c(begin, np.int32), end=c(end, np.int32),
                                 strides=c(strides, np.int32), name="out", **masks)]


_ss("StridedSlice__basic", (4, 5), [1, 0], [3, 5], [1, 2])
_ss("StridedSlice__negative_idx", (4, 5), [-3, -4], [-1, -1], [1, 1])
_ss("StridedSlice__neg_stride", (4, 5), [3, 4], [0, 0], [-1, -2])
_ss("StridedSlice__neg_stride_masks", (4, 5), [0, 0], [0, 0], [-1, -1], begin_mask=3,
    end_mask=3)
_ss("StridedSlice__begin_end_mask", (4, 5, 3), [1, 2, 0], [3, 0, 2], [1, 1, 1], begin_mask=1,
    end_mask=2)
_ss("StridedSlice__shrink", (4, 5, 3), [1, 0, 2], [2, 5, 3], [1, 1, 1], shrink_axis_mask=5)
_ss("StridedSlice__shrink_neg", (4, 5), [-1, 0], [0, 0], [1, 1], shrink_axis_mask=1,
    end_mask=2)
_ss("StridedSlice__ellipsis", (2, 3, 4, 5), [0, 1], [0, 3], [1, 1], ellipsis_mask=1)
_ss("StridedSlice__ellipsis_mid", (2, 3, 4, 5), [1, 0, 2], [2, 0, 4], [1, 1, 1],
    ellipsis_mask=2, shrink_axis_mask=1)
_ss("StridedSlice__new_axis", (3, 4), [0, 1, 0], [0, 3, 4], [1, 1, 2], new_axis_mask=1,
    end_mask=4)
_ss("StridedSlice__new_axis_ellipsis", (3, 4), [0, 0], [0, 0], [1, 1], ellipsis_mask=1,
    new_axis_mask=2)
_ss("StridedSlice__out_of_range", (4, 5), [-10, 2], [10, 100], [1, 1])
_ss("StridedSlice__partial_spec", (3, 4, 5), [1], [3], [1])
_ss("StridedSlice__all_masks", (2, 3, 4, 5), [0, 1, 0, 0, 1], [0, 2, 0, 0, 4],
    [1, 1, 1, 1, 2], begin_mask=1, end_mask=1, ellipsis_mask=4, new_axis_mask=8,
    shrink_axis_mask=2)


@case("Slice")
def _(k):
    return [raw.Slice(input=k.ph("x", rnd(4, 5, 3)), begin=c([1, 0, 1], np.int32),
                      size=c([2, -1, 2], np.int32), name="out")]


@case("GatherV2__axis0", "GatherV2")
def _(k):
    return [raw.GatherV2(params=c(rnd(10, 4)), indices=k.ph("i", irnd(2, 3, hi=10)),
                         axis=c(0, np.int32), name="out")]


@case("GatherV2__axis1_i64", "GatherV2")
def _(k):
    return [raw.GatherV2(params=k.ph("x", rnd(2, 5, 3)),
                         indices=k.ph("i", irnd(4, hi=5, dtype=np.int64)),
                         axis=c(1, np.int32), name="out")]


@case("GatherV2__scalar_index", "GatherV2")
def _(k):
    return [raw.GatherV2(params=k.ph("x", rnd(4, 3)), indices=c(2, np.int32),
                         axis=c(0, np.int32), name="out")]


@case("ExpandDims__neg", "ExpandDims")
def _(k):
    return [raw.ExpandDims(input=k.ph("x", rnd(2, 3)), axis=c(-1, np.int32), name="out")]


@case("ExpandDims__axis0", "ExpandDims")
def _(k):
    return [raw.ExpandDims(input=k.ph("x", rnd(2, 3)), axis=c(0, np.int32), name="out")]


@case("Squeeze__dims", "Squeeze")
def _(k):
    return [raw.Squeeze(input=k.ph("x", rnd(2, 1, 3, 1)), axis=[1], name="out")]


@case("Squeeze__all", "Squeeze")
def _(k):
    return [raw.Squeeze(input=k.ph("x", rnd(1, 3, 1, 2)), name="out")]


@case("Pad")
def _(k):
    return [raw.Pad(input=k.ph("x", rnd(1, 3, 3, 2)),
                    paddings=c([[0, 0], [1, 2], [2, 1], [0, 0]], np.int32), name="out")]


@case("PadV2")
def _(k):
    return [raw.PadV2(input=k.ph("x", rnd(2, 3)), paddings=c([[1, 0], [0, 2]], np.int32),
                      constant_values=c(np.float32(-1.5)), name="out")]


@case("MirrorPad__reflect", "MirrorPad")
def _(k):
    return [raw.MirrorPad(input=k.ph("x", rnd(3, 4)), paddings=c([[1, 2], [2, 1]], np.int32),
                          mode="REFLECT", name="out")]


@case("Fill")
def _(k):
    x = k.ph("x", rnd(2, 3), shape=[None, 3])
    return [raw.Fill(dims=raw.Shape(input=x), value=c(np.float32(1.5)), name="out")]


@case("Range__int", "Range")
def _(k):
    return [raw.Range(start=c(2, np.int32), limit=k.ph("n", np.int32(11)),
                      delta=c(3, np.int32), name="out")]


@case("Range__float_neg", "Range")
def _(k):
    return [raw.Range(start=c(np.float32(1.0)), limit=c(np.float32(-1.0)),
                      delta=c(np.float32(-0.5)), name="out")]


@case("Cast__f32_i32", "Cast")
def _(k):
    return [raw.Cast(x=k.ph("x", rnd(3, 4, lo=-5, hi=5)), DstT=tf.int32, name="out")]


@case("Cast__i64_f32", "Cast")
def _(k):
    return [raw.Cast(x=k.ph("x", irnd(3, dtype=np.int64)), DstT=tf.float32, name="out")]


@case("Cast__bool_f32", "Cast")
def _(k):
    return [raw.Cast(x=k.ph("x", rnd(2, 3) > 0), DstT=tf.float32, name="out")]


@case("Identity__noop_ctrl", "Identity")
def _(k):
    x = k.ph("x", rnd(2, 2))
    with tf.control_dependencies([raw.NoOp(name="init")]):
        y = raw.Identity(input=x, name="out")
    return [y]


@case("Select__same_shape", "Select")
def _(k):
    return [raw.Select(condition=k.ph("cond", rnd(2, 3) > 0), x=k.ph("x", rnd(2, 3)),
                       y=k.ph("y", rnd(2, 3)), name="out")]


@case("Select__vector_cond", "Select")
def _(k):
    return [raw.Select(condition=k.ph("cond", np.array([True, False, True])),
                       x=k.ph("x", rnd(3, 2)), y=k.ph("y", rnd(3, 2)), name="out")]


@case("SelectV2__broadcast", "SelectV2")
def _(k):
    return [raw.SelectV2(condition=k.ph("cond", rnd(3, 1) > 0), t=k.ph("x", rnd(1, 4)),
                         e=c(np.float32(0.0)), name="out")]


@case("Tile")
def _(k):
    return [raw.Tile(input=k.ph("x", rnd(2, 3)), multiples=c([2, 1], np.int32), name="out")]


@case("OneHot__last", "OneHot")
def _(k):
    return [raw.OneHot(indices=k.ph("i", np.array([[0, 2], [-1, 3]], np.int32)),
                       depth=c(4, np.int32), on_value=c(np.float32(1.0)),
                       off_value=c(np.float32(0.0)), axis=-1, name="out")]


@case("OneHot__axis0", "OneHot")
def _(k):
    return [raw.OneHot(indices=k.ph("i", np.array([1, 0, 4], np.int64)), depth=c(3, np.int32),
                       on_value=c(np.float32(5.0)), off_value=c(np.float32(-1.0)), axis=0,
                       name="out")]


@case("Const__only", "Const")
def _(k):
    x = k.ph("x", rnd(2, 2))
    return [raw.AddV2(x=x, y=c(rnd(2, 2)), name="out")]


@case("StopGradient")
def _(k):
    return [raw.StopGradient(input=k.ph("x", rnd(2, 2)), name="out")]


@case("LeakyRelu")
def _(k):
    return [raw.LeakyRelu(features=k.ph("x", rnd(2, 5)), alpha=0.1, name="out")]


@case("Multi_output__two_fetches", "Split")
def _(k):
    x = k.ph("x", rnd(2, 4))
    a, b = raw.Split(axis=c(1, np.int32), value=x, num_split=2, name="split")
    return [raw.Relu(features=a, name="out"), raw.Tanh(x=b, name="out2")]


@case("ZerosLike")
def _(k):
    return [raw.ZerosLike(x=k.ph("x", rnd(2, 3), shape=[None, 3]), name="out")]


@case("OnesLike")
def _(k):
    return [raw.OnesLike(x=k.ph("x", irnd(2, 3)), name="out")]


@case("BroadcastTo")
def _(k):
    return [raw.BroadcastTo(input=k.ph("x", rnd(3, 1)), shape=c([2, 3, 4], np.int32), name="out")]


@case("Size")
def _(k):
    return [raw.Size(input=k.ph("x", rnd(2, 3, 4), shape=[None, 3, 4]), name="out")]


@case("Rank")
def _(k):
    return [raw.Rank(input=k.ph("x", rnd(2, 3)), name="out")]


@case("ClipByValue")
def _(k):
    return [raw.ClipByValue(t=k.ph("x", rnd(3, 4)), clip_value_min=c(np.float32(-0.5)),
                            clip_value_max=c(np.float32(0.7)), name="out")]


@case("FloorDiv__float", "FloorDiv")
def _(k):
    return [raw.FloorDiv(x=k.ph("x", rnd(3, 4, lo=-5, hi=5)), y=c(np.float32(1.5)), name="out")]


@case("ArgMin__axis0", "ArgMin")
def _(k):
    return [raw.ArgMin(input=k.ph("x", rnd(4, 3)), dimension=c(0, np.int32),
                       output_type=tf.int32, name="out")]


def _einsum(name, eq, *shapes):
    @case(name, "Einsum")
    def _(k):
        xs = [k.ph("xyzw"[i], rnd(*sh)) for i, sh in enumerate(shapes)]
        return [raw.Einsum(inputs=xs, equation=eq, name="out")]


_einsum("Einsum__dense_3d", "abc,cde->abde", (2, 3, 4), (4, 2, 5))
_einsum("Einsum__attention_scores", "aecd,abcd->acbe", (2, 5, 3, 4), (2, 6, 3, 4))
_einsum("Einsum__attention_values", "acbe,aecd->abcd", (2, 3, 6, 5), (2, 5, 3, 4))
_einsum("Einsum__matvec", "ij,j->i", (3, 4), (4,))
_einsum("Einsum__transpose", "ijk->kji", (2, 3, 4))
_einsum("Einsum__sum_one_side", "ij,jk->k", (3, 4), (4, 2))


def _resize(name, opname, size, **attrs):
    @case(name, opname)
    def _(k):
        x = k.ph("x", rnd(2, 5, 7, 3))
        return [getattr(raw, opname)(images=x, size=c(size, np.int32), name="out", **attrs)]


_resize("ResizeBilinear__half_pixel", "ResizeBilinear", [8, 11], half_pixel_centers=True)
_resize("ResizeBilinear__align_corners", "ResizeBilinear", [9, 4], align_corners=True)
_resize("ResizeBilinear__legacy_down", "ResizeBilinear", [3, 4])
_resize("ResizeNearestNeighbor__half_pixel", "ResizeNearestNeighbor", [10, 14], half_pixel_centers=True)
_resize("ResizeNearestNeighbor__align_corners", "ResizeNearestNeighbor", [9, 5], align_corners=True)
_resize("ResizeNearestNeighbor__legacy", "ResizeNearestNeighbor", [3, 9])


def _deconv(name, out_shape, w_shape, strides, padding):
    @case(name, "Conv2DBackpropInput")
    def _(k):
        dy_shape = [out_shape[0], -(-out_shape[1] // strides[1]) if padding == "SAME" else
                    (out_shape[1] - w_shape[0]) // strides[1] + 1,
                    -(-out_shape[2] // strides[2]) if padding == "SAME" else
                    (out_shape[2] - w_shape[1]) // strides[2] + 1, w_shape[3]]
        dy = k.ph("dy", rnd(*dy_shape))
        return [raw.Conv2DBackpropInput(input_sizes=c(out_shape, np.int32), filter=c(rnd(*w_shape)),
                                        out_backprop=dy, strides=strides, padding=padding,
                                        name="out")]


_deconv("Conv2DBackpropInput__same_s2", [1, 8, 7, 3], [3, 3, 3, 4], [1, 2, 2, 1], "SAME")
_deconv("Conv2DBackpropInput__valid_s1", [2, 6, 6, 2], [3, 2, 2, 5], [1, 1, 1, 1], "VALID")
_deconv("Conv2DBackpropInput__same_s1", [1, 5, 5, 2], [3, 3, 2, 3], [1, 1, 1, 1], "SAME")


# --- whole Keras layers, frozen (graphs shaped like real exports) -----------------------------
SPECIAL = []  # (name, op, expect, extra, builder -> (graph_def, feeds, fetch names, outputs))


def keras_case(name, make, x):
    def build():
        import keras

        keras.utils.set_random_seed(0)
        model = make(keras.layers)
        spec = tf.TensorSpec([None, *x.shape[1:]], tf.as_dtype(x.dtype), name="x")
        cf = tf.function(lambda v: model(v, training=False)).get_concrete_function(spec)
        ff = convert_variables_to_constants_v2(cf)
        gd = ff.graph.as_graph_def()
        out_node = ff.outputs[0].op.name
        for n in gd.node:
            if n.name == out_node:
                n.name = "out"
        res = tf.nest.flatten(ff(tf.constant(x)))[0].numpy()
        return gd, [("x", x)], ["out"], [res]

    SPECIAL.append((name, "Keras", None, {}, build))


def _mha(L):
    import keras

    inp = keras.Input((12,), dtype="int32")
    x = L.Embedding(50, 16)(inp)
    x = L.MultiHeadAttention(2, 8)(x, x)
    x = L.LayerNormalization()(x)
    x = L.Dense(24, activation="gelu")(x)
    return keras.Model(inp, L.GlobalAveragePooling1D()(x))


def _cnn_misc(L):
    import keras

    inp = keras.Input((16, 16, 3))
    x = L.SeparableConv2D(8, 3, padding="same")(inp)
    x = L.Conv2DTranspose(4, 3, strides=2, padding="same")(x)
    x = L.AveragePooling2D(2)(x)
    x = L.Flatten()(x)
    return keras.Model(inp, L.Dense(10, activation="swish")(x))


def _cnn_misc2(L):
    import keras

    inp = keras.Input((16, 16, 3))
    x = L.Conv2D(8, 3)(inp)
    x = L.BatchNormalization()(x)
    x = L.PReLU()(x)
    x = L.UpSampling2D()(x)
    x = L.GlobalMaxPooling2D()(x)
    return keras.Model(inp, L.Softmax()(x))


def _resize(L):
    import keras

    inp = keras.Input((12, 12, 3))
    return keras.Model(inp, L.Resizing(8, 8)(inp))


def _gru(L):
    import keras

    inp = keras.Input((6, 4))
    x = L.Conv1D(8, 3, padding="causal")(inp)
    return keras.Model(inp, L.GRU(8, unroll=True)(x))


# Their own generator, so adding one does not shift the values of the cases above.
_KRNG = np.random.default_rng(99)
keras_case("Keras__mha_layernorm_gelu", _mha, _KRNG.integers(0, 50, size=(2, 12)).astype(np.int32))
keras_case("Keras__separable_deconv_flatten", _cnn_misc, _KRNG.uniform(-1, 1, (2, 16, 16, 3)).astype(np.float32))
keras_case("Keras__bn_prelu_upsample_gmp", _cnn_misc2, _KRNG.uniform(-1, 1, (2, 16, 16, 3)).astype(np.float32))
keras_case("Keras__resizing_bilinear", _resize, _KRNG.uniform(-1, 1, (1, 12, 12, 3)).astype(np.float32))
keras_case("Keras__gru_unrolled", _gru, _KRNG.uniform(-1, 1, (2, 6, 4)).astype(np.float32))


# --- graphs the importer must refuse clearly ------------------------------------------------
def frozen(fn, specs, lower):
    cf = tf.function(fn, input_signature=specs).get_concrete_function()
    ff = convert_variables_to_constants_v2(cf, lower_control_flow=lower)
    return ff.graph.as_graph_def(), ff




def special(name, op, expect, **extra):
    def deco(fn):
        SPECIAL.append((name, op, expect, extra, fn))
        return fn

    return deco


def _loop(x):
    i = tf.constant(0)
    _, y = tf.while_loop(lambda i, y: i < 3, lambda i, y: (i + 1, y * 2.0 + 1.0), [i, x])
    return tf.identity(y, name="out")


def _cond(x):
    return tf.identity(tf.cond(tf.reduce_sum(x) > 0, lambda: x * 2.0, lambda: x - 1.0),
                       name="out")


def _tensorlist(x):
    ta = tf.TensorArray(tf.float32, size=3)
    _, ta = tf.while_loop(lambda i, ta: i < 3, lambda i, ta: (i + 1, ta.write(i, x * 2.0)),
                          [tf.constant(0), ta])
    return tf.identity(ta.stack(), name="out")


for _nm, _fn, _lower, _ops in [
    ("ControlFlow__tf1_while", _loop, True, ["Enter", "Exit", "Merge", "Switch", "NextIteration"]),
    ("ControlFlow__functional_while", _loop, False, ["StatelessWhile"]),
    ("ControlFlow__tf1_cond", _cond, True, ["Switch", "Merge"]),
    ("ControlFlow__functional_if", _cond, False, ["StatelessIf"]),
    ("ControlFlow__tensorlist", _tensorlist, False,
     ["StatelessWhile", "TensorListReserve", "TensorListStack"]),
]:
    def _mk(fn, lower, ops):
        def build():
            x = rnd(2, 3)
            gd, ff = frozen(fn, [tf.TensorSpec([2, 3], tf.float32, name="x")], lower)
            outs = [o.numpy() for o in tf.nest.flatten(ff(tf.constant(x)))]
            return gd, [("x", x)], ["out"], outs

        return build

    special(_nm, "ControlFlow", "control_flow", must_mention=_ops)(_mk(_fn, _lower, _ops))


@special("Unsupported__several", "Unsupported", "unsupported",
         unsupported_ops=["MatrixDeterminant", "LRN", "Lgamma"])
def _():
    g = tf.Graph()
    x_val = rnd(1, 2, 2, 3, lo=0.5, hi=2.0)
    with g.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [1, 2, 2, 3], name="x")
        a = raw.LRN(input=x, depth_radius=1)
        b = raw.Lgamma(x=a)
        b2 = raw.Lgamma(x=raw.Relu(features=b))
        d = raw.MatrixDeterminant(input=raw.Reshape(tensor=b2, shape=c([3, 2, 2], np.int32)))
        out = raw.Sum(input=d, axis=c([0], np.int32), name="out")
        with tf.compat.v1.Session(graph=g) as s:
            res = s.run(out, {x: x_val})
    return g.as_graph_def(), [("x", x_val)], ["out"], [res]


@special("String__input", "StringInput", "string_input")
def _():
    g = tf.Graph()
    s_val = np.array([b"hello", b"blade"], dtype=object)
    with g.as_default():
        s = tf.compat.v1.placeholder(tf.string, [2], name="text")
        out = raw.StringLength(input=s, name="out")
        with tf.compat.v1.Session(graph=g) as sess:
            res = sess.run(out, {s: s_val})
    # The string input is not saved as .npy (object arrays need pickle); case.json says why.
    return g.as_graph_def(), [], ["out"], [res]


# --- driver ----------------------------------------------------------------------------------
def describe(a):
    return {"dtype": np.asarray(a).dtype.str, "shape": list(np.asarray(a).shape)}


def write_case(out_dir, name, op, gd, feeds, fetch_names, outs, expect=None, extra=None):
    d = os.path.join(out_dir, name)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "model.pb"), "wb") as f:
        f.write(gd.SerializeToString(deterministic=True))
    inputs = []
    for i, (n, v) in enumerate(feeds):
        fn = f"in_{i}.npy"
        np.save(os.path.join(d, fn), np.asarray(v), allow_pickle=False)
        inputs.append({"name": n, "file": fn, **describe(v)})
    outputs = []
    for i, (n, v) in enumerate(zip(fetch_names, outs)):
        fn = f"out_{i}.npy"
        np.save(os.path.join(d, fn), np.asarray(v), allow_pickle=False)
        outputs.append({"name": n, "file": fn, **describe(v)})
    meta = {"op": op, "inputs": inputs, "outputs": outputs, "expect_error": expect}
    meta.update(extra or {})
    with open(os.path.join(d, "case.json"), "w") as f:
        json.dump(meta, f, indent=1)
        f.write("\n")


def tensor_name(t):
    n = t.name
    return n[:-2] if n.endswith(":0") else n


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--out", default=os.path.join(here, "..", "..", "fixtures", "tf-ops"))
    ap.add_argument("--only", help="comma-separated case names")
    args = ap.parse_args()
    out_dir = os.path.normpath(args.out)
    only = set(args.only.split(",")) if args.only else None
    if only is None and os.path.isdir(out_dir):
        shutil.rmtree(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    n = 0
    for name, op, fn in CASES:
        if only and name not in only:
            continue
        k = Case(name, op)
        with k.graph.as_default():
            outs = fn(k)
            outs = list(outs)
            phs = {n_: k.graph.get_tensor_by_name(n_ + ":0") for n_, _ in k.feeds}
            with tf.compat.v1.Session(graph=k.graph) as s:
                vals = s.run(outs, {phs[n_]: v for n_, v in k.feeds})
        write_case(out_dir, name, op, k.graph.as_graph_def(), k.feeds,
                   [tensor_name(t) for t in outs], vals)
        n += 1
    for name, op, expect, extra, fn in SPECIAL:
        if only and name not in only:
            continue
        gd, feeds, fetch, outs = fn()
        if name == "String__input":
            extra = dict(extra, note="input 'text' is a tf.string [2] tensor (b'hello', "
                                      "b'blade'); not saved, .npy would need pickle")
        write_case(out_dir, name, op, gd, feeds, fetch, outs, expect, extra)
        n += 1
    total = sum(os.path.getsize(os.path.join(dp, f)) for dp, _, fs in os.walk(out_dir)
                for f in fs)
    print(f"wrote {n} cases to {out_dir} ({total / 1024:.0f} KiB)", file=sys.stderr)


if __name__ == "__main__":
    main()
