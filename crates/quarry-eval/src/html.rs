//! Self-contained HTML reports: one file with inline CSS, SVG charts and a few lines of script (sortable,
//! filterable tables), no network access needed to view it. Pages are built from a handful of blocks
//! ([`Page`]) so retrieval evaluations, comparisons and answer evaluations look alike.
//!
//! A link ending in `#filter=TEXT` opens the report with its first table filtered to rows containing TEXT.
//! The script marks the page as loaded (`<body data-ready="1">`) and records any script error in
//! `#report-errors`, so a headless browser can check that a report renders and works without a screenshot.

use std::fmt::Write;

use crate::compare::{Comparison, ScoreTable};
use crate::measure::Evaluation;
use crate::report::{p_value, signed};

/// Escapes text for HTML element content and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = r#"
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1d2330;background:#f6f7f9}
main{max-width:1100px;margin:0 auto;padding:24px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #dde1e7;padding-bottom:4px}
.sub{color:#5b6575;margin:0 0 16px}
.cards{display:flex;flex-wrap:wrap;gap:10px}
.card{background:#fff;border:1px solid #dde1e7;border-radius:6px;padding:8px 12px;min-width:110px}
.card b{display:block;font-size:20px}.card span{color:#5b6575;font-size:12px}
table{border-collapse:collapse;background:#fff;width:100%;font-size:13px}
th,td{border:1px solid #dde1e7;padding:4px 6px;text-align:left;vertical-align:top}
th{background:#eef1f5;cursor:pointer;user-select:none}td.n{text-align:right;font-variant-numeric:tabular-nums}
.good{color:#17803d}.bad{color:#b42318}.rel{background:#e7f6ec}.miss{background:#fdecea}
input.filter{margin:6px 0;padding:4px 6px;width:320px;border:1px solid #c5ccd6;border-radius:4px}
details{background:#fff;border:1px solid #dde1e7;border-radius:6px;margin:6px 0;padding:6px 10px}
summary{cursor:pointer;font-weight:600}pre{white-space:pre-wrap;background:#f3f4f6;padding:6px;border-radius:4px}
svg text{font-size:11px;fill:#1d2330}.note{color:#5b6575;font-size:12px}
"#;

const SCRIPT: &str = r#"
(function(){
  var errs=document.getElementById('report-errors');
  window.addEventListener('error',function(e){errs.textContent+=(e.message||'error')+'\n';});
  function cellValue(td){var v=td.getAttribute('data-v');if(v!==null){return parseFloat(v);}return td.textContent.trim().toLowerCase();}
  document.querySelectorAll('table.sortable').forEach(function(t){
    var heads=t.querySelectorAll('thead th');
    heads.forEach(function(th,i){th.addEventListener('click',function(){
      var body=t.tBodies[0];var rows=Array.prototype.slice.call(body.rows);
      var asc=th.getAttribute('data-dir')!=='asc';th.setAttribute('data-dir',asc?'asc':'desc');
      rows.sort(function(a,b){var x=cellValue(a.cells[i]),y=cellValue(b.cells[i]);
        if(typeof x==='number'&&typeof y==='number'){return asc?x-y:y-x;}return asc?String(x).localeCompare(String(y)):String(y).localeCompare(String(x));});
      rows.forEach(function(r){body.appendChild(r);});
    });});
  });
  document.querySelectorAll('input.filter').forEach(function(inp){
    var t=document.getElementById(inp.getAttribute('data-table'));
    var out=document.getElementById(inp.getAttribute('data-count'));
    function apply(){var q=inp.value.toLowerCase();var n=0;
      Array.prototype.forEach.call(t.tBodies[0].rows,function(r){var show=r.textContent.toLowerCase().indexOf(q)>=0;r.style.display=show?'':'none';if(show){n++;}});
      if(out){out.textContent=String(n);}}
    inp.addEventListener('input',apply);apply();
  });
  var m=/[#&]filter=([^&]*)/.exec(location.hash);
  var first=document.querySelector('input.filter');
  if(m&&first){first.value=decodeURIComponent(m[1]);first.dispatchEvent(new Event('input'));}
  document.body.setAttribute('data-ready','1');
})();
"#;

/// A table cell: text, optionally numeric (sorted as a number) and with a CSS class.
#[derive(Debug, Clone)]
pub struct Cell {
    pub html: String,
    pub value: Option<f64>,
    pub class: Option<&'static str>,
}

impl Cell {
    pub fn text(s: &str) -> Cell {
        Cell {
            html: escape(s),
            value: None,
            class: None,
        }
    }
    /// Already-escaped HTML.
    pub fn html(s: String) -> Cell {
        Cell {
            html: s,
            value: None,
            class: None,
        }
    }
    pub fn num(x: f64) -> Cell {
        Cell {
            html: if x.is_nan() { "–".into() } else { format!("{x:.4}") },
            value: (!x.is_nan()).then_some(x),
            class: Some("n"),
        }
    }
    pub fn delta(x: f64) -> Cell {
        let class = if x > 0.0 {
            "n good"
        } else if x < 0.0 {
            "n bad"
        } else {
            "n"
        };
        Cell {
            html: signed(x),
            value: Some(x),
            class: Some(class),
        }
    }
}

/// An HTML report under construction.
#[derive(Debug, Default)]
pub struct Page {
    title: String,
    body: String,
    tables: usize,
}

impl Page {
    pub fn new(title: &str, subtitle: &str) -> Page {
        let mut p = Page {
            title: title.to_string(),
            ..Default::default()
        };
        let _ = write!(
            p.body,
            "<h1>{}</h1><p class=\"sub\">{}</p>",
            escape(title),
            escape(subtitle)
        );
        p
    }

    pub fn heading(&mut self, text: &str) {
        let _ = write!(self.body, "<h2>{}</h2>", escape(text));
    }

    pub fn paragraph(&mut self, text: &str) {
        let _ = write!(self.body, "<p class=\"note\">{}</p>", escape(text));
    }

    /// Headline numbers as cards.
    pub fn cards(&mut self, items: &[(String, String)]) {
        self.body.push_str("<div class=\"cards\">");
        for (label, value) in items {
            let _ = write!(
                self.body,
                "<div class=\"card\"><b>{}</b><span>{}</span></div>",
                escape(value),
                escape(label)
            );
        }
        self.body.push_str("</div>");
    }

    /// Horizontal bars for values in [0, 1] (metric means), with one bar per series and label.
    pub fn bars(&mut self, labels: &[String], series: &[(&str, Vec<f64>)]) {
        const COLORS: [&str; 4] = ["#3b6fd8", "#e08a2c", "#2e9e6a", "#8a5cc7"];
        let row_h = 14.0 * series.len().max(1) as f64 + 10.0;
        let (left, width) = (110.0, 520.0);
        let height = row_h * labels.len() as f64 + 30.0;
        let _ = write!(
            self.body,
            "<svg role=\"img\" class=\"chart bars\" width=\"{}\" height=\"{height}\" viewBox=\"0 0 {} {height}\">",
            left + width + 70.0,
            left + width + 70.0
        );
        for (i, label) in labels.iter().enumerate() {
            let y0 = 10.0 + row_h * i as f64;
            let _ = write!(
                self.body,
                "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>",
                left - 6.0,
                y0 + row_h / 2.0,
                escape(label)
            );
            for (j, (_, values)) in series.iter().enumerate() {
                let v = values.get(i).copied().unwrap_or(f64::NAN);
                let w = if v.is_nan() { 0.0 } else { v.clamp(0.0, 1.0) * width };
                let y = y0 + 14.0 * j as f64;
                let _ =
                    write!(
                    self.body,
                    "<rect x=\"{left}\" y=\"{y}\" width=\"{w:.1}\" height=\"12\" fill=\"{}\"><title>{}</title></rect>\
                     <text x=\"{:.1}\" y=\"{}\">{}</text>",
                    COLORS[j % COLORS.len()],
                    if v.is_nan() { "n/a".to_string() } else { format!("{v:.4}") },
                    left + w + 4.0,
                    y + 10.0,
                    if v.is_nan() { "n/a".to_string() } else { format!("{v:.3}") }
                );
            }
        }
        let mut x = left;
        for (j, (name, _)) in series.iter().enumerate() {
            let y = height - 12.0;
            let _ = write!(
                self.body,
                "<rect x=\"{x}\" y=\"{}\" width=\"10\" height=\"10\" fill=\"{}\"/><text x=\"{}\" y=\"{y}\">{}</text>",
                y - 9.0,
                COLORS[j % COLORS.len()],
                x + 14.0,
                escape(name)
            );
            x += 24.0 + 7.0 * name.chars().count() as f64;
        }
        self.body.push_str("</svg>");
    }

    /// A histogram of values on [lo, hi] in `bins` equal bins.
    pub fn histogram(&mut self, caption: &str, values: &[f64], lo: f64, hi: f64, bins: usize) {
        let bins = bins.max(1);
        let mut counts = vec![0usize; bins];
        for v in values.iter().filter(|v| !v.is_nan()) {
            let f = ((v - lo) / (hi - lo)).clamp(0.0, 1.0);
            counts[((f * bins as f64) as usize).min(bins - 1)] += 1;
        }
        let max = counts.iter().copied().max().unwrap_or(0).max(1) as f64;
        let (w, h, left, bottom) = (360.0, 140.0, 34.0, 22.0);
        let bw = w / bins as f64;
        let _ = write!(
            self.body,
            "<figure style=\"display:inline-block;margin:6px 12px 6px 0\"><svg role=\"img\" class=\"chart histogram\" \
             width=\"{}\" height=\"{}\">",
            w + left + 10.0,
            h + bottom + 8.0
        );
        for (i, c) in counts.iter().enumerate() {
            let bh = h * *c as f64 / max;
            let _ = write!(
                self.body,
                "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{bh:.1}\" fill=\"#3b6fd8\"><title>{}–{}: {c}</title></rect>",
                left + bw * i as f64 + 1.0,
                8.0 + h - bh,
                (bw - 2.0).max(1.0),
                fmt_edge(lo + (hi - lo) * i as f64 / bins as f64),
                fmt_edge(lo + (hi - lo) * (i + 1) as f64 / bins as f64),
            );
        }
        let _ = write!(
            self.body,
            "<text x=\"{left}\" y=\"{}\">{}</text><text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>\
             <text x=\"{}\" y=\"16\" text-anchor=\"end\">{}</text></svg><figcaption class=\"note\">{}</figcaption></figure>",
            h + bottom + 4.0,
            fmt_edge(lo),
            left + w,
            h + bottom + 4.0,
            fmt_edge(hi),
            left - 4.0,
            max as usize,
            escape(caption)
        );
    }

    /// Mean differences with their confidence intervals, one row per metric, around a zero line.
    pub fn intervals(&mut self, c: &Comparison) {
        let span = c
            .metrics
            .iter()
            .flat_map(|m| [m.ci_low.abs(), m.ci_high.abs(), m.delta.abs()])
            .filter(|x| x.is_finite())
            .fold(0.01f64, f64::max)
            * 1.1;
        let (left, w, row) = (110.0, 460.0, 22.0);
        let height = row * c.metrics.len() as f64 + 30.0;
        let x_of = |v: f64| left + (v + span) / (2.0 * span) * w;
        let _ = write!(
            self.body,
            "<svg role=\"img\" class=\"chart intervals\" width=\"{}\" height=\"{height}\">\
             <line x1=\"{:.1}\" x2=\"{:.1}\" y1=\"4\" y2=\"{}\" stroke=\"#888\" stroke-dasharray=\"3 3\"/>",
            left + w + 150.0,
            x_of(0.0),
            x_of(0.0),
            height - 20.0
        );
        for (i, m) in c.metrics.iter().enumerate() {
            let y = 14.0 + row * i as f64;
            let color = if m.ci_low > 0.0 {
                "#17803d"
            } else if m.ci_high < 0.0 {
                "#b42318"
            } else {
                "#5b6575"
            };
            let _ = write!(
                self.body,
                "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>\
                 <line x1=\"{:.1}\" x2=\"{:.1}\" y1=\"{y}\" y2=\"{y}\" stroke=\"{color}\" stroke-width=\"2\"/>\
                 <circle cx=\"{:.1}\" cy=\"{y}\" r=\"4\" fill=\"{color}\"/>\
                 <text x=\"{}\" y=\"{}\">{} [{}, {}]</text>",
                left - 6.0,
                y + 4.0,
                escape(&m.metric),
                x_of(m.ci_low),
                x_of(m.ci_high),
                x_of(m.delta),
                left + w + 8.0,
                y + 4.0,
                signed(m.delta),
                signed(m.ci_low),
                signed(m.ci_high)
            );
        }
        let _ = write!(
            self.body,
            "<text x=\"{left}\" y=\"{}\">{}</text><text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">0</text>\
             <text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text></svg>",
            height - 6.0,
            signed(-span),
            x_of(0.0),
            height - 6.0,
            left + w,
            height - 6.0,
            signed(span)
        );
    }

    /// A sortable table with a text filter above it that shows how many rows match.
    pub fn table(&mut self, headers: &[&str], rows: &[Vec<Cell>]) {
        self.tables += 1;
        let id = format!("t{}", self.tables);
        let _ = write!(
            self.body,
            "<div><input class=\"filter\" placeholder=\"filter rows\" data-table=\"{id}\" data-count=\"{id}-count\"> \
             <span class=\"note\"><span id=\"{id}-count\">{}</span> of {} rows</span></div>\
             <table class=\"sortable\" id=\"{id}\"><thead><tr>",
            rows.len(),
            rows.len()
        );
        for h in headers {
            let _ = write!(self.body, "<th>{}</th>", escape(h));
        }
        self.body.push_str("</tr></thead><tbody>");
        for r in rows {
            self.body.push_str("<tr>");
            for c in r {
                let class = c.class.map(|k| format!(" class=\"{k}\"")).unwrap_or_default();
                let v = c.value.map(|v| format!(" data-v=\"{v}\"")).unwrap_or_default();
                let _ = write!(self.body, "<td{class}{v}>{}</td>", c.html);
            }
            self.body.push_str("</tr>");
        }
        self.body.push_str("</tbody></table>");
    }

    /// A collapsible block; `inner` is already-escaped HTML.
    pub fn details(&mut self, summary: &str, inner: &str) {
        let _ = write!(
            self.body,
            "<details><summary>{}</summary>{inner}</details>",
            escape(summary)
        );
    }

    pub fn finish(self) -> String {
        format!(
            "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" \
             content=\"width=device-width,initial-scale=1\"><title>{}</title><style>{STYLE}</style></head>\
             <body data-ready=\"0\"><main>{}<pre id=\"report-errors\" class=\"note\"></pre></main>\
             <script>{SCRIPT}</script></body></html>\n",
            escape(&self.title),
            self.body
        )
    }
}

fn fmt_edge(x: f64) -> String {
    let s = format!("{x:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// What a report shows for one query besides its scores.
#[derive(Debug, Clone, Default)]
pub struct QueryDetail {
    pub text: String,
    /// The top retrieved documents with their relevance grade (None = unjudged).
    pub retrieved: Vec<(String, Option<i32>)>,
    /// Relevant documents (grade > 0) that were not retrieved in the shown depth.
    pub missed: Vec<String>,
}

/// Builds the per-query details of a run: the top `shown` documents with their grades, and the relevant
/// documents missing from them. `texts` maps query ids to their text.
pub fn query_details(
    run: &crate::metrics::Run,
    qrels: &crate::metrics::Qrels,
    texts: &std::collections::HashMap<String, String>,
    shown: usize,
) -> std::collections::BTreeMap<String, QueryDetail> {
    let empty = Vec::new();
    qrels
        .iter()
        .map(|(q, judged)| {
            let ranked = crate::metrics::rank(run.get(q).unwrap_or(&empty));
            let top: Vec<&str> = ranked.into_iter().take(shown).collect();
            let detail = QueryDetail {
                text: texts.get(q).cloned().unwrap_or_default(),
                retrieved: top.iter().map(|d| (d.to_string(), judged.get(*d).copied())).collect(),
                missed: judged
                    .iter()
                    .filter(|(d, g)| **g > 0 && !top.contains(&d.as_str()))
                    .map(|(d, _)| d.clone())
                    .collect(),
            };
            (q.clone(), detail)
        })
        .collect()
}

/// The report of one retrieval evaluation: metric means, score distributions, and a per-query table with
/// retrieved vs gold documents.
pub fn evaluation_page(
    title: &str,
    subtitle: &str,
    e: &Evaluation,
    details: &std::collections::BTreeMap<String, QueryDetail>,
) -> String {
    let mut p = Page::new(title, subtitle);
    let labels: Vec<String> = e.measures.iter().map(|m| m.to_string()).collect();
    p.cards(
        &labels
            .iter()
            .zip(&e.mean)
            .map(|(l, v)| (l.clone(), format!("{v:.4}")))
            .collect::<Vec<_>>(),
    );
    p.heading("Metrics");
    p.bars(&labels, &[("mean over judged queries", e.mean.clone())]);
    p.paragraph(&format!(
        "{} judged queries scored; {} without results (scored 0); {} run queries without judgements (not scored).",
        e.per_query.len(),
        e.queries_without_results.len(),
        e.unjudged_run_queries
    ));
    p.heading("Distribution over queries");
    for (i, l) in labels.iter().enumerate() {
        let v: Vec<f64> = e.per_query.values().map(|r| r[i]).collect();
        p.histogram(&format!("{l}: queries per score bin"), &v, 0.0, 1.0, 10);
    }
    p.heading("Per query");
    let mut headers = vec!["query", "text"];
    headers.extend(labels.iter().map(String::as_str));
    headers.extend(["retrieved (top 10; green = relevant)", "relevant, not retrieved"]);
    let rows: Vec<Vec<Cell>> = e
        .per_query
        .iter()
        .map(|(q, vals)| {
            let d = details.get(q).cloned().unwrap_or_default();
            let mut row = vec![Cell::text(q), Cell::text(&d.text)];
            row.extend(vals.iter().map(|v| Cell::num(*v)));
            let retrieved: Vec<String> = d
                .retrieved
                .iter()
                .map(|(doc, g)| match g {
                    Some(g) if *g > 0 => format!("<span class=\"rel\">{}</span>", escape(doc)),
                    _ => escape(doc),
                })
                .collect();
            row.push(Cell::html(retrieved.join(" ")));
            let missed: Vec<String> = d
                .missed
                .iter()
                .map(|m| format!("<span class=\"miss\">{}</span>", escape(m)))
                .collect();
            row.push(Cell::html(missed.join(" ")));
            row
        })
        .collect();
    p.table(&headers, &rows);
    p.finish()
}

/// The report of a comparison: intervals per metric, per-query differences, and the queries that changed most.
pub fn comparison_page(c: &Comparison, a: &str, b: &str, ta: &ScoreTable, tb: &ScoreTable) -> String {
    let mut p = Page::new(
        &format!("{b} vs {a}"),
        &format!(
            "B = {b}, A = {a}; paired over {} queries; bootstrap {} resamples, randomization {} permutations, seed {}",
            c.metrics.first().map_or(0, |m| m.queries),
            c.options.bootstrap_samples,
            c.options.permutations,
            c.options.seed
        ),
    );
    let labels: Vec<String> = c.metrics.iter().map(|m| m.metric.clone()).collect();
    p.cards(
        &c.metrics
            .iter()
            .map(|m| {
                (
                    format!("{} B − A (p {})", m.metric, p_value(m.p_value)),
                    signed(m.delta),
                )
            })
            .collect::<Vec<_>>(),
    );
    p.heading("Means");
    p.bars(
        &labels,
        &[
            ("A", c.metrics.iter().map(|m| m.mean_a).collect()),
            ("B", c.metrics.iter().map(|m| m.mean_b).collect()),
        ],
    );
    p.heading(&format!(
        "Difference B − A with {:.0}% confidence intervals",
        c.options.confidence * 100.0
    ));
    p.intervals(c);
    let rows: Vec<Vec<Cell>> = c
        .metrics
        .iter()
        .map(|m| {
            vec![
                Cell::text(&m.metric),
                Cell::num(m.mean_a),
                Cell::num(m.mean_b),
                Cell::delta(m.delta),
                Cell::text(&format!("[{}, {}]", signed(m.ci_low), signed(m.ci_high))),
                Cell {
                    html: p_value(m.p_value),
                    value: Some(m.p_value),
                    class: Some("n"),
                },
                Cell::text(&format!("{} / {} / {}", m.wins, m.losses, m.ties)),
            ]
        })
        .collect();
    p.table(&["metric", "A", "B", "B − A", "CI", "p", "wins / losses / ties"], &rows);
    p.heading("Per-query differences");
    for m in &c.metrics {
        let (Some(ia), Some(ib)) = (
            ta.metrics.iter().position(|x| *x == m.metric),
            tb.metrics.iter().position(|x| *x == m.metric),
        ) else {
            continue;
        };
        let diffs: Vec<f64> = ta
            .rows
            .iter()
            .filter_map(|(q, ra)| tb.rows.get(q).map(|rb| rb[ib] - ra[ia]))
            .filter(|d| !d.is_nan())
            .collect();
        p.histogram(&format!("{}: B − A per query", m.metric), &diffs, -1.0, 1.0, 20);
    }
    if !c.most_changed.is_empty() {
        p.heading(&format!("Queries that changed most on {}", labels[0]));
        let rows: Vec<Vec<Cell>> = c
            .most_changed
            .iter()
            .map(|q| {
                vec![
                    Cell::text(&q.query),
                    Cell::num(q.a),
                    Cell::num(q.b),
                    Cell::delta(q.b - q.a),
                ]
            })
            .collect();
        p.table(&["query", "A", "B", "B − A"], &rows);
    }
    p.finish()
}

/// The report of an answer evaluation: metric means, score distributions, a per-item table, and failure
/// examples (lowest faithfulness or correctness, errors) with the answer, the context and the judge's verdicts.
pub fn answers_page(title: &str, r: &crate::answers::AnswerReport, failures: usize) -> String {
    let sub = format!(
        "{} items; generator {}; judge {}{}",
        r.items.len(),
        r.generator,
        r.judge.as_deref().unwrap_or("none"),
        r.judge_stats
            .as_ref()
            .map(|s| format!(
                " ({} calls, {} from cache, {} unreadable outputs)",
                s.calls, s.cached, s.unparsable
            ))
            .unwrap_or_default()
    );
    let mut p = Page::new(title, &sub);
    let mut cards: Vec<(String, String)> = r
        .metrics
        .iter()
        .map(|m| {
            let (v, n) = r.means[m];
            (format!("{m} (n={n})"), format!("{v:.3}"))
        })
        .collect();
    cards.push(("errors".into(), r.errors.to_string()));
    p.cards(&cards);
    p.heading("Metrics");
    p.bars(
        &r.metrics,
        &[(
            "mean over items where the metric applies",
            r.metrics.iter().map(|m| r.means[m].0).collect(),
        )],
    );
    p.heading("Distribution over items");
    for m in &r.metrics {
        let v: Vec<f64> = r.items.iter().filter_map(|it| it.scores.get(m).copied()).collect();
        p.histogram(&format!("{m}: items per score bin"), &v, 0.0, 1.0, 10);
    }
    p.heading("Per item");
    let mut headers = vec!["id", "question", "answer"];
    headers.extend(r.metrics.iter().map(String::as_str));
    let rows: Vec<Vec<Cell>> = r
        .items
        .iter()
        .map(|it| {
            let mut row = vec![
                Cell::text(&it.id),
                Cell::text(&it.question),
                Cell::text(it.error.as_deref().map_or(it.answer.as_str(), |e| e)),
            ];
            row.extend(
                r.metrics
                    .iter()
                    .map(|m| Cell::num(it.scores.get(m).copied().unwrap_or(f64::NAN))),
            );
            row
        })
        .collect();
    p.table(&headers, &rows);
    p.heading("Failure examples");
    let key = |it: &crate::answers::ItemResult| {
        if it.error.is_some() {
            -1.0
        } else {
            ["faithfulness", "answer_correctness", "verifier_supported", "token_f1"]
                .iter()
                .find_map(|m| it.scores.get(*m).copied())
                .unwrap_or(2.0)
        }
    };
    let mut worst: Vec<&crate::answers::ItemResult> = r.items.iter().collect();
    worst.sort_by(|a, b| key(a).total_cmp(&key(b)).then_with(|| a.id.cmp(&b.id)));
    for it in worst.into_iter().take(failures) {
        let mut inner = String::new();
        if let Some(e) = &it.error {
            let _ = write!(inner, "<p class=\"bad\">error: {}</p>", escape(e));
        }
        let _ = write!(
            inner,
            "<p><b>Question</b> {}</p><p><b>Answer</b>{}</p><pre>{}</pre>",
            escape(&it.question),
            if it.abstained { " (abstained)" } else { "" },
            escape(&it.answer)
        );
        if let Some(g) = &it.gold_answer {
            let _ = write!(inner, "<p><b>Gold answer</b></p><pre>{}</pre>", escape(g));
        }
        if let Some(j) = &it.judged {
            if !j.faithfulness_verdicts.is_empty() {
                inner.push_str("<p><b>Statements and verdicts</b></p><ul>");
                for v in &j.faithfulness_verdicts {
                    let (label, class) = match v.supported {
                        Some(true) => ("supported", "good"),
                        Some(false) => ("not supported", "bad"),
                        None => ("unreadable verdict", "note"),
                    };
                    let _ = write!(
                        inner,
                        "<li>{} <span class=\"{class}\">[{label}]</span></li>",
                        escape(&v.statement)
                    );
                }
                inner.push_str("</ul>");
            }
        }
        inner.push_str("<p><b>Context</b></p>");
        for (i, c) in it.contexts.iter().enumerate() {
            let useful = it
                .judged
                .as_ref()
                .and_then(|j| j.context_useful.get(i).copied().flatten())
                .map_or(String::new(), |u| {
                    format!(" · judged {}", if u { "useful" } else { "not useful" })
                });
            let _ = write!(
                inner,
                "<p class=\"note\">[{}] {}{}{}</p><pre>{}</pre>",
                i + 1,
                escape(&c.doc_id),
                if c.gold { " · gold" } else { "" },
                useful,
                escape(&c.text)
            );
        }
        let scores: Vec<String> = it.scores.iter().map(|(k, v)| format!("{k} {v:.3}")).collect();
        p.details(&format!("{}: {}", it.id, scores.join(", ")), &inner);
    }
    p.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_builds_a_whole_page() {
        assert_eq!(escape("<a href=\"x\">&'"), "&lt;a href=&quot;x&quot;&gt;&amp;&#39;");
        let mut p = Page::new("T <1>", "sub");
        p.table(&["q", "v"], &[vec![Cell::text("<script>"), Cell::num(0.5)]]);
        p.histogram("h", &[0.0, 0.5, 1.0, f64::NAN], 0.0, 1.0, 4);
        let html = p.finish();
        assert!(html.starts_with("<!DOCTYPE html>"));
        assert!(html.contains("<title>T &lt;1&gt;</title>"));
        assert!(html.contains("&lt;script&gt;") && !html.contains("<td><script>"));
        assert!(html.contains("data-v=\"0.5\""));
        assert_eq!(html.matches("<rect").count(), 4, "one bar per bin");
        assert!(
            !html.contains("http://") && !html.contains("https://"),
            "self-contained"
        );
    }
}
