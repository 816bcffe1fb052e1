//! Attention of one query head over its cached keys and values (each head's positions contiguous):
//! scaled dot products, softmax, weighted sum of values; and the SwiGLU activation, which shares the
//! vectorised exponential. AVX2/FMA kernels with a scalar fallback.
//!
//! A query's result depends only on the query and the cache positions it sees, never on the other
//! queries of its batch, so prompt processing and token-by-token decoding agree bit for bit.

// The AVX2 kernels load whole 8-float lanes through raw pointers into slices whose lengths are checked
// before each call; they run only after runtime detection of AVX2 and FMA.
#![allow(unsafe_code)]

fn simd(hd: usize) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        hd.is_multiple_of(64) && std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = hd;
        false
    }
}

/// `out = softmax(scale · K q) · V` over the first `span` rows of `k` and `v` (rows of `q.len()`).
/// `scores` is working space, kept by the caller across calls.
pub fn attend(q: &[f32], k: &[f32], v: &[f32], span: usize, scale: f32, scores: &mut Vec<f32>, out: &mut [f32]) {
    attend_with(q, k, v, span, scale, scores, out, simd(q.len()));
}

#[allow(clippy::too_many_arguments)]
fn attend_with(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    span: usize,
    scale: f32,
    scores: &mut Vec<f32>,
    out: &mut [f32],
    simd: bool,
) {
    let hd = q.len();
    assert!(span > 0 && k.len() >= span * hd && v.len() >= span * hd && out.len() == hd);
    scores.resize(span, 0.0);
    #[cfg(target_arch = "x86_64")]
    if simd {
        // SAFETY: AVX2 and FMA were detected, `hd` is a multiple of 64 and the slices hold `span`
        // rows of `hd` (checked above).
        unsafe { avx2::attend(q, k, v, span, scale, scores, out) };
        return;
    }
    let _ = simd;
    for (p, s) in scores.iter_mut().enumerate() {
        *s = q.iter().zip(&k[p * hd..(p + 1) * hd]).map(|(a, b)| a * b).sum::<f32>() * scale;
    }
    let max = scores.iter().fold(f32::NEG_INFINITY, |a, &s| a.max(s));
    let mut sum = 0f32;
    for s in scores.iter_mut() {
        *s = (*s - max).exp();
        sum += *s;
    }
    out.fill(0.0);
    for (p, &s) in scores.iter().enumerate() {
        for (o, &vi) in out.iter_mut().zip(&v[p * hd..(p + 1) * hd]) {
            *o += s * vi;
        }
    }
    let inv = 1.0 / sum;
    out.iter_mut().for_each(|o| *o *= inv);
}

/// `g[i] = silu(g[i]) · u[i]` (the gated feed-forward activation), elementwise.
pub fn swiglu(g: &mut [f32], u: &[f32]) {
    assert_eq!(g.len(), u.len());
    #[cfg(target_arch = "x86_64")]
    if simd(64) {
        // SAFETY: AVX2 and FMA were detected; the slices have equal lengths (checked above).
        unsafe { avx2::swiglu(g, u) };
        return;
    }
    for (gi, ui) in g.iter_mut().zip(u) {
        *gi = *gi / (1.0 + (-*gi).exp()) * ui;
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn hsum(v: __m256) -> f32 {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        _mm_cvtss_f32(_mm_add_ss(s, _mm_shuffle_ps(s, s, 1)))
    }

    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn hmax(v: __m256) -> f32 {
        let s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        let s = _mm_max_ps(s, _mm_movehl_ps(s, s));
        _mm_cvtss_f32(_mm_max_ss(s, _mm_shuffle_ps(s, s, 1)))
    }

    /// e^x as 2^n · p(r) with x = n·ln2 + r, |r| ≤ ln2/2 and p the degree-6 Taylor polynomial
    /// (relative error < 4e-7); x is clamped to [-87, 88].
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn exp(x: __m256) -> __m256 {
        let x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.0)), _mm256_set1_ps(88.0));
        let n = _mm256_round_ps(
            _mm256_mul_ps(x, _mm256_set1_ps(std::f32::consts::LOG2_E)),
            _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC,
        );
        let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693_145_75), x);
        let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(1.428_606_8e-6), r);
        let mut p = _mm256_set1_ps(1.0 / 720.0);
        for c in [1.0 / 120.0, 1.0 / 24.0, 1.0 / 6.0, 0.5, 1.0, 1.0] {
            p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(c));
        }
        let shift = _mm256_slli_epi32(_mm256_cvtps_epi32(n), 23);
        _mm256_castsi256_ps(_mm256_add_epi32(_mm256_castps_si256(p), shift))
    }

    /// Dot product of 64-float chunks: one accumulator, chunks in order, then a fixed reduction.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn dot(q: *const f32, k: *const f32, hd: usize) -> f32 {
        let mut acc = _mm256_setzero_ps();
        for i in (0..hd).step_by(8) {
            acc = _mm256_fmadd_ps(_mm256_loadu_ps(q.add(i)), _mm256_loadu_ps(k.add(i)), acc);
        }
        hsum(acc)
    }

    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn swiglu(g: &mut [f32], u: &[f32]) {
        let n = g.len();
        let (gp, up) = (g.as_mut_ptr(), u.as_ptr());
        let (one, zero) = (_mm256_set1_ps(1.0), _mm256_setzero_ps());
        let mut i = 0;
        while i + 8 <= n {
            let x = _mm256_loadu_ps(gp.add(i));
            let silu = _mm256_div_ps(x, _mm256_add_ps(one, exp(_mm256_sub_ps(zero, x))));
            _mm256_storeu_ps(gp.add(i), _mm256_mul_ps(silu, _mm256_loadu_ps(up.add(i))));
            i += 8;
        }
        for i in i..n {
            let x = _mm256_set1_ps(*gp.add(i));
            let silu = _mm256_div_ps(x, _mm256_add_ps(one, exp(_mm256_sub_ps(zero, x))));
            *gp.add(i) = _mm256_cvtss_f32(silu) * *up.add(i);
        }
    }

    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn attend(
        q: &[f32],
        k: &[f32],
        v: &[f32],
        span: usize,
        scale: f32,
        scores: &mut [f32],
        out: &mut [f32],
    ) {
        let hd = q.len();
        let (qp, kp, vp, sp) = (q.as_ptr(), k.as_ptr(), v.as_ptr(), scores.as_mut_ptr());
        // Four keys at a time keep four independent fma chains in flight; each key's own sequence
        // of operations is the same as for a lone key.
        let mut p = 0;
        while p + 4 <= span {
            let mut acc = [_mm256_setzero_ps(); 4];
            for i in (0..hd).step_by(8) {
                let qv = _mm256_loadu_ps(qp.add(i));
                for (j, a) in acc.iter_mut().enumerate() {
                    *a = _mm256_fmadd_ps(qv, _mm256_loadu_ps(kp.add((p + j) * hd + i)), *a);
                }
            }
            for (j, a) in acc.iter().enumerate() {
                *sp.add(p + j) = hsum(*a) * scale;
            }
            p += 4;
        }
        for p in p..span {
            *sp.add(p) = dot(qp, kp.add(p * hd), hd) * scale;
        }

        let mut mv = _mm256_set1_ps(f32::NEG_INFINITY);
        let mut p = 0;
        while p + 8 <= span {
            mv = _mm256_max_ps(mv, _mm256_loadu_ps(sp.add(p)));
            p += 8;
        }
        let mut max = hmax(mv);
        for p in p..span {
            max = max.max(*sp.add(p));
        }
        let (maxv, mut sumv, mut sum) = (_mm256_set1_ps(max), _mm256_setzero_ps(), 0f32);
        let mut p = 0;
        while p + 8 <= span {
            let e = exp(_mm256_sub_ps(_mm256_loadu_ps(sp.add(p)), maxv));
            _mm256_storeu_ps(sp.add(p), e);
            sumv = _mm256_add_ps(sumv, e);
            p += 8;
        }
        for p in p..span {
            let e = _mm256_cvtss_f32(exp(_mm256_set1_ps(*sp.add(p) - max)));
            *sp.add(p) = e;
            sum += e;
        }
        let inv = _mm256_set1_ps(1.0 / (hsum(sumv) + sum));

        for c in (0..hd).step_by(64) {
            let mut acc = [_mm256_setzero_ps(); 8];
            for p in 0..span {
                let w = _mm256_set1_ps(*sp.add(p));
                let row = vp.add(p * hd + c);
                for (i, a) in acc.iter_mut().enumerate() {
                    *a = _mm256_fmadd_ps(w, _mm256_loadu_ps(row.add(8 * i)), *a);
                }
            }
            for (i, a) in acc.iter().enumerate() {
                _mm256_storeu_ps(out.as_mut_ptr().add(c + 8 * i), _mm256_mul_ps(*a, inv));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simd_swiglu_matches_scalar() {
        let g: Vec<f32> = (0..203).map(|i| (i as f32 - 100.0) * 0.37).collect();
        let u: Vec<f32> = (0..203).map(|i| 1.0 - i as f32 * 0.01).collect();
        let mut fast = g.clone();
        swiglu(&mut fast, &u);
        for ((f, &x), &y) in fast.iter().zip(&g).zip(&u) {
            let exact = x / (1.0 + (-x).exp()) * y;
            assert!((f - exact).abs() <= 1e-5 * (1.0 + exact.abs()), "{x}: {f} vs {exact}");
        }
    }

    #[test]
    fn simd_attention_matches_scalar() {
        let mut seed = 1u64;
        let mut rnd = || {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((seed >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        };
        for (hd, span) in [(64, 1), (64, 3), (64, 13), (128, 40), (64, 300)] {
            let q: Vec<f32> = (0..hd).map(|_| rnd() * 3.0).collect();
            let k: Vec<f32> = (0..hd * span).map(|_| rnd() * 3.0).collect();
            let v: Vec<f32> = (0..hd * span).map(|_| rnd()).collect();
            let mut scores = Vec::new();
            let (mut fast, mut slow) = (vec![0f32; hd], vec![0f32; hd]);
            attend(&q, &k, &v, span, 0.125, &mut scores, &mut fast);
            attend_with(&q, &k, &v, span, 0.125, &mut scores, &mut slow, false);
            for (a, b) in fast.iter().zip(&slow) {
                assert!((a - b).abs() < 1e-5, "hd {hd} span {span}: {a} vs {b}");
            }
        }
    }
}
