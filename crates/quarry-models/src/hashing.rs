//! A deterministic, model-free embedder for fast tests: words are hashed into buckets (feature
//! hashing) and the bag is L2-normalised. Texts sharing words get positive cosine similarity.

use quarry_core::{Embedder, TokenCounter};

pub struct HashEmbedder {
    dim: usize,
    id: String,
}

impl HashEmbedder {
    pub fn new(dim: usize) -> Self {
        HashEmbedder {
            dim: dim.max(1),
            id: format!("hash-{dim}"),
        }
    }

    fn vector(&self, text: &str) -> Vec<f32> {
        let mut v = vec![0f32; self.dim];
        for w in words(text) {
            // FNV-1a: stable across runs and platforms.
            let h = w
                .bytes()
                .fold(0xcbf29ce484222325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100000001b3));
            let sign = if h >> 63 == 0 { 1.0 } else { -1.0 };
            v[(h % self.dim as u64) as usize] += sign;
        }
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        if norm > 0.0 {
            v.iter_mut().for_each(|x| *x /= norm);
        }
        v
    }
}

fn words(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
}

impl TokenCounter for HashEmbedder {
    fn count_tokens(&self, text: &str) -> usize {
        text.split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
            .count()
            + text.chars().filter(|c| c.is_ascii_punctuation()).count()
    }
}

impl Embedder for HashEmbedder {
    fn model_id(&self) -> &str {
        &self.id
    }
    fn dimension(&self) -> usize {
        self.dim
    }
    fn max_tokens(&self) -> usize {
        usize::MAX
    }
    fn embed(&self, texts: &[&str]) -> quarry_core::Result<Vec<Vec<f32>>> {
        Ok(texts.iter().map(|t| self.vector(t)).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn similar_texts_are_closer_and_vectors_are_unit() {
        let e = HashEmbedder::new(64);
        let v = e
            .embed(&["red apple pie", "apple pie recipe", "quantum chromodynamics"])
            .unwrap();
        let dot = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>();
        assert!((dot(&v[0], &v[0]) - 1.0).abs() < 1e-5);
        assert!(dot(&v[0], &v[1]) > dot(&v[0], &v[2]));
        assert_eq!(e.embed(&["red apple pie"]).unwrap()[0], v[0]);
    }
}
