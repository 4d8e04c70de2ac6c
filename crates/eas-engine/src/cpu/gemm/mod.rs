//! f32 GEMM of our own, BLIS-style: `C = epilogue(alpha * A B)` over packed micro-panels.
//!
//! Why not only the `gemm` crate: a constant operand (weights) can be packed once at plan time
//! ([`PackedA`], [`PackedB`]), the other operand is packed into caller-provided scratch (no
//! allocation per run), and bias / residual / activation are applied while each tile is in
//! registers instead of in extra passes over the output.
//!
//! Structure: a microkernel computes an `R x NR` tile (`R <= MR`) from an A micro-panel and a
//! B micro-panel ([`pack`] describes the layout); the driver blocks the depth by `KC`, rows by
//! `MC` and columns by `NC` so panels stay in L1/L2, and splits N (or M) across threads in
//! whole panels. The AVX-512 kernel is chosen at run time; a portable kernel serves every
//! other CPU (and is tested on this one through [`Isa::Generic`]).

#[cfg(target_arch = "x86_64")]
mod kernel_avx512;
mod kernel_generic;
mod pack;

pub use pack::Strided;

use crate::{Error, Result};
use rayon::prelude::*;

/// Rows of a micro-tile.
pub const MR: usize = 12;
/// Columns of a micro-tile (two zmm registers).
pub const NR: usize = 32;
/// Depth block. Long blocks load and store each C tile fewer times; measured on Zen 4 (1024^3,
/// prepacked B, one core): KC 256 -> 90 GFLOP/s, 512 -> 107, 1024 -> 109 (L2 feeds the kernel
/// fast enough that the micro-panels need not fit L1).
const KC: usize = 1024;
/// Rows per packed A block (MC*KC*4 = 576 KiB, in L2). Every A block streams all of B once, so
/// MC covers a 128-token sequence in one block (B read once per call).
const MC: usize = 144;
/// Columns per block (a strided B block is KC*NC*4 = 4 MiB, streamed from L3 once per A block;
/// NC 256 measured 10% slower).
const NC: usize = 1024;
/// Work (m*n*k) below which one thread does everything.
pub(crate) const PAR_MIN_WORK: usize = 1 << 18;

/// Element-wise activation applied last. All but `Map` run inside the kernel's store; `Map`
/// runs on each finished tile row while it is in L1 (anything else, e.g. Gelu).
#[derive(Clone, Copy)]
pub enum Activation<'a> {
    None,
    Relu,
    /// min(max(v, lo), hi), e.g. Relu6.
    Clip(f32, f32),
    LeakyRelu(f32),
    /// min(max(alpha * v + beta, 0), 1) (a NaN sum gives 0, like `f32::max`).
    HardSigmoid(f32, f32),
    /// v * min(max(v + 3, 0), 6) / 6.
    HardSwish,
    /// Applied in place to runs of finished outputs (a row of one tile at a time).
    Map(&'a (dyn Fn(&mut [f32]) + Sync)),
}

impl std::fmt::Debug for Activation<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Activation::None => f.write_str("None"),
            Activation::Relu => f.write_str("Relu"),
            Activation::Clip(lo, hi) => write!(f, "Clip({lo}, {hi})"),
            Activation::LeakyRelu(a) => write!(f, "LeakyRelu({a})"),
            Activation::HardSigmoid(a, b) => write!(f, "HardSigmoid({a}, {b})"),
            Activation::HardSwish => f.write_str("HardSwish"),
            Activation::Map(_) => f.write_str("Map(..)"),
        }
    }
}

/// Bias added after the product: one value per row of C (conv: per output channel) or per
/// column (matmul: per output feature).
#[derive(Clone, Copy, Debug)]
pub enum Bias<'a> {
    None,
    /// `len >= m`.
    Row(&'a [f32]),
    /// `len >= n`.
    Col(&'a [f32]),
}

/// What happens to each output, in this order:
/// `v = alpha * (A B)`; `v += beta * C_old` (when `beta` is set); `v += bias`;
/// `v += residual`; `v = act(v)`; `v = v * scale + shift` (when `post` is set; a multiply
/// then an add, each rounded, like the unfused `Mul` and `Add`).
#[derive(Clone, Copy, Debug)]
pub struct Epilogue<'a> {
    pub alpha: f32,
    /// `Some(beta)`: accumulate into the existing destination, scaled by beta.
    pub beta: Option<f32>,
    pub bias: Bias<'a>,
    /// A matrix like C: element (i, j) at `i*rs + j` (`len >= (m-1)*rs + n`).
    pub residual: Option<(&'a [f32], usize)>,
    pub act: Activation<'a>,
    /// `Some((scale, shift))`: an affine map after the activation (PP-LCNetV3's learnable
    /// `w0 * act(x) + w1`).
    pub post: Option<(f32, f32)>,
}

impl Default for Epilogue<'_> {
    fn default() -> Self {
        Epilogue {
            alpha: 1.0,
            beta: None,
            bias: Bias::None,
            residual: None,
            act: Activation::None,
            post: None,
        }
    }
}

/// Kernel-side activation (the store handles these in registers).
#[derive(Clone, Copy, Debug)]
pub(crate) enum Act {
    None,
    Relu,
    Clip(f32, f32),
    LeakyRelu(f32),
    HardSigmoid(f32, f32),
    HardSwish,
}

/// Everything a microkernel's store needs for one tile; pointers are already offset to the
/// tile's first row/column, null when absent.
pub(crate) struct TileStore {
    pub c: *mut f32,
    pub c_rs: isize,
    /// Valid columns (<= NR).
    pub cols: usize,
    pub alpha: f32,
    /// `Some(s)`: `v += s * C_old` (s = beta on the first depth block, 1 after).
    pub add_dst: Option<f32>,
    /// Last depth block: apply bias, residual, activation.
    pub last: bool,
    pub bias_row: *const f32,
    pub bias_col: *const f32,
    pub res: *const f32,
    pub res_rs: isize,
    pub act: Act,
    /// `v = v * scale + shift` after `act` (last depth block only).
    pub post: Option<(f32, f32)>,
}

/// Which microkernel family runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isa {
    /// AVX-512F (x86-64, detected at run time).
    Avx512,
    /// Portable Rust (any CPU).
    Generic,
}

impl Isa {
    /// The best kernel this CPU runs.
    pub fn detect() -> Isa {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx512f") {
            return Isa::Avx512;
        }
        Isa::Generic
    }
}

type KernelFn = unsafe fn(usize, *const f32, *const f32, &TileStore);

macro_rules! kernel_table {
    ($path:path) => {{
        use $path as k;
        [
            k::<1> as KernelFn,
            k::<2>,
            k::<3>,
            k::<4>,
            k::<5>,
            k::<6>,
            k::<7>,
            k::<8>,
            k::<9>,
            k::<10>,
            k::<11>,
            k::<12>,
        ]
    }};
}

/// Kernels indexed by tile rows - 1.
fn kernels(isa: Isa) -> [KernelFn; MR] {
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => kernel_table!(kernel_avx512::kernel),
        _ => kernel_table!(kernel_generic::kernel),
    }
}

/// A 64-byte-aligned float buffer (packed panels start on cache lines).
#[derive(Clone, Debug, Default)]
struct AlignedBuf {
    lines: Vec<Line>,
    len: usize,
}

#[derive(Clone, Copy, Debug)]
#[repr(C, align(64))]
struct Line([f32; 16]);

impl AlignedBuf {
    fn zeros(len: usize) -> AlignedBuf {
        AlignedBuf {
            lines: vec![Line([0.0; 16]); len.div_ceil(16)],
            len,
        }
    }
    fn as_mut_slice(&mut self) -> &mut [f32] {
        // SAFETY: Line is 16 plain f32s, lines holds >= len floats.
        unsafe { std::slice::from_raw_parts_mut(self.lines.as_mut_ptr().cast(), self.len) }
    }
    fn as_ptr(&self) -> *const f32 {
        self.lines.as_ptr().cast()
    }
}

/// Checks that a strided view of a `rows x cols` matrix stays inside `len` elements.
fn check_extent(
    what: &str,
    len: usize,
    rows: usize,
    cols: usize,
    rs: usize,
    cs: usize,
) -> Result<()> {
    if rows == 0 || cols == 0 {
        return Ok(());
    }
    let last = (rows - 1)
        .checked_mul(rs)
        .and_then(|x| (cols - 1).checked_mul(cs).and_then(|y| x.checked_add(y)));
    match last {
        Some(l) if l < len => Ok(()),
        _ => Err(Error::invalid(format!(
            "gemm: {what} {rows}x{cols} with strides ({rs}, {cs}) exceeds {len} elements"
        ))),
    }
}

fn strided(x: &[f32], rs: usize, cs: usize) -> Strided {
    Strided {
        ptr: x.as_ptr(),
        rs: rs as isize,
        cs: cs as isize,
    }
}

/// Packs `extent` rows (A) or columns (B) of depth `k` into `width`-wide micro-panels:
/// `pack(panel, first, count)` fills one panel.
fn pack_panels(
    extent: usize,
    k: usize,
    width: usize,
    pack: impl Fn(&mut [f32], usize, usize),
) -> AlignedBuf {
    let panel = k * width;
    let mut buf = AlignedBuf::zeros(extent.div_ceil(width) * panel);
    for (q, dst) in buf
        .as_mut_slice()
        .chunks_exact_mut(panel.max(1))
        .enumerate()
    {
        let first = q * width;
        pack(dst, first, width.min(extent - first));
    }
    buf
}

/// The constant left operand (conv weights), packed once into MR-row micro-panels.
#[derive(Clone, Debug)]
pub struct PackedA {
    m: usize,
    k: usize,
    buf: AlignedBuf,
}

impl PackedA {
    /// Packs the `m x k` matrix with element (i, p) at `a[i*rs + p*cs]`.
    pub fn new(a: &[f32], m: usize, k: usize, rs: usize, cs: usize) -> Result<PackedA> {
        check_extent("A", a.len(), m, k, rs, cs)?;
        let s = strided(a, rs, cs);
        // SAFETY: extent checked above.
        let buf = pack_panels(m, k, MR, |dst, i0, rows| unsafe {
            pack::pack_a_panel(dst, s, i0, rows, 0, k)
        });
        Ok(PackedA { m, k, buf })
    }
    pub fn rows(&self) -> usize {
        self.m
    }
    pub fn depth(&self) -> usize {
        self.k
    }
}

/// The constant right operand (matmul weights), packed once into NR-column micro-panels.
#[derive(Clone, Debug)]
pub struct PackedB {
    k: usize,
    n: usize,
    buf: AlignedBuf,
}

impl PackedB {
    /// Packs the `k x n` matrix with element (p, j) at `b[p*rs + j*cs]`.
    pub fn new(b: &[f32], k: usize, n: usize, rs: usize, cs: usize) -> Result<PackedB> {
        check_extent("B", b.len(), k, n, rs, cs)?;
        let s = strided(b, rs, cs);
        // SAFETY: extent checked above.
        let buf = pack_panels(n, k, NR, |dst, j0, cols| unsafe {
            pack::pack_b_panel(dst, s, 0, k, j0, cols)
        });
        Ok(PackedB { k, n, buf })
    }
    pub fn depth(&self) -> usize {
        self.k
    }
    pub fn cols(&self) -> usize {
        self.n
    }
}

/// An operand: packed at plan time, or a strided view packed per run into scratch.
#[derive(Clone, Copy, Debug)]
pub enum Operand<'a, P> {
    Packed(&'a P),
    Strided(Strided),
}

impl<P> Operand<'_, P> {
    fn is_packed(&self) -> bool {
        matches!(self, Operand::Packed(_))
    }
}

/// Threads a GEMM of this size uses (at most `threads`).
fn plan_threads(m: usize, n: usize, k: usize, threads: usize) -> usize {
    if threads <= 1 || m.saturating_mul(n).saturating_mul(k) < PAR_MIN_WORK {
        return 1;
    }
    let units = m.div_ceil(MR).max(n.div_ceil(NR));
    threads.min(units).max(1)
}

/// Floats of one thread's packing buffers: an A block then a B block, each cache-line rounded.
fn thread_floats(m: usize, n: usize, k: usize, a_packed: bool, b_packed: bool) -> (usize, usize) {
    let kc = k.clamp(1, KC);
    let a = if a_packed {
        0
    } else {
        (m.min(MC).div_ceil(MR) * MR * kc).next_multiple_of(16)
    };
    let b = if b_packed {
        0
    } else {
        (n.min(NC).div_ceil(NR) * NR * kc).next_multiple_of(16)
    };
    (a, b)
}

/// Scratch bytes [`sgemm`] needs for these sizes, operand kinds and thread count.
pub fn scratch_bytes(
    m: usize,
    n: usize,
    k: usize,
    a_packed: bool,
    b_packed: bool,
    threads: usize,
) -> usize {
    let (a, b) = thread_floats(m, n, k, a_packed, b_packed);
    (a + b) * 4 * plan_threads(m, n, k, threads) + 64
}

/// Everything one thread needs; raw pointers make it `!Sync` by default, but threads only
/// write disjoint tiles of C and their own scratch slices.
struct Job<'a> {
    k: usize,
    a: Operand<'a, PackedA>,
    b: Operand<'a, PackedB>,
    c: *mut f32,
    c_rs: isize,
    ep: &'a Epilogue<'a>,
    kernels: [KernelFn; MR],
}

// SAFETY: see the struct doc: shared reads, disjoint writes.
unsafe impl Sync for Job<'_> {}

/// `C[m x n] (row stride c_rs) = epilogue(alpha * A B)`, A `m x k`, B `k x n`.
///
/// `scratch` should hold [`scratch_bytes`]`(m, n, k, a packed, b packed, threads)` bytes (any
/// alignment); with less, fewer threads run (an error only below one thread's share). Threads
/// are taken from the current rayon pool. Packed operands must match m, n, k.
///
/// # Safety
/// Strided operands must address valid `m x k` / `k x n` matrices; `c` must address a
/// writable `m x n` matrix with row stride `c_rs` that overlaps no input.
#[allow(clippy::too_many_arguments)]
pub unsafe fn sgemm(
    m: usize,
    n: usize,
    k: usize,
    a: Operand<PackedA>,
    b: Operand<PackedB>,
    c: *mut f32,
    c_rs: isize,
    ep: &Epilogue,
    scratch: &mut [u8],
    threads: usize,
) -> Result<()> {
    // SAFETY: forwarded.
    unsafe { sgemm_isa(Isa::detect(), m, n, k, a, b, c, c_rs, ep, scratch, threads) }
}

/// [`sgemm`] with an explicit kernel family (tests force the portable one).
///
/// # Safety
/// As [`sgemm`]; `Isa::Avx512` only where the CPU has it.
#[allow(clippy::too_many_arguments)]
pub unsafe fn sgemm_isa(
    isa: Isa,
    m: usize,
    n: usize,
    k: usize,
    a: Operand<PackedA>,
    b: Operand<PackedB>,
    c: *mut f32,
    c_rs: isize,
    ep: &Epilogue,
    scratch: &mut [u8],
    threads: usize,
) -> Result<()> {
    if let Operand::Packed(p) = a
        && (p.m != m || p.k != k)
    {
        return Err(Error::invalid(format!(
            "gemm: packed A is {}x{}, call wants {m}x{k}",
            p.m, p.k
        )));
    }
    if let Operand::Packed(p) = b
        && (p.k != k || p.n != n)
    {
        return Err(Error::invalid(format!(
            "gemm: packed B is {}x{}, call wants {k}x{n}",
            p.k, p.n
        )));
    }
    match ep.bias {
        Bias::Row(v) if v.len() < m => return Err(Error::invalid("gemm: row bias shorter than m")),
        Bias::Col(v) if v.len() < n => {
            return Err(Error::invalid("gemm: column bias shorter than n"));
        }
        _ => {}
    }
    if let Some((r, rs)) = ep.residual {
        check_extent("residual", r.len(), m, n, rs, 1)?;
    }
    if m == 0 || n == 0 {
        return Ok(());
    }
    let (fa, fb) = thread_floats(m, n, k, a.is_packed(), b.is_packed());
    let per = fa + fb;
    // Fewer threads when the scratch was sized for fewer (a plan built for a smaller pool).
    let fit = match per {
        0 => usize::MAX,
        _ => scratch.len().saturating_sub(64) / (per * 4),
    };
    if fit == 0 {
        return Err(Error::invalid(format!(
            "gemm: scratch of {} bytes, needs {}",
            scratch.len(),
            scratch_bytes(m, n, k, a.is_packed(), b.is_packed(), 1)
        )));
    }
    let t = plan_threads(m, n, k, threads).min(fit);
    // Align to 64 bytes (the engine's scratch already is; thread-local buffers may not be).
    let skip = scratch.as_ptr().align_offset(64);
    // SAFETY: `need` reserved 64 spare bytes; f32 has no invalid bit patterns.
    let floats: &mut [f32] =
        unsafe { std::slice::from_raw_parts_mut(scratch.as_mut_ptr().add(skip).cast(), per * t) };
    let job = Job {
        k,
        a,
        b,
        c,
        c_rs,
        ep,
        kernels: kernels(isa),
    };
    if t == 1 {
        // SAFETY: forwarded contract; the whole C.
        unsafe { job.run(0, m, 0, n, &mut floats[..per], fa) };
        return Ok(());
    }
    // Split N in whole panels when there are enough of them, else M in whole micro-tiles.
    // But a thread given columns packs all of A, so with A packed per call and B prepacked
    // (channels-last convs: A is the input, pixels x C) split M when it has many tiles and
    // A is the larger operand (a thread given rows reads all of B): a 24 -> 144 1x1 over
    // 56x56 did not get faster on 2 threads split by its 5 panels, while ResNet50's deep
    // convs over 14x14 planes (B: megabytes of weights) got slower split by rows.
    // Also split M when its tiles share out evenly and the panels do not (a 160-column C is
    // five panels, 3:2 over two threads; InceptionV3's 1x7 convs over 12x12 planes).
    let (npan, mpan) = (n.div_ceil(NR), m.div_ceil(MR));
    // Work of the busiest thread over the ideal, in thousandths.
    let imbalance = |units: usize| units.div_ceil(t) * t * 1000 / units.max(1);
    let per_call_a = !job.a.is_packed() && job.b.is_packed();
    // Split rows, every thread packs all of a per-call B: cheap next to its share of the
    // products when m is at least 16 rows a thread (NCHW 1x1 convs over 14x14 planes: 1024
    // rows in 86 tiles split evenly, 196 columns in 7 panels split 4:3).
    let b_dup_cheap = job.b.is_packed() || m >= 16 * t;
    let split_m = (per_call_a && mpan >= 8 * t && m >= n)
        || (b_dup_cheap && mpan >= 2 * t && imbalance(mpan) < imbalance(npan));
    let split_n = !split_m && (npan >= 2 * t || npan >= mpan);
    let units = if split_n { npan } else { mpan };
    floats
        .par_chunks_mut(per)
        .enumerate()
        .for_each(|(ti, buf)| {
            let (u0, u1) = (units * ti / t, units * (ti + 1) / t);
            // SAFETY: threads write disjoint tiles of C (ranges of whole panels).
            unsafe {
                if split_n {
                    job.run(0, m, u0 * NR, (u1 * NR).min(n), buf, fa);
                } else {
                    job.run(u0 * MR, (u1 * MR).min(m), 0, n, buf, fa);
                }
            }
        });
    Ok(())
}

impl Job<'_> {
    /// Computes C rows [m0, m1) x columns [n0, n1); `n0` and `m0` are panel-aligned.
    unsafe fn run(&self, m0: usize, m1: usize, n0: usize, n1: usize, buf: &mut [f32], fa: usize) {
        if m0 >= m1 || n0 >= n1 {
            return;
        }
        let (abuf, bbuf) = buf.split_at_mut(fa);
        let k = self.k;
        let ep = self.ep;
        let act = match ep.act {
            Activation::Relu => Act::Relu,
            Activation::Clip(lo, hi) => Act::Clip(lo, hi),
            Activation::LeakyRelu(a) => Act::LeakyRelu(a),
            Activation::HardSigmoid(a, b) => Act::HardSigmoid(a, b),
            Activation::HardSwish => Act::HardSwish,
            Activation::None | Activation::Map(_) => Act::None,
        };
        let (res, res_rs) = match ep.residual {
            Some((r, rs)) => (r.as_ptr(), rs as isize),
            None => (std::ptr::null(), 0),
        };
        // An NCHW conv's GEMM (weights prepacked, the input packed per call) writes output
        // channels whose rows lie a plane apart: over a 28x28 or larger plane, a tile's rows
        // are separate streams to the hardware prefetcher, too many for it. Fetch each
        // tile's output and residual rows by hand before its depth loop, which is long
        // enough to hide them (ResNet50's 1x1 convs: 0.1-0.2 ms each at 1 thread). Matmuls
        // with prepacked weights (their outputs hot in cache) measured slower with it.
        let prefetch = self.a.is_packed() && !self.b.is_packed() && self.c_rs >= 768 && k >= 32;
        // One depth block even when k == 0, so the epilogue still runs.
        let nblocks = k.div_ceil(KC).max(1);
        for jc in (n0..n1).step_by(NC) {
            let nc = NC.min(n1 - jc);
            for pb in 0..nblocks {
                let pc = pb * KC;
                let kc = KC.min(k - pc);
                let (first, last) = (pb == 0, pb + 1 == nblocks);
                if let Operand::Strided(b) = self.b {
                    for (q, j) in (jc..jc + nc).step_by(NR).enumerate() {
                        // SAFETY: inside the caller's k x n extent; buffer sized by thread_floats.
                        unsafe {
                            pack::pack_b_panel(
                                &mut bbuf[q * kc * NR..],
                                b,
                                pc,
                                kc,
                                j,
                                NR.min(n1 - j),
                            )
                        };
                    }
                }
                for ic in (m0..m1).step_by(MC) {
                    let mc = MC.min(m1 - ic);
                    if let Operand::Strided(a) = self.a {
                        for (q, i) in (ic..ic + mc).step_by(MR).enumerate() {
                            // SAFETY: as above for the m x k extent.
                            unsafe {
                                pack::pack_a_panel(
                                    &mut abuf[q * kc * MR..],
                                    a,
                                    i,
                                    MR.min(m1 - i),
                                    pc,
                                    kc,
                                )
                            };
                        }
                    }
                    let tile = |qi: usize, i: usize, qj: usize, j: usize| {
                        let cols = NR.min(n1 - j);
                        let rows = MR.min(m1 - i);
                        let bp = match self.b {
                            // SAFETY: panel j/NR, depth pc, inside the packed buffer.
                            Operand::Packed(p) => unsafe {
                                p.buf.as_ptr().add((j / NR) * k * NR + pc * NR)
                            },
                            Operand::Strided(_) => bbuf[qj * kc * NR..].as_ptr(),
                        };
                        let ap = match self.a {
                            // SAFETY: panel i/MR, depth pc, inside the packed buffer.
                            Operand::Packed(p) => unsafe {
                                p.buf.as_ptr().add((i / MR) * k * MR + pc * MR)
                            },
                            Operand::Strided(_) => abuf[qi * kc * MR..].as_ptr(),
                        };
                        // SAFETY: the tile (i, j) lies inside C, bias and residual extents.
                        unsafe {
                            let st = TileStore {
                                c: self.c.offset(i as isize * self.c_rs + j as isize),
                                c_rs: self.c_rs,
                                cols,
                                alpha: ep.alpha,
                                add_dst: if first { ep.beta } else { Some(1.0) },
                                last,
                                bias_row: match ep.bias {
                                    Bias::Row(v) => v.as_ptr().add(i),
                                    _ => std::ptr::null(),
                                },
                                bias_col: match ep.bias {
                                    Bias::Col(v) => v.as_ptr().add(j),
                                    _ => std::ptr::null(),
                                },
                                res: if res.is_null() {
                                    res
                                } else {
                                    res.offset(i as isize * res_rs + j as isize)
                                },
                                res_rs,
                                act,
                                // After a `Map` activation, which runs after the store.
                                post: if matches!(ep.act, Activation::Map(_)) {
                                    None
                                } else {
                                    ep.post
                                },
                            };
                            if prefetch {
                                prefetch_tile(&st, rows);
                            }
                            (self.kernels[rows - 1])(kc, ap, bp, &st);
                            if last && let Activation::Map(f) = ep.act {
                                for r in 0..rows {
                                    let row = std::slice::from_raw_parts_mut(
                                        st.c.offset(r as isize * self.c_rs),
                                        cols,
                                    );
                                    f(row);
                                    if let Some((scale, shift)) = ep.post {
                                        for v in row {
                                            *v = *v * scale + shift;
                                        }
                                    }
                                }
                            }
                        }
                    };
                    // B micro-panel outer, A micro-panels inner (both orders measured equal).
                    for (qj, j) in (jc..jc + nc).step_by(NR).enumerate() {
                        for (qi, i) in (ic..ic + mc).step_by(MR).enumerate() {
                            tile(qi, i, qj, j);
                        }
                    }
                }
            }
        }
    }
}

/// Asks for the cache lines of a tile's output rows (and residual rows, on the last depth
/// block) ahead of use; a no-op off x86-64.
#[inline]
fn prefetch_tile(st: &TileStore, rows: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        let lines = if st.cols > 16 { 2 } else { 1 };
        for r in 0..rows as isize {
            for l in 0..lines {
                // SAFETY: a prefetch never faults; the addresses are computed without
                // dereferencing (wrapping), inside the tile's rows.
                unsafe {
                    let c = st.c.wrapping_offset(r * st.c_rs).wrapping_add(16 * l);
                    _mm_prefetch::<_MM_HINT_T0>(c as *const i8);
                    if st.last && !st.res.is_null() {
                        let p = st.res.wrapping_offset(r * st.res_rs).wrapping_add(16 * l);
                        _mm_prefetch::<_MM_HINT_T0>(p as *const i8);
                    }
                }
            }
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (st, rows);
}

#[cfg(test)]
mod tests;
