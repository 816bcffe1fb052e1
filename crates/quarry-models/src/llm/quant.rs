//! Quantised weight matrices and their matrix–vector kernels.
//!
//! Every GGUF weight type is converted once, at load, into one of two row-major layouts made of
//! 32-element blocks, each block with a scale `d` and an offset `m` (weight = d·q + m):
//! - `Q4`: 4-bit unsigned values, 16 bytes per block (byte i holds element i in its low nibble and
//!   element i+16 in its high nibble, GGML's own Q4_0/Q4_1 order). Q4_0, Q4_1 and Q4_K load here
//!   without loss (Q4_K's per-32 sub-block scales become the block scales).
//! - `Q8`: 8-bit signed values, 32 bytes per block. Q8_0, Q5_0, Q5_1 and Q5_K load without loss;
//!   Q6_K, F16, BF16 and F32 matrices are re-quantised to 8 bits per 32 (relative error ≤ 1/254 of a
//!   block's largest weight).
//!
//! Activations are quantised per 32-block to 8 bits too, so a block's dot product is an integer
//! dot product (AVX2 `vpmaddubsw` + `vpmaddwd`) scaled by `d_w·d_x`, plus `m_w·Σx` for the offset.
//! This is the scheme llama.cpp uses for these types; the code here is Quarry's own.

// The AVX2 kernels use `std::arch` intrinsics on bounds-checked slices.
#![allow(unsafe_code)]

use rayon::prelude::*;

use super::gguf::DType;

pub const BLOCK: usize = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    Q4,
    Q8,
}

/// A weight matrix: `rows` rows of `cols` weights (a linear layer's output × input).
pub struct QMatrix {
    pub rows: usize,
    pub cols: usize,
    pub layout: Layout,
    q: Vec<u8>,
    d: Vec<f32>,
    m: Vec<f32>,
}

/// An activation vector quantised to 8 bits per 32-block: `x ≈ d·q`, with `s = d·Σq` per block.
#[derive(Default, Clone)]
pub struct QVec {
    q: Vec<i8>,
    d: Vec<f32>,
    s: Vec<f32>,
}

impl QVec {
    pub fn quantize(x: &[f32]) -> QVec {
        let mut v = QVec::default();
        v.set(x);
        v
    }

    pub fn set(&mut self, x: &[f32]) {
        debug_assert_eq!(x.len() % BLOCK, 0);
        let nb = x.len() / BLOCK;
        self.q.resize(x.len(), 0);
        self.d.resize(nb, 0.0);
        self.s.resize(nb, 0.0);
        for b in 0..nb {
            let xs = &x[b * BLOCK..(b + 1) * BLOCK];
            let amax = xs.iter().fold(0f32, |a, v| a.max(v.abs()));
            let d = amax / 127.0;
            let inv = if d > 0.0 { 1.0 / d } else { 0.0 };
            let mut sum = 0i32;
            for (q, &v) in self.q[b * BLOCK..(b + 1) * BLOCK].iter_mut().zip(xs) {
                *q = (v * inv).round() as i8;
                sum += i32::from(*q);
            }
            self.d[b] = d;
            self.s[b] = d * sum as f32;
        }
    }
}

pub fn f16_to_f32(h: u16) -> f32 {
    let sign = u32::from(h >> 15) << 31;
    let exp = u32::from((h >> 10) & 0x1f);
    let mant = u32::from(h & 0x3ff);
    let bits = match (exp, mant) {
        (0, 0) => sign,
        (0, _) => {
            // Subnormal: value = mant · 2⁻²⁴.
            let v = mant as f32 * (1.0 / 16_777_216.0);
            return if sign != 0 { -v } else { v };
        }
        (31, 0) => sign | 0x7f80_0000,
        (31, _) => sign | 0x7fc0_0000,
        _ => sign | ((exp + 112) << 23) | (mant << 13),
    };
    f32::from_bits(bits)
}

fn f16_at(b: &[u8], i: usize) -> f32 {
    f16_to_f32(u16::from_le_bytes([b[i], b[i + 1]]))
}

/// Dequantises a whole tensor (norm weights, biases) to f32.
pub fn dequantize(dtype: DType, bytes: &[u8], n: usize) -> Vec<f32> {
    let mut out = vec![0f32; n];
    match dtype {
        DType::F32 => {
            for (o, c) in out.iter_mut().zip(bytes.chunks_exact(4)) {
                *o = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
            }
        }
        DType::F16 => {
            for (i, o) in out.iter_mut().enumerate() {
                *o = f16_at(bytes, 2 * i);
            }
        }
        DType::BF16 => {
            for (o, c) in out.iter_mut().zip(bytes.chunks_exact(2)) {
                *o = f32::from_bits(u32::from(u16::from_le_bytes([c[0], c[1]])) << 16);
            }
        }
        _ => {
            let m = QMatrix::from_gguf(dtype, bytes, 1, n);
            m.row_f32(0, &mut out);
        }
    }
    out
}

impl QMatrix {
    fn empty(rows: usize, cols: usize, layout: Layout) -> QMatrix {
        let nb = rows * cols / BLOCK;
        let per = if layout == Layout::Q4 { 16 } else { 32 };
        QMatrix {
            rows,
            cols,
            layout,
            q: vec![0; nb * per],
            d: vec![0.0; nb],
            m: vec![0.0; nb],
        }
    }

    /// Converts GGUF tensor data (`rows` × `cols`, `cols` contiguous). `cols` must be a multiple of 32
    /// (of 256 for K-quants, which the GGUF shape check already guarantees).
    pub fn from_gguf(dtype: DType, bytes: &[u8], rows: usize, cols: usize) -> QMatrix {
        let nb = rows * cols / BLOCK;
        match dtype {
            DType::Q4_0 | DType::Q4_1 => {
                let mut w = QMatrix::empty(rows, cols, Layout::Q4);
                let bsz = dtype.block().1;
                for b in 0..nb {
                    let blk = &bytes[b * bsz..(b + 1) * bsz];
                    let d = f16_at(blk, 0);
                    let (m, qs) = if dtype == DType::Q4_0 {
                        (-8.0 * d, &blk[2..18])
                    } else {
                        (f16_at(blk, 2), &blk[4..20])
                    };
                    w.d[b] = d;
                    w.m[b] = m;
                    w.q[b * 16..(b + 1) * 16].copy_from_slice(qs);
                }
                w
            }
            DType::Q4K => {
                let mut w = QMatrix::empty(rows, cols, Layout::Q4);
                for (sb, blk) in bytes.chunks_exact(144).enumerate() {
                    let (d, dmin) = (f16_at(blk, 0), f16_at(blk, 2));
                    let scales = &blk[4..16];
                    let qs = &blk[16..144];
                    for j in 0..4 {
                        let q = &qs[32 * j..32 * j + 32];
                        for half in 0..2 {
                            let sub = 2 * j + half;
                            let (sc, mn) = scale_min_k4(sub, scales);
                            let b = sb * 8 + sub;
                            w.d[b] = d * f32::from(sc);
                            w.m[b] = -dmin * f32::from(mn);
                            let e = |i: usize| if half == 0 { q[i] & 0xf } else { q[i] >> 4 };
                            for i in 0..16 {
                                w.q[b * 16 + i] = e(i) | (e(i + 16) << 4);
                            }
                        }
                    }
                }
                w
            }
            DType::Q8_0 | DType::Q5_0 | DType::Q5_1 | DType::Q5K => {
                let mut w = QMatrix::empty(rows, cols, Layout::Q8);
                let mut vals = [0i8; BLOCK];
                match dtype {
                    DType::Q8_0 => {
                        for b in 0..nb {
                            let blk = &bytes[b * 34..(b + 1) * 34];
                            w.d[b] = f16_at(blk, 0);
                            w.q[b * 32..(b + 1) * 32].copy_from_slice(&blk[2..34]);
                        }
                    }
                    DType::Q5_0 | DType::Q5_1 => {
                        let bsz = dtype.block().1;
                        for b in 0..nb {
                            let blk = &bytes[b * bsz..(b + 1) * bsz];
                            let d = f16_at(blk, 0);
                            let (m, rest) = if dtype == DType::Q5_0 {
                                (0.0, &blk[2..])
                            } else {
                                (f16_at(blk, 2), &blk[4..])
                            };
                            let qh = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]);
                            let qs = &rest[4..20];
                            let offset = if dtype == DType::Q5_0 { 16 } else { 0 };
                            for i in 0..16 {
                                let lo = (qs[i] & 0xf) | ((((qh >> i) & 1) as u8) << 4);
                                let hi = (qs[i] >> 4) | ((((qh >> (i + 16)) & 1) as u8) << 4);
                                vals[i] = lo as i8 - offset;
                                vals[i + 16] = hi as i8 - offset;
                            }
                            w.d[b] = d;
                            w.m[b] = m;
                            w.set_q8(b, &vals);
                        }
                    }
                    _ => {
                        for (sb, blk) in bytes.chunks_exact(176).enumerate() {
                            let (d, dmin) = (f16_at(blk, 0), f16_at(blk, 2));
                            let scales = &blk[4..16];
                            let qh = &blk[16..48];
                            let qs = &blk[48..176];
                            for j in 0..4 {
                                let ql = &qs[32 * j..32 * j + 32];
                                for half in 0..2 {
                                    let sub = 2 * j + half;
                                    let bit = 1u8 << (2 * j + half);
                                    for l in 0..32 {
                                        let nib = if half == 0 { ql[l] & 0xf } else { ql[l] >> 4 };
                                        vals[l] = (nib + if qh[l] & bit != 0 { 16 } else { 0 }) as i8;
                                    }
                                    let (sc, mn) = scale_min_k4(sub, scales);
                                    let b = sb * 8 + sub;
                                    w.d[b] = d * f32::from(sc);
                                    w.m[b] = -dmin * f32::from(mn);
                                    w.set_q8(b, &vals);
                                }
                            }
                        }
                    }
                }
                w
            }
            DType::Q6K | DType::F32 | DType::F16 | DType::BF16 => {
                let f = match dtype {
                    DType::Q6K => dequantize_q6k(bytes, rows * cols),
                    _ => dequantize(dtype, bytes, rows * cols),
                };
                QMatrix::from_f32(&f, rows, cols)
            }
        }
    }

    /// Quantises f32 weights to 8 bits per 32-block.
    pub fn from_f32(f: &[f32], rows: usize, cols: usize) -> QMatrix {
        let mut w = QMatrix::empty(rows, cols, Layout::Q8);
        let v = QVec::quantize(f);
        for (dst, &src) in w.q.iter_mut().zip(&v.q) {
            *dst = src as u8;
        }
        w.d.copy_from_slice(&v.d);
        w
    }

    fn set_q8(&mut self, b: usize, vals: &[i8; BLOCK]) {
        for (dst, &v) in self.q[b * 32..(b + 1) * 32].iter_mut().zip(vals) {
            *dst = v as u8;
        }
    }

    /// Row `r` as f32 (the embedding lookup).
    pub fn row_f32(&self, r: usize, out: &mut [f32]) {
        let nbr = self.cols / BLOCK;
        for bi in 0..nbr {
            let b = r * nbr + bi;
            let (d, m) = (self.d[b], self.m[b]);
            let o = &mut out[bi * BLOCK..(bi + 1) * BLOCK];
            match self.layout {
                Layout::Q4 => {
                    let q = &self.q[b * 16..(b + 1) * 16];
                    for i in 0..16 {
                        o[i] = d * f32::from(q[i] & 0xf) + m;
                        o[i + 16] = d * f32::from(q[i] >> 4) + m;
                    }
                }
                Layout::Q8 => {
                    for (oi, &q) in o.iter_mut().zip(&self.q[b * 32..(b + 1) * 32]) {
                        *oi = d * f32::from(q as i8) + m;
                    }
                }
            }
        }
    }

    /// Dot product of row `r` with a quantised vector.
    #[inline]
    fn dot_row(&self, r: usize, x: &QVec) -> f32 {
        let nbr = self.cols / BLOCK;
        let b0 = r * nbr;
        let d = &self.d[b0..b0 + nbr];
        let m = &self.m[b0..b0 + nbr];
        let mut offset = 0f32;
        for (mi, si) in m.iter().zip(&x.s) {
            offset += mi * si;
        }
        let scaled = match self.layout {
            Layout::Q4 => dot_q4(&self.q[b0 * 16..(b0 + nbr) * 16], d, &x.q, &x.d),
            Layout::Q8 => dot_q8(&self.q[b0 * 32..(b0 + nbr) * 32], d, &x.q, &x.d),
        };
        scaled + offset
    }

    /// Dot products of rows `r..r+4` with `x`: the activation blocks are loaded once for four rows
    /// and the four accumulations run interleaved.
    #[inline]
    fn dot_rows4(&self, r: usize, x: &QVec) -> [f32; 4] {
        let nbr = self.cols / BLOCK;
        let b0 = r * nbr;
        let d = &self.d[b0..b0 + 4 * nbr];
        let m = &self.m[b0..b0 + 4 * nbr];
        let mut out = match self.layout {
            Layout::Q4 => dot4_q4(&self.q[b0 * 16..(b0 + 4 * nbr) * 16], d, &x.q, &x.d, nbr),
            Layout::Q8 => dot4_q8(&self.q[b0 * 32..(b0 + 4 * nbr) * 32], d, &x.q, &x.d, nbr),
        };
        for (i, o) in out.iter_mut().enumerate() {
            let mut offset = 0f32;
            for (mi, si) in m[i * nbr..(i + 1) * nbr].iter().zip(&x.s) {
                offset += mi * si;
            }
            *o += offset;
        }
        out
    }

    /// Rows `r0..r1` · `x` into `out[0..r1-r0]`, four rows at a time.
    #[inline]
    fn dot_range(&self, r0: usize, r1: usize, x: &QVec, out: &mut [f32]) {
        let mut r = r0;
        while r + 4 <= r1 {
            out[r - r0..r - r0 + 4].copy_from_slice(&self.dot_rows4(r, x));
            r += 4;
        }
        for rr in r..r1 {
            out[rr - r0] = self.dot_row(rr, x);
        }
    }

    /// `out[r] = row_r · x` for every row, split across the thread pool.
    pub fn matvec(&self, x: &QVec, out: &mut [f32]) {
        assert_eq!(x.q.len(), self.cols, "matvec input length");
        assert_eq!(out.len(), self.rows, "matvec output length");
        const ROWS_PER_TASK: usize = 64;
        out.par_chunks_mut(ROWS_PER_TASK).enumerate().for_each(|(c, o)| {
            let r0 = c * ROWS_PER_TASK;
            self.dot_range(r0, r0 + o.len(), x, o);
        });
    }

    /// `out[t·rows + r] = row_r · xs[t]` for a batch of vectors (prompt processing). Threads take
    /// disjoint groups of vectors; each walks the weights in tiles of rows small enough to stay in
    /// cache while every vector of its group passes over them.
    pub fn matmul(&self, xs: &[QVec], out: &mut [f32]) {
        assert_eq!(out.len(), xs.len() * self.rows, "matmul output length");
        if xs.len() == 1 {
            return self.matvec(&xs[0], out);
        }
        let threads = rayon::current_num_threads().max(1);
        let per = xs.len().div_ceil(threads);
        let tile = (16 * 1024 / (self.cols / 2).max(1)).clamp(4, 256);
        out.par_chunks_mut(per * self.rows).enumerate().for_each(|(g, o)| {
            let group = &xs[g * per..(g * per + o.len() / self.rows)];
            for r0 in (0..self.rows).step_by(tile) {
                let r1 = (r0 + tile).min(self.rows);
                for (t, x) in group.iter().enumerate() {
                    self.dot_range(r0, r1, x, &mut o[t * self.rows + r0..t * self.rows + r1]);
                }
            }
        });
    }
}

fn scale_min_k4(j: usize, q: &[u8]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0xf) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    }
}

fn dequantize_q6k(bytes: &[u8], n: usize) -> Vec<f32> {
    let mut out = vec![0f32; n];
    for (sb, blk) in bytes.chunks_exact(210).enumerate() {
        let (ql_all, rest) = blk.split_at(128);
        let (qh_all, rest) = rest.split_at(64);
        let (sc_all, dbytes) = rest.split_at(16);
        let d = f16_at(dbytes, 0);
        let y = &mut out[sb * 256..(sb + 1) * 256];
        for half in 0..2 {
            let ql = &ql_all[64 * half..];
            let qh = &qh_all[32 * half..];
            let sc = &sc_all[8 * half..];
            let y = &mut y[128 * half..];
            for l in 0..32 {
                let is = l / 16;
                let q1 = ((ql[l] & 0xf) | ((qh[l] & 3) << 4)) as i32 - 32;
                let q2 = ((ql[l + 32] & 0xf) | (((qh[l] >> 2) & 3) << 4)) as i32 - 32;
                let q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i32 - 32;
                let q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i32 - 32;
                y[l] = d * f32::from(sc[is] as i8) * q1 as f32;
                y[l + 32] = d * f32::from(sc[is + 2] as i8) * q2 as f32;
                y[l + 64] = d * f32::from(sc[is + 4] as i8) * q3 as f32;
                y[l + 96] = d * f32::from(sc[is + 6] as i8) * q4 as f32;
            }
        }
    }
    out
}

/// Σ_b d_w[b]·d_x[b]·(q_w[b] · q_x[b]) over 4-bit weight blocks.
fn dot_q4(w: &[u8], wd: &[f32], x: &[i8], xd: &[f32]) -> f32 {
    let nb = wd.len();
    assert!(w.len() >= nb * 16 && x.len() >= nb * 32 && xd.len() >= nb);
    #[cfg(target_feature = "avx2")]
    {
        // SAFETY: AVX2 is enabled at compile time; every load reads 16 or 32 bytes within the
        // slices, whose lengths were checked above.
        unsafe { avx2::dot_q4(w, wd, x, xd, nb) }
    }
    #[cfg(not(target_feature = "avx2"))]
    {
        let mut acc = 0f32;
        for b in 0..nb {
            let mut s = 0i32;
            for i in 0..16 {
                let q = w[b * 16 + i];
                s += i32::from(q & 0xf) * i32::from(x[b * 32 + i]) + i32::from(q >> 4) * i32::from(x[b * 32 + i + 16]);
            }
            acc += wd[b] * xd[b] * s as f32;
        }
        acc
    }
}

/// `dot_q4` for four consecutive rows of `nb` blocks each.
fn dot4_q4(w: &[u8], wd: &[f32], x: &[i8], xd: &[f32], nb: usize) -> [f32; 4] {
    assert!(w.len() >= 4 * nb * 16 && wd.len() >= 4 * nb && x.len() >= nb * 32 && xd.len() >= nb);
    #[cfg(target_feature = "avx2")]
    {
        // SAFETY: AVX2 is enabled at compile time; loads stay within the slices checked above.
        unsafe { avx2::dot4_q4(w, wd, x, xd, nb) }
    }
    #[cfg(not(target_feature = "avx2"))]
    {
        std::array::from_fn(|i| dot_q4(&w[i * nb * 16..], &wd[i * nb..(i + 1) * nb], x, xd))
    }
}

/// `dot_q8` for four consecutive rows of `nb` blocks each.
fn dot4_q8(w: &[u8], wd: &[f32], x: &[i8], xd: &[f32], nb: usize) -> [f32; 4] {
    assert!(w.len() >= 4 * nb * 32 && wd.len() >= 4 * nb && x.len() >= nb * 32 && xd.len() >= nb);
    #[cfg(target_feature = "avx2")]
    {
        // SAFETY: as in `dot4_q4`.
        unsafe { avx2::dot4_q8(w, wd, x, xd, nb) }
    }
    #[cfg(not(target_feature = "avx2"))]
    {
        std::array::from_fn(|i| dot_q8(&w[i * nb * 32..], &wd[i * nb..(i + 1) * nb], x, xd))
    }
}

/// Σ_b d_w[b]·d_x[b]·(q_w[b] · q_x[b]) over 8-bit weight blocks.
fn dot_q8(w: &[u8], wd: &[f32], x: &[i8], xd: &[f32]) -> f32 {
    let nb = wd.len();
    assert!(w.len() >= nb * 32 && x.len() >= nb * 32 && xd.len() >= nb);
    #[cfg(target_feature = "avx2")]
    {
        // SAFETY: as in `dot_q4`.
        unsafe { avx2::dot_q8(w, wd, x, xd, nb) }
    }
    #[cfg(not(target_feature = "avx2"))]
    {
        let mut acc = 0f32;
        for b in 0..nb {
            let mut s = 0i32;
            for i in 0..32 {
                s += i32::from(w[b * 32 + i] as i8) * i32::from(x[b * 32 + i]);
            }
            acc += wd[b] * xd[b] * s as f32;
        }
        acc
    }
}

#[cfg(target_feature = "avx2")]
mod avx2 {
    use std::arch::x86_64::*;

    #[inline]
    unsafe fn hsum(v: __m256) -> f32 {
        let lo = _mm256_castps256_ps128(v);
        let hi = _mm256_extractf128_ps(v, 1);
        let s = _mm_add_ps(lo, hi);
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
        _mm_cvtss_f32(s)
    }

    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn dot_q4(w: &[u8], wd: &[f32], x: &[i8], xd: &[f32], nb: usize) -> f32 {
        let mask = _mm_set1_epi8(0x0f);
        let ones = _mm256_set1_epi16(1);
        let mut acc = _mm256_setzero_ps();
        for b in 0..nb {
            let bytes = _mm_loadu_si128(w.as_ptr().add(b * 16) as *const __m128i);
            let lo = _mm_and_si128(bytes, mask);
            let hi = _mm_and_si128(_mm_srli_epi16(bytes, 4), mask);
            let q = _mm256_set_m128i(hi, lo);
            let xv = _mm256_loadu_si256(x.as_ptr().add(b * 32) as *const __m256i);
            let p = _mm256_madd_epi16(_mm256_maddubs_epi16(q, xv), ones);
            let scale = _mm256_set1_ps(wd[b] * xd[b]);
            acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), scale, acc);
        }
        hsum(acc)
    }

    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn dot4_q4(w: &[u8], wd: &[f32], x: &[i8], xd: &[f32], nb: usize) -> [f32; 4] {
        let mask = _mm_set1_epi8(0x0f);
        let ones = _mm256_set1_epi16(1);
        let mut acc = [_mm256_setzero_ps(); 4];
        for b in 0..nb {
            let xv = _mm256_loadu_si256(x.as_ptr().add(b * 32) as *const __m256i);
            let xs = xd[b];
            for (i, a) in acc.iter_mut().enumerate() {
                let bytes = _mm_loadu_si128(w.as_ptr().add((i * nb + b) * 16) as *const __m128i);
                let lo = _mm_and_si128(bytes, mask);
                let hi = _mm_and_si128(_mm_srli_epi16(bytes, 4), mask);
                let q = _mm256_set_m128i(hi, lo);
                let p = _mm256_madd_epi16(_mm256_maddubs_epi16(q, xv), ones);
                *a = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_set1_ps(wd[i * nb + b] * xs), *a);
            }
        }
        [hsum(acc[0]), hsum(acc[1]), hsum(acc[2]), hsum(acc[3])]
    }

    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn dot4_q8(w: &[u8], wd: &[f32], x: &[i8], xd: &[f32], nb: usize) -> [f32; 4] {
        let ones = _mm256_set1_epi16(1);
        let mut acc = [_mm256_setzero_ps(); 4];
        for b in 0..nb {
            let xv = _mm256_loadu_si256(x.as_ptr().add(b * 32) as *const __m256i);
            let xs = xd[b];
            for (i, a) in acc.iter_mut().enumerate() {
                let wv = _mm256_loadu_si256(w.as_ptr().add((i * nb + b) * 32) as *const __m256i);
                let p = _mm256_maddubs_epi16(_mm256_sign_epi8(wv, wv), _mm256_sign_epi8(xv, wv));
                let p = _mm256_madd_epi16(p, ones);
                *a = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_set1_ps(wd[i * nb + b] * xs), *a);
            }
        }
        [hsum(acc[0]), hsum(acc[1]), hsum(acc[2]), hsum(acc[3])]
    }

    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn dot_q8(w: &[u8], wd: &[f32], x: &[i8], xd: &[f32], nb: usize) -> f32 {
        let ones = _mm256_set1_epi16(1);
        let mut acc = _mm256_setzero_ps();
        for b in 0..nb {
            let wv = _mm256_loadu_si256(w.as_ptr().add(b * 32) as *const __m256i);
            let xv = _mm256_loadu_si256(x.as_ptr().add(b * 32) as *const __m256i);
            // vpmaddubsw multiplies unsigned by signed: move the weights' signs onto x.
            let p = _mm256_maddubs_epi16(_mm256_sign_epi8(wv, wv), _mm256_sign_epi8(xv, wv));
            let p = _mm256_madd_epi16(p, ones);
            let scale = _mm256_set1_ps(wd[b] * xd[b]);
            acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), scale, acc);
        }
        hsum(acc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lcg(seed: &mut u64) -> f32 {
        *seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((*seed >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }

    fn f16_bytes(v: f32) -> [u8; 2] {
        // Exact for the values used below (small integers and powers of two).
        let bits = v.to_bits();
        let sign = ((bits >> 16) & 0x8000) as u16;
        let exp = ((bits >> 23) & 0xff) as i32 - 127 + 15;
        let mant = ((bits >> 13) & 0x3ff) as u16;
        (sign | ((exp as u16) << 10) | mant).to_le_bytes()
    }

    #[test]
    fn f16_conversion() {
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0xc000), -2.0);
        assert_eq!(f16_to_f32(0x0001), 2f32.powi(-24));
        assert!(f16_to_f32(0x7c00).is_infinite());
        assert_eq!(f16_to_f32(u16::from_le_bytes(f16_bytes(0.25))), 0.25);
    }

    #[test]
    fn q4_1_rows_and_dot_products_match_dequantised_weights() {
        // Two rows of 64 weights in GGUF Q4_1 blocks: d, m (f16), 16 bytes of nibbles.
        let mut seed = 7u64;
        let (rows, cols) = (2, 64);
        let mut bytes = Vec::new();
        let mut expect = vec![0f32; rows * cols];
        for b in 0..rows * cols / 32 {
            let (d, m) = (0.125f32, -1.0f32);
            bytes.extend(f16_bytes(d));
            bytes.extend(f16_bytes(m));
            for i in 0..16 {
                let lo = ((lcg(&mut seed) + 1.0) * 7.9) as u8 & 0xf;
                let hi = ((lcg(&mut seed) + 1.0) * 7.9) as u8 & 0xf;
                bytes.push(lo | (hi << 4));
                expect[b * 32 + i] = d * f32::from(lo) + m;
                expect[b * 32 + i + 16] = d * f32::from(hi) + m;
            }
        }
        let w = QMatrix::from_gguf(DType::Q4_1, &bytes, rows, cols);
        let mut row = vec![0f32; cols];
        w.row_f32(1, &mut row);
        assert_eq!(row, expect[cols..]);

        let x: Vec<f32> = (0..cols).map(|_| lcg(&mut seed)).collect();
        let mut out = vec![0f32; rows];
        w.matvec(&QVec::quantize(&x), &mut out);
        for r in 0..rows {
            let exact: f32 = expect[r * cols..(r + 1) * cols]
                .iter()
                .zip(&x)
                .map(|(a, b)| a * b)
                .sum();
            assert!((out[r] - exact).abs() < 0.05, "row {r}: {} vs {exact}", out[r]);
        }
    }

    #[test]
    fn batched_and_single_products_agree_for_8_bit_weights() {
        let mut seed = 11u64;
        let (rows, cols) = (70, 96);
        let f: Vec<f32> = (0..rows * cols).map(|_| lcg(&mut seed)).collect();
        let w = QMatrix::from_f32(&f, rows, cols);
        let xs: Vec<QVec> = (0..5)
            .map(|_| QVec::quantize(&(0..cols).map(|_| lcg(&mut seed)).collect::<Vec<_>>()))
            .collect();
        let mut batch = vec![0f32; 5 * rows];
        w.matmul(&xs, &mut batch);
        for (t, x) in xs.iter().enumerate() {
            let mut one = vec![0f32; rows];
            w.matvec(x, &mut one);
            assert_eq!(one, batch[t * rows..(t + 1) * rows]);
        }
        // Against the f32 product: 8-bit weights and activations keep ~2 significant digits.
        let xf: Vec<f32> = (0..cols).map(|_| lcg(&mut seed)).collect();
        let mut out = vec![0f32; rows];
        w.matvec(&QVec::quantize(&xf), &mut out);
        for r in 0..rows {
            let exact: f32 = f[r * cols..(r + 1) * cols].iter().zip(&xf).map(|(a, b)| a * b).sum();
            assert!((out[r] - exact).abs() < 0.1, "row {r}: {} vs {exact}", out[r]);
        }
    }
}
