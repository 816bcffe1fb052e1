//! Ingesting a web site: crawl it, load every page (HTML main content, or any other format Quarry reads,
//! such as linked PDFs), and mirror it: pages that answer 404/410 leave the index, and after a complete
//! crawl so do pages of the crawl's scope that were not reached.
//!
//! Pages are loaded as they are fetched (their links steer the crawl) and written to the index after the crawl,
//! once blocks repeated across the site's web pages are known ([`crate::boilerplate`]): such a block stays in the
//! first page that has it and leaves the others. A page's stored text then depends on the other pages too, so the
//! blocks removed from it are part of its file hash: when that changes (the page that kept a block is gone, say),
//! the page is written again even if its bytes did not change.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::boilerplate;
use crate::crawl::{CrawlOptions, CrawlReport, Crawler, Fetched};
use crate::error::Error;
use crate::html::{self, HtmlLoader};
use crate::loader::Loaded;
use crate::pipeline::{Ingestor, Observer, Summary};

/// A fetched page, loaded, waiting for the end of the crawl to be written.
struct Crawled {
    path: PathBuf,
    source: String,
    /// The file hash over the settings and the page's bytes, so far.
    hasher: Sha256,
    empty: bool,
    loaded: Result<Option<Loaded>, Error>,
    /// Loaded as a web page (not a linked PDF or CSV): subject to boilerplate removal.
    web_page: bool,
}

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
        let mut pages = Vec::new();
        let mut report = crawler.crawl(start, |page| {
            summary.files += 1;
            seen.insert(page.url.clone());
            let path = PathBuf::from(&page.url);
            observer.file_started(&path);
            let (loaded, links, web_page) = self.load_page(&path, &page);
            pages.push(Crawled {
                source: page.url.clone(),
                hasher: self.file_hasher(&page.body),
                empty: page.body.is_empty(),
                path,
                loaded,
                web_page,
            });
            links
        })?;
        if let Some(threshold) = &opts.boilerplate {
            let (blocks, removed) = remove_boilerplate(&mut pages, threshold);
            report.boilerplate_blocks = blocks;
            report.boilerplate_removed = removed;
        }
        for page in pages {
            if page.empty {
                summary.errors.push(Error::Empty { path: page.path }.to_string());
                continue;
            }
            let loaded = page.loaded;
            self.ingest_hashed(&page.path, &page.source, page.hasher, || loaded, &mut summary, observer);
        }
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

    /// A fetched page as documents, the links to follow from it, and whether it was read as a web page.
    fn load_page(&self, path: &Path, page: &Fetched) -> (Result<Option<Loaded>, Error>, Vec<String>, bool) {
        let declared_html = page.content_type.as_deref().is_some_and(|t| t.contains("html"));
        // Chosen by content, with the URL's path standing in for a file name.
        let detected = self.loaders().detect(Path::new(url_path(&page.url)), &page.body);
        if !declared_html && detected.is_none_or(|l| l.name() != "html") {
            // Anything else Quarry reads (PDF, DOCX, CSV, ...).
            let loaded = detected.map(|l| l.load(path, &page.url, &page.body)).transpose();
            return (loaded, Vec::new(), false);
        }
        let text = match html::decode(&page.body) {
            Ok(t) => t,
            Err(offset) => {
                let e = Error::InvalidUtf8 {
                    path: path.into(),
                    offset,
                };
                return (Err(e), Vec::new(), false);
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
                (Ok(Some(loaded)), links, true)
            }
            // A page without text (a link hub) is not indexed, but its links are still followed.
            Err(html::HtmlError::NoText) => (Ok(Some(Loaded::default())), html::links(&text, Some(&page.url)), true),
        }
    }
}

/// Removes blocks repeated across the crawl's web pages (see [`boilerplate::remove_repeated`]) from their documents,
/// and adds the blocks removed from each page to its file hash. Returns the distinct blocks found and the copies
/// removed.
fn remove_boilerplate(pages: &mut [Crawled], threshold: &boilerplate::BoilerplateThreshold) -> (usize, usize) {
    // Web pages with text: one document each.
    let mut docs: Vec<(&mut Sha256, &mut Loaded)> = pages
        .iter_mut()
        .filter(|p| p.web_page)
        .filter_map(|p| match &mut p.loaded {
            Ok(Some(l)) if l.documents.len() == 1 => Some((&mut p.hasher, l)),
            _ => None,
        })
        .collect();
    let texts: Vec<&str> = docs.iter().map(|(_, l)| l.documents[0].text.as_str()).collect();
    let removal = boilerplate::remove_repeated(&texts, threshold);
    for ((hasher, loaded), page) in docs.iter_mut().zip(removal.pages) {
        let Some(text) = page.text else { continue };
        hasher.update(b"\0boilerplate removed:");
        for key in &page.removed {
            hasher.update(key.to_le_bytes());
        }
        if text.trim().is_empty() {
            loaded.documents.clear(); // nothing but boilerplate: indexed with the page that kept it
        } else {
            loaded.documents[0].text = text;
        }
    }
    (removal.blocks, removal.removed)
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
