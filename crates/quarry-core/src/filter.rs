//! Metadata filters: exact match, set membership and numeric ranges, combined with AND.
//!
//! Backends apply a filter *inside* their search (the embedded index restricts BM25 and HNSW to the
//! matching chunks), so a filtered query returns the top-k matching chunks, not top-k then dropped.

use serde::{Deserialize, Serialize};

use crate::document::{MetaValue, Metadata};
use crate::error::{Error, Result};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Filter {
    /// `key=value`: the value (or any element of a list value) equals `value`.
    Eq {
        key: String,
        value: MetaValue,
    },
    /// `key!=value`.
    Ne {
        key: String,
        value: MetaValue,
    },
    /// `key=a|b|c`: equals any of the values.
    In {
        key: String,
        values: Vec<MetaValue>,
    },
    /// `key>=x`, `key<y`, `key=x..y` (inclusive): numeric range; either bound may be open.
    Range {
        key: String,
        min: Option<Bound>,
        max: Option<Bound>,
    },
    And(Vec<Filter>),
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Bound {
    pub value: f64,
    pub inclusive: bool,
}

impl Filter {
    /// Parses the CLI syntax: `key=value`, `key!=value`, `key=a|b`, `key>=1`, `key<2`, `key=1..5`.
    pub fn parse(expr: &str) -> Result<Filter> {
        let err = |m: &str| Error::Filter {
            expr: expr.to_string(),
            message: m.to_string(),
        };
        let ops = ["!=", ">=", "<=", "=", ">", "<"];
        let (pos, op) = ops
            .iter()
            .filter_map(|op| expr.find(op).map(|p| (p, *op)))
            // leftmost operator wins; at the same position the longer one (">=" before ">")
            .min_by_key(|(p, op)| (*p, std::cmp::Reverse(op.len())))
            .ok_or_else(|| err("expected KEY=VALUE, KEY!=VALUE, KEY>=N, KEY<=N, KEY>N, KEY<N or KEY=A..B"))?;
        let key = expr[..pos].trim();
        let raw = expr[pos + op.len()..].trim();
        if key.is_empty() {
            return Err(err("missing key"));
        }
        if raw.is_empty() {
            return Err(err("missing value"));
        }
        let key = key.to_string();
        let number = |s: &str| {
            s.trim()
                .parse::<f64>()
                .map_err(|_| err(&format!("`{s}` is not a number")))
        };
        Ok(match op {
            "=" if raw.contains("..") => {
                let (a, b) = raw.split_once("..").ok_or_else(|| err("bad range"))?;
                let min = if a.trim().is_empty() {
                    None
                } else {
                    Some(Bound {
                        value: number(a)?,
                        inclusive: true,
                    })
                };
                let max = if b.trim().is_empty() {
                    None
                } else {
                    Some(Bound {
                        value: number(b)?,
                        inclusive: true,
                    })
                };
                if min.is_none() && max.is_none() {
                    return Err(err("a range needs at least one bound"));
                }
                Filter::Range { key, min, max }
            }
            "=" if raw.contains('|') => Filter::In {
                key,
                values: raw.split('|').map(|v| scalar(v.trim())).collect(),
            },
            "=" => Filter::Eq {
                key,
                value: scalar(raw),
            },
            "!=" => Filter::Ne {
                key,
                value: scalar(raw),
            },
            ">=" => Filter::Range {
                key,
                min: Some(Bound {
                    value: number(raw)?,
                    inclusive: true,
                }),
                max: None,
            },
            ">" => Filter::Range {
                key,
                min: Some(Bound {
                    value: number(raw)?,
                    inclusive: false,
                }),
                max: None,
            },
            "<=" => Filter::Range {
                key,
                min: None,
                max: Some(Bound {
                    value: number(raw)?,
                    inclusive: true,
                }),
            },
            "<" => Filter::Range {
                key,
                min: None,
                max: Some(Bound {
                    value: number(raw)?,
                    inclusive: false,
                }),
            },
            _ => return Err(err("unknown operator")),
        })
    }

    /// AND of several filters; `None` when the list is empty.
    pub fn all(mut filters: Vec<Filter>) -> Option<Filter> {
        match filters.len() {
            0 => None,
            1 => filters.pop(),
            _ => Some(Filter::And(filters)),
        }
    }

    pub fn matches(&self, meta: &Metadata) -> bool {
        match self {
            Filter::Eq { key, value } => meta.get(key).is_some_and(|v| value_eq(v, value)),
            Filter::Ne { key, value } => !meta.get(key).is_some_and(|v| value_eq(v, value)),
            Filter::In { key, values } => meta.get(key).is_some_and(|v| values.iter().any(|w| value_eq(v, w))),
            Filter::Range { key, min, max } => meta.get(key).is_some_and(|v| in_range(v, *min, *max)),
            Filter::And(fs) => fs.iter().all(|f| f.matches(meta)),
        }
    }
}

/// A CLI value: a number if it parses as one, `true`/`false`, otherwise a string.
fn scalar(s: &str) -> MetaValue {
    if let Ok(n) = s.parse::<f64>() {
        return MetaValue::Number(n);
    }
    match s {
        "true" => MetaValue::Bool(true),
        "false" => MetaValue::Bool(false),
        _ => MetaValue::String(s.to_string()),
    }
}

/// Equality that treats a list as "any element", and compares numbers written as strings numerically
/// (CSV and JSON sources disagree on whether `2021` is a string).
fn value_eq(stored: &MetaValue, wanted: &MetaValue) -> bool {
    match (stored, wanted) {
        (MetaValue::List(items), _) => items.iter().any(|i| value_eq(i, wanted)),
        (MetaValue::String(a), MetaValue::String(b)) => a == b,
        (MetaValue::Bool(a), MetaValue::Bool(b)) => a == b,
        (MetaValue::Number(_), _) | (_, MetaValue::Number(_)) => match (stored.as_f64(), wanted.as_f64()) {
            (Some(a), Some(b)) => a == b,
            _ => false,
        },
        (MetaValue::String(a), MetaValue::Bool(b)) => a == if *b { "true" } else { "false" },
        _ => false,
    }
}

fn in_range(v: &MetaValue, min: Option<Bound>, max: Option<Bound>) -> bool {
    if let MetaValue::List(items) = v {
        return items.iter().any(|i| in_range(i, min, max));
    }
    let Some(x) = v.as_f64() else { return false };
    let above = min.is_none_or(|b| if b.inclusive { x >= b.value } else { x > b.value });
    let below = max.is_none_or(|b| if b.inclusive { x <= b.value } else { x < b.value });
    above && below
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(pairs: &[(&str, MetaValue)]) -> Metadata {
        pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect()
    }

    #[test]
    fn parse_and_match_table() {
        let m = meta(&[
            ("lang", "en".into()),
            ("year", 2021.0.into()),
            ("tags", MetaValue::List(vec!["a".into(), "b".into()])),
            ("pages", MetaValue::String("12".into())),
        ]);
        let cases = [
            ("lang=en", true),
            ("lang=fr", false),
            ("lang!=fr", true),
            ("lang!=en", false),
            ("missing!=x", true),
            ("lang=fr|en", true),
            ("lang=fr|de", false),
            ("year=2021", true),
            ("year>=2021", true),
            ("year>2021", false),
            ("year<2022", true),
            ("year<=2020", false),
            ("year=2000..2021", true),
            ("year=2022..", false),
            ("year=..2021", true),
            ("tags=b", true),
            ("tags=c", false),
            ("pages>10", true),
            ("missing=x", false),
            ("missing>1", false),
        ];
        for (expr, want) in cases {
            let f = Filter::parse(expr).unwrap();
            assert_eq!(f.matches(&m), want, "{expr}");
        }
    }

    #[test]
    fn parse_errors_name_the_expression() {
        for bad in ["", "novalue=", "=x", "year>=abc", "year=..", "plain"] {
            let e = Filter::parse(bad).unwrap_err().to_string();
            assert!(e.contains(&format!("`{bad}`")), "{e}");
        }
    }

    #[test]
    fn and_requires_every_part() {
        let m = meta(&[("lang", "en".into()), ("year", 2020.0.into())]);
        let f = Filter::all(vec![
            Filter::parse("lang=en").unwrap(),
            Filter::parse("year>2020").unwrap(),
        ])
        .unwrap();
        assert!(!f.matches(&m));
        assert!(Filter::all(vec![]).is_none());
    }
}
