#![allow(clippy::unwrap_used)]
//! Near-duplicate detection on a real corpus: SciFact's 5,183 abstracts are distinct papers, so the
//! detector must flag (almost) none of them, while copies of a sample of them are caught.

use quarry_ingest::dedup::{simhash, NearDuplicates};
use quarry_ingest::html::text_similarity;

mod common;

#[test]
fn scifact_abstracts_are_not_near_duplicates_but_edited_copies_are() {
    let corpus = common::shared().join("../datasets/scifact/corpus.jsonl");
    let text = std::fs::read_to_string(&corpus).unwrap_or_else(|e| panic!("{}: {e}", corpus.display()));
    let docs: Vec<(String, String)> = text
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (
                v["_id"].as_str().unwrap().to_string(),
                v["text"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(docs.len(), 5183);
    let mut index = NearDuplicates::default();
    let mut flagged = Vec::new();
    let mut compared = 0;
    for (id, body) in &docs {
        let Some(fp) = simhash(body) else { continue };
        compared += 1;
        match index.find(fp, id) {
            Some((other, _)) => flagged.push((id.clone(), other.to_string())),
            None => index.insert(id, fp),
        }
    }
    assert!(compared > 5000, "{compared} abstracts long enough to compare");
    // Whatever is flagged must really be nearly the same text.
    let by_id: std::collections::HashMap<&str, &str> = docs.iter().map(|(i, t)| (i.as_str(), t.as_str())).collect();
    for (a, b) in &flagged {
        let sim = text_similarity(by_id[a.as_str()], by_id[b.as_str()]);
        assert!(sim > 0.9, "{a} flagged as a copy of {b} but token F1 is {sim:.3}");
    }
    assert!(flagged.len() <= 5, "{} of {compared} flagged", flagged.len());

    // Reformatted copies (case, punctuation, line breaks) are always caught; copies with one word in a
    // hundred replaced, about half the time (SimHash at 3 of 64 bits tolerates only light edits).
    let sample: Vec<&(String, String)> = docs.iter().filter(|(_, t)| simhash(t).is_some()).step_by(50).collect();
    let (mut reformatted, mut edited) = (0, 0);
    for (id, body) in &sample {
        let copy = body.to_uppercase().replace(". ", ".\n").replace(',', " ;");
        if index
            .find(simhash(&copy).unwrap(), "copy")
            .is_some_and(|(other, _)| other == id)
        {
            reformatted += 1;
        }
        let copy: String = body
            .split(' ')
            .enumerate()
            .map(|(i, w)| if i % 100 == 7 { "changed" } else { w })
            .collect::<Vec<_>>()
            .join(" ");
        if index
            .find(simhash(&copy).unwrap(), "copy")
            .is_some_and(|(other, _)| other == id)
        {
            edited += 1;
        }
    }
    eprintln!(
        "SciFact: {} of {compared} abstracts flagged; reformatted copies caught {reformatted}/{n}, 1%-edited {edited}/{n}",
        flagged.len(),
        n = sample.len()
    );
    assert_eq!(reformatted, sample.len());
    let rate = edited as f64 / sample.len() as f64;
    assert!(rate >= 0.3, "caught {edited} of {} lightly edited copies", sample.len());
}
