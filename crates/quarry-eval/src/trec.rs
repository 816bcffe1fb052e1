//! Run and qrels files: TREC run format (`qid Q0 docid rank score tag`), TREC qrels (`qid iter docid grade`) and
//! BEIR qrels (`query-id<TAB>corpus-id<TAB>score` with a header line). Problems that would silently change a
//! number are counted and reported: duplicated documents in a run, qrels that name unknown documents.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::metrics::{Qrels, Run};

/// What reading a run file found besides the run itself.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RunFileReport {
    pub lines: usize,
    pub queries: usize,
    /// (query, document) pairs listed more than once; the highest score is kept.
    pub duplicates: usize,
    /// Up to five examples of duplicates, as `qid/docid`.
    pub duplicate_examples: Vec<String>,
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| Error::Unreadable {
        path: path.to_path_buf(),
        source: e,
    })
}

fn malformed(path: &Path, line: usize, message: impl Into<String>) -> Error {
    Error::Malformed {
        path: path.to_path_buf(),
        line,
        message: message.into(),
    }
}

/// Reads a TREC run file. Blank lines and `#` comments are skipped.
pub fn read_run(path: &Path) -> Result<(Run, RunFileReport)> {
    parse_run(&read(path)?, path)
}

pub fn parse_run(text: &str, path: &Path) -> Result<(Run, RunFileReport)> {
    let mut best: HashMap<(String, String), f32> = HashMap::new();
    let mut order: Vec<(String, String)> = Vec::new();
    let mut report = RunFileReport::default();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let cols: Vec<&str> = line.split_whitespace().collect();
        if cols.len() != 6 {
            return Err(malformed(
                path,
                i + 1,
                format!(
                    "a TREC run line has 6 columns (qid Q0 docid rank score tag), this one has {}",
                    cols.len()
                ),
            ));
        }
        let score: f32 = cols[4]
            .parse()
            .map_err(|_| malformed(path, i + 1, format!("score {:?} is not a number", cols[4])))?;
        if !score.is_finite() {
            return Err(malformed(path, i + 1, format!("score {:?} is not finite", cols[4])));
        }
        cols[3]
            .parse::<i64>()
            .map_err(|_| malformed(path, i + 1, format!("rank {:?} is not an integer", cols[3])))?;
        report.lines += 1;
        let key = (cols[0].to_string(), cols[2].to_string());
        match best.get_mut(&key) {
            Some(s) => {
                report.duplicates += 1;
                if report.duplicate_examples.len() < 5 {
                    report.duplicate_examples.push(format!("{}/{}", key.0, key.1));
                }
                *s = s.max(score);
            }
            None => {
                best.insert(key.clone(), score);
                order.push(key);
            }
        }
    }
    let mut run = Run::new();
    for key in order {
        let score = best[&key];
        run.entry(key.0).or_default().push((key.1, score));
    }
    report.queries = run.len();
    Ok((run, report))
}

/// Reads qrels in TREC (`qid iter docid grade`, whitespace-separated) or BEIR (`qid<TAB>docid<TAB>grade`, with a
/// header) layout; the layout is recognised from the column count.
pub fn read_qrels(path: &Path) -> Result<Qrels> {
    parse_qrels(&read(path)?, path)
}

pub fn parse_qrels(text: &str, path: &Path) -> Result<Qrels> {
    let mut qrels = Qrels::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let cols: Vec<&str> = line.split_whitespace().collect();
        let (qid, doc, grade) = match cols.len() {
            4 => (cols[0], cols[2], cols[3]),
            3 => (cols[0], cols[1], cols[2]),
            n => {
                return Err(malformed(
                    path,
                    i + 1,
                    format!("a qrels line has 3 (BEIR) or 4 (TREC) columns, this one has {n}"),
                ))
            }
        };
        let Ok(grade) = grade.parse::<i32>() else {
            if i == 0 {
                continue; // BEIR header: query-id corpus-id score
            }
            return Err(malformed(path, i + 1, format!("grade {grade:?} is not an integer")));
        };
        qrels.entry(qid.to_string()).or_default().insert(doc.to_string(), grade);
    }
    if qrels.is_empty() {
        return Err(Error::Dataset {
            path: path.to_path_buf(),
            message: "no relevance judgements in the file".into(),
        });
    }
    Ok(qrels)
}

/// Qrels entries whose document is not in the corpus (a typo, or qrels of another corpus version): such a
/// document can never be retrieved, so recall silently caps below 1.
#[derive(Debug, Clone, Default, Serialize)]
pub struct UnknownDocuments {
    pub count: usize,
    pub queries: usize,
    pub examples: Vec<String>,
}

pub fn unknown_documents(qrels: &Qrels, corpus_ids: &HashSet<String>) -> UnknownDocuments {
    let mut out = UnknownDocuments::default();
    for (qid, judged) in qrels {
        let mut any = false;
        for doc in judged.keys() {
            if !corpus_ids.contains(doc) {
                out.count += 1;
                any = true;
                if out.examples.len() < 5 {
                    out.examples.push(format!("{qid}/{doc}"));
                }
            }
        }
        out.queries += usize::from(any);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_duplicates_are_counted_and_the_best_score_kept() {
        let text = "q1 Q0 a 1 0.9 t\nq1 Q0 b 2 0.5 t\n# comment\n\nq1 Q0 a 3 0.2 t\nq2 Q0 c 1 1 t\n";
        let (run, report) = parse_run(text, Path::new("x.run")).unwrap();
        assert_eq!(report.lines, 4);
        assert_eq!(report.duplicates, 1);
        assert_eq!(report.duplicate_examples, ["q1/a"]);
        assert_eq!(run["q1"], vec![("a".to_string(), 0.9), ("b".to_string(), 0.5)]);
        assert_eq!(report.queries, 2);
    }

    #[test]
    fn malformed_run_lines_name_file_and_line() {
        let err = parse_run("q1 Q0 a 1 0.9 t\nq1 Q0 b 2 high t\n", Path::new("x.run")).unwrap_err();
        assert_eq!(err.to_string(), "x.run:2: score \"high\" is not a number");
        let err = parse_run("q1 a 0.9\n", Path::new("x.run")).unwrap_err();
        assert!(
            err.to_string().starts_with("x.run:1: a TREC run line has 6 columns"),
            "{err}"
        );
        let err = parse_run("q1 Q0 a 1 NaN t\n", Path::new("x.run")).unwrap_err();
        assert!(err.to_string().contains("not finite"), "{err}");
    }

    #[test]
    fn qrels_in_both_layouts() {
        let trec = parse_qrels("1 0 d1 1\n1 0 d2 0\n2 0 d3 2\n", Path::new("q.txt")).unwrap();
        let beir = parse_qrels(
            "query-id\tcorpus-id\tscore\n1\td1\t1\n1\td2\t0\n2\td3\t2\n",
            Path::new("q.tsv"),
        )
        .unwrap();
        assert_eq!(trec, beir);
        assert_eq!(trec["2"]["d3"], 2);
        let err = parse_qrels("1\td1\t1\n1\td2\tyes\n", Path::new("q.tsv")).unwrap_err();
        assert_eq!(err.to_string(), "q.tsv:2: grade \"yes\" is not an integer");
        assert!(parse_qrels("", Path::new("q.tsv"))
            .unwrap_err()
            .to_string()
            .contains("no relevance"));
    }

    #[test]
    fn unknown_documents_are_found() {
        let qrels = parse_qrels("1 0 d1 1\n1 0 ghost 1\n2 0 d2 1\n", Path::new("q")).unwrap();
        let corpus: HashSet<String> = ["d1", "d2"].iter().map(|s| s.to_string()).collect();
        let u = unknown_documents(&qrels, &corpus);
        assert_eq!((u.count, u.queries), (1, 1));
        assert_eq!(u.examples, ["1/ghost"]);
    }
}
