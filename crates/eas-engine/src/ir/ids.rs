//! Typed entity ids: a `NodeId` cannot be used where a `ValueId` is meant.

use serde::{Deserialize, Serialize};
use std::fmt;

macro_rules! entity {
    ($name:ident, $prefix:literal, $doc:literal) => {
        #[doc = $doc]
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub u32);

        impl $name {
            #[inline]
            pub fn index(self) -> usize {
                self.0 as usize
            }
            #[inline]
            pub(crate) fn from_index(i: usize) -> Self {
                $name(u32::try_from(i).expect("graph larger than u32::MAX entities"))
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!($prefix, "{}"), self.0)
            }
        }
        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(self, f)
            }
        }
    };
}

entity!(NodeId, "n", "A node of a `Graph`.");
entity!(
    ValueId,
    "v",
    "A value (edge) of a `Graph`: a graph input, a constant or a node output."
);

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn display() {
        assert_eq!(NodeId(12).to_string(), "n12");
        assert_eq!(format!("{:?}", ValueId(34)), "v34");
    }
}
