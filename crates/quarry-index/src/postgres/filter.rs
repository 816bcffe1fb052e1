//! Metadata filters compiled to SQL over `documents.metadata` (JSONB).
//!
//! Keys and values only ever travel as bound parameters (`$n`); the SQL text is assembled from fixed
//! fragments, so no filter value can change the statement. The helper functions `quarry_meta_values`,
//! `quarry_eq` and `quarry_num` (created by the first migration) give the same semantics as
//! `Filter::matches`: a list matches when any element does, numbers written as strings compare
//! numerically.

use postgres::types::ToSql;
use quarry_core::{Filter, MetaValue};

/// Bound parameters for a statement, in `$n` order.
pub type Params = Vec<Box<dyn ToSql + Sync>>;

/// Appends the SQL condition for `filter` on the documents alias `doc` and pushes its parameters.
pub fn compile(filter: &Filter, doc: &str, params: &mut Params) -> String {
    let bind = |params: &mut Params, v: Box<dyn ToSql + Sync>| {
        params.push(v);
        format!("${}", params.len())
    };
    match filter {
        Filter::Eq { key, value } | Filter::Ne { key, value } => {
            let k = bind(params, Box::new(key.clone()));
            let v = bind(params, Box::new(json(value)));
            let exists = format!(
                "EXISTS (SELECT 1 FROM quarry_meta_values({doc}.metadata, {k}) AS qv(v) WHERE quarry_eq(qv.v, {v}::text::jsonb))"
            );
            if matches!(filter, Filter::Ne { .. }) {
                format!("NOT {exists}")
            } else {
                exists
            }
        }
        Filter::In { key, values } => {
            let k = bind(params, Box::new(key.clone()));
            let list = serde_json::to_string(values).unwrap_or_else(|_| "[]".into());
            let v = bind(params, Box::new(list));
            format!(
                "EXISTS (SELECT 1 FROM quarry_meta_values({doc}.metadata, {k}) AS qv(v), \
                 jsonb_array_elements({v}::text::jsonb) AS qw(w) WHERE quarry_eq(qv.v, qw.w))"
            )
        }
        Filter::Range { key, min, max } => {
            let k = bind(params, Box::new(key.clone()));
            let mut conds = vec!["quarry_num(qv.v) IS NOT NULL".to_string()];
            if let Some(b) = min {
                let p = bind(params, Box::new(b.value));
                conds.push(format!("quarry_num(qv.v) {} {p}", if b.inclusive { ">=" } else { ">" }));
            }
            if let Some(b) = max {
                let p = bind(params, Box::new(b.value));
                conds.push(format!("quarry_num(qv.v) {} {p}", if b.inclusive { "<=" } else { "<" }));
            }
            format!(
                "EXISTS (SELECT 1 FROM quarry_meta_values({doc}.metadata, {k}) AS qv(v) WHERE {})",
                conds.join(" AND ")
            )
        }
        Filter::And(parts) if parts.is_empty() => "TRUE".into(),
        Filter::And(parts) => {
            let sql: Vec<String> = parts.iter().map(|p| format!("({})", compile(p, doc, params))).collect();
            sql.join(" AND ")
        }
    }
}

fn json(v: &MetaValue) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "null".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_bound_never_spliced() {
        let hostile = "'; DROP TABLE chunks; --";
        let f = Filter::And(vec![
            Filter::Eq {
                key: hostile.into(),
                value: MetaValue::String(hostile.into()),
            },
            Filter::parse("year=2000..2010").unwrap_or_else(|e| panic!("{e}")),
            Filter::In {
                key: "lang".into(),
                values: vec![hostile.into(), "en".into()],
            },
        ]);
        let mut params = Params::new();
        let sql = compile(&f, "d", &mut params);
        assert!(!sql.contains("DROP"), "{sql}");
        assert!(!sql.contains('\''), "no literals at all: {sql}");
        assert_eq!(params.len(), 7, "{sql}");
        assert!(sql.contains("$7"), "{sql}");
    }
}
