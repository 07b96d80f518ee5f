"""TRANSPOSE (Keras Permute), SLICE (Cropping2D), STRIDED_SLICE, RESIZE_BILINEAR,
RESIZE_NEAREST_NEIGHBOR (UpSampling2D): quantized with their input's params; their index /
size inputs are constant int32. Read from a .tflite they keep its operator version (or more,
if the types need it)."""

from __future__ import annotations

import dataclasses

import numpy as np
from ai_edge_litert import schema_py_generated as schema

from tfquant.errors import ModelLoadError
from tfquant.ops import common, delegate_models, keras_support as ks, tflite_support as ts
from tfquant.ops.record import DelegateCase, NotApplicable, OpRecord, QatCompute, QuantRule
from tfquant.vocabulary import NoOptions



@dataclasses.dataclass(frozen=True)
class StridedSliceOptions:
    begin_mask: int = 0
    end_mask: int = 0
    ellipsis_mask: int = 0
    new_axis_mask: int = 0
    shrink_axis_mask: int = 0
    offset: bool = False


@dataclasses.dataclass(frozen=True)
class ResizeOptions:
    align_corners: bool = False
    half_pixel_centers: bool = False


_STRIDED_SLICE_FIELDS = (("begin_mask", "beginMask"), ("end_mask", "endMask"),
                         ("ellipsis_mask", "ellipsisMask"), ("new_axis_mask", "newAxisMask"),
                         ("shrink_axis_mask", "shrinkAxisMask"), ("offset", "offset"))
_RESIZE_FIELDS = (("align_corners", "alignCorners"), ("half_pixel_centers", "halfPixelCenters"))


# -- Keras ------------------------------------------------------------------------------------

def _int32(b, name, values):
    return b.const(name, np.array(values, np.int32), np.int32)


def _permute(b, layer, inputs, out_shape):
    perm = [0] + [int(d) for d in layer.dims]
    return b.op("TRANSPOSE", [inputs[0], _int32(b, f"{layer.name}/perm", perm)], out_shape,
                layer.name, layer)


def _cropping2d(b, layer, inputs, out_shape):
    (top, _), (left, _) = layer.cropping
    if -1 in out_shape[1:]:
        raise ks.Unsupported("Cropping2D of an image of unknown size")
    begin = _int32(b, f"{layer.name}/begin", [0, top, left, 0])
    size = _int32(b, f"{layer.name}/size", [-1] + list(out_shape[1:]))
    return b.op("SLICE", [inputs[0], begin, size], out_shape, layer.name, layer)


def _upsampling2d(b, layer, inputs, out_shape):
    if -1 in out_shape[1:3]:
        raise ks.Unsupported("UpSampling2D of an image of unknown size")
    kinds = {"nearest": "RESIZE_NEAREST_NEIGHBOR", "bilinear": "RESIZE_BILINEAR"}
    if layer.interpolation not in kinds:
        raise ks.Unsupported(f"UpSampling2D interpolation={layer.interpolation}")
    # Keras resizes with tf.image.resize: half-pixel centers, corners not aligned.
    return b.op(kinds[layer.interpolation],
                [inputs[0], _int32(b, f"{layer.name}/size", list(out_shape[1:3]))], out_shape,
                layer.name, layer, ResizeOptions(half_pixel_centers=True))


# -- TFLite -----------------------------------------------------------------------------------

def _reader(op_type, int_inputs, options_class, schema_class, fields):
    def read(imp, inputs, outputs, options, label):
        if len(inputs) != 1 + len(int_inputs):
            raise ModelLoadError(f"{label} has {len(inputs)} inputs")
        ts.activation_input(imp, inputs[0], label)
        for i in int_inputs:
            ts.constant_int32(imp, inputs[i], f"input {i} is not a constant int32 tensor")
        o = ts.require(options, schema_class, label)
        values = {ours: type(getattr(options_class, ours, 0))(getattr(o, theirs))
                  for ours, theirs in fields}
        return op_type, list(inputs), options_class(**values)
    return read


def _case(op_type, options=None, constants=(), out_shape=None):
    def build():
        return delegate_models.after_conv_graph(op_type.lower(), op_type, options, constants,
                                                out_shape)
    return (DelegateCase(f"{op_type.lower()}_on_cpu", build, claimed=False),)


def _record(op_type, int_inputs, options_class, schema_class, options_type, fields, case,
            keras=None, qat=None):
    return OpRecord(
        name=op_type, options=options_class,
        write=ts.options_writer(schema_class, options_type, fields),
        read=_reader(op_type, int_inputs, options_class, schema_class, fields),
        version=common.version_from_source,
        quant=QuantRule(same_scale=True, int_inputs=int_inputs),
        weights=NotApplicable("no weights"),
        keras=keras or NotApplicable("no Keras layer becomes it (it comes from .tflite "
                                     "files)"),
        qat=qat or NotApplicable("QAT renders Keras models, which never hold it"),
        delegate=case)


def _strided_slice(tf, operands, options):
    return tf.strided_slice(*operands, begin_mask=options.begin_mask,
                            end_mask=options.end_mask, ellipsis_mask=options.ellipsis_mask,
                            new_axis_mask=options.new_axis_mask,
                            shrink_axis_mask=options.shrink_axis_mask)


def _resize(method):
    def compute(tf, operands, options):
        return getattr(tf.compat.v1.image, method)(
            operands[0], operands[1], align_corners=options.align_corners,
            half_pixel_centers=options.half_pixel_centers)
    return QatCompute(compute)


_I32 = np.int32
TRANSPOSE = _record(
    "TRANSPOSE", (1,), NoOptions, schema.TransposeOptionsT,
    schema.BuiltinOptions.TransposeOptions, (),
    _case("TRANSPOSE", constants=[np.array([0, 2, 1, 3], _I32)], out_shape=(5, 6, 4)),
    {"Permute": _permute},
    QatCompute(lambda tf, operands, options: tf.transpose(*operands)))
SLICE = _record(
    "SLICE", (1, 2), NoOptions, schema.SliceOptionsT, schema.BuiltinOptions.SliceOptions, (),
    _case("SLICE", constants=[np.array([0, 1, 0, 1], _I32), np.array([-1, 4, 5, 2], _I32)],
          out_shape=(4, 5, 2)), {"Cropping2D": _cropping2d},
    QatCompute(lambda tf, operands, options: tf.slice(*operands)))
STRIDED_SLICE = _record(
    "STRIDED_SLICE", (1, 2, 3), StridedSliceOptions, schema.StridedSliceOptionsT,
    schema.BuiltinOptions.StridedSliceOptions, _STRIDED_SLICE_FIELDS,
    _case("STRIDED_SLICE", StridedSliceOptions(begin_mask=1, end_mask=1),
          constants=[np.array([0, 0, 1, 0], _I32), np.array([0, 6, 5, 4], _I32),
                     np.array([1, 2, 2, 1], _I32)], out_shape=(3, 2, 4)),
    qat=QatCompute(_strided_slice))
RESIZE_BILINEAR = _record(
    "RESIZE_BILINEAR", (1,), ResizeOptions, schema.ResizeBilinearOptionsT,
    schema.BuiltinOptions.ResizeBilinearOptions, _RESIZE_FIELDS,
    _case("RESIZE_BILINEAR", ResizeOptions(half_pixel_centers=True),
          constants=[np.array([12, 10], _I32)], out_shape=(12, 10, 4)),
    {"UpSampling2D": _upsampling2d}, _resize("resize_bilinear"))
RESIZE_NEAREST_NEIGHBOR = _record(
    "RESIZE_NEAREST_NEIGHBOR", (1,), ResizeOptions, schema.ResizeNearestNeighborOptionsT,
    schema.BuiltinOptions.ResizeNearestNeighborOptions, _RESIZE_FIELDS,
    _case("RESIZE_NEAREST_NEIGHBOR", ResizeOptions(), constants=[np.array([12, 10], _I32)],
          out_shape=(12, 10, 4)), qat=_resize("resize_nearest_neighbor"))

RECORDS = (TRANSPOSE, SLICE, STRIDED_SLICE, RESIZE_BILINEAR, RESIZE_NEAREST_NEIGHBOR)
