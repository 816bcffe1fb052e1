//! Prometheus metrics at `/metrics`: requests by route and status, request latency, and the latency of
//! each answering stage (retrieve, rerank, assemble, first token, generate, verify, total).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;

use quarry_core::Timings;

/// Histogram bucket upper bounds, in seconds.
const BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

#[derive(Default, Clone)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Histogram {
    fn observe(&mut self, secs: f64) {
        for (c, b) in self.counts.iter_mut().zip(BUCKETS) {
            if secs <= b {
                *c += 1;
            }
        }
        self.count += 1;
        self.sum += secs;
    }

    fn render(&self, out: &mut String, name: &str, label: &str, value: &str) {
        for (c, b) in self.counts.iter().zip(BUCKETS) {
            let _ = writeln!(out, "{name}_bucket{{{label}=\"{value}\",le=\"{b}\"}} {c}");
        }
        let _ = writeln!(out, "{name}_bucket{{{label}=\"{value}\",le=\"+Inf\"}} {}", self.count);
        let _ = writeln!(out, "{name}_sum{{{label}=\"{value}\"}} {}", self.sum);
        let _ = writeln!(out, "{name}_count{{{label}=\"{value}\"}} {}", self.count);
    }
}

#[derive(Default)]
struct Inner {
    requests: BTreeMap<(String, u16), u64>,
    latency: BTreeMap<String, Histogram>,
    stages: BTreeMap<&'static str, Histogram>,
}

#[derive(Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
}

impl Metrics {
    /// A finished request: its route pattern (not the raw path, so ids do not explode the label set).
    pub fn request(&self, route: &str, status: u16, secs: f64) {
        if let Ok(mut m) = self.inner.lock() {
            *m.requests.entry((route.to_string(), status)).or_default() += 1;
            m.latency.entry(route.to_string()).or_default().observe(secs);
        }
    }

    /// The stage timings of one answer (or search).
    pub fn stages(&self, t: &Timings) {
        let stages = [
            ("retrieve", t.retrieve_ms),
            ("rerank", t.rerank_ms),
            ("assemble", t.assemble_ms),
            ("first_token", t.first_token_ms),
            ("generate", t.generate_ms),
            ("verify", t.verify_ms),
            ("total", t.total_ms),
        ];
        if let Ok(mut m) = self.inner.lock() {
            for (name, ms) in stages {
                if let Some(ms) = ms {
                    m.stages.entry(name).or_default().observe(ms / 1e3);
                }
            }
        }
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let Ok(m) = self.inner.lock() else { return out };
        out.push_str("# HELP quarry_http_requests_total HTTP requests by route and status.\n");
        out.push_str("# TYPE quarry_http_requests_total counter\n");
        for ((route, status), n) in &m.requests {
            let _ = writeln!(
                out,
                "quarry_http_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}"
            );
        }
        out.push_str("# HELP quarry_http_request_duration_seconds Time to the response head, by route.\n");
        out.push_str("# TYPE quarry_http_request_duration_seconds histogram\n");
        for (route, h) in &m.latency {
            h.render(&mut out, "quarry_http_request_duration_seconds", "route", route);
        }
        out.push_str("# HELP quarry_stage_duration_seconds Time spent in each stage of answering.\n");
        out.push_str("# TYPE quarry_stage_duration_seconds histogram\n");
        for (stage, h) in &m.stages {
            h.render(&mut out, "quarry_stage_duration_seconds", "stage", stage);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_cumulative_and_counted() {
        let m = Metrics::default();
        m.request("/api/search", 200, 0.003);
        m.request("/api/search", 200, 0.2);
        m.request("/api/search", 401, 0.0001);
        let text = m.render();
        assert!(text.contains("quarry_http_requests_total{route=\"/api/search\",status=\"200\"} 2"));
        assert!(text.contains("quarry_http_requests_total{route=\"/api/search\",status=\"401\"} 1"));
        assert!(text.contains("quarry_http_request_duration_seconds_bucket{route=\"/api/search\",le=\"0.005\"} 2"));
        assert!(text.contains("quarry_http_request_duration_seconds_bucket{route=\"/api/search\",le=\"+Inf\"} 3"));
        m.stages(&Timings {
            retrieve_ms: Some(4.0),
            total_ms: Some(40.0),
            ..Default::default()
        });
        let text = m.render();
        assert!(text.contains("quarry_stage_duration_seconds_count{stage=\"retrieve\"} 1"));
        assert!(!text.contains("stage=\"rerank\""), "stages that did not run are absent");
    }
}
