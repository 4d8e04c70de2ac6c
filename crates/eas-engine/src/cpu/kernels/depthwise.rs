//! Depthwise 3x3 convolution (dilation 1 down the rows, stride 1 or 2 down the rows, any
//! horizontal stride/dilation), f32 with AVX-512: MobileNet's depthwise layers.
//!
//! The input plane is copied once into `sh * sw` zero-padded phase blocks: block
//! `(pr, pc)` row `j` column `i` holds padded input `[j * sh + pr][i * sw + pc]`, every
//! row `pl` long. Output `(oy, ox)` at tap `(ki, kj)` then reads block element
//! `oy * pl + ox + off(ki, kj)`: every tap is a fixed offset from the output's flat index
//! `oy * pl + ox`, whatever the strides. Two tilings over that index:
//! - rows (planes 10+ wide): a tile is up to 4 output rows x 16 columns; each padded input
//!   row the tile touches is loaded once per horizontal tap and feeds every output row that
//!   uses it (stride 1: 6 row loads for 4 rows instead of 12), the 9 weights stay in
//!   registers for the whole plane, and the epilogue is applied before one masked store.
//! - flat (7x7 planes): 16 consecutive flat indices per vector, the padding columns
//!   computed and dropped, so a 7x7 plane takes 4 vectors instead of 7 one-row tiles
//!   half empty; the result goes through a small buffer into the output rows.
//!
//! Each output sums `bias` then the taps in the order `ki`, then `kj` (the portable
//! kernel's order), so the result is the same bit for bit as the other depthwise paths.

use crate::ops::Activation;
use crate::ops::conv::AxisGeom;

/// Tile rows (rows tiling).
const RT: usize = 4;
/// Vectors per flat tile.
const FV: usize = 4;

/// One input plane's zero-padded phase blocks (see the module doc): `sh * sw` blocks of
/// `rows` rows of `pl`. Shared with the direct conv kernel (one set per input channel).
#[derive(Clone, Copy, Debug)]
pub(super) struct Blocks {
    ih: usize,
    iw: usize,
    pad_t: usize,
    pad_l: usize,
    sh: usize,
    sw: usize,
    dh: usize,
    dw: usize,
    /// Phase row length.
    pub(super) pl: usize,
    /// Rows per phase block.
    rows: usize,
}

impl Blocks {
    /// The layout for a conv of geometry `h`, `w` (outputs non-empty, strides and
    /// dilations non-zero: checked by the caller).
    pub(super) fn new(h: AxisGeom, w: AxisGeom) -> Blocks {
        let ek = (w.kernel - 1) * w.dilation + 1;
        let pw = (w.pad_begin + w.input + w.pad_end).max((w.output - 1) * w.stride + ek);
        Blocks {
            ih: h.input,
            iw: w.input,
            pad_t: h.pad_begin,
            pad_l: w.pad_begin,
            sh: h.stride,
            sw: w.stride,
            dh: h.dilation,
            dw: w.dilation,
            pl: pw.div_ceil(w.stride),
            rows: h.output + (h.kernel - 1) * h.dilation / h.stride,
        }
    }
    pub(super) fn block(&self) -> usize {
        self.rows * self.pl
    }
    /// Elements of all blocks.
    pub(super) fn len(&self) -> usize {
        self.sh * self.sw * self.block()
    }
    /// Offset of tap (ki, kj) from an output's flat index `oy * pl + ox`.
    pub(super) fn off(&self, ki: usize, kj: usize) -> usize {
        let (t, s) = (ki * self.dh, kj * self.dw);
        ((t % self.sh) * self.sw + s % self.sw) * self.block()
            + (t / self.sh) * self.pl
            + s / self.sw
    }
    /// Copies plane `x` into `buf` (at least `len()`), zeros where the padding is.
    pub(super) fn fill(&self, x: &[f32], buf: &mut [f32]) {
        #[cfg(target_arch = "x86_64")]
        if self.sw == 2 && is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F.
            return unsafe { avx512::fill(self, x, buf) };
        }
        fill_rows(self, x, buf, false)
    }
}

/// `Blocks::fill`, portable; `skip_sw2` leaves the de-interleaved rows of horizontal
/// stride 2 (inside the input) to the caller.
#[inline(always)]
fn fill_rows(p: &Blocks, x: &[f32], buf: &mut [f32], skip_sw2: bool) {
    let (sh, sw, pl, iw) = (p.sh, p.sw, p.pl, p.iw);
    let bs = p.block();
    assert!(buf.len() >= p.len() && x.len() >= p.ih * iw);
    for pr in 0..sh {
        for j in 0..p.rows {
            let iy = (j * sh + pr) as isize - p.pad_t as isize;
            if iy < 0 || iy as usize >= p.ih {
                for pc in 0..sw {
                    buf[(pr * sw + pc) * bs + j * pl..][..pl].fill(0.0);
                }
                continue;
            }
            if skip_sw2 && sw == 2 {
                continue;
            }
            let src = &x[iy as usize * iw..][..iw];
            for pc in 0..sw {
                // First input column landing in phase pc, and its index there.
                let xx0 = (pc + sw - p.pad_l % sw) % sw;
                let j0 = (xx0 + p.pad_l) / sw;
                let n = if xx0 < iw { (iw - xx0).div_ceil(sw) } else { 0 };
                let row = &mut buf[(pr * sw + pc) * bs + j * pl..][..pl];
                row[..j0].fill(0.0);
                if sw == 1 {
                    row[j0..j0 + n].copy_from_slice(&src[xx0..xx0 + n]);
                } else {
                    for (d, &v) in row[j0..j0 + n]
                        .iter_mut()
                        .zip(src[xx0..].iter().step_by(sw))
                    {
                        *d = v;
                    }
                }
                row[j0 + n..].fill(0.0);
            }
        }
    }
}

/// Plan of one depthwise 3x3 plane (built per kernel, no allocation).
#[derive(Clone, Copy, Debug)]
pub(super) struct Dw3 {
    b: Blocks,
    oh: usize,
    ow: usize,
    sh: usize,
    pl: usize,
    /// Offset of horizontal tap kj within a block row (column phase block + index).
    coloff: [usize; 3],
    /// Offset of padded row u of a tile (u = r * sh + ki) from the tile's flat index.
    rowoff: [usize; (RT - 1) * 2 + 3],
    /// Flat tiling (narrow planes) instead of rows.
    flat: bool,
}

impl Dw3 {
    /// The plan when this kernel handles the geometry: 3x3 kernel, vertical dilation 1,
    /// vertical stride 1 or 2, non-empty output.
    pub(super) fn new(h: AxisGeom, w: AxisGeom) -> Option<Dw3> {
        if h.kernel != 3 || w.kernel != 3 || h.dilation != 1 || !(1..=2).contains(&h.stride) {
            return None;
        }
        if h.output == 0 || w.output == 0 || w.stride == 0 || w.dilation == 0 {
            return None;
        }
        let b = Blocks::new(h, w);
        let (sh, sw, pl, bs) = (h.stride, w.stride, b.pl, b.block());
        let coloff = std::array::from_fn(|kj| b.off(0, kj));
        let rowoff = std::array::from_fn(|u| (u % sh) * sw * bs + (u / sh) * pl);
        // Narrow planes: whole flat vectors beat one mostly empty vector per row.
        let row_vecs = h.output * w.output.div_ceil(16);
        let flat_vecs = (h.output * pl).div_ceil(16);
        let flat = flat_vecs * 4 < row_vecs * 3;
        Some(Dw3 {
            b,
            oh: h.output,
            ow: w.output,
            sh,
            pl,
            coloff,
            rowoff,
            flat,
        })
    }

    fn blocks_len(&self) -> usize {
        self.b.len()
    }
    /// Slack past the blocks: the flat tiling's full vectors past the last output read
    /// up to a tile plus a row further.
    fn slack(&self) -> usize {
        16 * FV + self.pl + 16
    }
    /// Elements of the flat tiling's output buffer.
    fn tmp_len(&self) -> usize {
        if self.flat {
            (self.oh * self.pl).next_multiple_of(16 * FV)
        } else {
            0
        }
    }
    /// Scratch elements one plane needs (blocks, slack, flat output buffer).
    pub(super) fn scratch_len(&self) -> usize {
        self.blocks_len() + self.slack() + self.tmp_len()
    }

    /// Runs one plane: `x` the input plane, `wk` the 9 weights, `scratch` at least
    /// `scratch_len()` elements (any contents), `o` the output plane; adds `res` and
    /// applies `act` when `act_in_tile(act)` (else the caller applies `act`).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn plane(
        &self,
        x: &[f32],
        wk: &[f32],
        bias: f32,
        act: Activation,
        res: Option<&[f32]>,
        scratch: &mut [f32],
        o: &mut [f32],
    ) {
        let (op, ip) = (self.oh * self.ow, self.b.ih * self.b.iw);
        assert!(x.len() >= ip && wk.len() >= 9 && o.len() >= op);
        assert!(res.is_none_or(|r| r.len() >= op));
        assert!(scratch.len() >= self.scratch_len());
        let (buf, tmp) = scratch.split_at_mut(self.blocks_len() + self.slack());
        // SAFETY: callers build a Dw3 only on a CPU with AVX-512F (Simd::Avx512).
        unsafe {
            self.b.fill(x, buf);
            if self.flat {
                avx512::flat(self, buf, wk, bias, act, res, tmp, o);
            } else {
                avx512::rows(self, buf, wk, bias, act, res, o);
            }
        }
    }
}

#[cfg(not(target_arch = "x86_64"))]
mod avx512 {
    //! Never called: `Dw3` is only built where AVX-512 exists.
    use super::Dw3;
    use crate::ops::Activation;
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn flat(
        _: &Dw3,
        _: &[f32],
        _: &[f32],
        _: f32,
        _: Activation,
        _: Option<&[f32]>,
        _: &mut [f32],
        _: &mut [f32],
    ) {
    }
    pub(super) unsafe fn rows(
        _: &Dw3,
        _: &[f32],
        _: &[f32],
        _: f32,
        _: Activation,
        _: Option<&[f32]>,
        _: &mut [f32],
    ) {
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::{Blocks, Dw3, FV, RT};
    use crate::cpu::kernels::conv::avx512::{mask, vec_act};
    use crate::ops::Activation;
    use std::arch::x86_64::*;

    /// `Blocks::fill` for horizontal stride 2: rows de-interleaved 32 columns at a time.
    #[target_feature(enable = "avx512f")]
    pub(super) fn fill(p: &Blocks, x: &[f32], buf: &mut [f32]) {
        // Padding rows (and the asserts) first.
        super::fill_rows(p, x, buf, true);
        let (sh, sw, pl, iw) = (p.sh, p.sw, p.pl, p.iw);
        let bs = p.block();
        // Even input columns go to phase pad_l % 2.
        let (pe, po) = (p.pad_l % 2, 1 - p.pad_l % 2);
        let (je, jo) = (p.pad_l / 2, p.pad_l.div_ceil(2));
        let (ne, no) = (iw.div_ceil(2), iw / 2);
        assert!(sw == 2 && je + ne <= pl && jo + no <= pl);
        let ie = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
        let io = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
        for pr in 0..sh {
            for j in 0..p.rows {
                let iy = (j * sh + pr) as isize - p.pad_t as isize;
                if iy < 0 || iy as usize >= p.ih {
                    continue;
                }
                let src = &x[iy as usize * iw..][..iw];
                let re = (pr * sw + pe) * bs + j * pl;
                let ro = (pr * sw + po) * bs + j * pl;
                buf[re..re + je].fill(0.0);
                buf[re + je + ne..re + pl].fill(0.0);
                buf[ro..ro + jo].fill(0.0);
                buf[ro + jo + no..ro + pl].fill(0.0);
                let bp = buf.as_mut_ptr();
                let mut i = 0;
                while i < iw {
                    let n = (iw - i).min(32);
                    // SAFETY: loads masked to src; stores masked to the de-interleaved
                    // columns, inside their rows (je + ne <= pl, jo + no <= pl).
                    unsafe {
                        let a = _mm512_maskz_loadu_ps(mask(n), src.as_ptr().add(i));
                        let b = _mm512_maskz_loadu_ps(
                            mask(n.saturating_sub(16)),
                            src.as_ptr().add(i + 16.min(n)),
                        );
                        let e = _mm512_permutex2var_ps(a, ie, b);
                        let o = _mm512_permutex2var_ps(a, io, b);
                        _mm512_mask_storeu_ps(bp.add(re + je + i / 2), mask(n.div_ceil(2)), e);
                        _mm512_mask_storeu_ps(bp.add(ro + jo + i / 2), mask(n / 2), o);
                    }
                    i += n;
                }
            }
        }
    }

    /// Residual add and activation on 16 lanes (activation skipped when the caller
    /// applies it).
    #[target_feature(enable = "avx512f")]
    #[inline]
    fn finish(act: Activation, v: __m512, res: Option<*const f32>, m: __mmask16) -> __m512 {
        let v = match res {
            // SAFETY: the caller passes a pointer with the valid lanes inside the residual.
            Some(r) => _mm512_add_ps(v, unsafe { _mm512_maskz_loadu_ps(m, r) }),
            None => v,
        };
        vec_act(act, v).unwrap_or(v)
    }

    /// Rows tiling over the whole plane.
    #[target_feature(enable = "avx512f")]
    pub(super) fn rows(
        p: &Dw3,
        buf: &[f32],
        wk: &[f32],
        bias: f32,
        act: Activation,
        res: Option<&[f32]>,
        o: &mut [f32],
    ) {
        assert!(buf.len() >= p.blocks_len() + p.slack() && wk.len() >= 9);
        assert!(o.len() >= p.oh * p.ow && res.is_none_or(|r| r.len() >= p.oh * p.ow));
        let w: [__m512; 9] = std::array::from_fn(|t| _mm512_set1_ps(wk[t]));
        let mut oy = 0;
        while oy < p.oh {
            let nr = (p.oh - oy).min(RT);
            let mut ox = 0;
            while ox < p.ow {
                let m = mask(p.ow - ox);
                // SAFETY: valid lanes read block rows oy.. + rowoff inside the blocks (the
                // plan's rows cover every tap of every output row) and write output row
                // oy + r, columns ox.. < ow.
                unsafe {
                    match (p.sh, nr) {
                        (1, 4) => tile::<4, 1>(p, buf, &w, bias, act, res, o, oy, ox, m),
                        (1, 3) => tile::<3, 1>(p, buf, &w, bias, act, res, o, oy, ox, m),
                        (1, 2) => tile::<2, 1>(p, buf, &w, bias, act, res, o, oy, ox, m),
                        (1, _) => tile::<1, 1>(p, buf, &w, bias, act, res, o, oy, ox, m),
                        (_, 4) => tile::<4, 2>(p, buf, &w, bias, act, res, o, oy, ox, m),
                        (_, 3) => tile::<3, 2>(p, buf, &w, bias, act, res, o, oy, ox, m),
                        (_, 2) => tile::<2, 2>(p, buf, &w, bias, act, res, o, oy, ox, m),
                        (_, _) => tile::<1, 2>(p, buf, &w, bias, act, res, o, oy, ox, m),
                    }
                }
                ox += 16;
            }
            oy += nr;
        }
    }

    /// `R` output rows from `oy`, 16 columns from `ox` (lanes in `m`), vertical stride `SH`.
    #[target_feature(enable = "avx512f")]
    #[inline]
    #[allow(clippy::too_many_arguments)]
    unsafe fn tile<const R: usize, const SH: usize>(
        p: &Dw3,
        buf: &[f32],
        w: &[__m512; 9],
        bias: f32,
        act: Activation,
        res: Option<&[f32]>,
        o: &mut [f32],
        oy: usize,
        ox: usize,
        m: __mmask16,
    ) {
        let mut acc = [_mm512_set1_ps(bias); R];
        let f = oy * p.pl + ox;
        let bp = buf.as_ptr();
        // Padded row u = r * SH + ki of the tile, loaded once for every output row using it.
        for u in 0..(R - 1) * SH + 3 {
            let base = f + p.rowoff[u];
            // SAFETY: see `rows`.
            let v: [__m512; 3] = std::array::from_fn(|kj| unsafe {
                _mm512_maskz_loadu_ps(m, bp.add(base + p.coloff[kj]))
            });
            for (r, a) in acc.iter_mut().enumerate() {
                let ki = u.wrapping_sub(r * SH);
                if ki < 3 {
                    for kj in 0..3 {
                        *a = _mm512_fmadd_ps(v[kj], w[ki * 3 + kj], *a);
                    }
                }
            }
        }
        for (r, a) in acc.iter().enumerate() {
            let idx = (oy + r) * p.ow + ox;
            let rp = res.map(|res| unsafe { res.as_ptr().add(idx) });
            let v = finish(act, *a, rp, m);
            // SAFETY: idx + valid lanes < oh * ow <= o.len() (asserted by `rows`).
            unsafe { _mm512_mask_storeu_ps(o.as_mut_ptr().add(idx), m, v) };
        }
    }

    /// Flat tiling: every flat index (padding columns included) into `tmp`, then the output
    /// rows out of it with the residual and activation.
    #[target_feature(enable = "avx512f")]
    #[allow(clippy::too_many_arguments)]
    pub(super) fn flat(
        p: &Dw3,
        buf: &[f32],
        wk: &[f32],
        bias: f32,
        act: Activation,
        res: Option<&[f32]>,
        tmp: &mut [f32],
        o: &mut [f32],
    ) {
        let n = p.tmp_len();
        assert!(buf.len() >= p.blocks_len() + p.slack() && wk.len() >= 9 && tmp.len() >= n);
        assert!(o.len() >= p.oh * p.ow && res.is_none_or(|r| r.len() >= p.oh * p.ow));
        let w: [__m512; 9] = std::array::from_fn(|t| _mm512_set1_ps(wk[t]));
        let offs: [usize; 9] = std::array::from_fn(|t| p.rowoff[t / 3] + p.coloff[t % 3]);
        let bp = buf.as_ptr();
        let tp = tmp.as_mut_ptr();
        let mut f = 0;
        while f < n {
            let mut acc = [_mm512_set1_ps(bias); FV];
            for t in 0..9 {
                for (v, a) in acc.iter_mut().enumerate() {
                    // SAFETY: f + 16 * FV <= tmp_len <= oh * pl + 16 * FV, and every tap
                    // offset stays within a block's rows + pl, so reads end inside the slack.
                    let x = unsafe { _mm512_loadu_ps(bp.add(f + 16 * v + offs[t])) };
                    *a = _mm512_fmadd_ps(x, w[t], *a);
                }
            }
            for (v, a) in acc.iter().enumerate() {
                // SAFETY: f + 16 * FV <= n <= tmp.len().
                unsafe { _mm512_storeu_ps(tp.add(f + 16 * v), *a) };
            }
            f += 16 * FV;
        }
        let ow = p.ow;
        for oy in 0..p.oh {
            let mut ox = 0;
            while ox < ow {
                let m = mask(ow - ox);
                let idx = oy * ow + ox;
                // SAFETY: row oy of tmp has pl >= ow elements; idx + valid lanes < oh * ow.
                unsafe {
                    let v = _mm512_maskz_loadu_ps(m, tp.add(oy * p.pl + ox));
                    let rp = res.map(|r| r.as_ptr().add(idx));
                    let v = finish(act, v, rp, m);
                    _mm512_mask_storeu_ps(o.as_mut_ptr().add(idx), m, v);
                }
                ox += 16;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn axis(input: usize, stride: usize, dilation: usize, pads: (usize, usize)) -> AxisGeom {
        let ek = 2 * dilation + 1;
        AxisGeom {
            input,
            kernel: 3,
            stride,
            dilation,
            pad_begin: pads.0,
            pad_end: pads.1,
            output: (input + pads.0 + pads.1 - ek) / stride + 1,
        }
    }

    /// The scalar reference in the kernel's order: `bias`, then `x * w` fused-added for
    /// ki, then kj, padding reading zero; then residual and activation.
    fn reference(
        h: AxisGeom,
        w: AxisGeom,
        x: &[f32],
        wk: &[f32],
        bias: f32,
        res: Option<&[f32]>,
        clip: bool,
    ) -> Vec<f32> {
        let mut o = vec![0f32; h.output * w.output];
        for oy in 0..h.output {
            for ox in 0..w.output {
                let mut a = bias;
                for ki in 0..3 {
                    for kj in 0..3 {
                        let iy = (oy * h.stride + ki) as isize - h.pad_begin as isize;
                        let ix = (ox * w.stride + kj * w.dilation) as isize - w.pad_begin as isize;
                        let inside = iy >= 0
                            && ix >= 0
                            && (iy as usize) < h.input
                            && (ix as usize) < w.input;
                        let v = if inside {
                            x[iy as usize * w.input + ix as usize]
                        } else {
                            0.0
                        };
                        a = v.mul_add(wk[ki * 3 + kj], a);
                    }
                }
                let i = oy * w.output + ox;
                if let Some(r) = res {
                    a += r[i];
                }
                o[i] = if clip { a.clamp(0.0, 6.0) } else { a };
            }
        }
        o
    }

    /// Every tiling (rows with 1-4 row tails, flat), both vertical strides, horizontal
    /// strides 1-3 and dilation 2, TF's end-only padding, with and without residual and
    /// activation: the same bits as the scalar loop in the same order.
    #[test]
    fn planes_match_the_scalar_order_bit_for_bit() {
        #[cfg(target_arch = "x86_64")]
        if !is_x86_feature_detected!("avx512f") {
            eprintln!("skipped: no AVX-512 on this CPU");
            return;
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            eprintln!("skipped: not x86_64");
            return;
        }
        // (h, w, sh, sw, dw, pads top/bottom, pads left/right)
        let cases = [
            (112, 112, 1, 1, 1, (1, 1), (1, 1)),
            (112, 112, 2, 2, 1, (0, 1), (0, 1)),
            (56, 56, 1, 1, 1, (1, 1), (1, 1)),
            (28, 28, 2, 2, 1, (1, 1), (1, 1)),
            (14, 14, 1, 1, 1, (1, 1), (1, 1)),
            (14, 14, 2, 2, 1, (0, 1), (0, 1)),
            (7, 7, 1, 1, 1, (1, 1), (1, 1)),
            (9, 7, 1, 1, 1, (0, 0), (0, 0)),
            (13, 37, 2, 3, 1, (1, 0), (2, 1)),
            (6, 21, 1, 1, 2, (1, 1), (2, 2)),
            (5, 5, 2, 1, 1, (1, 1), (0, 3)),
            (3, 3, 1, 1, 1, (0, 0), (0, 0)),
            (10, 40, 1, 2, 1, (2, 2), (1, 1)),
        ];
        for (ih, iw, sh, sw, dw, ph, pw) in cases {
            let (h, w) = (axis(ih, sh, 1, ph), axis(iw, sw, dw, pw));
            let d = Dw3::new(h, w).expect("3x3 plan");
            let x: Vec<f32> = (0..ih * iw)
                .map(|i| ((i * 37 % 101) as f32 - 50.0) * 0.013)
                .collect();
            let wk: Vec<f32> = (0..9).map(|i| (i as f32 - 3.7) * 0.21).collect();
            let op = h.output * w.output;
            let r: Vec<f32> = (0..op)
                .map(|i| ((i * 7 % 23) as f32 - 11.0) * 0.1)
                .collect();
            let mut scratch = vec![f32::NAN; d.scratch_len()];
            for (res, act) in [
                (None, Activation::Identity),
                (Some(&r[..]), Activation::Clip { min: 0.0, max: 6.0 }),
            ] {
                let clip = act != Activation::Identity;
                let want = reference(h, w, &x, &wk, 0.25, res, clip);
                let mut got = vec![f32::NAN; op];
                d.plane(&x, &wk, 0.25, act, res, &mut scratch, &mut got);
                let case = (ih, iw, sh, sw, dw, ph, pw, d.flat);
                for (i, (g, e)) in got.iter().zip(&want).enumerate() {
                    assert!(g == e, "{case:?} res {} at {i}: {g} != {e}", res.is_some());
                }
            }
        }
    }

    #[test]
    fn narrow_planes_take_the_flat_tiling_and_others_do_not() {
        let plan = |n: usize, s: usize| {
            let a = axis(n, s, 1, (1, 1));
            Dw3::new(a, a).unwrap()
        };
        assert!(plan(7, 1).flat);
        assert!(!plan(14, 1).flat);
        assert!(!plan(112, 2).flat);
        let mut five = axis(9, 1, 1, (2, 2));
        five.kernel = 5;
        assert!(Dw3::new(five, five).is_none());
    }
}
