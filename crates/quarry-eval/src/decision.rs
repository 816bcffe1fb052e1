//! Short-answer decisions in generated answers (PubMedQA's yes / no / maybe) and adherence to the JSON answer
//! format `{"decision": "yes" | "no" | "maybe", "rationale": "<one sentence>"}`.
//!
//! Two readings, reported separately so that a model is not credited for format it did not produce:
//! - `format_ok`: the whole answer is exactly such an object: valid JSON, those two keys only, a known decision,
//!   and a rationale of one sentence (citation markers such as `[2]` aside).
//! - `decision`: the decision the answer gives, read leniently: the JSON field when there is one (also inside
//!   surrounding text), else the first standalone "yes", "no" or "maybe" in the text.

use quarry_generate::verify::strip_citations;

pub const DECISIONS: [&str; 3] = ["yes", "no", "maybe"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecisionReading {
    pub decision: Option<&'static str>,
    pub format_ok: bool,
}

fn known(s: &str) -> Option<&'static str> {
    let s = s.trim().trim_end_matches('.').to_lowercase();
    DECISIONS.into_iter().find(|d| *d == s)
}

/// Reads `answer` (the generator's text, citation markers included).
pub fn read_decision(answer: &str) -> DecisionReading {
    let text = answer.trim();
    let strict = serde_json::from_str::<serde_json::Value>(text).ok();
    let format_ok = strict.as_ref().is_some_and(|v| {
        let Some(o) = v.as_object() else { return false };
        let decision = o.get("decision").and_then(|d| d.as_str());
        let rationale = o.get("rationale").and_then(|r| r.as_str()).map(strip_citations);
        o.len() == 2
            && decision.is_some_and(|d| DECISIONS.contains(&d))
            && rationale.is_some_and(|r| crate::ragas::sentences(&r).len() == 1)
    });
    let from_json = |v: &serde_json::Value| v.get("decision").and_then(|d| d.as_str()).and_then(known);
    let mut decision = strict.as_ref().and_then(from_json);
    if decision.is_none() {
        // A JSON object inside other text (a code fence, a preamble).
        if let (Some(a), Some(b)) = (text.find('{'), text.rfind('}')) {
            if a < b {
                decision = serde_json::from_str::<serde_json::Value>(&text[a..=b])
                    .ok()
                    .as_ref()
                    .and_then(from_json);
            }
        }
    }
    if decision.is_none() {
        decision = text
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
            .find_map(known);
    }
    DecisionReading { decision, format_ok }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strict_format_and_lenient_decisions() {
        let ok = read_decision(r#"{"decision": "no", "rationale": "The trial found no effect on mortality. [2]"}"#);
        assert_eq!(
            ok,
            DecisionReading {
                decision: Some("no"),
                format_ok: true
            }
        );
        // Two sentences, an extra key, an unknown decision or text around the object break the format...
        let two = read_decision(r#"{"decision": "yes", "rationale": "It helps. It is cheap."}"#);
        assert_eq!((two.decision, two.format_ok), (Some("yes"), false));
        let extra = read_decision(r#"{"decision": "yes", "rationale": "It helps.", "confidence": 0.9}"#);
        assert!(!extra.format_ok);
        let odd = read_decision(r#"{"decision": "probably", "rationale": "It may help; no one knows."}"#);
        assert_eq!((odd.decision, odd.format_ok), (Some("no"), false));
        let fenced = read_decision("```json\n{\"decision\": \"Maybe\", \"rationale\": \"Unclear.\"}\n```");
        assert_eq!((fenced.decision, fenced.format_ok), (Some("maybe"), false));
        // ...while free text still yields its first standalone decision word.
        assert_eq!(
            read_decision("No, the sources [1] show otherwise.").decision,
            Some("no")
        );
        assert_eq!(read_decision("Knowledge is not enough; yes.").decision, Some("yes"));
        assert_eq!(read_decision("The documents do not contain the answer.").decision, None);
    }
}
