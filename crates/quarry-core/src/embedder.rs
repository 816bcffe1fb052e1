//! Text → vectors, and text → token counts.

use crate::error::Result;

/// Counts tokens the way a model will see them, so chunk sizes are measured in the model's units.
pub trait TokenCounter: Send + Sync {
    fn count_tokens(&self, text: &str) -> usize;
}

/// A sentence-embedding model. Vectors are L2-normalised, so dot product = cosine similarity.
///
/// Implementations are synchronous and may use every core; callers in async code run them on a
/// blocking thread.
pub trait Embedder: TokenCounter {
    /// Identifies the model and its weights (e.g. `all-MiniLM-L6-v2@<sha256 prefix>`), so indexes
    /// built with different weights are never mixed.
    fn model_id(&self) -> &str;
    fn dimension(&self) -> usize;
    /// Longest input in tokens; longer texts are truncated.
    fn max_tokens(&self) -> usize;
    /// Embeds documents/passages.
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>>;
    /// Embeds a search query. Symmetric models use the same path as `embed`.
    fn embed_query(&self, text: &str) -> Result<Vec<f32>> {
        let mut v = self.embed(&[text])?;
        v.pop().ok_or_else(|| crate::Error::Model {
            model: self.model_id().to_string(),
            message: "no output".into(),
        })
    }
}

/// Rescores (query, passage) pairs jointly, e.g. a cross-encoder: slower than comparing vectors, so it runs
/// on the first stage's top candidates only.
pub trait Reranker: Send + Sync {
    /// Identifies the model and its weights.
    fn model_id(&self) -> &str;
    /// One relevance score per passage (higher is more relevant), in the passages' order.
    fn score(&self, query: &str, passages: &[&str]) -> Result<Vec<f32>>;
}
