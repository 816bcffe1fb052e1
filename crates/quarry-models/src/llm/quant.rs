//! Quantised weight matrices: GGUF block decoding into Quarry's two layouts (the products are in
//! `gemm`).
//!
//! Every GGUF weight type is converted once, at load, into one of two layouts made of 32-element
//! blocks, each block with an f16 scale `d` and offset `m` (weight = d·q + m), block `b` of four
//! consecutive rows stored together so one load feeds a four-row kernel:
//! - `Q4`: 4-bit unsigned values, 16 bytes per block (byte i holds element i in its low nibble and
//!   element i+16 in its high nibble, GGML's own Q4_0/Q4_1 order). Q4_0, Q4_1 and Q4_K load here
//!   without loss (Q4_K's per-32 sub-block scales become the block scales).
//! - `Q8`: 8-bit signed values, 32 bytes per block. Q8_0, Q5_0, Q5_1 and Q5_K load without loss;
//!   Q6_K, F16, BF16 and F32 matrices are re-quantised to 8 bits per 32 (relative error ≤ 1/254 of a
//!   block's largest weight).
//!
//! Activations are quantised per 32-block to 8 bits too (`gemm::QActs`), so a block's dot product is
//! an integer dot product (AVX2 `vpmaddubsw` + `vpmaddwd`) scaled by `d_w·d_x`, plus `m_w·Σx` for the
//! offset. This is the scheme llama.cpp uses for these types; the code here is Quarry's own.

use super::gemm::{self, QActs};
use super::gguf::DType;

pub const BLOCK: usize = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    Q4,
    Q8,
}

impl Layout {
    /// Bytes of quantised values per 32-weight block.
    pub fn bytes(self) -> usize {
        match self {
            Layout::Q4 => 16,
            Layout::Q8 => 32,
        }
    }
}

/// A weight matrix: `rows` rows of `cols` weights (a linear layer's output × input).
pub struct QMatrix {
    pub rows: usize,
    pub cols: usize,
    pub layout: Layout,
    pub(super) q: Vec<u8>,
    /// Block scales and offsets as f16 bits (exact for GGUF's own f16 scales; Q4_K's products and
    /// re-quantised scales round by at most 2⁻¹¹, far below the 4- or 8-bit step).
    pub(super) d: Vec<u16>,
    pub(super) m: Vec<u16>,
}

/// Row-major blocks with f32 scales, while a GGUF tensor is being converted.
struct Building {
    rows: usize,
    cols: usize,
    layout: Layout,
    q: Vec<u8>,
    d: Vec<f32>,
    m: Vec<f32>,
}

impl Building {
    fn new(rows: usize, cols: usize, layout: Layout) -> Building {
        let nb = rows * cols / BLOCK;
        Building {
            rows,
            cols,
            layout,
            q: vec![0; nb * layout.bytes()],
            d: vec![0.0; nb],
            m: vec![0.0; nb],
        }
    }

    fn set_q8(&mut self, b: usize, vals: &[i8; BLOCK]) {
        for (dst, &v) in self.q[b * 32..(b + 1) * 32].iter_mut().zip(vals) {
            *dst = v as u8;
        }
    }

    /// Reorders the blocks so that block `b` of rows `4g..4g+4` sits together (one load feeds a
    /// four-row kernel), padding the last group with zero rows, and stores the scales as f16.
    fn finish(self) -> QMatrix {
        let (nbr, per) = (self.cols / BLOCK, self.layout.bytes());
        let slots = self.rows.div_ceil(4) * 4 * nbr;
        let mut w = QMatrix {
            rows: self.rows,
            cols: self.cols,
            layout: self.layout,
            q: vec![0; slots * per],
            d: vec![0; slots],
            m: vec![0; slots],
        };
        for r in 0..self.rows {
            for b in 0..nbr {
                let (from, to) = (r * nbr + b, w.slot(r, b));
                w.d[to] = f32_to_f16(self.d[from]);
                w.m[to] = f32_to_f16(self.m[from]);
                w.q[to * per..(to + 1) * per].copy_from_slice(&self.q[from * per..(from + 1) * per]);
            }
        }
        w
    }
}

/// f32 to f16 bits, rounding to nearest even (subnormals kept, overflow to infinity).
pub fn f32_to_f16(v: f32) -> u16 {
    let bits = v.to_bits();
    let sign = ((bits >> 16) & 0x8000) as u16;
    let a = v.abs();
    if a.is_nan() {
        return sign | 0x7e00;
    }
    if a >= 65520.0 {
        return sign | 0x7c00;
    }
    if a < 6.103_515_6e-5 {
        // Subnormal: units of 2⁻²⁴, rounded to nearest even.
        return sign | (a * 16_777_216.0).round_ties_even() as u16;
    }
    let exp = ((bits >> 23) & 0xff) as i32 - 127 + 15;
    let mant = bits & 0x7f_ffff;
    let mut h = ((exp as u32) << 10) | (mant >> 13);
    let rest = mant & 0x1fff;
    if rest > 0x1000 || (rest == 0x1000 && h & 1 == 1) {
        h += 1; // may carry into the exponent, which is still the right value
    }
    sign | h as u16
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
    /// Converts GGUF tensor data (`rows` × `cols`, `cols` contiguous). `cols` must be a multiple of 32
    /// (of 256 for K-quants, which the GGUF shape check already guarantees).
    pub fn from_gguf(dtype: DType, bytes: &[u8], rows: usize, cols: usize) -> QMatrix {
        let nb = rows * cols / BLOCK;
        match dtype {
            DType::Q4_0 | DType::Q4_1 => {
                let mut w = Building::new(rows, cols, Layout::Q4);
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
                w.finish()
            }
            DType::Q4K => {
                let mut w = Building::new(rows, cols, Layout::Q4);
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
                w.finish()
            }
            DType::Q8_0 | DType::Q5_0 | DType::Q5_1 | DType::Q5K => {
                let mut w = Building::new(rows, cols, Layout::Q8);
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
                w.finish()
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
        let mut w = Building::new(rows, cols, Layout::Q8);
        let mut q = vec![0i8; f.len()];
        let mut s = vec![0f32; w.d.len()];
        gemm::quantize_row(f, &mut q, &mut w.d, &mut s);
        for (dst, &src) in w.q.iter_mut().zip(&q) {
            *dst = src as u8;
        }
        w.finish()
    }

    /// Row `r` as f32 (the embedding lookup).
    pub fn row_f32(&self, r: usize, out: &mut [f32]) {
        let nbr = self.cols / BLOCK;
        for bi in 0..nbr {
            let b = self.slot(r, bi);
            let (d, m) = (f16_to_f32(self.d[b]), f16_to_f32(self.m[b]));
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

    /// Where row `r`'s block `b` is stored: blocks are grouped by four rows (see `interleaved`).
    #[inline]
    pub(super) fn slot(&self, r: usize, b: usize) -> usize {
        ((r / 4) * (self.cols / BLOCK) + b) * 4 + r % 4
    }

    /// Stacks matrices of the same width and layout (fused projections: one pass over the input
    /// computes all of them). Every part but the last must have a multiple of four rows.
    pub fn concat(parts: &[&QMatrix]) -> QMatrix {
        let first = parts[0];
        assert!(parts.iter().all(|p| p.cols == first.cols && p.layout == first.layout));
        assert!(parts[..parts.len() - 1].iter().all(|p| p.rows.is_multiple_of(4)));
        QMatrix {
            rows: parts.iter().map(|p| p.rows).sum(),
            cols: first.cols,
            layout: first.layout,
            q: parts.iter().flat_map(|p| p.q.iter().copied()).collect(),
            d: parts.iter().flat_map(|p| p.d.iter().copied()).collect(),
            m: parts.iter().flat_map(|p| p.m.iter().copied()).collect(),
        }
    }

    /// `out[t·rows + r] = row_r · x_t` for every token of `x` (see `gemm`).
    pub fn matmul(&self, x: &QActs, out: &mut [f32]) {
        gemm::matmul(self, x, out);
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
        for h in 0..=u16::MAX {
            if h & 0x7c00 != 0x7c00 {
                assert_eq!(f32_to_f16(f16_to_f32(h)), h, "{h:#x}");
            }
        }
        // One f16 step above 1.0 is 4/4096.
        assert_eq!(
            f32_to_f16(1.0 + 2.0 / 4096.0),
            0x3c00,
            "a tie goes to the even neighbour"
        );
        assert_eq!(
            f32_to_f16(1.0 + 6.0 / 4096.0),
            0x3c02,
            "a tie goes to the even neighbour"
        );
        assert_eq!(f32_to_f16(1.0 + 3.0 / 4096.0), 0x3c01);
        assert_eq!(f32_to_f16(1e6), 0x7c00);
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
        let mut a = QActs::default();
        a.quantize(&x, cols);
        w.matmul(&a, &mut out);
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
    fn eight_bit_products_match_f32() {
        let mut seed = 11u64;
        let (rows, cols) = (70, 96);
        let f: Vec<f32> = (0..rows * cols).map(|_| lcg(&mut seed)).collect();
        let w = QMatrix::from_f32(&f, rows, cols);
        // 8-bit weights and activations keep ~2 significant digits.
        let xf: Vec<f32> = (0..cols).map(|_| lcg(&mut seed)).collect();
        let mut a = QActs::default();
        a.quantize(&xf, cols);
        let mut out = vec![0f32; rows];
        w.matmul(&a, &mut out);
        for r in 0..rows {
            let exact: f32 = f[r * cols..(r + 1) * cols].iter().zip(&xf).map(|(a, b)| a * b).sum();
            assert!((out[r] - exact).abs() < 0.1, "row {r}: {} vs {exact}", out[r]);
        }
    }

    #[test]
    fn fused_matrices_stack_rows() {
        let mut seed = 3u64;
        let a = QMatrix::from_f32(&(0..8 * 64).map(|_| lcg(&mut seed)).collect::<Vec<_>>(), 8, 64);
        let b = QMatrix::from_f32(&(0..6 * 64).map(|_| lcg(&mut seed)).collect::<Vec<_>>(), 6, 64);
        let ab = QMatrix::concat(&[&a, &b]);
        assert_eq!(ab.rows, 14);
        let (mut x, mut y) = (vec![0f32; 64], vec![0f32; 64]);
        for r in 0..14 {
            ab.row_f32(r, &mut x);
            if r < 8 {
                a.row_f32(r, &mut y);
            } else {
                b.row_f32(r - 8, &mut y);
            }
            assert_eq!(x, y, "row {r}");
        }
    }
}
