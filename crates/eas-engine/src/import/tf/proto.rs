//! The subset of TensorFlow's protobuf messages a frozen GraphDef needs, written by hand with
//! `prost` derives (field numbers from tensorflow/core/framework/*.proto), so no `protoc` is
//! needed at build time. Fields we never read (device, debug info, function bodies) are left
//! out: prost skips unknown fields while decoding.

use std::collections::HashMap;

/// graph.proto `GraphDef`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct GraphDef {
    #[prost(message, repeated, tag = "1")]
    pub node: Vec<NodeDef>,
    #[prost(message, optional, tag = "4")]
    pub versions: Option<VersionDef>,
    #[prost(message, optional, tag = "2")]
    pub library: Option<FunctionDefLibrary>,
}

/// versions.proto `VersionDef`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct VersionDef {
    #[prost(int32, tag = "1")]
    pub producer: i32,
    #[prost(int32, tag = "2")]
    pub min_consumer: i32,
}

/// function.proto `FunctionDefLibrary`: only the function names are read (to say which
/// functions a functional control-flow op calls).
#[derive(Clone, PartialEq, prost::Message)]
pub struct FunctionDefLibrary {
    #[prost(message, repeated, tag = "1")]
    pub function: Vec<FunctionDef>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct FunctionDef {
    #[prost(message, optional, tag = "1")]
    pub signature: Option<OpDef>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct OpDef {
    #[prost(string, tag = "1")]
    pub name: String,
}

/// node_def.proto `NodeDef`. `input` entries are `name`, `name:k` or `^name` (control).
#[derive(Clone, PartialEq, prost::Message)]
pub struct NodeDef {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub op: String,
    #[prost(string, repeated, tag = "3")]
    pub input: Vec<String>,
    #[prost(string, tag = "4")]
    pub device: String,
    #[prost(map = "string, message", tag = "5")]
    pub attr: HashMap<String, AttrValue>,
}

/// attr_value.proto `AttrValue`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct AttrValue {
    #[prost(oneof = "attr_value::Value", tags = "1, 2, 3, 4, 5, 6, 7, 8, 9, 10")]
    pub value: Option<attr_value::Value>,
}

pub mod attr_value {
    use super::{NameAttrList, TensorProto, TensorShapeProto};

    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Value {
        #[prost(message, tag = "1")]
        List(super::ListValue),
        #[prost(bytes, tag = "2")]
        S(Vec<u8>),
        #[prost(int64, tag = "3")]
        I(i64),
        #[prost(float, tag = "4")]
        F(f32),
        #[prost(bool, tag = "5")]
        B(bool),
        #[prost(enumeration = "super::DataType", tag = "6")]
        Type(i32),
        #[prost(message, tag = "7")]
        Shape(TensorShapeProto),
        #[prost(message, tag = "8")]
        Tensor(TensorProto),
        #[prost(string, tag = "9")]
        Placeholder(String),
        #[prost(message, tag = "10")]
        Func(NameAttrList),
    }
}

/// attr_value.proto `AttrValue.ListValue`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ListValue {
    #[prost(bytes = "vec", repeated, tag = "2")]
    pub s: Vec<Vec<u8>>,
    #[prost(int64, repeated, tag = "3")]
    pub i: Vec<i64>,
    #[prost(float, repeated, tag = "4")]
    pub f: Vec<f32>,
    #[prost(bool, repeated, tag = "5")]
    pub b: Vec<bool>,
    #[prost(enumeration = "DataType", repeated, tag = "6")]
    pub r#type: Vec<i32>,
    #[prost(message, repeated, tag = "7")]
    pub shape: Vec<TensorShapeProto>,
    #[prost(message, repeated, tag = "8")]
    pub tensor: Vec<TensorProto>,
    #[prost(message, repeated, tag = "9")]
    pub func: Vec<NameAttrList>,
}

/// attr_value.proto `NameAttrList` (a function reference).
#[derive(Clone, PartialEq, prost::Message)]
pub struct NameAttrList {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(map = "string, message", tag = "2")]
    pub attr: HashMap<String, AttrValue>,
}

/// tensor_shape.proto `TensorShapeProto`; a dim of size -1 is unknown.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TensorShapeProto {
    #[prost(message, repeated, tag = "2")]
    pub dim: Vec<tensor_shape_proto::Dim>,
    #[prost(bool, tag = "3")]
    pub unknown_rank: bool,
}

pub mod tensor_shape_proto {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Dim {
        #[prost(int64, tag = "1")]
        pub size: i64,
        #[prost(string, tag = "2")]
        pub name: String,
    }
}

/// tensor.proto `TensorProto`. Values are in `tensor_content` (raw little-endian) or in the
/// typed `*_val` field, where fewer values than elements means "repeat the last one".
#[derive(Clone, PartialEq, prost::Message)]
pub struct TensorProto {
    #[prost(enumeration = "DataType", tag = "1")]
    pub dtype: i32,
    #[prost(message, optional, tag = "2")]
    pub tensor_shape: Option<TensorShapeProto>,
    #[prost(int32, tag = "3")]
    pub version_number: i32,
    #[prost(bytes = "vec", tag = "4")]
    pub tensor_content: Vec<u8>,
    /// DT_HALF and DT_BFLOAT16 values, as their 16 bits in an int32.
    #[prost(int32, repeated, tag = "13")]
    pub half_val: Vec<i32>,
    #[prost(float, repeated, tag = "5")]
    pub float_val: Vec<f32>,
    #[prost(double, repeated, tag = "6")]
    pub double_val: Vec<f64>,
    /// DT_INT32, DT_INT16, DT_INT8, DT_UINT8, DT_UINT16 values.
    #[prost(int32, repeated, tag = "7")]
    pub int_val: Vec<i32>,
    #[prost(bytes = "vec", repeated, tag = "8")]
    pub string_val: Vec<Vec<u8>>,
    #[prost(int64, repeated, tag = "10")]
    pub int64_val: Vec<i64>,
    #[prost(bool, repeated, tag = "11")]
    pub bool_val: Vec<bool>,
    #[prost(uint32, repeated, tag = "16")]
    pub uint32_val: Vec<u32>,
    #[prost(uint64, repeated, tag = "17")]
    pub uint64_val: Vec<u64>,
}

/// types.proto `DataType` (the `_REF` variants, +100, are only in non-frozen graphs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum DataType {
    DtInvalid = 0,
    DtFloat = 1,
    DtDouble = 2,
    DtInt32 = 3,
    DtUint8 = 4,
    DtInt16 = 5,
    DtInt8 = 6,
    DtString = 7,
    DtComplex64 = 8,
    DtInt64 = 9,
    DtBool = 10,
    DtQint8 = 11,
    DtQuint8 = 12,
    DtQint32 = 13,
    DtBfloat16 = 14,
    DtQint16 = 15,
    DtQuint16 = 16,
    DtUint16 = 17,
    DtComplex128 = 18,
    DtHalf = 19,
    DtResource = 20,
    DtVariant = 21,
    DtUint32 = 22,
    DtUint64 = 23,
}

/// TensorFlow's name for a DataType number (for error messages), e.g. "float", "string".
pub fn dtype_name(t: i32) -> String {
    let base = if t > 100 { t - 100 } else { t };
    let name = match DataType::try_from(base) {
        Ok(DataType::DtFloat) => "float",
        Ok(DataType::DtDouble) => "double",
        Ok(DataType::DtInt32) => "int32",
        Ok(DataType::DtUint8) => "uint8",
        Ok(DataType::DtInt16) => "int16",
        Ok(DataType::DtInt8) => "int8",
        Ok(DataType::DtString) => "string",
        Ok(DataType::DtComplex64) => "complex64",
        Ok(DataType::DtInt64) => "int64",
        Ok(DataType::DtBool) => "bool",
        Ok(DataType::DtBfloat16) => "bfloat16",
        Ok(DataType::DtHalf) => "half",
        Ok(DataType::DtResource) => "resource",
        Ok(DataType::DtVariant) => "variant",
        Ok(DataType::DtUint16) => "uint16",
        Ok(DataType::DtUint32) => "uint32",
        Ok(DataType::DtUint64) => "uint64",
        Ok(DataType::DtComplex128) => "complex128",
        Ok(DataType::DtQint8 | DataType::DtQuint8 | DataType::DtQint16)
        | Ok(DataType::DtQuint16 | DataType::DtQint32) => "quantized",
        Ok(DataType::DtInvalid) | Err(_) => return format!("DataType({t})"),
    };
    if t > 100 {
        format!("{name}_ref")
    } else {
        name.to_string()
    }
}
