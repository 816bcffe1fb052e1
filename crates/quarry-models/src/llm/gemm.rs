//! Quantised matrix products: 8-bit activations (`QActs`) times the 4- or 8-bit weight blocks of a
//! `QMatrix`, for one token (generation) or a batch of tokens (prompt processing).
//!
//! Every output value is `Σ_b fma(m_w·s_x) ∘ fma(isum_b, d_w·d_x)`, accumulated in f32 over the blocks
//! `b` in order, where `isum_b` is the exact integer dot product of the block. The AVX2 kernels work on
//! tiles (4 weight rows × 4 tokens, 8 rows × 1 token, 4 rows × 1 token) but perform exactly these f32
//! operations per output, so a token's result does not depend on the tile or batch it ran in: prompt
//! logits equal token-by-token logits bit for bit, and a reused prompt prefix changes nothing.

// The AVX2 kernels read the weight and activation blocks through raw pointers into slices whose
// lengths are checked before each call; they run only after runtime detection of AVX2 and FMA.
#![allow(unsafe_code)]

use rayon::prelude::*;

use super::quant::{f16_to_f32, Layout, QMatrix, BLOCK};

/// Activations of `n` tokens quantised to 8 bits per 32-block: `x ≈ d·q`, with `s = d·Σq` per block
/// (the term that multiplies a weight block's offset). Buffers are kept across calls.
#[derive(Default, Clone)]
pub struct QActs {
    pub n: usize,
    pub cols: usize,
    q: Vec<i8>,
    d: Vec<f32>,
    s: Vec<f32>,
}

impl QActs {
    /// Quantises `x`, `x.len() / cols` rows of `cols` values (`cols` a multiple of 32).
    pub fn quantize(&mut self, x: &[f32], cols: usize) {
        debug_assert!(cols.is_multiple_of(BLOCK) && x.len().is_multiple_of(cols));
        let n = x.len() / cols;
        let nb = cols / BLOCK;
        self.n = n;
        self.cols = cols;
        self.q.resize(n * cols, 0);
        self.d.resize(n * nb, 0.0);
        self.s.resize(n * nb, 0.0);
        if n >= 8 {
            x.par_chunks_exact(cols)
                .zip(self.q.par_chunks_exact_mut(cols))
                .zip(self.d.par_chunks_exact_mut(nb).zip(self.s.par_chunks_exact_mut(nb)))
                .for_each(|((x, q), (d, s))| quantize_row(x, q, d, s));
        } else {
            x.chunks_exact(cols)
                .zip(self.q.chunks_exact_mut(cols))
                .zip(self.d.chunks_exact_mut(nb).zip(self.s.chunks_exact_mut(nb)))
                .for_each(|((x, q), (d, s))| quantize_row(x, q, d, s));
        }
    }

    fn blocks(&self) -> usize {
        self.cols / BLOCK
    }
}

pub(super) fn quantize_row(x: &[f32], q: &mut [i8], d: &mut [f32], s: &mut [f32]) {
    for (((xs, qs), d), s) in x
        .chunks_exact(BLOCK)
        .zip(q.chunks_exact_mut(BLOCK))
        .zip(d.iter_mut())
        .zip(s.iter_mut())
    {
        let amax = xs.iter().fold(0f32, |a, v| a.max(v.abs()));
        let scale = amax / 127.0;
        let inv = if scale > 0.0 { 1.0 / scale } else { 0.0 };
        let mut sum = 0i32;
        for (q, &v) in qs.iter_mut().zip(xs) {
            *q = (v * inv).round() as i8;
            sum += i32::from(*q);
        }
        *d = scale;
        *s = scale * sum as f32;
    }
}

fn simd() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx2")
            && std::is_x86_feature_detected!("fma")
            && std::is_x86_feature_detected!("f16c")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// `out[t·rows + r] = row_r · x_t` for every token of `x`, on the rayon pool.
pub fn matmul(w: &QMatrix, x: &QActs, out: &mut [f32]) {
    matmul_with(w, x, out, simd());
}

/// `matmul` with the SIMD kernels on or off (tests compare the two).
pub fn matmul_with(w: &QMatrix, x: &QActs, out: &mut [f32], simd: bool) {
    assert_eq!(x.cols, w.cols, "matmul input width");
    assert_eq!(out.len(), x.n * w.rows, "matmul output length");
    let groups = w.rows.div_ceil(4);
    if x.n == 0 || groups == 0 {
        return;
    }
    if x.n < 4 {
        // Generation: threads split the rows. Chunks are an even number of groups (8-row kernels).
        let chunk = (groups.div_ceil(4 * rayon::current_num_threads().max(1)))
            .next_multiple_of(2)
            .max(2);
        for t in 0..x.n {
            let o = &mut out[t * w.rows..(t + 1) * w.rows];
            o.par_chunks_mut(chunk * 4).enumerate().for_each(|(c, o)| {
                let g0 = c * chunk;
                let g1 = (g0 + chunk).min(groups);
                single(w, x, t, g0, g1, o, simd);
            });
        }
        return;
    }
    // Prompt: threads take tiles of four tokens; each walks the weights in bands of rows small enough
    // to stay in cache while every token of its tiles passes over them.
    const TOKENS_PER_TASK: usize = 16;
    let band = (16 * 1024 / (w.cols / 2).max(1) / 4).clamp(1, 64);
    out.par_chunks_mut(TOKENS_PER_TASK * w.rows)
        .enumerate()
        .for_each(|(c, o)| {
            let t0 = c * TOKENS_PER_TASK;
            let nt = o.len() / w.rows;
            for g0 in (0..groups).step_by(band) {
                let g1 = (g0 + band).min(groups);
                let mut t = 0;
                while t + 4 <= nt {
                    for g in g0..g1 {
                        let acc = tile4x4(w, x, g, t0 + t, simd);
                        for (j, lanes) in acc.chunks_exact(4).enumerate() {
                            store(g, lanes, &mut o[(t + j) * w.rows..(t + j + 1) * w.rows]);
                        }
                    }
                    t += 4;
                }
                for t in t..nt {
                    let row = &mut o[t * w.rows..(t + 1) * w.rows];
                    single(w, x, t0 + t, g0, g1, &mut row[g0 * 4..(g1 * 4).min(w.rows)], simd);
                }
            }
        });
}

/// Rows of groups `g0..g1` times token `t` into `out` (which starts at row `4·g0`).
fn single(w: &QMatrix, x: &QActs, t: usize, g0: usize, g1: usize, out: &mut [f32], simd: bool) {
    let mut g = g0;
    while g + 2 <= g1 {
        let acc = tile8x1(w, x, g, t, simd);
        store(g - g0, &acc[..4], out);
        store(g - g0 + 1, &acc[4..], out);
        g += 2;
    }
    if g < g1 {
        let acc = tile4x1(w, x, g, t, simd);
        store(g - g0, &acc, out);
    }
}

/// Writes the four rows of group `g` that exist (the last group may be partly padding).
fn store(g: usize, lanes: &[f32], out: &mut [f32]) {
    let start = g * 4;
    if start < out.len() {
        let k = (out.len() - start).min(4);
        out[start..start + k].copy_from_slice(&lanes[..k]);
    }
}

/// One output, the reference for every kernel.
fn pair(w: &QMatrix, x: &QActs, r: usize, t: usize) -> f32 {
    let nb = x.blocks();
    let mut acc = 0f32;
    for b in 0..nb {
        let k = w.slot(r, b);
        let xq = &x.q[(t * nb + b) * BLOCK..(t * nb + b + 1) * BLOCK];
        let isum: i32 = match w.layout {
            Layout::Q4 => {
                let q = &w.q[k * 16..(k + 1) * 16];
                (0..16)
                    .map(|i| i32::from(q[i] & 0xf) * i32::from(xq[i]) + i32::from(q[i] >> 4) * i32::from(xq[i + 16]))
                    .sum()
            }
            Layout::Q8 => w.q[k * 32..(k + 1) * 32]
                .iter()
                .zip(xq)
                .map(|(&a, &b)| i32::from(a as i8) * i32::from(b))
                .sum(),
        };
        let scale = f16_to_f32(w.d[k]) * x.d[t * nb + b];
        acc = (isum as f32).mul_add(scale, acc);
        acc = f16_to_f32(w.m[k]).mul_add(x.s[t * nb + b], acc);
    }
    acc
}

/// Rows `4g..4g+4` × tokens `t..t+4`, token-major.
fn tile4x4(w: &QMatrix, x: &QActs, g: usize, t: usize, simd: bool) -> [f32; 16] {
    let nb = x.blocks();
    assert!((g + 1) * nb * 4 <= w.d.len() && (t + 4) * nb <= x.d.len());
    #[cfg(target_arch = "x86_64")]
    if simd {
        // SAFETY: AVX2 and FMA were detected; the group's blocks and the four tokens' blocks are in
        // bounds (checked above, and `q` holds 16 or 32 bytes per entry of `d`).
        return unsafe {
            match w.layout {
                Layout::Q4 => avx2::tile4x4::<true>(w, x, g, t),
                Layout::Q8 => avx2::tile4x4::<false>(w, x, g, t),
            }
        };
    }
    let _ = simd;
    std::array::from_fn(|i| pair(w, x, 4 * g + i % 4, t + i / 4))
}

/// Rows `4g..4g+8` × token `t`.
fn tile8x1(w: &QMatrix, x: &QActs, g: usize, t: usize, simd: bool) -> [f32; 8] {
    let nb = x.blocks();
    assert!((g + 2) * nb * 4 <= w.d.len() && (t + 1) * nb <= x.d.len());
    #[cfg(target_arch = "x86_64")]
    if simd {
        // SAFETY: as in `tile4x4`, for two groups and one token.
        return unsafe {
            match w.layout {
                Layout::Q4 => avx2::tile8x1::<true>(w, x, g, t),
                Layout::Q8 => avx2::tile8x1::<false>(w, x, g, t),
            }
        };
    }
    let _ = simd;
    std::array::from_fn(|i| pair(w, x, 4 * g + i, t))
}

/// Rows `4g..4g+4` × token `t`.
fn tile4x1(w: &QMatrix, x: &QActs, g: usize, t: usize, simd: bool) -> [f32; 4] {
    let nb = x.blocks();
    assert!((g + 1) * nb * 4 <= w.d.len() && (t + 1) * nb <= x.d.len());
    #[cfg(target_arch = "x86_64")]
    if simd {
        // SAFETY: as in `tile4x4`, for one group and one token.
        return unsafe {
            match w.layout {
                Layout::Q4 => avx2::tile4x1::<true>(w, x, g, t),
                Layout::Q8 => avx2::tile4x1::<false>(w, x, g, t),
            }
        };
    }
    let _ = simd;
    std::array::from_fn(|i| pair(w, x, 4 * g + i, t))
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use super::{QActs, QMatrix, BLOCK};

    /// The four rows of a group's block `b`, as 32 bytes each: nibbles unpacked to 0..15 (Q4) or
    /// the raw signed bytes (Q8).
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn rows<const Q4: bool>(base: *const u8) -> [__m256i; 4] {
        if Q4 {
            let mask = _mm256_set1_epi8(0x0f);
            let v01 = _mm256_loadu_si256(base as *const __m256i);
            let v23 = _mm256_loadu_si256(base.add(32) as *const __m256i);
            let (lo01, hi01) = (
                _mm256_and_si256(v01, mask),
                _mm256_and_si256(_mm256_srli_epi16(v01, 4), mask),
            );
            let (lo23, hi23) = (
                _mm256_and_si256(v23, mask),
                _mm256_and_si256(_mm256_srli_epi16(v23, 4), mask),
            );
            [
                _mm256_permute2x128_si256(lo01, hi01, 0x20),
                _mm256_permute2x128_si256(lo01, hi01, 0x31),
                _mm256_permute2x128_si256(lo23, hi23, 0x20),
                _mm256_permute2x128_si256(lo23, hi23, 0x31),
            ]
        } else {
            [
                _mm256_loadu_si256(base as *const __m256i),
                _mm256_loadu_si256(base.add(32) as *const __m256i),
                _mm256_loadu_si256(base.add(64) as *const __m256i),
                _mm256_loadu_si256(base.add(96) as *const __m256i),
            ]
        }
    }

    /// Eight lanes of i32 partial sums of one row block · one token block.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn dot<const Q4: bool>(w: __m256i, x: __m256i) -> __m256i {
        let ones = _mm256_set1_epi16(1);
        if Q4 {
            _mm256_madd_epi16(_mm256_maddubs_epi16(w, x), ones)
        } else {
            // vpmaddubsw multiplies unsigned by signed: move the weights' signs onto x.
            _mm256_madd_epi16(
                _mm256_maddubs_epi16(_mm256_sign_epi8(w, w), _mm256_sign_epi8(x, w)),
                ones,
            )
        }
    }

    /// `[Σp0, Σp1, …, Σp7]`: the horizontal sums of eight vectors, exact in integers.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn reduce8(p: [__m256i; 8]) -> __m256i {
        let h0123 = _mm256_hadd_epi32(_mm256_hadd_epi32(p[0], p[1]), _mm256_hadd_epi32(p[2], p[3]));
        let h4567 = _mm256_hadd_epi32(_mm256_hadd_epi32(p[4], p[5]), _mm256_hadd_epi32(p[6], p[7]));
        _mm256_add_epi32(
            _mm256_permute2x128_si256(h0123, h4567, 0x20),
            _mm256_permute2x128_si256(h0123, h4567, 0x31),
        )
    }

    /// Four f16 block scales as f32 (exact).
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn scales(p: *const u16) -> __m128 {
        _mm_cvtph_ps(_mm_loadl_epi64(p as *const __m128i))
    }

    struct Ptrs {
        wq: *const u8,
        wd: *const u16,
        wm: *const u16,
        per: usize,
    }

    #[inline]
    fn group(w: &QMatrix, g: usize, nb: usize) -> Ptrs {
        let per = if w.layout == super::Layout::Q4 { 16 } else { 32 };
        Ptrs {
            wq: w.q[g * nb * 4 * per..].as_ptr(),
            wd: w.d[g * nb * 4..].as_ptr(),
            wm: w.m[g * nb * 4..].as_ptr(),
            per,
        }
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn tile4x4<const Q4: bool>(w: &QMatrix, x: &QActs, g: usize, t: usize) -> [f32; 16] {
        let nb = x.cols / BLOCK;
        let p = group(w, g, nb);
        let xq = x.q[t * x.cols..].as_ptr();
        let (xd, xs) = (x.d[t * nb..].as_ptr(), x.s[t * nb..].as_ptr());
        let mut acc = [_mm256_setzero_ps(); 2];
        for b in 0..nb {
            let r = rows::<Q4>(p.wq.add(b * 4 * p.per));
            let dw = scales(p.wd.add(4 * b));
            let mw = scales(p.wm.add(4 * b));
            let (dw, mw) = (_mm256_set_m128(dw, dw), _mm256_set_m128(mw, mw));
            for (h, a) in acc.iter_mut().enumerate() {
                let (j0, j1) = (2 * h, 2 * h + 1);
                let x0 = _mm256_loadu_si256(xq.add(j0 * x.cols + b * BLOCK) as *const __m256i);
                let x1 = _mm256_loadu_si256(xq.add(j1 * x.cols + b * BLOCK) as *const __m256i);
                let v = reduce8([
                    dot::<Q4>(r[0], x0),
                    dot::<Q4>(r[1], x0),
                    dot::<Q4>(r[2], x0),
                    dot::<Q4>(r[3], x0),
                    dot::<Q4>(r[0], x1),
                    dot::<Q4>(r[1], x1),
                    dot::<Q4>(r[2], x1),
                    dot::<Q4>(r[3], x1),
                ]);
                let dx = _mm256_set_m128(_mm_set1_ps(*xd.add(j1 * nb + b)), _mm_set1_ps(*xd.add(j0 * nb + b)));
                let sx = _mm256_set_m128(_mm_set1_ps(*xs.add(j1 * nb + b)), _mm_set1_ps(*xs.add(j0 * nb + b)));
                *a = _mm256_fmadd_ps(_mm256_cvtepi32_ps(v), _mm256_mul_ps(dw, dx), *a);
                *a = _mm256_fmadd_ps(mw, sx, *a);
            }
        }
        let mut out = [0f32; 16];
        _mm256_storeu_ps(out.as_mut_ptr(), acc[0]);
        _mm256_storeu_ps(out.as_mut_ptr().add(8), acc[1]);
        out
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn tile8x1<const Q4: bool>(w: &QMatrix, x: &QActs, g: usize, t: usize) -> [f32; 8] {
        let nb = x.cols / BLOCK;
        let (p0, p1) = (group(w, g, nb), group(w, g + 1, nb));
        let xq = x.q[t * x.cols..].as_ptr();
        let (xd, xs) = (x.d[t * nb..].as_ptr(), x.s[t * nb..].as_ptr());
        let mut acc = _mm256_setzero_ps();
        for b in 0..nb {
            let xv = _mm256_loadu_si256(xq.add(b * BLOCK) as *const __m256i);
            let r0 = rows::<Q4>(p0.wq.add(b * 4 * p0.per));
            let r1 = rows::<Q4>(p1.wq.add(b * 4 * p1.per));
            let v = reduce8([
                dot::<Q4>(r0[0], xv),
                dot::<Q4>(r0[1], xv),
                dot::<Q4>(r0[2], xv),
                dot::<Q4>(r0[3], xv),
                dot::<Q4>(r1[0], xv),
                dot::<Q4>(r1[1], xv),
                dot::<Q4>(r1[2], xv),
                dot::<Q4>(r1[3], xv),
            ]);
            let dw = _mm256_set_m128(scales(p1.wd.add(4 * b)), scales(p0.wd.add(4 * b)));
            let mw = _mm256_set_m128(scales(p1.wm.add(4 * b)), scales(p0.wm.add(4 * b)));
            acc = _mm256_fmadd_ps(
                _mm256_cvtepi32_ps(v),
                _mm256_mul_ps(dw, _mm256_set1_ps(*xd.add(b))),
                acc,
            );
            acc = _mm256_fmadd_ps(mw, _mm256_set1_ps(*xs.add(b)), acc);
        }
        let mut out = [0f32; 8];
        _mm256_storeu_ps(out.as_mut_ptr(), acc);
        out
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn tile4x1<const Q4: bool>(w: &QMatrix, x: &QActs, g: usize, t: usize) -> [f32; 4] {
        let nb = x.cols / BLOCK;
        let p = group(w, g, nb);
        let xq = x.q[t * x.cols..].as_ptr();
        let (xd, xs) = (x.d[t * nb..].as_ptr(), x.s[t * nb..].as_ptr());
        let zero = _mm256_setzero_si256();
        let mut acc = _mm_setzero_ps();
        for b in 0..nb {
            let xv = _mm256_loadu_si256(xq.add(b * BLOCK) as *const __m256i);
            let r = rows::<Q4>(p.wq.add(b * 4 * p.per));
            let v = reduce8([
                dot::<Q4>(r[0], xv),
                dot::<Q4>(r[1], xv),
                dot::<Q4>(r[2], xv),
                dot::<Q4>(r[3], xv),
                zero,
                zero,
                zero,
                zero,
            ]);
            let v = _mm256_castsi256_si128(v);
            let dw = scales(p.wd.add(4 * b));
            let mw = scales(p.wm.add(4 * b));
            acc = _mm_fmadd_ps(_mm_cvtepi32_ps(v), _mm_mul_ps(dw, _mm_set1_ps(*xd.add(b))), acc);
            acc = _mm_fmadd_ps(mw, _mm_set1_ps(*xs.add(b)), acc);
        }
        let mut out = [0f32; 4];
        _mm_storeu_ps(out.as_mut_ptr(), acc);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lcg(seed: &mut u64) -> f32 {
        *seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((*seed >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }

    fn q4_matrix(rows: usize, cols: usize, seed: &mut u64) -> QMatrix {
        // GGUF Q4_1 blocks: d and m as f16, 16 bytes of nibbles.
        let mut bytes = Vec::new();
        for _ in 0..rows * cols / 32 {
            bytes.extend(half::to_f16_bytes(0.01 + lcg(seed).abs() * 0.05));
            bytes.extend(half::to_f16_bytes(-lcg(seed).abs() * 0.3));
            for _ in 0..16 {
                bytes.push((((lcg(seed) + 1.0) * 127.9) as u8).wrapping_mul(37));
            }
        }
        QMatrix::from_gguf(super::super::gguf::DType::Q4_1, &bytes, rows, cols)
    }

    mod half {
        /// f16 bytes of a normal value (truncating the mantissa).
        pub fn to_f16_bytes(v: f32) -> [u8; 2] {
            let bits = v.to_bits();
            let sign = ((bits >> 16) & 0x8000) as u16;
            let exp = ((bits >> 23) & 0xff) as i32 - 127 + 15;
            let mant = ((bits >> 13) & 0x3ff) as u16;
            (sign | ((exp.clamp(1, 30) as u16) << 10) | mant).to_le_bytes()
        }
    }

    fn acts(n: usize, cols: usize, seed: &mut u64) -> QActs {
        let x: Vec<f32> = (0..n * cols).map(|_| lcg(seed) * 3.0).collect();
        let mut a = QActs::default();
        a.quantize(&x, cols);
        a
    }

    fn token(a: &QActs, t: usize) -> QActs {
        let nb = a.cols / BLOCK;
        QActs {
            n: 1,
            cols: a.cols,
            q: a.q[t * a.cols..(t + 1) * a.cols].to_vec(),
            d: a.d[t * nb..(t + 1) * nb].to_vec(),
            s: a.s[t * nb..(t + 1) * nb].to_vec(),
        }
    }

    /// Batches of every remainder mod 4, rows that leave a partial group and an odd number of
    /// groups, both layouts: batch == one token at a time, bit for bit, with and without SIMD; SIMD
    /// vs scalar within float rounding (the integer block sums are exact, only the fma order is
    /// shared and the hardware and software fma round identically).
    #[test]
    fn batch_equals_single_and_simd_equals_scalar() {
        let mut seed = 5u64;
        for (rows, cols) in [(36, 64), (44, 96), (10, 32), (64, 128)] {
            let mats = [
                q4_matrix(rows, cols, &mut seed),
                QMatrix::from_f32(
                    &(0..rows * cols).map(|_| lcg(&mut seed)).collect::<Vec<_>>(),
                    rows,
                    cols,
                ),
            ];
            for w in &mats {
                for n in [1, 2, 3, 4, 5, 7, 9, 17, 21] {
                    let x = acts(n, cols, &mut seed);
                    let mut fast = vec![0f32; n * rows];
                    let mut slow = vec![0f32; n * rows];
                    matmul_with(w, &x, &mut fast, simd());
                    matmul_with(w, &x, &mut slow, false);
                    assert_eq!(fast, slow, "simd vs scalar, {rows}x{cols}, n={n}");
                    for t in 0..n {
                        let mut one = vec![0f32; rows];
                        matmul(w, &token(&x, t), &mut one);
                        assert_eq!(one, fast[t * rows..(t + 1) * rows], "{rows}x{cols}, n={n}, t={t}");
                    }
                }
            }
        }
    }

    #[test]
    fn products_match_the_dequantised_weights() {
        let mut seed = 9u64;
        let (rows, cols) = (12, 128);
        let w = q4_matrix(rows, cols, &mut seed);
        let x: Vec<f32> = (0..cols).map(|_| lcg(&mut seed)).collect();
        let mut a = QActs::default();
        a.quantize(&x, cols);
        let mut out = vec![0f32; rows];
        matmul(&w, &a, &mut out);
        let mut row = vec![0f32; cols];
        for (r, &o) in out.iter().enumerate() {
            w.row_f32(r, &mut row);
            let exact: f32 = row.iter().zip(&x).map(|(a, b)| a * b).sum();
            let norm: f32 = row.iter().map(|v| v.abs()).sum::<f32>() / 127.0;
            assert!((o - exact).abs() <= norm, "row {r}: {o} vs {exact}");
        }
    }
}
