//! Kernel registry: op struct TypeId -> kernel builder, filled by each kernel family.

use super::kernel::KernelBuilder;
use crate::ops::Op;
use std::any::TypeId;
use std::collections::HashMap;
use std::sync::OnceLock;

#[derive(Default)]
pub struct KernelRegistry {
    map: HashMap<TypeId, KernelBuilder>,
}

impl KernelRegistry {
    pub fn insert<T: Op>(&mut self, b: KernelBuilder) {
        self.map.insert(TypeId::of::<T>(), b);
    }
    pub fn get(&self, op: &dyn Op) -> Option<KernelBuilder> {
        self.map.get(&op.as_any().type_id()).copied()
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
