#![allow(clippy::unwrap_used)]
//! Boilerplate across a crawled site (a loopback HTTP server, an in-memory index): a paragraph repeated on many
//! pages is indexed with the first page only, unique text and paragraphs shared by few pages stay, chunk offsets
//! match the stored text, and a recrawl re-homes the paragraph when the page that kept it drops it.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use quarry_core::{
    ChunkingConfig, DocumentVersion, Embedder, Filter, Hit, Index, IndexStats, IndexedDocument, SourceRecord,
    StoredChunk, StoredDocument, TokenCounter,
};
use quarry_ingest::crawl::{BoilerplateThreshold, CrawlOptions};
use quarry_ingest::{Ingestor, Silent};

type Pages = Arc<Mutex<HashMap<String, String>>>;

/// Serves `pages` (path → HTML) on 127.0.0.1, one request per connection, 404 for anything else; returns the port.
fn serve(pages: Pages) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request = String::new();
            if reader.read_line(&mut request).is_err() {
                continue;
            }
            let path = request.split_whitespace().nth(1).unwrap_or("/").to_string();
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
                    break;
                }
            }
            let page = pages.lock().unwrap().get(&path).cloned();
            let (status, body) = match page {
                Some(html) => ("200 OK", html),
                None => ("404 Not Found", "not found".to_string()),
            };
            let head = format!(
                "HTTP/1.1 {status}\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\n\
                 Connection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(body.as_bytes());
        }
    });
    port
}

/// An in-memory index: documents and source records; no search.
#[derive(Default)]
struct Memory {
    docs: Mutex<BTreeMap<String, IndexedDocument>>,
    sources: Mutex<BTreeMap<String, SourceRecord>>,
}

impl Index for Memory {
    fn put_documents(&self, docs: Vec<IndexedDocument>) -> quarry_core::Result<()> {
        let mut m = self.docs.lock().unwrap();
        for d in docs {
            m.insert(d.document.id.clone(), d);
        }
        Ok(())
    }
    fn delete_documents(&self, ids: &[String]) -> quarry_core::Result<usize> {
        let mut m = self.docs.lock().unwrap();
        Ok(ids.iter().filter(|id| m.remove(*id).is_some()).count())
    }
    fn document_version(&self, doc_id: &str) -> quarry_core::Result<Option<DocumentVersion>> {
        Ok(self.docs.lock().unwrap().get(doc_id).map(|d| DocumentVersion {
            content_hash: d.content_hash.clone(),
            source: d.document.source.clone(),
        }))
    }
    fn document(&self, _doc_id: &str) -> quarry_core::Result<Option<StoredDocument>> {
        Ok(None)
    }
    fn chunk(&self, _chunk_id: u64) -> quarry_core::Result<Option<StoredChunk>> {
        Ok(None)
    }
    fn source(&self, source: &str) -> quarry_core::Result<Option<SourceRecord>> {
        Ok(self.sources.lock().unwrap().get(source).cloned())
    }
    fn put_source(&self, record: SourceRecord) -> quarry_core::Result<()> {
        self.sources.lock().unwrap().insert(record.source.clone(), record);
        Ok(())
    }
    fn list_sources(&self) -> quarry_core::Result<Vec<SourceRecord>> {
        Ok(self.sources.lock().unwrap().values().cloned().collect())
    }
    fn delete_source(&self, source: &str) -> quarry_core::Result<usize> {
        let rec = self.sources.lock().unwrap().remove(source);
        Ok(rec.map_or(0, |r| self.delete_documents(&r.doc_ids).unwrap_or(0)))
    }
    fn fingerprints(&self) -> quarry_core::Result<Vec<(String, u64)>> {
        let m = self.docs.lock().unwrap();
        Ok(m.iter()
            .filter_map(|(id, d)| d.fingerprint.map(|f| (id.clone(), f)))
            .collect())
    }
    fn lexical_search(&self, _q: &str, _f: Option<&Filter>, _k: usize) -> quarry_core::Result<Vec<Hit>> {
        Ok(Vec::new())
    }
    fn vector_search(&self, _q: &[f32], _f: Option<&Filter>, _k: usize) -> quarry_core::Result<Vec<Hit>> {
        Ok(Vec::new())
    }
    fn flush(&self) -> quarry_core::Result<()> {
        Ok(())
    }
    fn rebuild(&self) -> quarry_core::Result<()> {
        Ok(())
    }
    fn stats(&self) -> quarry_core::Result<IndexStats> {
        Ok(IndexStats::default())
    }
}

/// Words as tokens, one-dimensional vectors.
struct Flat;
impl TokenCounter for Flat {
    fn count_tokens(&self, text: &str) -> usize {
        text.split_whitespace().count()
    }
}
impl Embedder for Flat {
    fn model_id(&self) -> &str {
        "flat"
    }
    fn dimension(&self) -> usize {
        1
    }
    fn max_tokens(&self) -> usize {
        512
    }
    fn embed(&self, texts: &[&str]) -> quarry_core::Result<Vec<Vec<f32>>> {
        Ok(texts.iter().map(|_| vec![1.0]).collect())
    }
}

const BOILERPLATE: &str = "Subscribe to the Field Notes newsletter: one email a month with every new article, \
                           and you can unsubscribe at any time.";
const SHARED_BY_TWO: &str = "This article is part two of the glaciers series, continued from the lakes article.";

/// A page of the site: its own text (distinct per page so no two pages are near-duplicates), a heading found on
/// every page, optional extra paragraphs, and links to the other pages.
fn page(title: &str, own: &str, extra: &[&str]) -> String {
    let extra: String = extra.iter().map(|p| format!("<p>{p}</p>")).collect();
    format!(
        "<!doctype html><html lang=\"en\"><head><title>{title}</title></head><body>\
         <nav><a href=\"/\">Home</a> <a href=\"/lakes\">Lakes</a> <a href=\"/basalt\">Basalt</a> \
         <a href=\"/glaciers\">Glaciers</a> <a href=\"/dunes\">Dunes</a></nav>\
         <article><h1>{title}</h1><p>{own}</p><h2>Observations</h2>{extra}</article><footer>Copyright the example site</footer>\
         </body></html>"
    )
}

fn site(first_keeps_boilerplate: bool) -> HashMap<String, String> {
    let home_extra: &[&str] = if first_keeps_boilerplate { &[BOILERPLATE] } else { &[] };
    HashMap::from([
        (
            "/".to_string(),
            page(
                "Field notes",
                "Field notes collects observations from walks through mountains, coasts and deserts, written up \
                 with sketches and measurements taken along the way.",
                home_extra,
            ),
        ),
        (
            "/lakes".to_string(),
            page(
                "Alpine lakes",
                "Alpine lakes freeze from the shore inward, and the ice cover can last until early summer at high \
                 altitude, where the water stays cold all year round.",
                &[BOILERPLATE],
            ),
        ),
        (
            "/basalt".to_string(),
            page(
                "Basalt columns",
                "Basalt columns form as thick lava flows cool and contract, cracking into hexagonal prisms that \
                 stand like organ pipes along the cliffs.",
                &[SHARED_BY_TWO, BOILERPLATE],
            ),
        ),
        (
            "/glaciers".to_string(),
            page(
                "Glacial flour",
                "Glacial flour, rock ground to silt under moving ice, stays suspended in meltwater and turns the \
                 lakes below a milky turquoise colour.",
                &[BOILERPLATE, SHARED_BY_TWO],
            ),
        ),
        (
            "/dunes".to_string(),
            page(
                "Sand dunes",
                "Sand dunes migrate downwind as grains hop up the gentle windward slope and avalanche down the \
                 steep slip face on the sheltered side.",
                &[BOILERPLATE],
            ),
        ),
    ])
}

fn texts(index: &Memory) -> BTreeMap<String, String> {
    let docs = index.docs.lock().unwrap();
    for d in docs.values() {
        // Chunk offsets are character offsets into the stored text, and the chunk text is that span.
        let chars: Vec<char> = d.document.text.chars().collect();
        for c in &d.chunks {
            let span: String = chars[c.start..c.end].iter().collect();
            assert_eq!(span, c.text, "{}", d.document.id);
        }
    }
    docs.iter()
        .map(|(id, d)| (id.rsplit('/').next().unwrap_or("").to_string(), d.document.text.clone()))
        .collect()
}

#[test]
fn boilerplate_repeated_across_a_site_is_indexed_once() {
    let pages: Pages = Arc::new(Mutex::new(site(true)));
    let port = serve(pages.clone());
    let start = format!("http://127.0.0.1:{port}/");
    let (index, embedder) = (Memory::default(), Flat);
    let chunking = ChunkingConfig {
        max_tokens: 40,
        overlap_tokens: 0,
    };
    let ingestor = Ingestor::new(&index, &embedder, chunking);
    let opts = CrawlOptions {
        delay: Duration::ZERO,
        ..Default::default()
    };
    assert_eq!(opts.boilerplate, Some(BoilerplateThreshold::default()));

    let (summary, report) = ingestor.ingest_url(&start, &opts, &Silent).unwrap();
    assert_eq!(summary.documents_added, 5, "{summary:?}");
    assert!(
        summary.errors.is_empty() && summary.duplicates.is_empty(),
        "{summary:?}"
    );
    // On 5 of 5 pages: boilerplate, kept by the first page crawled ("/"); on 2 of 5: below max(3, 30 %).
    assert_eq!(
        (report.boilerplate_blocks, report.boilerplate_removed),
        (1, 4),
        "{report:?}"
    );
    let t = texts(&index);
    assert_eq!(t.len(), 5, "{t:?}");
    let with = |p: &str| {
        t.iter()
            .filter(|(_, text)| text.contains(p))
            .map(|(id, _)| id.as_str())
            .collect::<Vec<_>>()
    };
    assert_eq!(with(BOILERPLATE), vec![""], "{t:#?}");
    assert_eq!(with(SHARED_BY_TWO), vec!["basalt", "glaciers"]);
    for own in [
        "Field notes collects",
        "Alpine lakes freeze",
        "Basalt columns form",
        "Glacial flour, rock",
        "Sand dunes migrate",
    ] {
        assert_eq!(with(own).len(), 1, "{own} missing: {t:#?}");
    }
    // Headings, even one on every page, and paragraph breaks survive the removal.
    assert!(
        t["glaciers"].ends_with(&format!("turquoise colour.\n\n## Observations\n\n{SHARED_BY_TWO}")),
        "{}",
        t["glaciers"]
    );
    assert!(t.values().all(|text| text.contains("## Observations")));

    // Recrawl, nothing changed: nothing is written again.
    let (summary, _) = ingestor.ingest_url(&start, &opts, &Silent).unwrap();
    assert_eq!(
        (summary.files_unchanged, summary.documents_unchanged),
        (5, 5),
        "{summary:?}"
    );

    // The page that kept the paragraph drops it: the next page that has it ("/lakes", second in crawl order) keeps
    // it now; its bytes did not change, but what was removed from it did, so it is written again.
    pages.lock().unwrap().extend(site(false));
    let (summary, report) = ingestor.ingest_url(&start, &opts, &Silent).unwrap();
    assert_eq!(
        (summary.documents_updated, summary.documents_unchanged),
        (2, 3),
        "{summary:?}"
    );
    assert_eq!(
        (report.boilerplate_blocks, report.boilerplate_removed),
        (1, 3),
        "{report:?}"
    );
    let t = texts(&index);
    let with = |p: &str| {
        t.iter()
            .filter(|(_, text)| text.contains(p))
            .map(|(id, _)| id.as_str())
            .collect::<Vec<_>>()
    };
    assert_eq!(with(BOILERPLATE), vec!["lakes"], "{t:#?}");

    // Turned off, every page is kept whole.
    let whole = CrawlOptions {
        boilerplate: None,
        ..opts.clone()
    };
    let (_, report) = ingestor.ingest_url(&start, &whole, &Silent).unwrap();
    assert_eq!(report.boilerplate_removed, 0);
    let t = texts(&index);
    let with = |p: &str| t.iter().filter(|(_, text)| text.contains(p)).count();
    assert_eq!(with(BOILERPLATE), 4);
}
