//! Numeric kernels for the encoder: matrix multiply (the `gemm` crate, which dispatches to AVX2 or
//! AVX-512 at run time), layer norm, GELU and softmax written so the compiler vectorises them.

// `gemm` takes raw pointers with strides; every call here checks the slice bounds first.
#![allow(unsafe_code)]

use gemm::Parallelism;

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
pub fn matmul_bt(a: View, b: View, out: &mut [f32], out_stride: usize, scale: f32) {
    let (m, k, n) = (a.rows, a.cols, b.rows);
    assert_eq!(b.cols, k, "inner dimensions");
    assert!(
        m == 0 || n == 0 || (m - 1) * out_stride + n <= out.len(),
        "output out of bounds"
    );
    if m == 0 || n == 0 {
        return;
    }
    // SAFETY: the asserts above keep every element gemm touches inside `a`, `b` and `out`:
    // lhs (i, p) at i·a.stride + p, rhs (p, j) = b[j][p] at j·b.stride + p, dst (i, j) at i·out_stride + j.
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
            b.data.as_ptr(),
            b.stride as isize,
            1,
            0.0,
            scale,
            false,
            false,
            false,
            Parallelism::None,
        );
    }
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
    // SAFETY: as in `matmul_bt`, with rhs (p, j) at p·b.stride + j.
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
            b.data.as_ptr(),
            1,
            b.stride as isize,
            0.0,
            1.0,
            false,
            false,
            false,
            Parallelism::None,
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
    let mean = row.iter().sum::<f32>() / n;
    let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / n;
    let inv = 1.0 / (var + eps).sqrt();
    for ((v, g), b) in row.iter_mut().zip(gamma).zip(beta) {
        *v = (*v - mean) * inv * g + b;
    }
}

/// e^x for x ≤ 0 region and moderate positives, accurate to ~2 ulp: range reduction to
/// 2^k · e^r with |r| ≤ ln2/2 and a degree-6 polynomial. Branch-free so loops vectorise.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    let x = x.clamp(-87.0, 88.0);
    let k = (x * std::f32::consts::LOG2_E).round();
    let r = x - k * 0.693_145_75 - k * 1.428_606_8e-6;
    let p = 1.0 + r * (1.0 + r * (0.5 + r * (0.166_666_67 + r * (0.041_666_5 + r * (0.008_333_9 + r * 0.001_394_9)))));
    p * f32::from_bits(((k as i32 + 127) << 23) as u32)
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
        let max = row.iter().fold(f32::NEG_INFINITY, |m, v| m.max(*v));
        let mut sum = 0.0;
        for v in row.iter_mut() {
            *v = exp(*v - max);
            sum += *v;
        }
        let inv = 1.0 / sum;
        row.iter_mut().for_each(|v| *v *= inv);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_and_erf_match_std() {
        for i in -800..=300 {
            let x = i as f32 * 0.1;
            let (got, want) = (exp(x), x.exp());
            assert!((got - want).abs() <= want * 2e-6 + 1e-37, "exp({x}) = {got} vs {want}");
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
        let (m, k, n) = (5, 7, 3);
        let a: Vec<f32> = (0..m * k).map(|i| (i as f32 * 0.3).sin()).collect();
        let b: Vec<f32> = (0..n * k).map(|i| (i as f32 * 0.7).cos()).collect(); // n×k
        let mut out = vec![0.0; m * n];
        matmul_bt(View::new(&a, m, k, k), View::new(&b, n, k, k), &mut out, n, 2.0);
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
