//! Winograd F(4x4, 3x3) convolution: f32, 3x3 kernel, stride 1, dilation 1, group 1, constant
//! weights (the 3x3 convs of ResNet-style networks).
//!
//! Each 4x4 block of outputs (a tile) is computed from the 6x6 input patch around it as
//! `Y = A^T [ (G g G^T) .* (B^T d B) ] A`; over all input/output channels the element-wise
//! product becomes 36 independent GEMMs `M[p] = U[p] V[p]` with `U[p]` the transformed weights
//! (`Cout x Cin`, packed once at plan time) and `V[p]` the transformed input (`Cin x tiles`).
//! That is 36 multiplies per 16 outputs and input channel instead of 144: 4x fewer.
//!
//! Per run, tiles go in blocks of whole tile rows (so a block's transformed data stays in L2):
//! input transform (threads split the input channels), 36 GEMMs (threads take whole GEMMs),
//! output transform with the conv epilogue fused in (threads split the output channels).
//! The transforms work on 16 tiles at a time as 16-lane vectors: an input row is split into its
//! 4 column phases once, so the 6 columns of 16 neighbouring tiles are contiguous runs (the
//! trick of `PhaseRows` in conv.rs). AVX-512 code is chosen at run time, the same loops run
//! portably elsewhere. Blocks with few tiles put the tiles on the GEMM's rows instead of its
//! columns, so a 14x14 image (16 tiles) does not fill a 32-wide column panel with zeros.
//! Chosen by the conv builders when [`worth_it`] (>= 16 channels in and out, >= 16 tiles).
//!
//! Accuracy: the transforms are exact in f64 but round in f32; the error grows with the
//! transform's constants (up to 8 in A, 5 in B) and with Cin. Measured against an f64 direct
//! conv with He-initialized weights and inputs of both signs (`accuracy_on_resnet_shapes`),
//! max |err| / max |ref| is 3e-6 to 7e-6 at Cin 64 to 256 and 9e-6 at Cin 512 (the direct
//! f32 conv: about 1e-6), inside the 1e-5 this kernel must hold (the o1 accuracy gate is
//! 1e-4); the smaller F(2x2, 3x3) was not needed.
//! Outputs are therefore not bit-identical to the direct conv.

use super::conv::apply_act;
use crate::cpu::gemm as sg;
use crate::cpu::kernel::{Kernel, KernelCtx, TensorView, TensorViewMut, concrete};
use crate::dtype::DType;
use crate::ir::Fact;
use crate::ops::conv::geometry;
use crate::ops::{Activation, Conv};
use crate::{Error, Result};
use rayon::prelude::*;

/// Transformed positions per tile (6x6).
const POS: usize = 36;
/// Vector lanes: tiles (or channels) processed together.
const L: usize = 16;
type Lanes = [f32; L];

/// G of F(4x4, 3x3) (interpolation points 0, 1, -1, 2, -2, inf), exact in f64.
const G: [[f64; 3]; 6] = [
    [1.0 / 4.0, 0.0, 0.0],
    [-1.0 / 6.0, -1.0 / 6.0, -1.0 / 6.0],
    [-1.0 / 6.0, 1.0 / 6.0, -1.0 / 6.0],
    [1.0 / 24.0, 1.0 / 12.0, 1.0 / 6.0],
    [1.0 / 24.0, -1.0 / 12.0, 1.0 / 6.0],
    [0.0, 0.0, 1.0],
];

/// Tiles per block the per-run loop aims at: V and M of a block then take
/// `36 * (Cin + Cout) * 4` bytes per tile (L2-sized for the ResNet shapes; measured).
const BLOCK_TILES: usize = 64;

/// Where the tiles go in the 36 GEMMs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Layout {
    /// `M[p] (Cout x tiles) = U[p] (packed A) * V[p]`: many tiles.
    TilesAsCols,
    /// `M[p]^T (tiles x Cout) = V[p]^T * U[p]^T (packed B)`: few tiles.
    TilesAsRows,
}

/// A planned Winograd conv; see the module doc.
#[derive(Debug)]
pub(super) struct WinogradKernel {
    n: usize,
    cin: usize,
    cout: usize,
    ih: usize,
    iw: usize,
    oh: usize,
    ow: usize,
    pad_t: usize,
    pad_l: usize,
    /// Tile rows / columns per image.
    th: usize,
    tw: usize,
    /// Tile rows per block, and the tiles a block holds at most.
    block_rows: usize,
    nb: usize,
    /// Phase length of a split input row (>= tw rounded up to L, plus one).
    pl: usize,
    layout: Layout,
    /// Transformed weights per position: `ua` for TilesAsCols, `ub` for TilesAsRows.
    ua: Vec<sg::PackedA>,
    ub: Vec<sg::PackedB>,
    has_bias: bool,
    residual: bool,
    act: Activation,
    isa: sg::Isa,
    /// Tasks the scratch was sized for (the pool's threads at plan time).
    tasks: usize,
    /// Floats of one task's private buffer (split rows, output rows, GEMM packing).
    task_floats: usize,
}

#[cfg(test)]
thread_local! {
    /// Tests: force the layout / block size, or turn the kernel off (direct conv).
    static FORCE: std::cell::Cell<Option<(Option<Layout>, usize, bool)>> =
        const { std::cell::Cell::new(None) };
}

/// Whether Winograd beats the im2col + GEMM conv for this shape. Measured on Zen 4, one
/// thread, 3x3 pad-1 Relu convs (direct -> Winograd, ms): 64ch 56x56 4.0 -> 1.8, 128ch 28x28
/// 3.0 -> 1.5, 256ch 14x14 3.0 -> 1.7, 512ch 7x7 3.4 -> 3.6 (4 tiles: each transformed weight
/// is used 4 times, and the 36 of them (36 MB) stream from memory). Tiny channel counts leave
/// the GEMMs too small to amortize the transforms.
fn worth_it(cin: usize, cout: usize, tiles: usize) -> bool {
    cin >= 16 && cout >= 16 && tiles >= 16
}

/// Builds the Winograd kernel when the conv qualifies (f32, 4-D, 3x3, stride 1, dilation 1,
/// group 1, constant weights) and is worth it; `None` leaves it to the direct conv.
pub(super) fn build(
    c: &Conv,
    inputs: &[Fact],
    act: Activation,
    residual: bool,
) -> Result<Option<WinogradKernel>> {
    let force = {
        #[cfg(test)]
        {
            FORCE.with(|f| f.get())
        }
        #[cfg(not(test))]
        {
            None::<(Option<Layout>, usize, bool)>
        }
    };
    if force.is_some_and(|f| f.2) {
        return Ok(None);
    }
    let (Some(xf), Some(wf)) = (inputs.first(), inputs.get(1)) else {
        return Ok(None);
    };
    let Some(wt) = wf.konst.as_ref() else {
        return Ok(None);
    };
    if xf.dtype != DType::F32 || wf.dtype != DType::F32 || c.group.max(1) != 1 {
        return Ok(None);
    }
    let x = concrete(xf)?;
    let w = concrete(wf)?;
    if x.len() != 4 || w.len() != 4 || w[2] != 3 || w[3] != 3 || w[1] != x[1] {
        return Ok(None);
    }
    let geo = geometry(
        "Conv",
        &x[2..],
        &w[2..],
        &c.strides,
        &c.dilations,
        &c.padding,
        false,
    )?;
    if geo.iter().any(|a| a.stride != 1 || a.dilation != 1) {
        return Ok(None);
    }
    let (gh, gw) = (geo[0], geo[1]);
    let (n, cin, cout) = (x[0], x[1], w[0]);
    let tiles = n * gh.output.div_ceil(4) * gw.output.div_ceil(4);
    if force.is_none() && !worth_it(cin, cout, tiles) {
        return Ok(None);
    }
    if n == 0 || cin == 0 || cout == 0 || gh.output == 0 || gw.output == 0 {
        return Ok(None);
    }
    let (th, tw) = (gh.output.div_ceil(4), gw.output.div_ceil(4));
    let total_rows = n * th;
    let target = force.map_or(BLOCK_TILES, |f| f.1).max(1);
    let mut block_rows = target.div_ceil(tw).clamp(1, total_rows);
    // Even blocks: no short one at the end.
    block_rows = total_rows.div_ceil(total_rows.div_ceil(block_rows));
    let nb = block_rows * tw;
    let layout = force.and_then(|f| f.0).unwrap_or(if nb >= 64 {
        Layout::TilesAsCols
    } else {
        Layout::TilesAsRows
    });
    let u = transform_weights(wt.as_slice::<f32>()?, cout, cin);
    let (mut ua, mut ub) = (Vec::new(), Vec::new());
    for p in 0..POS {
        let up = &u[p * cout * cin..][..cout * cin];
        match layout {
            Layout::TilesAsCols => ua.push(sg::PackedA::new(up, cout, cin, cin, 1)?),
            Layout::TilesAsRows => ub.push(sg::PackedB::new(up, cin, cout, 1, cin)?),
        }
    }
    let tasks = super::pool_threads().max(1);
    let pl = tw.next_multiple_of(L) + 1;
    let gemm_bytes = match layout {
        Layout::TilesAsCols => sg::scratch_bytes(cout, nb, cin, true, false, 1),
        Layout::TilesAsRows => sg::scratch_bytes(nb, cout, cin, false, true, 1),
    };
    let task_floats = (24 * pl).max(gemm_bytes.div_ceil(4)).next_multiple_of(16);
    Ok(Some(WinogradKernel {
        n,
        cin,
        cout,
        ih: gh.input,
        iw: gw.input,
        oh: gh.output,
        ow: gw.output,
        pad_t: gh.pad_begin,
        pad_l: gw.pad_begin,
        th,
        tw,
        block_rows,
        nb,
        pl,
        layout,
        ua,
        ub,
        has_bias: inputs.len() > 2,
        residual,
        act,
        isa: sg::Isa::detect(),
        tasks,
        task_floats,
    }))
}

/// `U[p][co][ci] = (G g[co][ci] G^T)[p]`, computed in f64.
fn transform_weights(w: &[f32], cout: usize, cin: usize) -> Vec<f32> {
    let mut u = vec![0f32; POS * cout * cin];
    for co in 0..cout {
        for ci in 0..cin {
            let g = &w[(co * cin + ci) * 9..][..9];
            // t = G g (6x3), then U = t G^T (6x6).
            let mut t = [[0f64; 3]; 6];
            for (i, row) in t.iter_mut().enumerate() {
                for (b, v) in row.iter_mut().enumerate() {
                    *v = (0..3).map(|a| G[i][a] * g[a * 3 + b] as f64).sum();
                }
            }
            for i in 0..6 {
                for j in 0..6 {
                    let v: f64 = (0..3).map(|b| t[i][b] * G[j][b]).sum();
                    u[((i * 6 + j) * cout + co) * cin + ci] = v as f32;
                }
            }
        }
    }
    u
}

/// `B^T d` for one 6-vector (per lane).
#[inline(always)]
fn bt(d: &[Lanes; 6]) -> [Lanes; 6] {
    let mut o = [[0f32; L]; 6];
    for l in 0..L {
        let (d0, d1, d2, d3, d4, d5) = (d[0][l], d[1][l], d[2][l], d[3][l], d[4][l], d[5][l]);
        o[0][l] = 4.0 * d0 - 5.0 * d2 + d4;
        o[1][l] = (d3 + d4) - 4.0 * (d1 + d2);
        o[2][l] = (d4 - d3) + 4.0 * (d1 - d2);
        o[3][l] = (d4 - d2) + 2.0 * (d3 - d1);
        o[4][l] = (d4 - d2) - 2.0 * (d3 - d1);
        o[5][l] = 4.0 * d1 - 5.0 * d3 + d5;
    }
    o
}

/// `A^T m` for one 6-vector (per lane).
#[inline(always)]
fn at(m: &[Lanes; 6]) -> [Lanes; 4] {
    let mut o = [[0f32; L]; 4];
    for l in 0..L {
        let (m0, m1, m2, m3, m4, m5) = (m[0][l], m[1][l], m[2][l], m[3][l], m[4][l], m[5][l]);
        let (a, b, c, d) = (m1 + m2, m1 - m2, m3 + m4, m3 - m4);
        o[0][l] = m0 + a + c;
        o[1][l] = b + 2.0 * d;
        o[2][l] = a + 4.0 * c;
        o[3][l] = b + 8.0 * d + m5;
    }
    o
}

/// A raw pointer the tasks of one phase share; each writes a disjoint part.
#[derive(Clone, Copy)]
struct Shared(*mut f32);
// SAFETY: see the struct doc; reads happen only after the writing phase has joined.
unsafe impl Send for Shared {}
unsafe impl Sync for Shared {}

impl Shared {
    /// The pointer (a method, so closures capture the whole `Shared`, not the raw field).
    fn get(self) -> *mut f32 {
        self.0
    }
}

/// Runs `f(first, end, buf)` over `[0, count)` split into `tasks` ranges, each with its own
/// `per` floats of `bufs`.
fn split(
    tasks: usize,
    count: usize,
    bufs: &mut [f32],
    per: usize,
    f: impl Fn(usize, usize, &mut [f32]) + Sync,
) {
    if tasks <= 1 {
        f(0, count, &mut bufs[..per]);
        return;
    }
    bufs.par_chunks_mut(per)
        .take(tasks)
        .enumerate()
        .for_each(|(t, buf)| f(count * t / tasks, count * (t + 1) / tasks, buf));
}

impl WinogradKernel {
    fn v_len(&self) -> usize {
        (POS * self.cin * self.nb).next_multiple_of(16)
    }
    /// M plus one vector of slack (full-vector reads past the last block's tiles).
    fn m_len(&self) -> usize {
        (POS * self.cout * self.nb + L).next_multiple_of(16)
    }

    /// Input transform of channel `ci` for global tile rows `[r0, r1)` into `V[p][ci][t]`.
    // Column j of a 6x6 block reads h[..][j]: an index loop says it most plainly.
    #[allow(clippy::needless_range_loop)]
    #[inline(always)]
    fn input_channel(
        &self,
        x: &[f32],
        ci: usize,
        r0: usize,
        r1: usize,
        buf: &mut [f32],
        v: Shared,
    ) {
        let (pl, tw, iw) = (self.pl, self.tw, self.iw);
        let buf = &mut buf[..24 * pl];
        for gr in r0..r1 {
            let (b, ty) = (gr / self.th, gr % self.th);
            let plane = &x[(b * self.cin + ci) * self.ih * iw..][..self.ih * iw];
            // Six padded input rows, each split into 4 column phases: column c of the
            // padded row lands at phase c % 4, index c / 4.
            for (i, row) in buf.chunks_exact_mut(4 * pl).enumerate() {
                row.fill(0.0);
                let iy = (ty * 4 + i) as isize - self.pad_t as isize;
                if iy < 0 || iy as usize >= self.ih {
                    continue;
                }
                let src = &plane[iy as usize * iw..][..iw];
                for (ix, &s) in src.iter().enumerate() {
                    let c = ix + self.pad_l;
                    if let Some(d) = row.get_mut((c % 4) * pl + c / 4) {
                        *d = s;
                    }
                }
            }
            let t_row = (gr - r0) * tw;
            for tx0 in (0..tw).step_by(L) {
                let lanes = L.min(tw - tx0);
                // h[i] = (d B)[i]: row i of every tile, transformed along the columns.
                let mut h = [[[0f32; L]; 6]; 6];
                for (i, hi) in h.iter_mut().enumerate() {
                    let row = &buf[i * 4 * pl..][..4 * pl];
                    let mut d = [[0f32; L]; 6];
                    for (j, dj) in d.iter_mut().enumerate() {
                        dj.copy_from_slice(&row[(j % 4) * pl + tx0 + j / 4..][..L]);
                    }
                    *hi = bt(&d);
                }
                for j in 0..6 {
                    let col = [h[0][j], h[1][j], h[2][j], h[3][j], h[4][j], h[5][j]];
                    let o = bt(&col);
                    for (i, oi) in o.iter().enumerate() {
                        let at = ((i * 6 + j) * self.cin + ci) * self.nb + t_row + tx0;
                        // SAFETY: at + lanes <= (p*cin + ci + 1) * nb <= v_len; this task
                        // alone writes channel ci.
                        unsafe {
                            std::ptr::copy_nonoverlapping(oi.as_ptr(), v.0.add(at), lanes);
                        }
                    }
                }
            }
        }
    }

    /// Output transform + epilogue of channel `co` for global tile rows `[r0, r1)`.
    #[allow(clippy::too_many_arguments, clippy::needless_range_loop)]
    #[inline(always)]
    fn output_channel(
        &self,
        m: &[f32],
        co: usize,
        r0: usize,
        r1: usize,
        bias: Option<f32>,
        res: Option<&[f32]>,
        out: Shared,
        buf: &mut [f32],
    ) {
        let (pl, tw, ow) = (self.pl, self.tw, self.ow);
        let buf = &mut buf[..16 * pl];
        let plane = self.oh * ow;
        for gr in r0..r1 {
            let (b, ty) = (gr / self.th, gr % self.th);
            let t_row = (gr - r0) * tw;
            for tx0 in (0..tw).step_by(L) {
                let t0 = t_row + tx0;
                let lanes = L.min(tw - tx0);
                let mut mv = [[0f32; L]; POS];
                match self.layout {
                    Layout::TilesAsCols => {
                        for (p, v) in mv.iter_mut().enumerate() {
                            v.copy_from_slice(&m[(p * self.cout + co) * self.nb + t0..][..L]);
                        }
                    }
                    Layout::TilesAsRows => {
                        for (p, v) in mv.iter_mut().enumerate() {
                            let base = p * self.nb * self.cout + co;
                            for (l, e) in v.iter_mut().enumerate().take(lanes) {
                                *e = m[base + (t0 + l) * self.cout];
                            }
                        }
                    }
                }
                // s[i] = (m A)[i], then y = A^T s.
                let mut s = [[[0f32; L]; 4]; 6];
                for (i, si) in s.iter_mut().enumerate() {
                    let r: &[Lanes; 6] = mv[i * 6..][..6].try_into().expect("6");
                    *si = at(r);
                }
                for j in 0..4 {
                    let col = [s[0][j], s[1][j], s[2][j], s[3][j], s[4][j], s[5][j]];
                    let y = at(&col);
                    for (i, yi) in y.iter().enumerate() {
                        let row = &mut buf[i * 4 * pl..][..4 * pl];
                        for (l, &e) in yi.iter().enumerate() {
                            row[4 * (tx0 + l) + j] = e;
                        }
                    }
                }
            }
            for i in 0..4 {
                let oy = ty * 4 + i;
                if oy >= self.oh {
                    break;
                }
                let at = (b * self.cout + co) * plane + oy * ow;
                let src = &buf[i * 4 * pl..][..ow];
                // SAFETY: at + ow <= out.len(); this task alone writes channel co.
                let dst = unsafe { std::slice::from_raw_parts_mut(out.0.add(at), ow) };
                finish(self.act, bias, res.map(|r| &r[at..][..ow]), src, dst);
            }
        }
    }

    /// The 36 GEMMs of positions `[p0, p1)` over `nt` tiles.
    ///
    /// # Safety
    /// `v` and `m` hold `v_len` / `m_len` floats; no other task touches M[p] for p in range.
    unsafe fn gemms(
        &self,
        p0: usize,
        p1: usize,
        nt: usize,
        v: *const f32,
        m: Shared,
        buf: &mut [f32],
    ) -> Result<()> {
        // SAFETY: f32 buffer viewed as bytes.
        let bytes =
            unsafe { std::slice::from_raw_parts_mut(buf.as_mut_ptr().cast::<u8>(), buf.len() * 4) };
        let (cin, cout, nb) = (self.cin, self.cout, self.nb);
        let ep = sg::Epilogue::default();
        for p in p0..p1 {
            // SAFETY: V[p] is cin x nb (first nt columns used), M[p] cout x nb or nb x cout.
            unsafe {
                let vp = v.add(p * cin * nb);
                let mp = m.0.add(p * cout * nb);
                match self.layout {
                    Layout::TilesAsCols => sg::sgemm_isa(
                        self.isa,
                        cout,
                        nt,
                        cin,
                        sg::Operand::Packed(&self.ua[p]),
                        sg::Operand::Strided(sg::Strided {
                            ptr: vp,
                            rs: nb as isize,
                            cs: 1,
                        }),
                        mp,
                        nb as isize,
                        &ep,
                        bytes,
                        1,
                    )?,
                    Layout::TilesAsRows => sg::sgemm_isa(
                        self.isa,
                        nt,
                        cout,
                        cin,
                        sg::Operand::Strided(sg::Strided {
                            ptr: vp,
                            rs: 1,
                            cs: nb as isize,
                        }),
                        sg::Operand::Packed(&self.ub[p]),
                        mp,
                        cout as isize,
                        &ep,
                        bytes,
                        1,
                    )?,
                }
            }
        }
        Ok(())
    }

    fn run_f32(
        &self,
        ctx: &mut KernelCtx,
        x: &[f32],
        bias: Option<&[f32]>,
        res: Option<&[f32]>,
        out: &mut [f32],
    ) -> Result<()> {
        let (vl, ml) = (self.v_len(), self.m_len());
        let need = (vl + ml + self.task_floats) * 4;
        if ctx.scratch.len() < need
            || x.len() < self.n * self.cin * self.ih * self.iw
            || out.len() < self.n * self.cout * self.oh * self.ow
            || bias.is_some_and(|b| b.len() < self.cout)
            || res.is_some_and(|r| r.len() < out.len())
        {
            return Err(Error::invalid(
                "Winograd conv: buffers smaller than planned",
            ));
        }
        let fl = crate::tensor::bytes_as_mut::<f32>(ctx.scratch);
        let (v, rest) = fl.split_at_mut(vl);
        let (m, bufs) = rest.split_at_mut(ml);
        let per = self.task_floats;
        let tasks = ctx.threads.min(self.tasks).min(bufs.len() / per).max(1);
        let (vp, mp, op) = (
            Shared(v.as_mut_ptr()),
            Shared(m.as_mut_ptr()),
            Shared(out.as_mut_ptr()),
        );
        let avx512 = self.isa == sg::Isa::Avx512;
        let total = self.n * self.th;
        let err = std::sync::Mutex::new(None);
        for r0 in (0..total).step_by(self.block_rows) {
            let r1 = (r0 + self.block_rows).min(total);
            let nt = (r1 - r0) * self.tw;
            split(tasks, self.cin, bufs, per, |c0, c1, buf| {
                for ci in c0..c1 {
                    #[cfg(target_arch = "x86_64")]
                    if avx512 {
                        // SAFETY: the CPU has AVX-512F (Isa::detect).
                        unsafe { input_channel_avx512(self, x, ci, r0, r1, buf, vp) };
                        continue;
                    }
                    self.input_channel(x, ci, r0, r1, buf, vp);
                }
            });
            split(tasks, POS, bufs, per, |p0, p1, buf| {
                // SAFETY: sized by v_len / m_len; tasks own disjoint positions.
                if let Err(e) = unsafe { self.gemms(p0, p1, nt, vp.get(), mp, buf) } {
                    *err.lock().unwrap_or_else(|e| e.into_inner()) = Some(e);
                }
            });
            if let Some(e) = err.lock().unwrap_or_else(|e| e.into_inner()).take() {
                return Err(e);
            }
            // SAFETY: the GEMM phase has joined; M is only read from here on.
            let m: &[f32] = unsafe { std::slice::from_raw_parts(mp.get(), ml) };
            split(tasks, self.cout, bufs, per, |c0, c1, buf| {
                for co in c0..c1 {
                    let b = bias.map(|b| b[co]);
                    #[cfg(target_arch = "x86_64")]
                    if avx512 {
                        // SAFETY: the CPU has AVX-512F (Isa::detect).
                        unsafe { output_channel_avx512(self, m, co, r0, r1, b, res, op, buf) };
                        continue;
                    }
                    self.output_channel(m, co, r0, r1, b, res, op, buf);
                }
            });
        }
        Ok(())
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn input_channel_avx512(
    k: &WinogradKernel,
    x: &[f32],
    ci: usize,
    r0: usize,
    r1: usize,
    buf: &mut [f32],
    v: Shared,
) {
    k.input_channel(x, ci, r0, r1, buf, v)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
fn output_channel_avx512(
    k: &WinogradKernel,
    m: &[f32],
    co: usize,
    r0: usize,
    r1: usize,
    bias: Option<f32>,
    res: Option<&[f32]>,
    out: Shared,
    buf: &mut [f32],
) {
    k.output_channel(m, co, r0, r1, bias, res, out, buf)
}

/// `dst = act(src [+ bias] [+ res])`, adds in that order (the direct conv's order).
#[inline(always)]
fn finish(act: Activation, bias: Option<f32>, res: Option<&[f32]>, src: &[f32], dst: &mut [f32]) {
    match (bias, res) {
        (Some(b), Some(r)) => {
            for ((d, &s), &r) in dst.iter_mut().zip(src).zip(r) {
                *d = (s + b) + r;
            }
        }
        (Some(b), None) => {
            for (d, &s) in dst.iter_mut().zip(src) {
                *d = s + b;
            }
        }
        (None, Some(r)) => {
            for ((d, &s), &r) in dst.iter_mut().zip(src).zip(r) {
                *d = s + r;
            }
        }
        (None, None) => dst.copy_from_slice(src),
    }
    apply_act(act, dst);
}

impl Kernel for WinogradKernel {
    fn scratch_bytes(&self) -> usize {
        (self.v_len() + self.m_len() + self.tasks * self.task_floats) * 4
    }
    fn run(
        &self,
        ctx: &mut KernelCtx,
        inputs: &[TensorView],
        outputs: &mut [TensorViewMut],
    ) -> Result<()> {
        let x = inputs[0].as_slice::<f32>()?;
        let bias = match self.has_bias {
            true => Some(inputs[2].as_slice::<f32>()?),
            false => None,
        };
        let res = match self.residual {
            true => Some(inputs[3].as_slice::<f32>()?),
            false => None,
        };
        self.run_f32(ctx, x, bias, res, outputs[0].as_slice_mut::<f32>()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::kernel::KernelBuilder;
    use crate::cpu::registry::kernels;
    use crate::cpu::{CpuModel, CpuOptions};
    use crate::ir::Graph;
    use crate::ops::{FusedConv, Padding};
    use crate::tensor::Tensor;

    /// Uniform values in [-s, s) from a fixed LCG.
    fn rand(n: usize, seed: u64, s: f32) -> Vec<f32> {
        let mut z = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (0..n)
            .map(|_| {
                z = z
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((z >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * s
            })
            .collect()
    }

    /// Direct conv in f64 (3x3, stride 1; pads [top, left, bottom, right]) + bias + residual,
    /// then the activation in f32 (as the kernel applies it). Also returns the largest
    /// magnitude before the activation (the scale errors are relative to).
    #[allow(clippy::too_many_arguments)]
    fn reference(
        x: &[f32],
        [n, c, h, w]: [usize; 4],
        wt: &[f32],
        m: usize,
        bias: Option<&[f32]>,
        res: Option<&[f32]>,
        act: Activation,
        p: [usize; 4],
    ) -> (Vec<f32>, f64) {
        let oh = h + p[0] + p[2] - 2;
        let ow = w + p[1] + p[3] - 2;
        let mut out = vec![0f32; n * m * oh * ow];
        for b in 0..n {
            for mo in 0..m {
                for oy in 0..oh {
                    for ox in 0..ow {
                        let mut acc = 0f64;
                        for ci in 0..c {
                            for ki in 0..3 {
                                for kj in 0..3 {
                                    let iy = (oy + ki) as isize - p[0] as isize;
                                    let ix = (ox + kj) as isize - p[1] as isize;
                                    if iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < w
                                    {
                                        acc += x[((b * c + ci) * h + iy as usize) * w + ix as usize]
                                            as f64
                                            * wt[((mo * c + ci) * 3 + ki) * 3 + kj] as f64;
                                    }
                                }
                            }
                        }
                        let i = ((b * m + mo) * oh + oy) * ow + ox;
                        acc += bias.map_or(0.0, |b| b[mo] as f64);
                        acc += res.map_or(0.0, |r| r[i] as f64);
                        out[i] = acc as f32;
                    }
                }
            }
        }
        let scale = out.iter().fold(0f64, |s, &v| s.max(v.abs() as f64));
        apply_act(act, &mut out);
        (out, scale)
    }

    /// max |a - b| / scale.
    fn rel_err(a: &[f32], b: &[f32], scale: f64) -> f64 {
        assert_eq!(a.len(), b.len());
        let scale = scale.max(1e-30);
        a.iter()
            .zip(b)
            .fold(0f64, |e, (&x, &y)| e.max((x as f64 - y as f64).abs()))
            / scale
    }

    struct Case {
        xs: [usize; 4],
        m: usize,
        pads: [usize; 4],
        bias: bool,
        residual: bool,
        act: Activation,
        /// Inputs >= 0 (after a Relu, as in ResNet) instead of both signs.
        nonneg: bool,
    }

    fn conv_op(pads: [usize; 4]) -> Conv {
        Conv {
            strides: vec![1, 1],
            dilations: vec![1, 1],
            padding: Padding::Explicit(pads.to_vec()),
            group: 1,
        }
    }

    /// Runs the Winograd kernel built for `case` (forcing layout / block size / ISA) in a
    /// pool of `threads`; returns (got, want).
    fn run_case(
        case: &Case,
        layout: Option<Layout>,
        block: usize,
        isa: sg::Isa,
        threads: usize,
    ) -> (Vec<f32>, Vec<f32>, f64) {
        let [n, c, h, w] = case.xs;
        let mut x = rand(n * c * h * w, 1, 1.0);
        if case.nonneg {
            x.iter_mut().for_each(|v| *v = v.max(0.0));
        }
        // He-initialized weights (std sqrt(2 / fan_in)).
        let wt = rand(case.m * c * 9, 2, (6.0 / (9.0 * c as f32)).sqrt());
        let b = rand(case.m, 3, 0.5);
        let p = case.pads;
        let (oh, ow) = (h + p[0] + p[2] - 2, w + p[1] + p[3] - 2);
        let r = rand(n * case.m * oh * ow, 4, 1.0);
        let (want, scale) = reference(
            &x,
            case.xs,
            &wt,
            case.m,
            case.bias.then_some(&b[..]),
            case.residual.then_some(&r[..]),
            case.act,
            p,
        );
        let mut facts = vec![
            Fact::known(DType::F32, &case.xs),
            Fact::konst(Tensor::from_vec(&[case.m, c, 3, 3], wt.clone()).unwrap()),
        ];
        if case.bias || case.residual {
            facts.push(Fact::known(DType::F32, &[case.m]));
        }
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        let mut k = pool.install(|| {
            FORCE.with(|f| f.set(Some((layout, block, false))));
            let k = build(&conv_op(p), &facts, case.act, case.residual);
            FORCE.with(|f| f.set(None));
            k.unwrap().expect("Winograd applies")
        });
        k.isa = isa;
        let mut scratch = vec![0f32; k.scratch_bytes() / 4 + 16];
        let skip = scratch.as_ptr().align_offset(64);
        let bytes = unsafe {
            std::slice::from_raw_parts_mut(
                scratch.as_mut_ptr().add(skip).cast::<u8>(),
                k.scratch_bytes(),
            )
        };
        let zero = vec![0f32; case.m];
        let bias = if case.bias { &b[..] } else { &zero[..] };
        let mut out = vec![f32::NAN; n * case.m * oh * ow];
        let shape_o = [n, case.m, oh, ow];
        let bytes_of = |s: &[f32]| unsafe {
            std::slice::from_raw_parts(s.as_ptr().cast::<u8>(), s.len() * 4).to_vec()
        };
        let (xb, wb, bb, rb) = (bytes_of(&x), bytes_of(&wt), bytes_of(bias), bytes_of(&r));
        let ws = [case.m, c, 3, 3];
        let bs = [case.m];
        let mut ins = vec![
            TensorView {
                dtype: DType::F32,
                shape: &case.xs,
                bytes: &xb,
            },
            TensorView {
                dtype: DType::F32,
                shape: &ws,
                bytes: &wb,
            },
        ];
        if case.bias || case.residual {
            ins.push(TensorView {
                dtype: DType::F32,
                shape: &bs,
                bytes: &bb,
            });
        }
        if case.residual {
            ins.push(TensorView {
                dtype: DType::F32,
                shape: &shape_o,
                bytes: &rb,
            });
        }
        let ob =
            unsafe { std::slice::from_raw_parts_mut(out.as_mut_ptr().cast::<u8>(), out.len() * 4) };
        let mut outs = [TensorViewMut {
            dtype: DType::F32,
            shape: &shape_o,
            bytes: ob,
        }];
        pool.install(|| {
            let mut ctx = KernelCtx {
                scratch: bytes,
                threads,
            };
            k.run(&mut ctx, &ins, &mut outs).unwrap();
        });
        (out, want, scale)
    }

    fn isas() -> Vec<sg::Isa> {
        let mut v = vec![sg::Isa::Generic];
        if sg::Isa::detect() != sg::Isa::Generic {
            v.push(sg::Isa::detect());
        }
        v
    }

    #[test]
    fn matches_f64_reference() {
        let relu = Activation::Relu;
        let cases = [
            // Odd sizes: tiles cross the right and bottom borders.
            Case {
                xs: [1, 5, 7, 9],
                m: 3,
                pads: [1; 4],
                bias: true,
                residual: false,
                act: relu,
                nonneg: false,
            },
            Case {
                xs: [2, 17, 11, 13],
                m: 19,
                pads: [0; 4],
                bias: false,
                residual: false,
                act: Activation::Identity,
                nonneg: false,
            },
            Case {
                xs: [2, 18, 10, 37],
                m: 33,
                pads: [1, 0, 2, 1],
                bias: true,
                residual: true,
                act: relu,
                nonneg: false,
            },
            Case {
                xs: [1, 20, 6, 6],
                m: 16,
                pads: [2, 2, 0, 1],
                bias: true,
                residual: true,
                act: Activation::Clip {
                    min: -0.5,
                    max: 0.5,
                },
                nonneg: false,
            },
            Case {
                xs: [1, 16, 9, 5],
                m: 20,
                pads: [1; 4],
                bias: true,
                residual: false,
                act: Activation::Swish,
                nonneg: false,
            },
            Case {
                xs: [1, 16, 9, 5],
                m: 20,
                pads: [1; 4],
                bias: true,
                residual: false,
                act: Activation::LeakyRelu { alpha: 0.1 },
                nonneg: true,
            },
        ];
        for case in &cases {
            for isa in isas() {
                for layout in [Layout::TilesAsCols, Layout::TilesAsRows] {
                    // One block per tile row, and everything in one block.
                    for block in [1, 1 << 20] {
                        for threads in [1, 2] {
                            let (got, want, scale) =
                                run_case(case, Some(layout), block, isa, threads);
                            let e = rel_err(&got, &want, scale);
                            assert!(
                                e < 1e-5,
                                "{:?} m {} pads {:?} {layout:?} block {block} {isa:?} threads {threads}: {e}",
                                case.xs,
                                case.m,
                                case.pads
                            );
                        }
                    }
                }
            }
        }
    }

    /// The error bound the module doc states, on ResNet-like data: Cin 64 to 512, He weights,
    /// inputs of both signs or post-Relu, against an f64 direct conv.
    #[test]
    fn accuracy_on_resnet_shapes() {
        let mut worst = 0f64;
        for (c, hw) in [(64, 20), (128, 14), (256, 14), (512, 7)] {
            for nonneg in [false, true] {
                let case = Case {
                    xs: [1, c, hw, hw],
                    m: 32,
                    pads: [1; 4],
                    bias: true,
                    residual: false,
                    act: Activation::Identity,
                    nonneg,
                };
                let (got, want, scale) = run_case(&case, None, BLOCK_TILES, sg::Isa::detect(), 1);
                let e = rel_err(&got, &want, scale);
                eprintln!(
                    "Winograd F(4x4,3x3) Cin {c} {hw}x{hw} nonneg {nonneg}: max err / max |y| = {e:.2e}"
                );
                worst = worst.max(e);
            }
        }
        assert!(worst < 1e-5, "{worst}");
    }

    fn graph_conv(
        g: &mut Graph,
        name: &str,
        x: crate::ir::ValueId,
        cin: usize,
        m: usize,
        seed: u64,
        fused: Option<(Activation, crate::ir::ValueId)>,
    ) -> (crate::ir::ValueId, Vec<f32>, Vec<f32>) {
        let wt = rand(m * cin * 9, seed, (6.0 / (9.0 * cin as f32)).sqrt());
        let b = rand(m, seed + 1, 0.5);
        let w = g.add_const(
            format!("{name}_w"),
            Tensor::from_vec(&[m, cin, 3, 3], wt.clone()).unwrap(),
        );
        let bv = g.add_const(
            format!("{name}_b"),
            Tensor::from_vec(&[m], b.clone()).unwrap(),
        );
        let y = match fused {
            None => g.add_node1(name, conv_op([1; 4]), &[x, w, bv]).unwrap(),
            Some((act, res)) => g
                .add_node1(
                    name,
                    FusedConv {
                        conv: conv_op([1; 4]),
                        act,
                        residual: true,
                        post: None,
                        channels_last: false,
                    },
                    &[x, w, bv, res],
                )
                .unwrap(),
        };
        (y, wt, b)
    }

    /// Through the planner: a Conv and a FusedConv (residual + Relu) node run as Winograd and
    /// equal the f64 reference, with 1 and 2 threads.
    #[test]
    fn plan_runs_winograd_convs() {
        let xs = [2, 24, 13, 11];
        let mut g = Graph::new();
        let x = g.add_input("x", Fact::known(DType::F32, &xs));
        let (y, w1, b1) = graph_conv(&mut g, "c1", x, 24, 20, 10, None);
        let (z, w2, b2) = graph_conv(&mut g, "c2", y, 20, 20, 20, Some((Activation::Relu, y)));
        g.set_outputs(&[y, z]);
        let xv = rand(xs.iter().product(), 5, 1.0);
        let (want_y, sy) = reference(
            &xv,
            xs,
            &w1,
            20,
            Some(&b1),
            None,
            Activation::Identity,
            [1; 4],
        );
        for threads in [1, 2] {
            let model = CpuModel::new(
                g.clone(),
                CpuOptions {
                    threads: Some(threads),
                },
            )
            .unwrap();
            let out = model
                .run(&[Tensor::from_vec(&xs, xv.clone()).unwrap()])
                .unwrap();
            let got_y = out[0].as_slice::<f32>().unwrap();
            assert!(rel_err(got_y, &want_y, sy) < 1e-5);
            // The second conv's reference starts from the first's actual output.
            let (want_z, sz) = reference(
                got_y,
                [2, 20, 13, 11],
                &w2,
                20,
                Some(&b2),
                Some(got_y),
                Activation::Relu,
                [1; 4],
            );
            assert!(rel_err(out[1].as_slice::<f32>().unwrap(), &want_z, sz) < 1e-5);
        }
    }

    fn builder_picks(xs: [usize; 4], m: usize) -> String {
        let op = conv_op([1; 4]);
        let facts = [
            Fact::known(DType::F32, &xs),
            Fact::konst(Tensor::from_vec(&[m, xs[1], 3, 3], vec![0.5f32; m * xs[1] * 9]).unwrap()),
            Fact::known(DType::F32, &[m]),
        ];
        let b: KernelBuilder = kernels().get(&op).unwrap();
        let k = b(&op, &facts, &[]).unwrap();
        let s = format!("{k:?}");
        s[..s.find(' ').unwrap_or(s.len())].to_string()
    }

    #[test]
    fn chosen_for_resnet_shapes_only() {
        for (c, hw) in [(64, 56), (128, 28), (256, 14), (512, 14)] {
            assert_eq!(
                builder_picks([1, c, hw, hw], c),
                "WinogradKernel",
                "{c}x{hw}"
            );
        }
        // Too few channels (the direct few-channel conv), or too few tiles (ResNet's 7x7 stage):
        // not Winograd.
        assert_ne!(builder_picks([1, 3, 32, 32], 8), "WinogradKernel");
        assert_eq!(builder_picks([1, 512, 7, 7], 512), "ConvKernel");
    }
}
