//! `--scale N`: the vector-index scale benchmark of issue 9. N unit vectors of dimension 384 — a
//! uniformly random set (the hardest case for a graph index: no structure to exploit) and a clustered
//! set (topics and sub-topics, closer to real embeddings) — indexed by Quarry's embedded HNSW and by
//! pgvector's HNSW with the same m / ef_construction. For each: build time, memory, disk, and
//! recall@10 against exact search with queries/s over a range of ef_search values, and the smallest
//! ef_search that reaches recall 0.90, 0.95 and 0.99.
//!
//! Queries are drawn from the same distribution as the data but are not in it. Exact neighbours come
//! from a brute-force scan (queries in blocks, so each pass over the vectors serves many queries).

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use quarry_index::{Hnsw, HnswParams};
use rayon::prelude::*;

pub struct Opts {
    pub n: usize,
    pub dim: usize,
    pub queries: usize,
    pub sets: Vec<String>,
    pub m: usize,
    pub ef_construction: usize,
    pub ef_search: Vec<usize>,
    pub pg: Option<String>,
    /// Where the embedded graph is written to measure its size on disk.
    pub dir: PathBuf,
    pub skip_embedded: bool,
}

const K: usize = 10;

/// SplitMix64: a tiny seeded generator, so every run builds the same vectors.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E3779B97F4A7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58476D1CE4E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D049BB133111EB);
        z ^ (z >> 31)
    }
    fn uniform(&mut self) -> f64 {
        ((self.next() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }
    /// Standard normal (Box–Muller).
    fn normal(&mut self) -> f32 {
        let (u, v) = (self.uniform(), self.uniform());
        ((-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()) as f32
    }
}

fn normalize(v: &mut [f32]) {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    v.iter_mut().for_each(|x| *x /= n);
}

fn gaussian(rng: &mut Rng, dim: usize) -> Vec<f32> {
    let mut v: Vec<f32> = (0..dim).map(|_| rng.normal()).collect();
    normalize(&mut v);
    v
}

/// Generates the vectors of a set, row-major. `offset` separates queries from data (different seeds).
struct Generator {
    dim: usize,
    clustered: bool,
    /// Topic centres, and sub-topic centres around them (clustered set only).
    subtopics: Vec<Vec<f32>>,
}

const TOPICS: usize = 1000;
const SUBTOPICS_PER_TOPIC: usize = 20;
/// Spread of sub-topics around their topic, and of points around their sub-topic, as the norm of the
/// added Gaussian relative to the unit centre: cos(point, sub-topic centre) ≈ 1/√(1+σ²).
const SIGMA_SUBTOPIC: f32 = 0.6;
const SIGMA_POINT: f32 = 0.8;

impl Generator {
    fn new(dim: usize, clustered: bool) -> Self {
        let mut subtopics = Vec::new();
        if clustered {
            let mut rng = Rng(0xC1u64 << 32);
            for _ in 0..TOPICS {
                let topic = gaussian(&mut rng, dim);
                for _ in 0..SUBTOPICS_PER_TOPIC {
                    subtopics.push(around(&mut rng, &topic, SIGMA_SUBTOPIC));
                }
            }
        }
        Generator {
            dim,
            clustered,
            subtopics,
        }
    }

    fn vector(&self, i: u64) -> Vec<f32> {
        let mut rng = Rng(i.wrapping_mul(0xD1B54A32D192ED03) ^ 0x5EED);
        if !self.clustered {
            return gaussian(&mut rng, self.dim);
        }
        // Zipf-like popularity: a few sub-topics are much larger than most.
        let u = rng.uniform();
        let s = ((self.subtopics.len() as f64).powf(u) - 1.0) as usize % self.subtopics.len();
        // Scatter popular ranks across topics so big clusters are not all in one topic.
        let s = (s.wrapping_mul(7919)) % self.subtopics.len();
        around(&mut rng, &self.subtopics[s], SIGMA_POINT)
    }

    fn rows(&self, start: u64, count: usize) -> Vec<f32> {
        let mut out = vec![0f32; count * self.dim];
        out.par_chunks_mut(self.dim).enumerate().for_each(|(j, row)| {
            row.copy_from_slice(&self.vector(start + j as u64));
        });
        out
    }
}

fn around(rng: &mut Rng, centre: &[f32], sigma: f32) -> Vec<f32> {
    let scale = sigma / (centre.len() as f32).sqrt();
    let mut v: Vec<f32> = centre.iter().map(|c| c + scale * rng.normal()).collect();
    normalize(&mut v);
    v
}

/// Exact top-K ids per query by brute force.
fn exact(data: &[f32], queries: &[f32], dim: usize) -> Vec<Vec<u32>> {
    const BLOCK: usize = 32;
    let qn = queries.len() / dim;
    let blocks: Vec<usize> = (0..qn).step_by(BLOCK).collect();
    blocks
        .par_iter()
        .flat_map_iter(|&b| {
            let e = (b + BLOCK).min(qn);
            let mut heaps: Vec<Vec<(f32, u32)>> = vec![Vec::with_capacity(K + 1); e - b];
            let mut floor = vec![f32::NEG_INFINITY; e - b];
            for (id, v) in data.chunks_exact(dim).enumerate() {
                for (j, q) in queries[b * dim..e * dim].chunks_exact(dim).enumerate() {
                    let s = quarry_core::vector::dot(q, v);
                    if s > floor[j] {
                        let h = &mut heaps[j];
                        h.push((s, id as u32));
                        if h.len() > K {
                            h.sort_by(|a, b| b.0.total_cmp(&a.0));
                            h.truncate(K);
                            floor[j] = h[K - 1].0;
                        }
                    }
                }
            }
            heaps.into_iter().map(|mut h| {
                h.sort_by(|a, b| b.0.total_cmp(&a.0));
                h.truncate(K);
                h.into_iter().map(|x| x.1).collect::<Vec<u32>>()
            })
        })
        .collect()
}

/// The exact scan as a baseline row: one query at a time over the raw vectors, on the first
/// `EXACT_QUERIES` queries (its recall is 1 by construction; measured to check the scan).
fn exact_scan(data: &[f32], dim: usize, truth: &[Vec<u32>], queries: &[f32]) -> Outcome {
    const EXACT_QUERIES: usize = 100;
    let n = EXACT_QUERIES.min(truth.len());
    // One query at a time through the same scan that computed the ground truth (a block of one).
    let (found, qps1, qps2) = timed(&queries[..n * dim], dim, |q| exact(data, q, dim).remove(0));
    let r = recall(&found, &truth[..n]);
    eprintln!("  exact scan: recall@10 {r:.4}, {qps1:.1} q/s (1 thread), {qps2:.1} q/s (all)");
    Outcome {
        backend: "exact scan (no index)",
        build_s: 0.0,
        memory: format!("{:.0} MB of vectors", std::mem::size_of_val(data) as f64 / 1e6),
        disk_mb: std::mem::size_of_val(data) as f64 / 1e6,
        points: vec![Point {
            ef: 0,
            recall: r,
            qps1,
            qps2,
        }],
    }
}

fn recall(found: &[Vec<u32>], truth: &[Vec<u32>]) -> f64 {
    let hits: usize = found
        .iter()
        .zip(truth)
        .map(|(f, t)| f.iter().filter(|id| t.contains(id)).count())
        .sum();
    hits as f64 / (truth.len() * K) as f64
}

fn rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse::<f64>().ok()))
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

struct Point {
    ef: usize,
    recall: f64,
    qps1: f64,
    qps2: f64,
}

struct Outcome {
    backend: &'static str,
    build_s: f64,
    memory: String,
    disk_mb: f64,
    points: Vec<Point>,
}

/// Runs the queries once on one thread and once on all threads; returns (ids, qps1, qps_all).
fn timed<F>(queries: &[f32], dim: usize, search: F) -> (Vec<Vec<u32>>, f64, f64)
where
    F: Fn(&[f32]) -> Vec<u32> + Sync,
{
    let qn = queries.len() / dim;
    let t = Instant::now();
    let found: Vec<Vec<u32>> = queries.chunks_exact(dim).map(&search).collect();
    let qps1 = qn as f64 / t.elapsed().as_secs_f64();
    let t = Instant::now();
    let again: Vec<Vec<u32>> = queries.par_chunks_exact(dim).map(&search).collect();
    let qps2 = qn as f64 / t.elapsed().as_secs_f64();
    debug_assert_eq!(again.len(), found.len());
    (found, qps1, qps2)
}

fn embedded(o: &Opts, g: &Generator, name: &str, truth: &[Vec<u32>], queries: &[f32]) -> Result<Outcome> {
    let before = rss_mb();
    let mut h = Hnsw::new(
        o.dim,
        HnswParams {
            m: o.m,
            ef_construction: o.ef_construction,
        },
    );
    let t = Instant::now();
    const BATCH: usize = 50_000;
    let mut done = 0;
    while done < o.n {
        let count = BATCH.min(o.n - done);
        let rows = g.rows(done as u64, count);
        let items: Vec<(u64, &[f32])> = rows
            .chunks_exact(o.dim)
            .enumerate()
            .map(|(j, v)| ((done + j) as u64, v))
            .collect();
        h.insert_batch(&items);
        done += count;
        eprintln!(
            "  embedded {name}: {done}/{} inserted, {:.0} s",
            o.n,
            t.elapsed().as_secs_f64()
        );
    }
    let build_s = t.elapsed().as_secs_f64();
    let memory = rss_mb() - before;
    let file = o.dir.join(format!("scale-{name}.hnsw"));
    let mut w = std::io::BufWriter::new(std::fs::File::create(&file).with_context(|| file.display().to_string())?);
    h.write_to(&mut w, 0)?;
    w.flush()?;
    drop(w);
    let disk_mb = std::fs::metadata(&file)?.len() as f64 / 1e6;
    std::fs::remove_file(&file)?;
    let mut points = Vec::new();
    for &ef in &o.ef_search {
        let (found, qps1, qps2) = timed(queries, o.dim, |q| {
            h.search(q, K, ef, &|_| true).into_iter().map(|x| x.0 as u32).collect()
        });
        let r = recall(&found, truth);
        eprintln!("  embedded {name}: ef {ef} recall@10 {r:.4}, {qps1:.0} q/s (1 thread), {qps2:.0} q/s (all)");
        points.push(Point {
            ef,
            recall: r,
            qps1,
            qps2,
        });
    }
    Ok(Outcome {
        backend: "embedded HNSW",
        build_s,
        memory: format!("{memory:.0} MB RSS"),
        disk_mb,
        points,
    })
}

/// pgvector's binary COPY form of a vector: int16 dim, int16 unused, then big-endian float4s.
fn copy_rows(rows: &[f32], dim: usize, first_id: usize, out: &mut Vec<u8>) {
    for (j, v) in rows.chunks_exact(dim).enumerate() {
        out.extend_from_slice(&2i16.to_be_bytes());
        out.extend_from_slice(&4i32.to_be_bytes());
        out.extend_from_slice(&((first_id + j) as i32).to_be_bytes());
        out.extend_from_slice(&((4 + 4 * dim) as i32).to_be_bytes());
        out.extend_from_slice(&(dim as i16).to_be_bytes());
        out.extend_from_slice(&0i16.to_be_bytes());
        for x in v {
            out.extend_from_slice(&x.to_be_bytes());
        }
    }
}

fn vector_text(v: &[f32]) -> String {
    let parts: Vec<String> = v.iter().map(|x| format!("{x}")).collect();
    format!("[{}]", parts.join(","))
}

fn pgvector(o: &Opts, url: &str, g: &Generator, name: &str, truth: &[Vec<u32>], queries: &[f32]) -> Result<Outcome> {
    let connect = || postgres::Client::connect(url, postgres::NoTls).with_context(|| format!("connecting to {url}"));
    let mut c = connect()?;
    let table = format!("quarry_scale_{name}");
    c.batch_execute(&format!(
        "CREATE EXTENSION IF NOT EXISTS vector; DROP TABLE IF EXISTS {table};
         CREATE TABLE {table} (id int4 NOT NULL, embedding vector({}) NOT NULL);",
        o.dim
    ))?;
    let shared_buffers: String = c.query_one("SHOW shared_buffers", &[])?.get(0);
    let t = Instant::now();
    {
        let mut w = c.copy_in(&format!("COPY {table} (id, embedding) FROM STDIN (FORMAT binary)"))?;
        let mut buf = Vec::with_capacity(64 << 20);
        buf.extend_from_slice(b"PGCOPY\n\xff\r\n\0");
        buf.extend_from_slice(&0i32.to_be_bytes());
        buf.extend_from_slice(&0i32.to_be_bytes());
        const BATCH: usize = 20_000;
        let mut done = 0;
        while done < o.n {
            let count = BATCH.min(o.n - done);
            copy_rows(&g.rows(done as u64, count), o.dim, done, &mut buf);
            w.write_all(&buf)?;
            buf.clear();
            done += count;
        }
        w.write_all(&(-1i16).to_be_bytes())?;
        w.finish()?;
    }
    let load_s = t.elapsed().as_secs_f64();
    eprintln!("  pgvector {name}: {} rows copied in {load_s:.0} s", o.n);
    let t = Instant::now();
    c.batch_execute(&format!(
        "SET maintenance_work_mem = '8GB'; SET max_parallel_maintenance_workers = 1;
         CREATE INDEX {table}_hnsw ON {table} USING hnsw (embedding vector_cosine_ops)
             WITH (m = {}, ef_construction = {});",
        o.m, o.ef_construction
    ))?;
    let build_s = t.elapsed().as_secs_f64();
    eprintln!("  pgvector {name}: index built in {build_s:.0} s");
    let sizes = c.query_one(
        &format!("SELECT pg_table_size('{table}')::float8, pg_relation_size('{table}_hnsw')::float8"),
        &[],
    )?;
    let (table_b, index_b): (f64, f64) = (sizes.get(0), sizes.get(1));
    c.batch_execute(&format!("VACUUM ANALYZE {table}"))?;
    let texts: Vec<String> = queries.chunks_exact(o.dim).map(vector_text).collect();
    let sql = format!("SELECT id FROM {table} ORDER BY embedding <=> $1::text::vector LIMIT {K}");
    let mut points = Vec::new();
    let threads = rayon::current_num_threads();
    for &ef in &o.ef_search {
        if ef > 1000 {
            continue; // pgvector's limit for hnsw.ef_search
        }
        // One connection per worker; each runs its share of the queries.
        let run = |parts: usize| -> Result<(Vec<Vec<u32>>, f64)> {
            let per = texts.len().div_ceil(parts);
            let t = Instant::now();
            let chunks: Vec<Result<Vec<Vec<u32>>>> = texts
                .par_chunks(per)
                .with_max_len(1)
                .map(|part| {
                    let mut c = connect()?;
                    c.batch_execute(&format!("SET hnsw.ef_search = {ef}"))?;
                    let stmt = c.prepare(&sql)?;
                    part.iter()
                        .map(|q| {
                            Ok(c.query(&stmt, &[q])?
                                .iter()
                                .map(|r| r.get::<_, i32>(0) as u32)
                                .collect())
                        })
                        .collect()
                })
                .collect();
            let secs = t.elapsed().as_secs_f64();
            let mut found = Vec::new();
            for c in chunks {
                found.extend(c?);
            }
            Ok((found, texts.len() as f64 / secs))
        };
        // Warm the index into the cache once before timing.
        if points.is_empty() {
            run(threads)?;
        }
        let (found, qps1) = run(1)?;
        let (_, qps2) = run(threads)?;
        let r = recall(&found, truth);
        eprintln!("  pgvector {name}: ef {ef} recall@10 {r:.4}, {qps1:.0} q/s (1 client), {qps2:.0} q/s ({threads})");
        points.push(Point {
            ef,
            recall: r,
            qps1,
            qps2,
        });
    }
    c.batch_execute(&format!("DROP TABLE {table}"))?;
    Ok(Outcome {
        backend: "pgvector HNSW",
        build_s,
        memory: format!("shared_buffers {shared_buffers}; COPY {load_s:.0} s"),
        disk_mb: (table_b + index_b) / 1e6,
        points,
    })
}

pub fn run(o: &Opts) -> Result<String> {
    let threads = rayon::current_num_threads();
    let mut md = format!(
        "Vector-index scale benchmark: {} unit vectors of dimension {}, {} queries from the same distribution \
         (not in the data), recall@10 against exact search; HNSW m = {}, ef_construction = {} on both \
         sides; queries/s with 1 thread (1 client) and with {threads}.\n\n",
        o.n, o.dim, o.queries, o.m, o.ef_construction
    );
    let mut summary =
        String::from("\n| set | backend | ef_search for recall ≥ 0.90 | ≥ 0.95 | ≥ 0.99 |\n|---|---|---|---|---|\n");
    md.push_str(&format!(
        "| set | backend | build s | memory | disk MB | ef_search | recall@10 | q/s 1 thread | q/s {threads} threads |\n\
         |---|---|---|---|---|---|---|---|---|\n"
    ));
    for set in &o.sets {
        let g = Generator::new(o.dim, set == "clustered");
        let queries = g.rows(1u64 << 40, o.queries);
        let t = Instant::now();
        let mut data = g.rows(0, o.n);
        let truth = exact(&data, &queries, o.dim);
        eprintln!("{set}: exact neighbours in {:.0} s", t.elapsed().as_secs_f64());
        let mut outcomes = vec![exact_scan(&data, o.dim, &truth, &queries)];
        data.clear();
        data.shrink_to_fit();
        if !o.skip_embedded {
            outcomes.push(embedded(o, &g, set, &truth, &queries)?);
        }
        if let Some(url) = &o.pg {
            outcomes.push(pgvector(o, url, &g, set, &truth, &queries)?);
        }
        for out in outcomes {
            for (i, p) in out.points.iter().enumerate() {
                let head = if i == 0 {
                    format!(
                        "| {set} | {} | {:.0} | {} | {:.0} |",
                        out.backend, out.build_s, out.memory, out.disk_mb
                    )
                } else {
                    "| | | | | |".to_string()
                };
                let ef = if p.ef == 0 { "—".to_string() } else { p.ef.to_string() };
                md.push_str(&format!(
                    "{head} {ef} | {:.4} | {:.1} | {:.1} |\n",
                    p.recall, p.qps1, p.qps2
                ));
            }
            let reach = |target: f64| {
                out.points
                    .iter()
                    .find(|p| p.recall >= target)
                    .map_or("not reached".to_string(), |p| {
                        let ef = if p.ef == 0 {
                            "full scan".to_string()
                        } else {
                            p.ef.to_string()
                        };
                        format!("{ef} ({:.1} q/s, {:.1} with {threads})", p.qps1, p.qps2)
                    })
            };
            summary.push_str(&format!(
                "| {set} | {} | {} | {} | {} |\n",
                out.backend,
                reach(0.90),
                reach(0.95),
                reach(0.99)
            ));
        }
    }
    md.push_str(&summary);
    Ok(md)
}
