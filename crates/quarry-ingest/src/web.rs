//! Ingesting a web site: crawl it, load every page (HTML main content, or any other format Quarry reads,
//! such as linked PDFs), and mirror it: pages that answer 404/410 leave the index, and after a complete
//! crawl so do pages of the crawl's scope that were not reached.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use crate::crawl::{CrawlOptions, CrawlReport, Crawler, Fetched};
use crate::error::Error;
use crate::html::{self, HtmlLoader};
use crate::loader::Loaded;
use crate::pipeline::{Ingestor, Observer, Summary};

impl Ingestor<'_> {
    /// Crawls from `start` and ingests what it finds; each page's URL is its source and document id.
    pub fn ingest_url(
        &self,
        start: &str,
        opts: &CrawlOptions,
        observer: &dyn Observer,
    ) -> Result<(Summary, CrawlReport), String> {
        let crawler = Crawler::new(opts.clone());
        let mut summary = Summary::default();
        let mut seen = HashSet::new();
        let report = crawler.crawl(start, |page| {
            summary.files += 1;
            seen.insert(page.url.clone());
            let path = PathBuf::from(&page.url);
            observer.file_started(&path);
            let (loaded, links) = self.load_page(&path, &page);
            let source = page.url.clone();
            self.ingest_bytes(&path, &source, &page.body, |_| loaded, &mut summary, observer);
            links
        })?;
        // Mirror: what the site says is gone, and, after a complete crawl, what it no longer links to.
        match self.index().list_sources() {
            Ok(sources) => {
                let gone: HashSet<&str> = report.gone.iter().map(String::as_str).collect();
                for rec in sources {
                    let vanished =
                        report.complete && crawler.in_scope(start, &rec.source) && !seen.contains(&rec.source);
                    if gone.contains(rec.source.as_str()) || vanished {
                        self.remove_source(&rec, &mut summary);
                    }
                }
            }
            Err(e) => summary.errors.push(format!("listing sources: {e}")),
        }
        if let Err(e) = self.index().flush() {
            summary.errors.push(format!("flushing indexes: {e}"));
        }
        summary.errors.extend(report.errors.iter().cloned());
        Ok((summary, report))
    }

    /// A fetched page as documents, and the links to follow from it.
    fn load_page(&self, path: &Path, page: &Fetched) -> (Result<Option<Loaded>, Error>, Vec<String>) {
        let declared_html = page.content_type.as_deref().is_some_and(|t| t.contains("html"));
        // Chosen by content, with the URL's path standing in for a file name.
        let detected = self.loaders().detect(Path::new(url_path(&page.url)), &page.body);
        if !declared_html && detected.is_none_or(|l| l.name() != "html") {
            // Anything else Quarry reads (PDF, DOCX, CSV, ...).
            let loaded = detected.map(|l| l.load(path, &page.url, &page.body)).transpose();
            return (loaded, Vec::new());
        }
        let text = match html::decode(&page.body) {
            Ok(t) => t,
            Err(offset) => {
                let e = Error::InvalidUtf8 {
                    path: path.into(),
                    offset,
                };
                return (Err(e), Vec::new());
            }
        };
        let stem = url_path(&page.url)
            .rsplit('/')
            .find(|s| !s.is_empty())
            .unwrap_or(&page.url)
            .to_string();
        match HtmlLoader::document(&page.url, &stem, &text, Some(&page.url)) {
            Ok((doc, links)) => {
                let loaded = Loaded {
                    documents: vec![doc],
                    format: Some(crate::chunker::TextFormat::Markdown),
                    errors: vec![],
                };
                (Ok(Some(loaded)), links)
            }
            // A page without text (a link hub) is not indexed, but its links are still followed.
            Err(html::HtmlError::NoText) => (Ok(Some(Loaded::default())), html::links(&text, Some(&page.url))),
        }
    }
}

fn url_path(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let path = rest.find('/').map_or("/", |i| &rest[i..]);
    path.split(['?', '#']).next().unwrap_or(path)
}

impl Crawler {
    /// Whether a previously ingested URL belongs to what a crawl from `start` covers: same site and
    /// wanted by the include/exclude patterns.
    pub fn in_scope(&self, start: &str, url: &str) -> bool {
        match (url::Url::parse(start), url::Url::parse(url)) {
            (Ok(s), Ok(u)) => crate::crawl::same_site(&s, &u) && self.wanted(&u),
            _ => false,
        }
    }
}
