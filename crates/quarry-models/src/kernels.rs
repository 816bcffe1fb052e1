//! Numeric kernels for the encoder: matrix multiply (the `gemm` crate, which dispatches to AVX2 or
//! AVX-512 at run time), layer norm, GELU and softmax written so the compiler vectorises them.

// `gemm` takes raw pointers with strides; every call here checks the slice bounds first.
#![allow(unsafe_code)]

use gemm::Parallelism;
use quarry_core::vector::dot;

/// A row-major matrix view: `rows`×`cols` with `stride` elements between rows.
#[derive(Clone, Copy)]
pub struct View<'a> {
    pub data: &'a [f32],
    pub rows: usize,
    pub cols: usize,
    pub stride: usize,
}

impl<'a> View<'a> {
    pub fn new(data: &'a [f32], rows: usize, cols: usize, stride: usize) -> Self {
        let v = View {
            data,
            rows,
            cols,
            stride,
        };
        assert!(
            rows == 0 || cols == 0 || (rows - 1) * stride + cols <= data.len(),
            "matrix view out of bounds"
        );
        v
    }
}

/// `out[m×n] (row stride out_stride) = scale · a[m×k] · bᵀ`, where `b` is n×k (so each row of `b`
/// is one output column: the layout of a linear layer's weight).
///
/// `threads` > 1 splits the work across the rayon pool; batches that already run one per core pass 1.
pub fn matmul_bt(a: View, b: View, out: &mut [f32], out_stride: usize, scale: f32, threads: usize) {
    let (m, k, n) = (a.rows, a.cols, b.rows);
    assert_eq!(b.cols, k, "inner dimensions");
    assert!(
        m == 0 || n == 0 || (m - 1) * out_stride + n <= out.len(),
        "output out of bounds"
    );
    if m == 0 || n == 0 {
        return;
    }
    if m <= SMALL_M {
        if threads > 1 && m >= 8 {
            // Two halves of the rows, on two threads, writing disjoint rows of `out`.
            let half = (m / 2).div_ceil(4) * 4;
            let (top, bottom) = out.split_at_mut(half * out_stride);
            let (a_top, a_bottom) = (
                View { rows: half, ..a },
                View {
                    data: &a.data[half * a.stride..],
                    rows: m - half,
                    ..a
                },
            );
            rayon::join(
                || matmul_bt_small(a_top, b, top, out_stride, scale),
                || matmul_bt_small(a_bottom, b, bottom, out_stride, scale),
            );
            return;
        }
        return matmul_bt_small(a, b, out, out_stride, scale);
    }
    // rhs (p, j) = b[j][p]: step 1 along p, b.stride along j.
    gemm_strided(a, b.data, 1, b.stride, n, out, out_stride, scale, threads);
}

/// Below this many rows, `gemm`'s packing of the whole right-hand matrix costs more than the
/// multiply itself (a 20-token query spent half its time packing weights).
const SMALL_M: usize = 64;

/// Direct dot products for a few rows: each row of `b` (a weight row, contiguous) is loaded once and
/// used against four rows of `a` at a time, so each weight load feeds four multiply-adds.
fn matmul_bt_small(a: View, b: View, out: &mut [f32], out_stride: usize, scale: f32) {
    let k = a.cols;
    let row = |i: usize| &a.data[i * a.stride..i * a.stride + k];
    let mut i = 0;
    while i + 4 <= a.rows {
        let (x0, x1, x2, x3) = (row(i), row(i + 1), row(i + 2), row(i + 3));
        for j in 0..b.rows {
            let w = &b.data[j * b.stride..j * b.stride + k];
            let d = dot4(x0, x1, x2, x3, w);
            for (r, v) in d.iter().enumerate() {
                out[(i + r) * out_stride + j] = v * scale;
            }
        }
        i += 4;
    }
    for i in i..a.rows {
        let x = row(i);
        for j in 0..b.rows {
            out[i * out_stride + j] = dot(x, &b.data[j * b.stride..j * b.stride + k]) * scale;
        }
    }
}

/// Four dot products against one shared vector `w`.
#[inline(always)]
fn dot4(x0: &[f32], x1: &[f32], x2: &[f32], x3: &[f32], w: &[f32]) -> [f32; 4] {
    let k = w.len();
    assert!(x0.len() >= k && x1.len() >= k && x2.len() >= k && x3.len() >= k);
    #[cfg(all(target_arch = "x86_64", target_feature = "avx2", target_feature = "fma"))]
    {
        dot4_fma(x0, x1, x2, x3, w)
    }
    #[cfg(not(all(target_arch = "x86_64", target_feature = "avx2", target_feature = "fma")))]
    {
        [dot(x0, w), dot(x1, w), dot(x2, w), dot(x3, w)]
    }
}

/// AVX2/FMA body of `dot4` (the build targets x86-64-v3, see .cargo/config.toml): one weight load
/// feeds four fused multiply-adds. LLVM does not find this form by itself.
#[cfg(all(target_arch = "x86_64", target_feature = "avx2", target_feature = "fma"))]
#[inline(always)]
fn dot4_fma(x0: &[f32], x1: &[f32], x2: &[f32], x3: &[f32], w: &[f32]) -> [f32; 4] {
    use std::arch::x86_64::*;
    let k = w.len();
    let n8 = k / 8 * 8;
    let hsum = |v: __m256| -> f32 {
        let mut lanes = [0f32; 8];
        // SAFETY: `lanes` has room for eight f32.
        unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), v) };
        lanes.iter().sum()
    };
    // SAFETY: every load reads eight f32 at offset c with c + 8 ≤ n8 ≤ k, and the caller checked
    // that all four rows and `w` hold at least k elements.
    let acc = unsafe {
        let (mut a0, mut a1, mut a2, mut a3) = (
            _mm256_setzero_ps(),
            _mm256_setzero_ps(),
            _mm256_setzero_ps(),
            _mm256_setzero_ps(),
        );
        let mut c = 0;
        while c < n8 {
            let wv = _mm256_loadu_ps(w.as_ptr().add(c));
            a0 = _mm256_fmadd_ps(_mm256_loadu_ps(x0.as_ptr().add(c)), wv, a0);
            a1 = _mm256_fmadd_ps(_mm256_loadu_ps(x1.as_ptr().add(c)), wv, a1);
            a2 = _mm256_fmadd_ps(_mm256_loadu_ps(x2.as_ptr().add(c)), wv, a2);
            a3 = _mm256_fmadd_ps(_mm256_loadu_ps(x3.as_ptr().add(c)), wv, a3);
            c += 8;
        }
        [a0, a1, a2, a3]
    };
    let tail = |x: &[f32]| (n8..k).map(|c| x[c] * w[c]).sum::<f32>();
    [
        hsum(acc[0]) + tail(x0),
        hsum(acc[1]) + tail(x1),
        hsum(acc[2]) + tail(x2),
        hsum(acc[3]) + tail(x3),
    ]
}

/// `out[m×n] = a[m×k] · b[k×n]`, all row-major with the given row strides.
pub fn matmul(a: View, b: View, out: &mut [f32], out_stride: usize) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    assert_eq!(b.rows, k, "inner dimensions");
    assert!(
        m == 0 || n == 0 || (m - 1) * out_stride + n <= out.len(),
        "output out of bounds"
    );
    if m == 0 || n == 0 {
        return;
    }
    // rhs (p, j) = b[p][j]: step b.stride along p, 1 along j.
    gemm_strided(a, b.data, b.stride, 1, n, out, out_stride, 1.0, 1);
}

/// `out = scale · a · rhs` where rhs element (p, j) is `rhs[p·rs + j·cs]`, for p < a.cols, j < n.
#[allow(clippy::too_many_arguments)]
fn gemm_strided(
    a: View,
    rhs: &[f32],
    rs: usize,
    cs: usize,
    n: usize,
    out: &mut [f32],
    out_stride: usize,
    scale: f32,
    threads: usize,
) {
    let (m, k) = (a.rows, a.cols);
    assert!(
        (k - 1) * rs + (n - 1) * cs < rhs.len(),
        "right-hand matrix out of bounds"
    );
    // SAFETY: lhs (i, p) is at i·a.stride + p inside `a` (checked by View::new), rhs (p, j) inside
    // `rhs` (checked above), dst (i, j) at i·out_stride + j inside `out` (checked by the callers).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            out.as_mut_ptr(),
            1,
            out_stride as isize,
            false,
            a.data.as_ptr(),
            1,
            a.stride as isize,
            rhs.as_ptr(),
            cs as isize,
            rs as isize,
            0.0,
            scale,
            false,
            false,
            false,
            if threads > 1 {
                Parallelism::Rayon(threads)
            } else {
                Parallelism::None
            },
        );
    }
}

/// Adds `bias` to every row of `x` (rows of length `bias.len()`).
pub fn add_bias(x: &mut [f32], bias: &[f32]) {
    for row in x.chunks_exact_mut(bias.len()) {
        for (v, b) in row.iter_mut().zip(bias) {
            *v += b;
        }
    }
}

/// In place: x = LayerNorm(x + residual) per row.
pub fn add_layer_norm(x: &mut [f32], residual: &[f32], gamma: &[f32], beta: &[f32], eps: f32) {
    let h = gamma.len();
    for (row, res) in x.chunks_exact_mut(h).zip(residual.chunks_exact(h)) {
        for (v, r) in row.iter_mut().zip(res) {
            *v += r;
        }
        layer_norm_row(row, gamma, beta, eps);
    }
}

pub fn layer_norm(x: &mut [f32], gamma: &[f32], beta: &[f32], eps: f32) {
    for row in x.chunks_exact_mut(gamma.len()) {
        layer_norm_row(row, gamma, beta, eps);
    }
}

fn layer_norm_row(row: &mut [f32], gamma: &[f32], beta: &[f32], eps: f32) {
    let n = row.len() as f32;
    let mean = sum8(row) / n;
    let mut sq = [0f32; 8];
    for c in row.chunks_exact(8) {
        for i in 0..8 {
            sq[i] += (c[i] - mean) * (c[i] - mean);
        }
    }
    let var = (sq.iter().sum::<f32>()
        + row
            .chunks_exact(8)
            .remainder()
            .iter()
            .map(|v| (v - mean) * (v - mean))
            .sum::<f32>())
        / n;
    let inv = 1.0 / (var + eps).sqrt();
    for ((v, g), b) in row.iter_mut().zip(gamma).zip(beta) {
        *v = (*v - mean) * inv * g + b;
    }
}

/// e^x, accurate to a few ulp: range reduction to 2^k · e^r with |r| ≤ ln2/2 and a degree-6
/// polynomial. Written without branches or saturating float→int casts (which block SIMD): k is
/// taken from the mantissa of x·log2(e) + 1.5·2^23, and 2^k is built from its bits.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const SHIFT: f32 = 12_582_912.0; // 1.5 · 2^23: adding it rounds to an integer in the low mantissa bits
    let x = x.clamp(-87.0, 88.0);
    let t = x * std::f32::consts::LOG2_E + SHIFT;
    let k = t - SHIFT;
    let r = x - k * 0.693_145_75 - k * 1.428_606_8e-6;
    let p = 1.0 + r * (1.0 + r * (0.5 + r * (0.166_666_67 + r * (0.041_666_5 + r * (0.008_333_9 + r * 0.001_394_9)))));
    // Low bits of t hold k (two's complement within the mantissa); shift them into the exponent.
    let pow2 = f32::from_bits((t.to_bits().wrapping_sub(SHIFT.to_bits()).wrapping_add(127)) << 23);
    p * pow2
}

/// Sum with eight independent accumulators so it vectorises.
#[inline(always)]
fn sum8(x: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let chunks = x.chunks_exact(8);
    let rest: f32 = chunks.remainder().iter().sum();
    for c in chunks {
        for i in 0..8 {
            acc[i] += c[i];
        }
    }
    acc.iter().sum::<f32>() + rest
}

#[inline(always)]
fn max8(x: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; 8];
    let chunks = x.chunks_exact(8);
    let rest = chunks
        .remainder()
        .iter()
        .fold(f32::NEG_INFINITY, |m, v| if *v > m { *v } else { m });
    for c in chunks {
        for i in 0..8 {
            acc[i] = if c[i] > acc[i] { c[i] } else { acc[i] };
        }
    }
    acc.iter().fold(rest, |m, v| if *v > m { *v } else { m })
}

/// erf(x) by Abramowitz & Stegun 7.1.26 (|error| ≤ 1.5e-7).
#[inline(always)]
fn erf(x: f32) -> f32 {
    let s = x.signum();
    let a = x.abs();
    let t = 1.0 / (1.0 + 0.327_591_1 * a);
    let y = 1.0
        - (((((1.061_405_4 * t - 1.453_152_1) * t) + 1.421_413_8) * t - 0.284_496_72) * t + 0.254_829_6)
            * t
            * exp(-a * a);
    s * y
}

/// GELU with the exact (erf) form BERT uses.
pub fn gelu(x: &mut [f32]) {
    for v in x.iter_mut() {
        *v = 0.5 * *v * (1.0 + erf(*v * std::f32::consts::FRAC_1_SQRT_2));
    }
}

pub fn softmax_rows(x: &mut [f32], cols: usize) {
    for row in x.chunks_exact_mut(cols) {
        let max = max8(row);
        row.iter_mut().for_each(|v| *v = exp(*v - max));
        let inv = 1.0 / sum8(row);
        row.iter_mut().for_each(|v| *v *= inv);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_and_erf_match_std() {
        for i in -870..=880 {
            let x = i as f32 * 0.1;
            let (got, want) = (exp(x), x.exp());
            assert!((got - want).abs() <= want * 2e-6 + 1e-37, "exp({x}) = {got} vs {want}");
        }
        let row: Vec<f32> = (0..37).map(|i| (i as f32 * 1.3).sin() * 5.0).collect();
        let mut soft = row.clone();
        softmax_rows(&mut soft, 37);
        let m = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
        let z: f32 = row.iter().map(|v| (v - m).exp()).sum();
        for (s, v) in soft.iter().zip(&row) {
            assert!((s - (v - m).exp() / z).abs() < 1e-6);
        }
        // erf reference values (Abramowitz & Stegun table 7.1).
        for (x, want) in [
            (0.0f32, 0.0f32),
            (0.5, 0.520_499_9),
            (1.0, 0.842_700_8),
            (2.0, 0.995_322_3),
            (-1.0, -0.842_700_8),
        ] {
            assert!((erf(x) - want).abs() < 2e-7, "erf({x})");
        }
    }

    #[test]
    fn matmuls_match_naive() {
        for (m, k, n) in [(5, 7, 3), (40, 19, 11), (70, 33, 9)] {
            check_matmuls(m, k, n);
        }
    }

    fn check_matmuls(m: usize, k: usize, n: usize) {
        let a: Vec<f32> = (0..m * k).map(|i| (i as f32 * 0.3).sin()).collect();
        let b: Vec<f32> = (0..n * k).map(|i| (i as f32 * 0.7).cos()).collect(); // n×k
        let mut out = vec![0.0; m * n];
        matmul_bt(View::new(&a, m, k, k), View::new(&b, n, k, k), &mut out, n, 2.0, 1);
        let mut par = vec![0.0; m * n];
        matmul_bt(View::new(&a, m, k, k), View::new(&b, n, k, k), &mut par, n, 2.0, 2);
        assert_eq!(out, par, "splitting across threads changes nothing");
        for i in 0..m {
            for j in 0..n {
                let want: f32 = (0..k).map(|p| a[i * k + p] * b[j * k + p]).sum::<f32>() * 2.0;
                assert!((out[i * n + j] - want).abs() < 1e-4);
            }
        }
        // b as k×n for the plain product: transpose of the n×k above.
        let bt: Vec<f32> = (0..k * n).map(|idx| b[(idx % n) * k + idx / n]).collect();
        let mut out2 = vec![0.0; m * n];
        matmul(View::new(&a, m, k, k), View::new(&bt, k, n, n), &mut out2, n);
        for (x, y) in out.iter().zip(&out2) {
            assert!((x / 2.0 - y).abs() < 1e-4);
        }
    }

    #[test]
    #[should_panic(expected = "out of bounds")]
    fn views_are_bounds_checked() {
        View::new(&[0.0; 10], 3, 4, 4);
    }
}
