//! Cheap answer-quality proxies that need no model: exact match and token F1 (SQuAD's definitions, after
//! SQuAD's normalisation), and ROUGE-L (longest common subsequence of tokens, F-measure with β = 1, as the
//! `rouge-score` package reports `rougeL`).
//!
//! Normalisation (SQuAD v1.1 evaluation script): lower-case, drop punctuation, drop the articles a/an/the,
//! collapse whitespace. ROUGE-L tokens: lower-cased runs of letters and digits (rouge-score's tokenizer,
//! without stemming).

/// SQuAD normalisation, returned as tokens.
pub fn normalize_tokens(s: &str) -> Vec<String> {
    let lowered = s.to_lowercase();
    let no_punct: String = lowered
        .chars()
        .filter(|c| !c.is_ascii_punctuation() && !is_unicode_punctuation(*c))
        .collect();
    no_punct
        .split_whitespace()
        .filter(|t| !matches!(*t, "a" | "an" | "the"))
        .map(str::to_string)
        .collect()
}

fn is_unicode_punctuation(c: char) -> bool {
    // General punctuation block and a few common symbols that the SQuAD script's string.punctuation misses
    // but that tokenise the same way in practice (curly quotes, dashes, ellipsis).
    matches!(c, '\u{2010}'..='\u{2027}' | '\u{2030}'..='\u{205E}' | '«' | '»' | '¿' | '¡')
}

/// 1.0 when the normalised strings are equal.
pub fn exact_match(prediction: &str, gold: &str) -> f64 {
    f64::from(u8::from(normalize_tokens(prediction) == normalize_tokens(gold)))
}

/// Harmonic mean of token precision and recall, counting each token as often as it occurs in both.
/// Two empty strings score 1; one empty string scores 0.
pub fn token_f1(prediction: &str, gold: &str) -> f64 {
    let p = normalize_tokens(prediction);
    let g = normalize_tokens(gold);
    if p.is_empty() || g.is_empty() {
        return f64::from(u8::from(p.is_empty() && g.is_empty()));
    }
    let mut counts: std::collections::HashMap<&str, i64> = std::collections::HashMap::new();
    for t in &g {
        *counts.entry(t.as_str()).or_default() += 1;
    }
    let mut common = 0usize;
    for t in &p {
        if let Some(c) = counts.get_mut(t.as_str()) {
            if *c > 0 {
                *c -= 1;
                common += 1;
            }
        }
    }
    if common == 0 {
        return 0.0;
    }
    let precision = common as f64 / p.len() as f64;
    let recall = common as f64 / g.len() as f64;
    2.0 * precision * recall / (precision + recall)
}

/// rouge-score's default tokens: lower-case, non-alphanumerics become spaces.
fn rouge_tokens(s: &str) -> Vec<String> {
    let lowered: String = s
        .to_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { ' ' })
        .collect();
    lowered.split_whitespace().map(str::to_string).collect()
}

/// Length of the longest common subsequence (O(n·m) time, O(m) memory).
pub fn lcs_len<T: PartialEq>(a: &[T], b: &[T]) -> usize {
    let mut prev = vec![0usize; b.len() + 1];
    let mut cur = vec![0usize; b.len() + 1];
    for x in a {
        for (j, y) in b.iter().enumerate() {
            cur[j + 1] = if x == y { prev[j] + 1 } else { cur[j].max(prev[j + 1]) };
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

/// ROUGE-L F-measure of a prediction against one reference.
pub fn rouge_l(prediction: &str, gold: &str) -> f64 {
    let p = rouge_tokens(prediction);
    let g = rouge_tokens(gold);
    if p.is_empty() || g.is_empty() {
        return 0.0;
    }
    let l = lcs_len(&p, &g) as f64;
    if l == 0.0 {
        return 0.0;
    }
    let precision = l / p.len() as f64;
    let recall = l / g.len() as f64;
    2.0 * precision * recall / (precision + recall)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn squad_normalisation_and_scores() {
        assert_eq!(normalize_tokens("The  Cat's hat, an apple!"), ["cats", "hat", "apple"]);
        assert_eq!(exact_match("The answer.", "answer"), 1.0);
        assert_eq!(exact_match("answers", "answer"), 0.0);
        // prediction: [vitamin, c, deficiency, causes, scurvy]; gold: [scurvy, is, caused, by, vitamin, c, deficiency]
        let f1 = token_f1(
            "Vitamin C deficiency causes scurvy.",
            "Scurvy is caused by vitamin C deficiency",
        );
        let (p, r) = (4.0 / 5.0, 4.0 / 7.0);
        assert!((f1 - 2.0 * p * r / (p + r)).abs() < 1e-12, "{f1}");
        assert_eq!(token_f1("", ""), 1.0);
        assert_eq!(token_f1("x", ""), 0.0);
        // Repeated tokens count only as often as the gold has them.
        let f1 = token_f1("yes yes yes", "yes no");
        let (p, r) = (1.0 / 3.0, 1.0 / 2.0);
        assert!((f1 - 2.0 * p * r / (p + r)).abs() < 1e-12);
    }

    #[test]
    fn rouge_l_uses_the_longest_common_subsequence() {
        assert_eq!(lcs_len(&[1, 2, 3, 4, 5], &[2, 4, 5, 1]), 3);
        // "police killed the gunman" vs "police kill the gunman": LCS = police the gunman (3 of 4 each).
        let r = rouge_l("police killed the gunman", "police kill the gunman");
        assert!((r - 0.75).abs() < 1e-12, "{r}");
        assert_eq!(rouge_l("", "x"), 0.0);
        assert_eq!(rouge_l("A-B c", "a b C"), 1.0);
    }
}
