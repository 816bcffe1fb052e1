//! CSV and TSV: one document per data row, the header naming the columns.
//!
//! A ragged row (more or fewer fields than the header) is reported with its line and left out; the other
//! rows are indexed under their own row numbers (each record is parsed on its own, so a bad row cannot
//! shift the columns of the next), and the file is looked at again on the next sync.

use std::path::Path;

use crate::chunker::TextFormat;
use crate::error::Error;
use crate::loader::{utf8, Loaded, Loader};
use crate::record::{Field, Row, RowTemplate};

pub struct CsvLoader {
    pub delimiter: u8,
    pub template: RowTemplate,
}

impl CsvLoader {
    pub fn csv(template: RowTemplate) -> Self {
        CsvLoader {
            delimiter: b',',
            template,
        }
    }

    pub fn tsv(template: RowTemplate) -> Self {
        CsvLoader {
            delimiter: b'\t',
            template,
        }
    }
}

/// Parses a delimited file into rows of text cells, exactly as written, checking every row's width.
/// (Numeric filters still work on them: metadata strings compare as numbers when they parse.)
pub fn parse(path: &Path, text: &str, delimiter: u8) -> Result<Vec<Row>, Error> {
    let (rows, mut errors) = parse_lenient(path, text, delimiter)?;
    match errors.is_empty() {
        true => Ok(rows.into_iter().map(|(_, r)| r).collect()),
        false => Err(errors.remove(0)),
    }
}

/// Numbered rows, and the errors of the rows left out.
pub type Parsed = (Vec<(usize, Row)>, Vec<Error>);

/// Rows with their 1-based numbers, and an error for each row that could not be used (the others are
/// kept, numbered as in the file, so ids stay stable when a bad row is fixed).
pub fn parse_lenient(path: &Path, text: &str, delimiter: u8) -> Result<Parsed, Error> {
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .flexible(true)
        .has_headers(true)
        .from_reader(text.as_bytes());
    let bad = |line: u64, message: String| Error::Malformed {
        path: path.to_path_buf(),
        line: line as usize,
        message,
    };
    let headers = reader
        .headers()
        .map_err(|e| bad(1, format!("unreadable header: {e}")))?
        .clone();
    let mut names: Vec<String> = Vec::with_capacity(headers.len());
    for (i, h) in headers.iter().enumerate() {
        let h = h.trim();
        let name = if h.is_empty() || names.iter().any(|n| n == h) {
            format!("column_{}", i + 1)
        } else {
            h.to_string()
        };
        names.push(name);
    }
    let mut rows = Vec::new();
    let mut errors = Vec::new();
    for (i, record) in reader.records().enumerate() {
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                let line = e.position().map_or(0, |p| p.line());
                errors.push(bad(line, format!("unreadable row: {e}")));
                continue;
            }
        };
        let line = record.position().map_or(0, |p| p.line());
        if record.len() != names.len() {
            errors.push(bad(
                line,
                format!("row has {} fields but the header has {}", record.len(), names.len()),
            ));
            continue;
        }
        rows.push((
            i + 1,
            Row {
                fields: names
                    .iter()
                    .cloned()
                    .zip(record.iter().map(|cell| Field::Text(cell.to_string())))
                    .collect(),
            },
        ));
    }
    Ok((rows, errors))
}

impl Loader for CsvLoader {
    fn name(&self) -> &'static str {
        if self.delimiter == b'\t' {
            "tsv"
        } else {
            "csv"
        }
    }

    fn load(&self, path: &Path, source: &str, bytes: &[u8]) -> Result<Loaded, Error> {
        let text = utf8(path, bytes)?;
        let (rows, errors) = parse_lenient(path, text, self.delimiter)?;
        let documents = rows
            .iter()
            .map(|(n, row)| self.template.document(source, None, *n, row, self.name()))
            .filter(|d| !d.text.trim().is_empty())
            .collect();
        Ok(Loaded {
            documents,
            format: Some(TextFormat::Plain),
            errors,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_become_documents_with_typed_metadata() {
        let data = "name,count,zip\n\"Smith, J\",12,02134\n\"multi\nline\",3,1\n";
        let l = CsvLoader::csv(RowTemplate::default())
            .load(Path::new("t.csv"), "t.csv", data.as_bytes())
            .unwrap();
        assert_eq!(l.documents.len(), 2);
        assert_eq!(l.documents[0].text, "name: Smith, J\ncount: 12\nzip: 02134");
        let f = quarry_core::Filter::parse("count>=10").unwrap();
        assert!(f.matches(&l.documents[0].metadata));
        assert!(!f.matches(&l.documents[1].metadata));
        assert_eq!(
            l.documents[0].metadata["zip"],
            quarry_core::MetaValue::String("02134".into())
        );
        assert_eq!(l.documents[1].id, "t.csv#row=2");
    }

    #[test]
    fn ragged_rows_are_reported_with_their_line_and_the_rest_kept() {
        let data = "a,b,c\n1,2,3\n4,5\n6,7,8\n";
        let l = CsvLoader::csv(RowTemplate::default())
            .load(Path::new("r.csv"), "r.csv", data.as_bytes())
            .unwrap();
        assert_eq!(l.errors.len(), 1);
        assert_eq!(
            l.errors[0].to_string(),
            "r.csv:3: row has 2 fields but the header has 3"
        );
        let ids: Vec<&str> = l.documents.iter().map(|d| d.id.as_str()).collect();
        assert_eq!(ids, ["r.csv#row=1", "r.csv#row=3"]);
        let e = parse(Path::new("r.csv"), data, b',').unwrap_err();
        assert_eq!(
            e.to_string(),
            "r.csv:3: row has 2 fields but the header has 3",
            "strict parsing fails"
        );
    }

    #[test]
    fn tsv_and_duplicate_or_empty_headers() {
        let data = "x\tx\t\n1\t2\t3\n";
        let rows = parse(Path::new("t.tsv"), data, b'\t').unwrap();
        let names: Vec<&str> = rows[0].fields.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(names, ["x", "column_2", "column_3"]);
    }
}
