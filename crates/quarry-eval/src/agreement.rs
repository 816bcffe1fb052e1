//! How well automatic faithfulness verdicts agree with a person's: hand-labelled (statement, context) pairs,
//! compared with the LLM judge's verdicts and with Quarry's own citation verifier. Reported as raw agreement,
//! Cohen's κ (agreement beyond what the two label rates would give by chance) and the confusion counts.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// One labelled example. `label` is the person's verdict: is the statement supported by the contexts?
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Labelled {
    pub id: String,
    pub question: String,
    pub statement: String,
    pub contexts: Vec<String>,
    pub label: bool,
    /// Quarry's verifier verdict for this sentence, recorded when the answer was generated.
    #[serde(default)]
    pub verifier: Option<bool>,
    /// The LLM judge's verdict recorded with the example (re-computed when a judge is given).
    #[serde(default)]
    pub judge: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

pub fn load_labels(path: &Path) -> Result<Vec<Labelled>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::Unreadable {
        path: path.to_path_buf(),
        source: e,
    })?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|e| Error::Malformed {
                path: path.to_path_buf(),
                line: i + 1,
                message: format!("not a labelled example: {e}"),
            })
        })
        .collect()
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Agreement {
    /// Examples with a readable verdict.
    pub n: usize,
    /// Examples whose verdict could not be read (left out of everything else).
    pub unreadable: usize,
    pub accuracy: f64,
    pub kappa: f64,
    /// Verdict supported / label supported, etc.
    pub both_yes: usize,
    pub verdict_yes_label_no: usize,
    pub verdict_no_label_yes: usize,
    pub both_no: usize,
}

/// Agreement of `verdicts` with `labels` (same order).
pub fn agreement(labels: &[bool], verdicts: &[Option<bool>]) -> Agreement {
    let mut a = Agreement::default();
    for (l, v) in labels.iter().zip(verdicts) {
        match (v, l) {
            (None, _) => a.unreadable += 1,
            (Some(true), true) => a.both_yes += 1,
            (Some(true), false) => a.verdict_yes_label_no += 1,
            (Some(false), true) => a.verdict_no_label_yes += 1,
            (Some(false), false) => a.both_no += 1,
        }
    }
    a.n = a.both_yes + a.verdict_yes_label_no + a.verdict_no_label_yes + a.both_no;
    if a.n == 0 {
        a.accuracy = f64::NAN;
        a.kappa = f64::NAN;
        return a;
    }
    let n = a.n as f64;
    let po = (a.both_yes + a.both_no) as f64 / n;
    let verdict_yes = (a.both_yes + a.verdict_yes_label_no) as f64 / n;
    let label_yes = (a.both_yes + a.verdict_no_label_yes) as f64 / n;
    let pe = verdict_yes * label_yes + (1.0 - verdict_yes) * (1.0 - label_yes);
    a.accuracy = po;
    a.kappa = if (1.0 - pe).abs() < 1e-12 {
        f64::NAN
    } else {
        (po - pe) / (1.0 - pe)
    };
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kappa_matches_a_hand_computed_table() {
        // 20 yes/yes, 5 yes/no, 10 no/yes, 15 no/no (n = 50): po = 0.7, pe = 0.5·0.6 + 0.5·0.4 = 0.5, κ = 0.4.
        let mut labels = Vec::new();
        let mut verdicts = Vec::new();
        for (v, l, k) in [
            (true, true, 20),
            (true, false, 5),
            (false, true, 10),
            (false, false, 15),
        ] {
            for _ in 0..k {
                labels.push(l);
                verdicts.push(Some(v));
            }
        }
        labels.push(true);
        verdicts.push(None);
        let a = agreement(&labels, &verdicts);
        assert_eq!((a.n, a.unreadable), (50, 1));
        assert!((a.accuracy - 0.7).abs() < 1e-12);
        assert!((a.kappa - 0.4).abs() < 1e-12, "{}", a.kappa);
        // A verdict that always says yes agrees often but has κ = 0.
        let always = agreement(&[true, true, true, false], &[Some(true); 4]);
        assert!((always.accuracy - 0.75).abs() < 1e-12);
        assert!(always.kappa.abs() < 1e-12);
    }
}
