//! Vector arithmetic shared by the embedder and the vector index.

/// Dot product of two vectors (over the shorter length). Uses AVX-512 or AVX2+FMA when the CPU has
/// them (detected at run time; the detection is cached by the standard library), with four
/// independent accumulators so the multiply-adds overlap; elsewhere a portable loop.
#[inline]
#[allow(unsafe_code)]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU supports AVX-512F (checked above).
            return unsafe { x86::dot_avx512(a, b) };
        }
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            // SAFETY: the CPU supports AVX2 and FMA (checked above).
            return unsafe { x86::dot_avx2(a, b) };
        }
    }
    dot_portable(a, b)
}

/// Eight independent accumulators, so the compiler can keep them in SIMD lanes (float addition is
/// not associative, so a single running sum would not vectorise).
fn dot_portable(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    let mut sum: f32 = acc.iter().sum();
    for (x, y) in ra.iter().zip(rb) {
        sum += x * y;
    }
    sum
}

#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod x86 {
    use std::arch::x86_64::*;

    /// # Safety
    /// The CPU must support AVX-512F.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn dot_avx512(a: &[f32], b: &[f32]) -> f32 {
        let n = a.len().min(b.len());
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        let mut acc = [_mm512_setzero_ps(); 4];
        let mut i = 0;
        // SAFETY: every load reads 16 floats at i < i + 16 <= n, inside both slices.
        unsafe {
            while i + 64 <= n {
                for (j, a_) in acc.iter_mut().enumerate() {
                    let o = i + 16 * j;
                    *a_ = _mm512_fmadd_ps(_mm512_loadu_ps(pa.add(o)), _mm512_loadu_ps(pb.add(o)), *a_);
                }
                i += 64;
            }
            while i + 16 <= n {
                acc[0] = _mm512_fmadd_ps(_mm512_loadu_ps(pa.add(i)), _mm512_loadu_ps(pb.add(i)), acc[0]);
                i += 16;
            }
        }
        let sum = _mm512_add_ps(_mm512_add_ps(acc[0], acc[1]), _mm512_add_ps(acc[2], acc[3]));
        let mut s = _mm512_reduce_add_ps(sum);
        for k in i..n {
            s += a[k] * b[k];
        }
        s
    }

    /// # Safety
    /// The CPU must support AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn dot_avx2(a: &[f32], b: &[f32]) -> f32 {
        let n = a.len().min(b.len());
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        let mut acc = [_mm256_setzero_ps(); 4];
        let mut i = 0;
        // SAFETY: every load reads 8 floats at i < i + 8 <= n, inside both slices.
        unsafe {
            while i + 32 <= n {
                for (j, a_) in acc.iter_mut().enumerate() {
                    let o = i + 8 * j;
                    *a_ = _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(o)), _mm256_loadu_ps(pb.add(o)), *a_);
                }
                i += 32;
            }
            while i + 8 <= n {
                acc[0] = _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i)), acc[0]);
                i += 8;
            }
        }
        let v = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
        let mut lanes = [0f32; 8];
        // SAFETY: `lanes` holds 8 floats.
        unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), v) };
        let mut s: f32 = lanes.iter().sum();
        for k in i..n {
            s += a[k] * b[k];
        }
        s
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn dot_matches_naive_for_odd_lengths() {
        for n in [0, 1, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65, 384, 385] {
            let a: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin()).collect();
            let b: Vec<f32> = (0..n).map(|i| (i as f32 * 0.11).cos()).collect();
            let naive: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
            assert!((super::dot(&a, &b) - naive).abs() < 1e-4, "n={n}");
            assert!((super::dot_portable(&a, &b) - naive).abs() < 1e-4, "n={n}");
            #[cfg(target_arch = "x86_64")]
            #[allow(unsafe_code)]
            {
                if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
                    // SAFETY: features checked.
                    let v = unsafe { super::x86::dot_avx2(&a, &b) };
                    assert!((v - naive).abs() < 1e-4, "avx2 n={n}");
                }
                if std::is_x86_feature_detected!("avx512f") {
                    // SAFETY: features checked.
                    let v = unsafe { super::x86::dot_avx512(&a, &b) };
                    assert!((v - naive).abs() < 1e-4, "avx512 n={n}");
                }
            }
        }
    }
}
