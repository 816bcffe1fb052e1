//! Comparing two systems on the same queries: per-metric mean difference with a paired bootstrap confidence
//! interval and a paired randomization (sign-flip) test, per-query wins/losses/ties, the queries that changed
//! most, and a regression gate (`ndcg@10<-0.01`) for CI.
//!
//! Both tests resample *queries*: the unit of variation in an IR experiment is the topic (Smucker, Allan and
//! Carterette, "A comparison of statistical significance tests for information retrieval evaluation", CIKM
//! 2007, recommend the randomization test; the bootstrap interval is the usual companion).

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::Serialize;

/// Per-query values of named metrics for one system: the common currency of retrieval runs (scored
/// against qrels) and answer evaluations (scored by the answer metrics).
#[derive(Debug, Clone, Default, Serialize)]
pub struct ScoreTable {
    pub metrics: Vec<String>,
    /// query id → one value per metric (NaN where a metric does not apply to that query).
    pub rows: BTreeMap<String, Vec<f64>>,
}

impl ScoreTable {
    pub fn from_evaluation(e: &crate::measure::Evaluation) -> ScoreTable {
        ScoreTable {
            metrics: e.measures.iter().map(|m| m.to_string()).collect(),
            rows: e.per_query.clone(),
        }
    }

    fn column(&self, metric: &str) -> Option<usize> {
        self.metrics.iter().position(|m| m == metric)
    }

    pub fn mean(&self, metric: &str) -> Option<f64> {
        let i = self.column(metric)?;
        let v: Vec<f64> = self.rows.values().map(|r| r[i]).filter(|x| !x.is_nan()).collect();
        (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
    }
}

/// SplitMix64: a small, fast, seedable generator; resampling needs reproducibility, not cryptography.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in 0..n (n > 0), by Lemire's multiply-shift (bias below 2^-32 for the n used here).
    pub fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }

    pub fn coin(&mut self) -> bool {
        self.next_u64() >> 63 == 1
    }
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct CompareOptions {
    pub bootstrap_samples: usize,
    pub permutations: usize,
    /// Two-sided confidence level of the interval, e.g. 0.95.
    pub confidence: f64,
    pub seed: u64,
    /// Differences smaller than this count as ties.
    pub tie_epsilon: f64,
}

impl Default for CompareOptions {
    fn default() -> Self {
        CompareOptions {
            bootstrap_samples: 10_000,
            permutations: 10_000,
            confidence: 0.95,
            seed: 42,
            tie_epsilon: 1e-9,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct MetricComparison {
    pub metric: String,
    pub queries: usize,
    pub mean_a: f64,
    pub mean_b: f64,
    /// mean(B − A)
    pub delta: f64,
    pub ci_low: f64,
    pub ci_high: f64,
    /// Two-sided p-value of the paired randomization test.
    pub p_value: f64,
    pub wins: usize,
    pub losses: usize,
    pub ties: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct QueryChange {
    pub query: String,
    pub a: f64,
    pub b: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    pub options: CompareOptions,
    pub metrics: Vec<MetricComparison>,
    /// Queries present in only one of the two tables (not compared).
    pub only_in_a: usize,
    pub only_in_b: usize,
    /// For the first metric: the queries with the largest |B − A|, biggest first.
    pub most_changed: Vec<QueryChange>,
}

/// Compares B against A on every metric the two tables share, over the queries both contain.
pub fn compare(a: &ScoreTable, b: &ScoreTable, opts: &CompareOptions, most_changed: usize) -> Comparison {
    let common: Vec<&String> = a.rows.keys().filter(|q| b.rows.contains_key(*q)).collect();
    let only_in_a = a.rows.len() - common.len();
    let only_in_b = b.rows.len() - common.len();
    let mut metrics = Vec::new();
    let mut changed = Vec::new();
    for (ia, name) in a.metrics.iter().enumerate() {
        let Some(ib) = b.column(name) else { continue };
        let pairs: Vec<(&String, f64, f64)> = common
            .iter()
            .map(|q| (*q, a.rows[*q][ia], b.rows[*q][ib]))
            .filter(|(_, x, y)| !x.is_nan() && !y.is_nan())
            .collect();
        if pairs.is_empty() {
            continue;
        }
        let diffs: Vec<f64> = pairs.iter().map(|(_, x, y)| y - x).collect();
        let n = diffs.len() as f64;
        let (ci_low, ci_high) = bootstrap_ci(&diffs, opts);
        let mc = MetricComparison {
            metric: name.clone(),
            queries: diffs.len(),
            mean_a: pairs.iter().map(|p| p.1).sum::<f64>() / n,
            mean_b: pairs.iter().map(|p| p.2).sum::<f64>() / n,
            delta: diffs.iter().sum::<f64>() / n,
            ci_low,
            ci_high,
            p_value: randomization_p(&diffs, opts),
            wins: diffs.iter().filter(|d| **d > opts.tie_epsilon).count(),
            losses: diffs.iter().filter(|d| **d < -opts.tie_epsilon).count(),
            ties: diffs.iter().filter(|d| d.abs() <= opts.tie_epsilon).count(),
        };
        if metrics.is_empty() {
            let mut c: Vec<QueryChange> = pairs
                .iter()
                .filter(|(_, x, y)| (y - x).abs() > opts.tie_epsilon)
                .map(|(q, x, y)| QueryChange {
                    query: (*q).clone(),
                    a: *x,
                    b: *y,
                })
                .collect();
            c.sort_by(|p, q| {
                (q.b - q.a)
                    .abs()
                    .total_cmp(&(p.b - p.a).abs())
                    .then(p.query.cmp(&q.query))
            });
            c.truncate(most_changed);
            changed = c;
        }
        metrics.push(mc);
    }
    Comparison {
        options: *opts,
        metrics,
        only_in_a,
        only_in_b,
        most_changed: changed,
    }
}

/// Percentile interval of the mean difference over `bootstrap_samples` resamples of the queries.
pub fn bootstrap_ci(diffs: &[f64], opts: &CompareOptions) -> (f64, f64) {
    let n = diffs.len();
    if n == 0 || opts.bootstrap_samples == 0 {
        return (f64::NAN, f64::NAN);
    }
    let mut rng = SplitMix64::new(opts.seed);
    let mut means: Vec<f64> = (0..opts.bootstrap_samples)
        .map(|_| (0..n).map(|_| diffs[rng.below(n)]).sum::<f64>() / n as f64)
        .collect();
    means.sort_by(f64::total_cmp);
    let alpha = (1.0 - opts.confidence) / 2.0;
    let at = |p: f64| {
        let i = (p * (means.len() - 1) as f64).round() as usize;
        means[i.min(means.len() - 1)]
    };
    (at(alpha), at(1.0 - alpha))
}

/// Two-sided paired randomization test: under the null hypothesis the labels A and B of each query are
/// exchangeable, so each difference's sign is flipped at random. p = (extreme + 1) / (permutations + 1).
pub fn randomization_p(diffs: &[f64], opts: &CompareOptions) -> f64 {
    let n = diffs.len();
    if n == 0 {
        return 1.0;
    }
    let observed = diffs.iter().sum::<f64>().abs();
    if observed == 0.0 {
        return 1.0;
    }
    let mut rng = SplitMix64::new(opts.seed ^ 0x5EED);
    let mut extreme = 0usize;
    for _ in 0..opts.permutations {
        let s: f64 = diffs.iter().map(|d| if rng.coin() { *d } else { -*d }).sum();
        // A small tolerance keeps exact ties (e.g. the identity permutation) counted as extreme.
        if s.abs() >= observed - 1e-12 {
            extreme += 1;
        }
    }
    (extreme + 1) as f64 / (opts.permutations + 1) as f64
}

/// A regression gate on the mean difference B − A of one metric, e.g. `ndcg@10<-0.01` (fail when nDCG@10 drops
/// by more than 0.01) or `faithfulness<=-0.05`.
#[derive(Debug, Clone, PartialEq)]
pub struct Gate {
    pub metric: String,
    pub op: GateOp,
    pub threshold: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GateOp {
    Lt,
    Le,
    Gt,
    Ge,
}

impl FromStr for Gate {
    type Err = String;

    fn from_str(s: &str) -> Result<Gate, String> {
        let s = s.trim();
        let (pos, op, len) = ["<=", ">=", "<", ">"]
            .iter()
            .find_map(|op| s.find(op).map(|p| (p, *op, op.len())))
            .ok_or_else(|| {
                format!("gate {s:?}: expected METRIC<VALUE, METRIC<=VALUE, METRIC>VALUE or METRIC>=VALUE")
            })?;
        let metric = s[..pos].trim();
        if metric.is_empty() {
            return Err(format!("gate {s:?}: no metric before {op:?}"));
        }
        let threshold: f64 = s[pos + len..]
            .trim()
            .parse()
            .map_err(|_| format!("gate {s:?}: {:?} is not a number", s[pos + len..].trim()))?;
        let op = match op {
            "<=" => GateOp::Le,
            ">=" => GateOp::Ge,
            "<" => GateOp::Lt,
            _ => GateOp::Gt,
        };
        // Accept measure spellings such as "nDCG@10" or "precision@10" for retrieval measures.
        let metric = metric
            .parse::<crate::measure::Measure>()
            .map(|m| m.to_string())
            .unwrap_or_else(|_| metric.to_string());
        Ok(Gate { metric, op, threshold })
    }
}

impl fmt::Display for Gate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = match self.op {
            GateOp::Lt => "<",
            GateOp::Le => "<=",
            GateOp::Gt => ">",
            GateOp::Ge => ">=",
        };
        write!(f, "{}{op}{}", self.metric, self.threshold)
    }
}

/// The outcome of one gate: `Ok(())` when it passes, otherwise a message saying why it failed.
pub fn check_gate(c: &Comparison, gate: &Gate) -> Result<(), String> {
    let Some(m) = c.metrics.iter().find(|m| m.metric == gate.metric) else {
        let known: Vec<&str> = c.metrics.iter().map(|m| m.metric.as_str()).collect();
        return Err(format!(
            "gate {gate}: metric {:?} is not in the comparison (compared: {})",
            gate.metric,
            known.join(", ")
        ));
    };
    let fails = match gate.op {
        GateOp::Lt => m.delta < gate.threshold,
        GateOp::Le => m.delta <= gate.threshold,
        GateOp::Gt => m.delta > gate.threshold,
        GateOp::Ge => m.delta >= gate.threshold,
    };
    if fails {
        Err(format!(
            "gate {gate} failed: {} changed by {:+.4} ({:.4} → {:.4}; 95% CI [{:+.4}, {:+.4}], p = {:.4})",
            m.metric, m.delta, m.mean_a, m.mean_b, m.ci_low, m.ci_high, m.p_value
        ))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(values: &[(&str, f64)]) -> ScoreTable {
        ScoreTable {
            metrics: vec!["ndcg@10".into()],
            rows: values.iter().map(|(q, v)| (q.to_string(), vec![*v])).collect(),
        }
    }

    #[test]
    fn identical_systems_are_not_different() {
        let a = table(&[("1", 0.2), ("2", 0.5), ("3", 0.9)]);
        let c = compare(&a, &a, &CompareOptions::default(), 5);
        let m = &c.metrics[0];
        assert_eq!((m.delta, m.ci_low, m.ci_high, m.p_value), (0.0, 0.0, 0.0, 1.0));
        assert_eq!((m.wins, m.losses, m.ties), (0, 0, 3));
        assert!(c.most_changed.is_empty());
    }

    #[test]
    fn a_consistent_improvement_is_significant_and_a_coin_flip_is_not() {
        let n = 60;
        let a: Vec<(String, f64)> = (0..n).map(|i| (format!("q{i}"), 0.3 + 0.005 * i as f64)).collect();
        let b_better: Vec<(String, f64)> = a.iter().map(|(q, v)| (q.clone(), v + 0.1)).collect();
        let t = |v: &[(String, f64)]| ScoreTable {
            metrics: vec!["m".into()],
            rows: v.iter().map(|(q, x)| (q.clone(), vec![*x])).collect(),
        };
        let c = compare(&t(&a), &t(&b_better), &CompareOptions::default(), 3);
        let m = &c.metrics[0];
        assert!((m.delta - 0.1).abs() < 1e-9);
        assert!(m.p_value < 0.001, "{}", m.p_value);
        assert!(m.ci_low > 0.09 && m.ci_high < 0.11, "{} {}", m.ci_low, m.ci_high);
        assert_eq!(m.wins, n);
        // Alternating ±0.1: mean difference 0, not significant, interval straddles 0.
        let b_noise: Vec<(String, f64)> = a
            .iter()
            .enumerate()
            .map(|(i, (q, v))| (q.clone(), v + if i % 2 == 0 { 0.1 } else { -0.1 }))
            .collect();
        let c = compare(&t(&a), &t(&b_noise), &CompareOptions::default(), 3);
        let m = &c.metrics[0];
        assert!(m.p_value > 0.5, "{}", m.p_value);
        assert!(m.ci_low < 0.0 && m.ci_high > 0.0);
        assert_eq!((m.wins, m.losses), (30, 30));
        assert_eq!(c.most_changed.len(), 3);
    }

    #[test]
    fn randomization_p_matches_the_exact_test_on_a_small_case() {
        // Diffs 1, 2, 3: of the 8 sign patterns only +++ and --- reach |sum| = 6 → exact p = 2/8.
        let opts = CompareOptions {
            permutations: 200_000,
            ..CompareOptions::default()
        };
        let p = randomization_p(&[1.0, 2.0, 3.0], &opts);
        assert!((p - 0.25).abs() < 0.01, "{p}");
    }

    #[test]
    fn only_shared_queries_are_compared() {
        let a = table(&[("1", 0.2), ("2", 0.5)]);
        let b = table(&[("2", 0.7), ("3", 0.9)]);
        let c = compare(&a, &b, &CompareOptions::default(), 5);
        assert_eq!((c.only_in_a, c.only_in_b, c.metrics[0].queries), (1, 1, 1));
        assert!((c.metrics[0].delta - 0.2).abs() < 1e-12);
    }

    #[test]
    fn gates_parse_and_decide() {
        let g: Gate = "nDCG@10<-0.01".parse().unwrap();
        assert_eq!(g.metric, "ndcg@10");
        assert_eq!((g.op, g.threshold), (GateOp::Lt, -0.01));
        assert_eq!("faithfulness >= 0.5".parse::<Gate>().unwrap().op, GateOp::Ge);
        assert!("ndcg@10".parse::<Gate>().unwrap_err().contains("expected METRIC<VALUE"));
        assert!("ndcg@10<abc".parse::<Gate>().unwrap_err().contains("not a number"));
        let a = table(&[("1", 0.5), ("2", 0.5)]);
        let worse = table(&[("1", 0.45), ("2", 0.47)]);
        let c = compare(&a, &worse, &CompareOptions::default(), 5);
        let err = check_gate(&c, &g).unwrap_err();
        assert!(
            err.contains("gate ndcg@10<-0.01 failed: ndcg@10 changed by -0.0400"),
            "{err}"
        );
        assert!(check_gate(&c, &"ndcg@10<-0.05".parse().unwrap()).is_ok());
        assert!(check_gate(&c, &"mrr@10<0".parse().unwrap())
            .unwrap_err()
            .contains("not in the comparison"));
    }
}
