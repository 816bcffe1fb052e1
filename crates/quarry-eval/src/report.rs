//! Human-readable summaries: plain-text tables for the terminal and Markdown for pull requests and wikis.
//! (The self-contained HTML report lives in [`crate::html`].)

use std::fmt::Write;

use crate::compare::Comparison;
use crate::measure::Evaluation;

/// Formats a signed difference: `+0.0123` / `-0.0040`.
pub fn signed(x: f64) -> String {
    if x.is_nan() {
        "n/a".into()
    } else {
        format!("{x:+.4}")
    }
}

/// A p-value as it should be read: the smallest value the test can give is 1/(permutations+1).
pub fn p_value(p: f64) -> String {
    if p < 0.001 {
        "<0.001".into()
    } else {
        format!("{p:.3}")
    }
}

/// A terminal table of a comparison of B (candidate) against A (baseline).
pub fn comparison_text(c: &Comparison, a: &str, b: &str) -> String {
    let mut s = String::new();
    let level = (c.options.confidence * 100.0).round();
    let _ = writeln!(
        s,
        "B = {b}\nA = {a}\npaired over {} queries ({} only in A, {} only in B); {} bootstrap resamples, {} permutations, seed {}",
        c.metrics.first().map_or(0, |m| m.queries),
        c.only_in_a,
        c.only_in_b,
        c.options.bootstrap_samples,
        c.options.permutations,
        c.options.seed
    );
    let _ = writeln!(
        s,
        "{:<12} {:>8} {:>8} {:>9}  {:<22} {:>7}  {:>15}",
        "metric",
        "A",
        "B",
        "B-A",
        format!("{level}% CI"),
        "p",
        "wins/losses/ties"
    );
    for m in &c.metrics {
        let _ = writeln!(
            s,
            "{:<12} {:>8.4} {:>8.4} {:>9}  {:<22} {:>7}  {:>15}",
            m.metric,
            m.mean_a,
            m.mean_b,
            signed(m.delta),
            format!("[{}, {}]", signed(m.ci_low), signed(m.ci_high)),
            p_value(m.p_value),
            format!("{}/{}/{}", m.wins, m.losses, m.ties)
        );
    }
    if let (Some(first), false) = (c.metrics.first(), c.most_changed.is_empty()) {
        let _ = writeln!(s, "queries that changed most on {}:", first.metric);
        for q in &c.most_changed {
            let _ = writeln!(s, "  {:<16} {:.4} -> {:.4} ({})", q.query, q.a, q.b, signed(q.b - q.a));
        }
    }
    s
}

/// The same comparison as a Markdown section.
pub fn comparison_markdown(c: &Comparison, a: &str, b: &str) -> String {
    let mut s = String::new();
    let level = (c.options.confidence * 100.0).round();
    let _ = writeln!(s, "## {b} vs {a}\n");
    let _ = writeln!(
        s,
        "Paired over {} queries ({} only in A, {} only in B). Confidence intervals: paired bootstrap of the mean \
         difference, {} resamples; p: two-sided paired randomization test, {} permutations; seed {}.\n",
        c.metrics.first().map_or(0, |m| m.queries),
        c.only_in_a,
        c.only_in_b,
        c.options.bootstrap_samples,
        c.options.permutations,
        c.options.seed
    );
    let _ = writeln!(s, "| metric | A | B | B − A | {level}% CI | p | wins / losses / ties |");
    let _ = writeln!(s, "|---|---:|---:|---:|---|---:|---|");
    for m in &c.metrics {
        let sig = if m.ci_low > 0.0 || m.ci_high < 0.0 { " **" } else { "" };
        let _ = writeln!(
            s,
            "| {} | {:.4} | {:.4} | {}{sig} | [{}, {}] | {} | {} / {} / {} |",
            m.metric,
            m.mean_a,
            m.mean_b,
            signed(m.delta),
            signed(m.ci_low),
            signed(m.ci_high),
            p_value(m.p_value),
            m.wins,
            m.losses,
            m.ties
        );
    }
    if let (Some(first), false) = (c.metrics.first(), c.most_changed.is_empty()) {
        let _ = writeln!(s, "\nQueries that changed most on {}:\n", first.metric);
        let _ = writeln!(s, "| query | A | B | B − A |\n|---|---:|---:|---:|");
        for q in &c.most_changed {
            let _ = writeln!(s, "| {} | {:.4} | {:.4} | {} |", q.query, q.a, q.b, signed(q.b - q.a));
        }
    }
    s
}

/// Means of an evaluation, one measure per line.
pub fn evaluation_text(e: &Evaluation) -> String {
    let mut s = String::new();
    for (m, v) in e.measures.iter().zip(&e.mean) {
        let _ = write!(s, "  {m} {v:.4}");
    }
    s.push('\n');
    s
}

/// An answer evaluation as a Markdown summary: means with their item counts, judge work, and the items that
/// failed worst.
pub fn answers_markdown(title: &str, r: &crate::answers::AnswerReport) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "## {title}\n");
    let _ = writeln!(
        s,
        "{} items; generator `{}`; judge `{}`; {} abstained; {} errors.",
        r.items.len(),
        r.generator,
        r.judge.as_deref().unwrap_or("none"),
        r.abstained,
        r.errors
    );
    if let Some(j) = &r.judge_stats {
        let _ = writeln!(
            s,
            "Judge calls: {} ({} from cache); unreadable judge outputs: {} (left out of the means).",
            j.calls, j.cached, j.unparsable
        );
    }
    let _ = writeln!(s, "\n| metric | mean | items |\n|---|---:|---:|");
    for m in &r.metrics {
        let (v, n) = r.means[m];
        let _ = writeln!(s, "| {m} | {v:.3} | {n} |");
    }
    let failed: Vec<&crate::answers::ItemResult> = r.items.iter().filter(|i| i.error.is_some()).take(5).collect();
    if !failed.is_empty() {
        let _ = writeln!(s, "\nErrors:\n");
        for f in failed {
            let _ = writeln!(s, "- `{}`: {}", f.id, f.error.as_deref().unwrap_or_default());
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compare::{compare, CompareOptions, ScoreTable};

    #[test]
    fn markdown_shows_every_metric_and_marks_intervals_that_exclude_zero() {
        let mut a = ScoreTable {
            metrics: vec!["ndcg@10".into(), "recall@10".into()],
            ..Default::default()
        };
        let mut b = a.clone();
        for i in 0..40 {
            let x = f64::from(i) / 40.0;
            a.rows.insert(format!("q{i}"), vec![x, 0.5]);
            b.rows.insert(format!("q{i}"), vec![(x + 0.2).min(1.0), 0.5]);
        }
        let opts = CompareOptions {
            bootstrap_samples: 500,
            permutations: 500,
            ..Default::default()
        };
        let c = compare(&a, &b, &opts, 3);
        let md = comparison_markdown(&c, "base", "new");
        assert!(md.contains("## new vs base"), "{md}");
        let ndcg = md.lines().find(|l| l.starts_with("| ndcg@10")).unwrap();
        assert!(ndcg.contains("**"), "a clear gain is marked: {ndcg}");
        let recall = md.lines().find(|l| l.starts_with("| recall@10")).unwrap();
        assert!(!recall.contains("**") && recall.contains("+0.0000"), "{recall}");
        let changed = md
            .lines()
            .filter(|l| l.len() > 3 && l.starts_with("| q") && l.as_bytes()[3].is_ascii_digit());
        assert_eq!(changed.count(), 3, "three most-changed queries: {md}");
        let text = comparison_text(&c, "base", "new");
        assert!(text.contains("paired over 40 queries"), "{text}");
    }
}
