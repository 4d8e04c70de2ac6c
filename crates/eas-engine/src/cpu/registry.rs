//! Kernel registry: op struct TypeId -> kernel builder, filled by each kernel family.

use super::kernel::KernelBuilder;
use crate::ir::Fact;
use crate::ops::Op;
use crate::{Error, Result};
use std::any::TypeId;
use std::collections::{HashMap, HashSet};
use std::sync::OnceLock;

#[derive(Default)]
pub struct KernelRegistry {
    map: HashMap<TypeId, KernelBuilder>,
    /// Ops whose kernels only move or convert elements, so they take every dtype.
    any_dtype: HashSet<TypeId>,
    /// Ops whose kernels take string values (handles, see `cpu::strings`).
    strings: HashSet<TypeId>,
}

impl KernelRegistry {
    pub fn insert<T: Op>(&mut self, b: KernelBuilder) {
        self.map.insert(TypeId::of::<T>(), b);
    }
    /// Registers a kernel that only moves bytes or converts elements (Cast, Reshape,
    /// Transpose, ...): it also takes the storage-only dtypes (float8, 4-bit integers).
    pub fn insert_any_dtype<T: Op>(&mut self, b: KernelBuilder) {
        self.insert::<T>(b);
        self.any_dtype.insert(TypeId::of::<T>());
    }
    /// Lets an already registered kernel take string values: it moves elements by size
    /// (string handles are 8-byte elements) or reads strings through `Kernel::run_strings`.
    pub fn allow_strings<T: Op>(&mut self) {
        self.strings.insert(TypeId::of::<T>());
    }
    pub fn get(&self, op: &dyn Op) -> Option<KernelBuilder> {
        self.map.get(&op.as_any().type_id()).copied()
    }
    /// Refuses, by name, a storage-only dtype reaching a compute kernel (before the kernel's
    /// own dtype dispatch would, with a less precise message).
    /// Strings likewise reach only the kernels that `allow_strings`.
    pub fn check_dtypes(&self, op: &dyn Op, inputs: &[Fact], outputs: &[Fact]) -> Result<()> {
        let id = op.as_any().type_id();
        if !self.strings.contains(&id) && inputs.iter().chain(outputs).any(|f| f.dtype.is_string())
        {
            return Err(Error::dtype(
                op.name(),
                format!(
                    "{} does not take string tensors (strings go through Cast, Equal and the \
                     data-movement ops only)",
                    op.name()
                ),
            ));
        }
        if self.any_dtype.contains(&op.as_any().type_id()) {
            return Ok(());
        }
        match inputs
            .iter()
            .chain(outputs)
            .find(|f| f.dtype.is_storage_only())
        {
            Some(f) => Err(Error::dtype(
                op.name(),
                format!(
                    "unsupported dtype {}: it is storage-only (Cast and data-movement ops take \
                     it; Cast it to a compute type first)",
                    f.dtype
                ),
            )),
            None => Ok(()),
        }
    }
}

/// Every CPU kernel of this crate.
pub fn kernels() -> &'static KernelRegistry {
    static REG: OnceLock<KernelRegistry> = OnceLock::new();
    REG.get_or_init(|| {
        let mut r = KernelRegistry::default();
        super::kernels::register_all(&mut r);
        r
    })
}
