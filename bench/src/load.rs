//! `--load`: a bounded load test of the real `quarry serve` binary on loopback.
//!
//! The runner starts `quarry serve` over an existing data directory on `127.0.0.1:0` (the server
//! prints the port the OS chose), authenticates with an admin key it creates for the run, and drives
//! three phases with N client threads, each on its own keep-alive connection, sending requests back to
//! back until the phase's time is up: `/api/search`, `/api/ask` with the extractive generator, and
//! `/api/ask` with the local GGUF generator (which answers one request at a time, so its clients mostly
//! queue). Questions are the dataset's queries, each client starting at its own offset.
//!
//! During the search phase a separate thread uploads M small Markdown files, each carrying a marker word
//! no other document has, through `/api/ingest/file`, and follows their jobs. After the load the runner
//! checks that every upload is listed by `/api/documents` exactly once, that the document count grew by
//! exactly M, and that a BM25 search for each marker finds its document; then it deletes the uploads and
//! checks the count is back where it started.
//!
//! The data directory is left as it was: the key is removed again (keys.json restored, or removed if the
//! run created it), the run's lines are cut from query-log.jsonl, and folders the server created empty
//! are removed.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use quarry_core::{Config, GeneratorKind};
use quarry_eval::percentile;
use serde_json::{json, Value};

pub struct Opts {
    pub data_dir: PathBuf,
    /// The `quarry` binary; default: next to this executable.
    pub quarry: Option<PathBuf>,
    /// BEIR queries.jsonl whose texts are the search queries and questions.
    pub queries: PathBuf,
    /// A configuration file for the server; default as the CLI finds one.
    pub config: Option<PathBuf>,
    pub clients: usize,
    /// Length of the search and extractive phases.
    pub secs: f64,
    /// Length of the local-generator phase (0: skipped).
    pub local_secs: f64,
    /// Most tokens the local generator writes per answer.
    pub local_max_tokens: usize,
    /// Passages retrieved per local answer (the prompt's size); None: the configured top_k.
    pub local_top_k: Option<usize>,
    /// Documents uploaded during the search phase.
    pub docs: usize,
    /// The server's per-request timeout.
    pub timeout_secs: u64,
}

/// One request as the client saw it.
struct Sample {
    ms: f64,
    /// HTTP status, or 0 for a transport error.
    status: u16,
    body: Value,
}

struct Phase {
    name: String,
    clients: usize,
    wall_secs: f64,
    samples: Vec<Sample>,
}

pub fn run(o: &Opts) -> Result<String> {
    anyhow::ensure!(o.clients > 0, "--clients must be at least 1");
    let quarry = match &o.quarry {
        Some(q) => q.clone(),
        None => std::env::current_exe()?
            .parent()
            .context("the bench executable has no folder")?
            .join("quarry"),
    };
    anyhow::ensure!(
        quarry.is_file(),
        "no quarry binary at {} (build it with `cargo build --release -p quarry-cli`, or pass --quarry)",
        quarry.display()
    );
    anyhow::ensure!(
        o.data_dir.is_dir(),
        "--data-dir {} is not a directory",
        o.data_dir.display()
    );
    let queries = load_queries(&o.queries)?;
    let load_before = loadavg();
    let tmp = tempfile::tempdir()?;

    // The server's configuration: the one the CLI would use, with the local generator configured so
    // that one server answers all three phases (the extractive generator is always available by name).
    let (mut config, config_from) = base_config(o)?;
    config.generator.kind = GeneratorKind::Local;
    config.generator.sampling.max_tokens = o.local_max_tokens.max(1);
    let config_path = tmp.path().join("quarry.toml");
    std::fs::write(
        &config_path,
        toml::to_string(&config).context("writing the server configuration")?,
    )?;

    // Room for every client plus the ingest thread's uploads and polls: queued, never refused.
    let max_inflight = (o.clients + 16).max(64);
    let ingest_queue = o.docs.max(16);
    let restore = Restore::snapshot(&o.data_dir)?;
    let (key, key_id) = create_key(&quarry, &o.data_dir)?;
    let server_args: Vec<String> = format!(
        "--addr 127.0.0.1:0 --max-inflight {max_inflight} --ingest-queue {ingest_queue} --timeout-secs {} \
         --rate-per-minute 0",
        o.timeout_secs
    )
    .split_whitespace()
    .map(str::to_string)
    .collect();
    let server = Server::start(&quarry, &o.data_dir, &config_path, &server_args, tmp.path())?;
    let base = server.base.clone();
    let client_timeout = Duration::from_secs(o.timeout_secs + 60);
    let admin = Client::new(&base, &key, client_timeout);
    let ready = server.wait_ready(&admin, Duration::from_secs(600))?;
    let generator = ready["generator"].as_str().unwrap_or("?").to_string();
    eprintln!(
        "load: server ready at {base} ({} documents, {} chunks, generator {generator})",
        ready["documents"], ready["chunks"]
    );

    let docs_before = list_documents(&admin)?;
    let tag = run_tag();
    let uploads: Vec<Upload> = (0..o.docs).map(|i| Upload::new(&tag, i)).collect();
    for u in &uploads {
        anyhow::ensure!(
            !docs_before.iter().any(|(_, s)| is_upload_of(s, &u.name)),
            "{} is already in the index",
            u.name
        );
    }
    let outcome = load(o, &base, &key, &queries, &uploads, &generator).and_then(|(phases, ingest)| {
        let ready_before = ready["documents"].as_u64().unwrap_or(0);
        Ok((phases, ingest, verify(&admin, &uploads, &docs_before, ready_before)?))
    });
    // Whatever happened, no upload stays behind (after a passed check there is nothing left to remove).
    let leftovers = remove_uploads(&admin, &uploads);
    drop(server);
    drop(restore);
    eprintln!("load: key {key_id} removed, data directory restored");
    let (phases, ingest, check) = outcome?;
    let leftovers = leftovers?;
    anyhow::ensure!(
        leftovers == 0,
        "{leftovers} uploads were still in the index after the check"
    );

    let mut out = String::new();
    out.push_str(&format!(
        "### Load test: `quarry serve` on loopback, {} concurrent clients\n\n",
        o.clients
    ));
    out.push_str(&format!(
        "Data: `{}` ({} documents, {} chunks). Questions: the {} queries of `{}`, each client from its own \
         offset. Machine load average before the run: {}.\n\n",
        crate::home_relative(&o.data_dir.display().to_string()),
        ready["documents"],
        ready["chunks"],
        queries.len(),
        crate::home_relative(&o.queries.display().to_string()),
        load_before,
    ));
    out.push_str(&format!(
        "Server: `quarry serve {}` (release build), with an admin API key (authentication on) and the \
         configuration {config_from} with `generator.kind = \"local\"` (`{generator}`) and \
         `generator.sampling.max_tokens = {}`; searches and answers retrieve with the configured mode \
         ({}, top {}). Clients: one thread and one keep-alive connection \
         (ureq) each, requests back to back until the phase's time is up; the phase ends when the last \
         answer arrives. Errors: non-2xx answers and transport errors.\n\n",
        server_args.join(" "),
        o.local_max_tokens,
        config.retrieval.mode,
        config.retrieval.top_k,
    ));
    out.push_str("| phase | clients | requests | secs | req/s | p50 ms | p95 ms | p99 ms | errors |\n");
    out.push_str("|---|---|---|---|---|---|---|---|---|\n");
    for p in &phases {
        out.push_str(&p.row());
    }
    out.push('\n');
    for p in &phases {
        if let Some(note) = p.note() {
            out.push_str(&format!("- {}: {note}\n", p.name));
        }
    }
    out.push_str(&format!("\n{}\n{}\n", ingest.report(o.secs), check.report()));
    println!("{out}");
    anyhow::ensure!(
        check.passed() && ingest.passed(),
        "the concurrent ingest check failed (see above)"
    );
    Ok(out)
}

/// The three phases, with the uploads beside the first.
fn load(
    o: &Opts,
    base: &str,
    key: &str,
    queries: &[String],
    uploads: &[Upload],
    generator: &str,
) -> Result<(Vec<Phase>, Ingest)> {
    let timeout = Duration::from_secs(o.timeout_secs + 60);
    let (search, ingest) = std::thread::scope(|s| {
        let ingest = s.spawn(|| ingest_during(base, key, uploads, o.secs, timeout));
        let search = phase(
            &format!("search (with {} uploads)", uploads.len()),
            o,
            base,
            key,
            o.secs,
            queries,
            |q| ("/api/search", json!({ "query": q })),
        );
        (search, ingest.join())
    });
    let ingest = ingest.map_err(|_| anyhow::anyhow!("the ingest thread panicked"))??;
    let mut phases = vec![search];
    phases.push(phase("ask, extractive", o, base, key, o.secs, queries, |q| {
        ("/api/ask", json!({ "question": q, "generator": "extractive" }))
    }));
    if o.local_secs > 0.0 {
        // No `generator` field: the configured (local) one answers.
        let top_k = o.local_top_k.map_or(String::new(), |k| format!(", top {k}"));
        let name = format!("ask, local ({generator}, ≤ {} tokens{top_k})", o.local_max_tokens);
        phases.push(phase(&name, o, base, key, o.local_secs, queries, |q| {
            let mut body = json!({ "question": q });
            if let Some(k) = o.local_top_k {
                body["top_k"] = json!(k);
            }
            ("/api/ask", body)
        }));
    }
    Ok((phases, ingest))
}

/// The configuration `quarry serve` would read (`--config`, else ./quarry.toml, else DATA_DIR/quarry.toml),
/// and where it came from.
fn base_config(o: &Opts) -> Result<(Config, String)> {
    let candidates = [
        o.config.clone(),
        Some(PathBuf::from("quarry.toml")),
        Some(o.data_dir.join("quarry.toml")),
    ];
    for path in candidates.into_iter().flatten() {
        if path.is_file() {
            let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
            let config: Config =
                toml::from_str(&text).with_context(|| format!("{}: invalid configuration", path.display()))?;
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            return Ok((config, format!("of `{name}`")));
        }
    }
    Ok((Config::default(), "defaults".into()))
}

fn load_queries(path: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let v: Value = serde_json::from_str(line).with_context(|| format!("{}: not JSON lines", path.display()))?;
        if let Some(t) = v["text"].as_str().filter(|t| !t.trim().is_empty()) {
            out.push(t.to_string());
        }
    }
    anyhow::ensure!(!out.is_empty(), "{}: no queries", path.display());
    Ok(out)
}

/// A blocking HTTP client with its own connection, authenticated with the run's key.
struct Client {
    agent: ureq::Agent,
    base: String,
    auth: String,
}

impl Client {
    fn new(base: &str, key: &str, timeout: Duration) -> Client {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            // Error statuses are results to count, not failures of the client.
            .http_status_as_error(false)
            .timeout_global(Some(timeout))
            .build()
            .into();
        Client {
            agent,
            base: base.to_string(),
            auth: format!("Bearer {key}"),
        }
    }

    /// Status and body; a transport error is status 0 with the error as the body.
    fn send(&self, method: &str, path: &str, body: Option<(&str, &[u8])>) -> (u16, String) {
        let url = format!("{}{path}", self.base);
        let result = match (method, body) {
            ("POST", Some((ctype, bytes))) => self
                .agent
                .post(&url)
                .header("authorization", &self.auth)
                .header("content-type", ctype)
                .send(bytes),
            ("DELETE", _) => self.agent.delete(&url).header("authorization", &self.auth).call(),
            _ => self.agent.get(&url).header("authorization", &self.auth).call(),
        };
        match result {
            Ok(mut r) => {
                let status = r.status().as_u16();
                match r.body_mut().read_to_string() {
                    Ok(text) => (status, text),
                    Err(e) => (0, format!("reading the answer: {e}")),
                }
            }
            Err(e) => (0, e.to_string()),
        }
    }

    fn post_json(&self, path: &str, body: &Value) -> (u16, String) {
        self.send("POST", path, Some(("application/json", body.to_string().as_bytes())))
    }

    /// A 2xx JSON answer, or an error naming the request.
    fn json(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value> {
        let (status, text) = match body {
            Some(b) => self.post_json(path, b),
            None => self.send(method, path, None),
        };
        if !(200..300).contains(&status) {
            bail!(
                "{method} {path}: status {status}: {}",
                text.chars().take(300).collect::<String>()
            );
        }
        serde_json::from_str(&text).with_context(|| format!("{method} {path}: the answer is not JSON"))
    }
}

/// Runs `clients` threads sending requests back to back for `secs` seconds; the phase lasts until the
/// last answer is in.
fn phase(
    name: &str,
    o: &Opts,
    base: &str,
    key: &str,
    secs: f64,
    queries: &[String],
    request: impl Fn(&str) -> (&'static str, Value) + Sync,
) -> Phase {
    eprintln!("load: {name}: {} clients for {secs} s", o.clients);
    let timeout = Duration::from_secs(o.timeout_secs + 60);
    let stride = (queries.len() / o.clients).max(1);
    let started = Instant::now();
    let until = Duration::from_secs_f64(secs);
    let samples = std::thread::scope(|s| {
        let threads: Vec<_> = (0..o.clients)
            .map(|c| {
                let request = &request;
                s.spawn(move || {
                    let client = Client::new(base, key, timeout);
                    let mut out = Vec::new();
                    let mut n = c * stride;
                    while started.elapsed() < until {
                        let (path, body) = request(&queries[n % queries.len()]);
                        n += 1;
                        let t = Instant::now();
                        let (status, text) = client.post_json(path, &body);
                        let ms = t.elapsed().as_secs_f64() * 1e3;
                        let body = if status == 0 {
                            Value::String(text)
                        } else {
                            serde_json::from_str(&text).unwrap_or(Value::String(text))
                        };
                        out.push(Sample { ms, status, body });
                    }
                    out
                })
            })
            .collect();
        threads
            .into_iter()
            .flat_map(|t| t.join().unwrap_or_default())
            .collect::<Vec<_>>()
    });
    let p = Phase {
        name: name.to_string(),
        clients: o.clients,
        wall_secs: started.elapsed().as_secs_f64(),
        samples,
    };
    if let Some(first) = p.samples.iter().find(|s| !p.ok(s)) {
        eprintln!("load: {name}: first error: status {} {}", first.status, first.body);
    }
    p
}

impl Phase {
    fn ok(&self, s: &Sample) -> bool {
        (200..300).contains(&s.status)
    }

    fn row(&self) -> String {
        let ms: Vec<f64> = self.samples.iter().map(|s| s.ms).collect();
        let n = ms.len();
        let errors: Vec<&Sample> = self.samples.iter().filter(|s| !self.ok(s)).collect();
        let mut by_status: BTreeMap<String, usize> = BTreeMap::new();
        for e in &errors {
            let k = if e.status == 0 {
                "transport".to_string()
            } else {
                e.status.to_string()
            };
            *by_status.entry(k).or_default() += 1;
        }
        let detail = if by_status.is_empty() {
            String::new()
        } else {
            let parts: Vec<String> = by_status.iter().map(|(k, v)| format!("{k}×{v}")).collect();
            format!(": {}", parts.join(", "))
        };
        format!(
            "| {} | {} | {n} | {:.1} | {:.1} | {:.0} | {:.0} | {:.0} | {} ({:.2}%){detail} |\n",
            self.name,
            self.clients,
            self.wall_secs,
            n as f64 / self.wall_secs,
            percentile(&ms, 0.50),
            percentile(&ms, 0.95),
            percentile(&ms, 0.99),
            errors.len(),
            if n == 0 {
                0.0
            } else {
                100.0 * errors.len() as f64 / n as f64
            },
        )
    }

    /// What else the answers say: the result-cache share for searches, abstentions and answer lengths
    /// for asks.
    fn note(&self) -> Option<String> {
        let ok: Vec<&Value> = self.samples.iter().filter(|s| self.ok(s)).map(|s| &s.body).collect();
        if ok.is_empty() {
            return None;
        }
        let share = |f: &dyn Fn(&Value) -> bool| 100.0 * ok.iter().filter(|v| f(v)).count() as f64 / ok.len() as f64;
        if ok[0].get("results").is_some() {
            return Some(format!(
                "{:.0}% of the answers came from the server's result cache (repeated queries)",
                share(&|v| v["cached"].as_bool() == Some(true))
            ));
        }
        let tokens: Vec<f64> = ok
            .iter()
            .filter_map(|v| v["usage"]["completion_tokens"].as_f64())
            .collect();
        let generators: std::collections::BTreeSet<&str> = ok.iter().filter_map(|v| v["generator"].as_str()).collect();
        let mut note = format!(
            "answered by `{}`; {:.0}% abstained",
            generators.into_iter().collect::<Vec<_>>().join("`, `"),
            share(&|v| v["abstained"].as_bool() == Some(true))
        );
        if !tokens.is_empty() && tokens.iter().any(|t| *t > 0.0) {
            note.push_str(&format!(
                "; {:.1} completion tokens per answer on average",
                tokens.iter().sum::<f64>() / tokens.len() as f64
            ));
        }
        Some(note)
    }
}

/// A document uploaded during the load, found again by its file name and its marker word.
struct Upload {
    name: String,
    marker: String,
    text: String,
}

impl Upload {
    fn new(tag: &str, i: usize) -> Upload {
        // Letters only, so every tokenizer keeps the marker whole.
        let marker = format!("loadmark{tag}{}", letters(i as u64, 3));
        let text = format!(
            "# Load test note {i}\n\nThis note was uploaded while the server answered searches. Its marker word is \
             {marker}, which no other document contains.\n\nThe benchmark deletes it again when the run ends; if \
             you find {marker} in an index, a load test was interrupted.\n"
        );
        Upload {
            name: format!("quarry-load-{tag}-{i}.md"),
            marker,
            text,
        }
    }
}

/// Letters for `n`, `width` of them (base 26).
fn letters(mut n: u64, width: usize) -> String {
    let mut out = vec![b'a'; width];
    for slot in out.iter_mut().rev() {
        *slot = b'a' + (n % 26) as u8;
        n /= 26;
    }
    String::from_utf8(out).unwrap_or_default()
}

/// Six letters that differ between runs, so an interrupted run's leftovers never match a new run's.
fn run_tag() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or_default();
    letters(nanos ^ u64::from(std::process::id()).rotate_left(32), 6)
}

/// Whether a document source is the upload of `name` (`upload://TENANT/NAME`).
fn is_upload_of(source: &str, name: &str) -> bool {
    source.starts_with("upload://") && source.rsplit('/').next() == Some(name)
}

/// What happened to the uploads during the search phase.
struct Ingest {
    uploads: usize,
    accepted: usize,
    refused: Vec<String>,
    /// Final job states.
    states: BTreeMap<String, usize>,
    job_errors: Vec<String>,
    /// Seconds from the phase's start until the last job finished.
    last_done_secs: Option<f64>,
}

impl Ingest {
    fn passed(&self) -> bool {
        self.accepted == self.uploads && self.states.get("done").copied().unwrap_or(0) == self.uploads
    }

    fn report(&self, phase_secs: f64) -> String {
        let states: Vec<String> = self.states.iter().map(|(k, v)| format!("{k} {v}")).collect();
        let mut out = format!(
            "Concurrent ingest: {} Markdown files uploaded through `POST /api/ingest/file`, spread over the \
             first half of the search phase; {} accepted (202); jobs: {}",
            self.uploads,
            self.accepted,
            if states.is_empty() {
                "none".into()
            } else {
                states.join(", ")
            },
        );
        if let Some(t) = self.last_done_secs {
            out.push_str(&format!(
                "; the last one finished {t:.1} s into the {phase_secs:.0} s phase{}",
                if t <= phase_secs { "" } else { " (after the phase)" }
            ));
        }
        out.push('.');
        for e in self.refused.iter().chain(&self.job_errors).take(5) {
            out.push_str(&format!(" Error: {e}."));
        }
        out
    }
}

/// Uploads every file (evenly over the first half of `secs`) and follows the jobs until they end.
fn ingest_during(base: &str, key: &str, uploads: &[Upload], secs: f64, timeout: Duration) -> Result<Ingest> {
    let client = Client::new(base, key, timeout);
    let started = Instant::now();
    let gap = secs / 2.0 / uploads.len().max(1) as f64;
    let mut jobs = Vec::new();
    let mut refused = Vec::new();
    for (i, u) in uploads.iter().enumerate() {
        let at = Duration::from_secs_f64(gap * i as f64);
        if let Some(wait) = at.checked_sub(started.elapsed()) {
            std::thread::sleep(wait);
        }
        let (status, text) = client.send(
            "POST",
            &format!("/api/ingest/file?name={}", u.name),
            Some(("text/markdown", u.text.as_bytes())),
        );
        match serde_json::from_str::<Value>(&text) {
            Ok(v) if status == 202 && v["id"].is_string() => {
                jobs.push(v["id"].as_str().unwrap_or_default().to_string())
            }
            _ => refused.push(format!(
                "upload of {}: status {status}: {}",
                u.name,
                text.chars().take(200).collect::<String>()
            )),
        }
    }
    let mut states = BTreeMap::new();
    let mut job_errors = Vec::new();
    let mut last_done = None;
    let deadline = Instant::now() + timeout.max(Duration::from_secs(600));
    let mut pending = jobs;
    while !pending.is_empty() {
        anyhow::ensure!(
            Instant::now() < deadline,
            "{} ingest jobs still unfinished",
            pending.len()
        );
        let mut still = Vec::new();
        for id in pending {
            let v = client.json("GET", &format!("/api/jobs/{id}"), None)?;
            let state = v["state"].as_str().unwrap_or("?").to_string();
            if matches!(state.as_str(), "queued" | "running") {
                still.push(id);
                continue;
            }
            last_done = Some(started.elapsed().as_secs_f64());
            if state != "done" {
                job_errors.push(format!("job {id} {state}: {} {}", v["error"], v["summary"]["errors"]));
            }
            *states.entry(state).or_insert(0) += 1;
        }
        pending = still;
        if !pending.is_empty() {
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    Ok(Ingest {
        uploads: uploads.len(),
        accepted: uploads.len() - refused.len(),
        refused,
        states,
        job_errors,
        last_done_secs: last_done,
    })
}

/// (id, source) of every document the key reads, a page at a time.
fn list_documents(client: &Client) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    loop {
        let v = client.json("GET", &format!("/api/documents?offset={}&limit=500", out.len()), None)?;
        let page = v["documents"].as_array().cloned().unwrap_or_default();
        let total = v["total"].as_u64().unwrap_or(0) as usize;
        out.extend(page.iter().map(|d| {
            (
                d["id"].as_str().unwrap_or_default().to_string(),
                d["source"].as_str().unwrap_or_default().to_string(),
            )
        }));
        if page.is_empty() || out.len() >= total {
            anyhow::ensure!(
                out.len() == total,
                "listed {} documents of a total of {total}",
                out.len()
            );
            return Ok(out);
        }
    }
}

/// The after-load check of the uploads, and their removal.
struct Check {
    expected: usize,
    before: usize,
    after: usize,
    once: usize,
    lost: Vec<String>,
    duplicated: Vec<String>,
    found_by_marker: usize,
    marker_rank1: usize,
    deleted: usize,
    after_delete: usize,
    ready_before: u64,
    ready_after_delete: u64,
}

impl Check {
    fn passed(&self) -> bool {
        self.once == self.expected
            && self.after == self.before + self.expected
            && self.found_by_marker == self.expected
            && self.deleted == self.expected
            && self.after_delete == self.before
            && self.ready_after_delete == self.ready_before
    }

    fn report(&self) -> String {
        let mut out = format!(
            "After the load: {} documents listed by `GET /api/documents` (before: {}, expected {}); of the {} \
             uploads {} are listed exactly once, {} lost, {} duplicated; a BM25 search for each marker word \
             found its document {}/{} times ({} at rank 1). Deleted again: {}; documents afterwards: {} \
             (`/ready`: {}, before: {}). **{}**",
            self.after,
            self.before,
            self.before + self.expected,
            self.expected,
            self.once,
            self.lost.len(),
            self.duplicated.len(),
            self.found_by_marker,
            self.expected,
            self.marker_rank1,
            self.deleted,
            self.after_delete,
            self.ready_after_delete,
            self.ready_before,
            if self.passed() {
                "No lost or duplicated documents."
            } else {
                "CHECK FAILED."
            },
        );
        for name in self.lost.iter().take(5) {
            out.push_str(&format!(" Lost: {name}."));
        }
        for name in self.duplicated.iter().take(5) {
            out.push_str(&format!(" Duplicated: {name}."));
        }
        out.push('\n');
        out
    }
}

fn verify(client: &Client, uploads: &[Upload], before: &[(String, String)], ready_before: u64) -> Result<Check> {
    let after = list_documents(client)?;
    let mut check = Check {
        expected: uploads.len(),
        before: before.len(),
        after: after.len(),
        once: 0,
        lost: Vec::new(),
        duplicated: Vec::new(),
        found_by_marker: 0,
        marker_rank1: 0,
        deleted: 0,
        after_delete: 0,
        ready_before,
        ready_after_delete: 0,
    };
    let mut ids = Vec::new();
    for u in uploads {
        let mine: Vec<&(String, String)> = after.iter().filter(|(_, s)| is_upload_of(s, &u.name)).collect();
        match mine.len() {
            0 => check.lost.push(u.name.clone()),
            1 => check.once += 1,
            _ => check.duplicated.push(u.name.clone()),
        }
        ids.extend(mine.iter().map(|(id, _)| id.clone()));
        let v = client.json(
            "POST",
            "/api/search",
            Some(&json!({ "query": u.marker, "mode": "bm25", "top_k": 10 })),
        )?;
        let results = v["results"].as_array().cloned().unwrap_or_default();
        let hit = |r: &Value| is_upload_of(r["source"].as_str().unwrap_or_default(), &u.name);
        if results.iter().any(hit) {
            check.found_by_marker += 1;
        }
        if results.first().is_some_and(hit) {
            check.marker_rank1 += 1;
        }
    }
    for id in &ids {
        let v = client.json("DELETE", &format!("/api/documents/{}", encode_path(id)), None)?;
        check.deleted += v["deleted"].as_u64().unwrap_or(0) as usize;
    }
    check.after_delete = list_documents(client)?.len();
    check.ready_after_delete = client.json("GET", "/ready", None)?["documents"].as_u64().unwrap_or(0);
    Ok(check)
}

/// Deletes whatever uploads of this run the index still holds; returns how many.
fn remove_uploads(client: &Client, uploads: &[Upload]) -> Result<usize> {
    let left: Vec<String> = list_documents(client)?
        .into_iter()
        .filter(|(_, s)| uploads.iter().any(|u| is_upload_of(s, &u.name)))
        .map(|(id, _)| id)
        .collect();
    for id in &left {
        client.json("DELETE", &format!("/api/documents/{}", encode_path(id)), None)?;
    }
    Ok(left.len())
}

/// Percent-encodes a document id for a URL path, keeping its `/`s (the route takes the rest of the path).
fn encode_path(id: &str) -> String {
    let mut out = String::new();
    for b in id.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// An admin key for the run (admin without a tenant reads every document, unlabelled ones included).
fn create_key(quarry: &Path, data_dir: &Path) -> Result<(String, String)> {
    let out = Command::new(quarry)
        .arg("--data-dir")
        .arg(data_dir)
        .args([
            "keys",
            "create",
            "--name",
            "quarry-bench-load",
            "--scopes",
            "admin",
            "--json",
        ])
        .output()
        .context("running `quarry keys create`")?;
    anyhow::ensure!(
        out.status.success(),
        "`quarry keys create` failed: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    let v: Value = serde_json::from_slice(&out.stdout).context("`quarry keys create --json` printed no JSON")?;
    let key = v["key"].as_str().context("no key in `quarry keys create --json`")?;
    Ok((key.to_string(), v["record"]["id"].as_str().unwrap_or("?").to_string()))
}

/// What the run may change in the data directory besides the index: the key file, the query log and
/// new empty folders. Restored once the server has stopped.
struct Restore {
    dir: PathBuf,
    keys: Option<Vec<u8>>,
    log_len: Option<u64>,
    entries: Vec<std::ffi::OsString>,
}

impl Restore {
    fn snapshot(dir: &Path) -> Result<Restore> {
        let keys = std::fs::read(dir.join("keys.json")).ok();
        let log_len = std::fs::metadata(dir.join("query-log.jsonl")).ok().map(|m| m.len());
        let entries = std::fs::read_dir(dir)?
            .filter_map(|e| e.ok().map(|e| e.file_name()))
            .collect();
        Ok(Restore {
            dir: dir.to_path_buf(),
            keys,
            log_len,
            entries,
        })
    }

    fn apply(&self) -> std::io::Result<()> {
        let keys = self.dir.join("keys.json");
        match &self.keys {
            Some(bytes) => std::fs::write(&keys, bytes)?,
            None => remove_if_present(&keys)?,
        }
        let log = self.dir.join("query-log.jsonl");
        match self.log_len {
            Some(len) => std::fs::OpenOptions::new().write(true).open(&log)?.set_len(len)?,
            None => remove_if_present(&log)?,
        }
        for e in std::fs::read_dir(&self.dir)?.filter_map(|e| e.ok()) {
            if !self.entries.contains(&e.file_name()) && e.path().is_dir() {
                // Only empty ones: remove_dir refuses anything else, and that is left for a person to see.
                let _ = std::fs::remove_dir(e.path());
            }
        }
        Ok(())
    }
}

impl Drop for Restore {
    fn drop(&mut self) {
        if let Err(e) = self.apply() {
            eprintln!("load: restoring {} failed: {e}", self.dir.display());
        }
    }
}

fn remove_if_present(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// A running `quarry serve`; stopped (SIGTERM, then kill) when dropped.
struct Server {
    child: Child,
    base: String,
    log: PathBuf,
}

impl Server {
    fn start(quarry: &Path, data_dir: &Path, config: &Path, args: &[String], tmp: &Path) -> Result<Server> {
        let log = tmp.join("server.log");
        let mut child = Command::new(quarry)
            .arg("--data-dir")
            .arg(data_dir)
            .arg("--config")
            .arg(config)
            .arg("serve")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .with_context(|| format!("starting {}", quarry.display()))?;
        let stdout = child.stdout.take().context("no stdout from the server")?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(addr) = line.strip_prefix("listening on ") {
                    let _ = tx.send(addr.trim().to_string());
                }
            }
        });
        let mut server = Server {
            child,
            base: String::new(),
            log,
        };
        // The index and the models load before the server listens.
        match rx.recv_timeout(Duration::from_secs(600)) {
            Ok(base) => server.base = base,
            Err(_) => bail!("the server did not start listening: {}", server.log_tail()),
        }
        Ok(server)
    }

    fn wait_ready(&self, client: &Client, within: Duration) -> Result<Value> {
        let started = Instant::now();
        loop {
            let (status, text) = client.send("GET", "/ready", None);
            if status == 200 {
                return Ok(serde_json::from_str(&text)?);
            }
            if started.elapsed() > within {
                bail!("the server was not ready within {within:?}: {}", self.log_tail());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(5)..].join(" | ")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // SIGTERM lets the server finish in-flight work and close the index cleanly.
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(60) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The 1-minute load average, to see whether the machine was quiet.
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "unknown".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upload_sources_match_by_file_name() {
        assert!(is_upload_of("upload://_/quarry-load-abc-1.md", "quarry-load-abc-1.md"));
        assert!(!is_upload_of(
            "upload://_/quarry-load-abc-11.md",
            "quarry-load-abc-1.md"
        ));
        assert!(!is_upload_of("file:///x/quarry-load-abc-1.md", "quarry-load-abc-1.md"));
    }

    #[test]
    fn ids_keep_slashes_and_escape_the_rest() {
        assert_eq!(encode_path("upload://_/a b.md"), "upload%3A//_/a%20b.md");
    }
}
