//! Packing into micro-panels, the layout every microkernel reads.
//!
//! A micro-panel of A holds `MR` rows over a run of `kc` depths: element (r, p) at `p*MR + r`.
//! A micro-panel of B holds `NR` columns: element (p, c) at `p*NR + c`. Rows/columns past the
//! matrix edge are zero, so kernels always compute full tiles and only the store is masked.
//! Prepacked operands hold every panel over the full depth `k`; a depth block `[p0, p0+kc)` of
//! panel `q` then starts at `q*k*W + p0*W` (W = MR or NR), so the same kernels read both.

use super::{MR, NR};

/// A strided read-only matrix view: element (i, j) at `ptr + i*rs + j*cs`.
#[derive(Clone, Copy, Debug)]
pub struct Strided {
    pub ptr: *const f32,
    pub rs: isize,
    pub cs: isize,
}

impl Strided {
    #[inline(always)]
    unsafe fn at(&self, i: usize, j: usize) -> f32 {
        // SAFETY: the caller of the packing function guarantees (i, j) is inside the matrix.
        unsafe { *self.ptr.offset(i as isize * self.rs + j as isize * self.cs) }
    }
}

/// Packs rows `[i0, i0+rows)` (rows <= MR) x depths `[p0, p0+kc)` of A into one micro-panel.
///
/// # Safety
/// Every addressed element of `a` must be readable; `dst` must hold `kc*MR` floats.
pub(crate) unsafe fn pack_a_panel(
    dst: &mut [f32],
    a: Strided,
    i0: usize,
    rows: usize,
    p0: usize,
    kc: usize,
) {
    let dst = &mut dst[..kc * MR];
    // SAFETY (all blocks below): indices stay inside the caller-guaranteed extents.
    unsafe {
        if a.rs == 1 && rows == MR {
            // Column-major A: each depth is MR contiguous floats.
            for p in 0..kc {
                let src = a.ptr.offset(i0 as isize + (p0 + p) as isize * a.cs);
                std::ptr::copy_nonoverlapping(src, dst.as_mut_ptr().add(p * MR), MR);
            }
            return;
        }
        if rows < MR {
            dst.fill(0.0);
        }
        if a.cs == 1 {
            // Row-major A: read each row contiguously, scatter with stride MR.
            for r in 0..rows {
                let src = a.ptr.offset((i0 + r) as isize * a.rs + p0 as isize);
                for p in 0..kc {
                    *dst.get_unchecked_mut(p * MR + r) = *src.add(p);
                }
            }
        } else {
            for p in 0..kc {
                for r in 0..rows {
                    dst[p * MR + r] = a.at(i0 + r, p0 + p);
                }
            }
        }
    }
}

/// Packs depths `[p0, p0+kc)` x columns `[j0, j0+cols)` (cols <= NR) of B into one micro-panel.
///
/// # Safety
/// Every addressed element of `b` must be readable; `dst` must hold `kc*NR` floats.
pub(crate) unsafe fn pack_b_panel(
    dst: &mut [f32],
    b: Strided,
    p0: usize,
    kc: usize,
    j0: usize,
    cols: usize,
) {
    let dst = &mut dst[..kc * NR];
    // SAFETY (all blocks below): indices stay inside the caller-guaranteed extents.
    unsafe {
        if b.cs == 1 {
            for p in 0..kc {
                let src = b.ptr.offset((p0 + p) as isize * b.rs + j0 as isize);
                let d = &mut dst[p * NR..(p + 1) * NR];
                std::ptr::copy_nonoverlapping(src, d.as_mut_ptr(), cols);
                d[cols..].fill(0.0);
            }
        } else {
            if cols < NR {
                dst.fill(0.0);
            }
            if b.rs == 1 {
                // Column-major B (a transposed weight): read each column contiguously.
                for c in 0..cols {
                    let src = b.ptr.offset((j0 + c) as isize * b.cs + p0 as isize);
                    for p in 0..kc {
                        *dst.get_unchecked_mut(p * NR + c) = *src.add(p);
                    }
                }
            } else {
                for p in 0..kc {
                    for c in 0..cols {
                        dst[p * NR + c] = b.at(p0 + p, j0 + c);
                    }
                }
            }
        }
    }
}
