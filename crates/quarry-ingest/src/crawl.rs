//! A polite web crawler: breadth-first from a start URL, within a depth and a page limit, on the start
//! site only (by default), filtered by include/exclude patterns, obeying robots.txt (Allow/Disallow with
//! `*` and `$`, Crawl-delay) and a delay between requests to the same site.
//!
//! Each fetched page is handed to a callback with its bytes; HTML pages have their links followed.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use url::Url;

pub use crate::boilerplate::BoilerplateThreshold;

/// How far and how fast to crawl.
#[derive(Debug, Clone)]
pub struct CrawlOptions {
    /// Link hops from the start page (0: the start page only).
    pub max_depth: usize,
    /// Pages fetched at most (successful or not).
    pub max_pages: usize,
    /// Follow links to the start URL's host (and port) only.
    pub same_site: bool,
    /// URL patterns (`*` matches any run of characters) a page must match to be fetched; empty: all.
    pub include: Vec<String>,
    /// URL patterns that exclude a page.
    pub exclude: Vec<String>,
    /// Least time between two requests to one site (robots.txt `Crawl-delay` can raise it).
    pub delay: Duration,
    pub user_agent: String,
    pub timeout: Duration,
    /// Largest response body read; bigger pages are skipped with an error.
    pub max_bytes: u64,
    /// Boilerplate across the site's pages: a block (paragraph, list, table) of a web page's text found verbatim
    /// (case and whitespace aside) on at least `max(min_pages, ⌈min_share × pages⌉)` of the crawl's web pages
    /// (default: max(3, 30 %)) stays in the first page that has it and is removed from the others before
    /// chunking (see [`crate::boilerplate`]). Headings are never removed. `None`: every page is kept whole.
    pub boilerplate: Option<BoilerplateThreshold>,
}

impl Default for CrawlOptions {
    fn default() -> Self {
        CrawlOptions {
            max_depth: 2,
            max_pages: 100,
            same_site: true,
            include: Vec::new(),
            exclude: Vec::new(),
            delay: Duration::from_millis(500),
            user_agent: format!("QuarryBot/{} (+https://github.com/quarry)", env!("CARGO_PKG_VERSION")),
            timeout: Duration::from_secs(30),
            max_bytes: 32 << 20,
            boilerplate: Some(BoilerplateThreshold::default()),
        }
    }
}

/// A fetched page.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub url: String,
    pub depth: usize,
    pub content_type: Option<String>,
    pub body: Vec<u8>,
}

/// What a crawl did, for the report and for mirroring: `complete` is false when the page limit cut the
/// crawl short, so pages not seen may still exist.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct CrawlReport {
    pub fetched: usize,
    pub disallowed_by_robots: usize,
    pub filtered: usize,
    /// URLs that answered 404 or 410: gone at the source.
    pub gone: Vec<String>,
    pub errors: Vec<String>,
    pub complete: bool,
    /// Distinct blocks found repeated across the pages ([`CrawlOptions::boilerplate`]).
    pub boilerplate_blocks: usize,
    /// Copies of those blocks removed from pages (each block stays in one page).
    pub boilerplate_removed: usize,
}

/// What the callback tells the crawler about a page: the links to follow from it.
pub type Links = Vec<String>;

pub struct Crawler {
    opts: CrawlOptions,
    agent: ureq::Agent,
}

impl Crawler {
    pub fn new(opts: CrawlOptions) -> Self {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(opts.timeout))
            .http_status_as_error(false)
            // Redirects are followed by the crawler itself, so their targets pass the same checks.
            .max_redirects(0)
            .max_redirects_will_error(false)
            .user_agent(opts.user_agent.clone())
            .build()
            .into();
        Crawler { opts, agent }
    }

    /// Crawls from `start`, calling `page` for every page fetched; `page` returns the links to follow.
    pub fn crawl(&self, start: &str, mut page: impl FnMut(Fetched) -> Links) -> Result<CrawlReport, String> {
        let start = Url::parse(start).map_err(|e| format!("{start}: not a URL: {e}"))?;
        if !matches!(start.scheme(), "http" | "https") {
            return Err(format!("{start}: only http and https URLs can be crawled"));
        }
        let mut report = CrawlReport {
            complete: true,
            ..Default::default()
        };
        let mut robots: HashMap<String, Robots> = HashMap::new();
        let mut last_request: HashMap<String, Instant> = HashMap::new();
        let mut queue = VecDeque::from([(start.clone(), 0usize)]);
        let mut seen = HashSet::from([canonical(&start)]);
        while let Some((url, depth)) = queue.pop_front() {
            if report.fetched >= self.opts.max_pages {
                report.complete = false;
                break;
            }
            if url.as_str() != start.as_str() && !self.wanted(&url) {
                report.filtered += 1;
                continue;
            }
            let host = site(&url);
            if !robots.contains_key(&host) {
                let r = self.robots(&url, &mut last_request);
                robots.insert(host.clone(), r);
            }
            let rules = &robots[&host];
            if !rules.allows(&path_and_query(&url)) {
                report.disallowed_by_robots += 1;
                continue;
            }
            let delay = self.opts.delay.max(rules.crawl_delay.unwrap_or_default());
            self.wait(&host, delay, &mut last_request);
            report.fetched += 1;
            let response = match self.agent.get(url.as_str()).call() {
                Ok(r) => r,
                Err(e) => {
                    report.errors.push(format!("{url}: {e}"));
                    continue;
                }
            };
            let status = response.status().as_u16();
            let header = |name: &str| {
                response
                    .headers()
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string)
            };
            let mut follow = |target: Url, next_depth: usize, queue: &mut VecDeque<(Url, usize)>| {
                if next_depth <= self.opts.max_depth
                    && (!self.opts.same_site || site(&target) == site(&start))
                    && seen.insert(canonical(&target))
                {
                    queue.push_back((target, next_depth));
                }
            };
            match status {
                200..=299 => {}
                301 | 302 | 303 | 307 | 308 => {
                    // A redirect is the same page under another name: same depth.
                    match header("location").and_then(|l| url.join(&l).ok()) {
                        Some(target) => follow(target, depth, &mut queue),
                        None => report.errors.push(format!("{url}: redirect without a usable Location")),
                    }
                    continue;
                }
                404 | 410 => {
                    report.gone.push(url.to_string());
                    continue;
                }
                _ => {
                    report.errors.push(format!("{url}: HTTP {status}"));
                    continue;
                }
            }
            let content_type = header("content-type");
            let mut response = response;
            let body = match response
                .body_mut()
                .with_config()
                .limit(self.opts.max_bytes)
                .read_to_vec()
            {
                Ok(b) => b,
                Err(e) => {
                    report.errors.push(format!("{url}: reading the body: {e}"));
                    continue;
                }
            };
            let links = page(Fetched {
                url: url.to_string(),
                depth,
                content_type,
                body,
            });
            for link in links {
                if let Ok(mut target) = Url::parse(&link) {
                    target.set_fragment(None);
                    follow(target, depth + 1, &mut queue);
                }
            }
        }
        if !queue.is_empty() {
            report.complete = false;
        }
        Ok(report)
    }

    pub(crate) fn wanted(&self, url: &Url) -> bool {
        let u = url.as_str();
        (self.opts.include.is_empty() || self.opts.include.iter().any(|p| wildcard(p, u)))
            && !self.opts.exclude.iter().any(|p| wildcard(p, u))
    }

    fn wait(&self, site: &str, delay: Duration, last: &mut HashMap<String, Instant>) {
        if let Some(t) = last.get(site) {
            let since = t.elapsed();
            if since < delay {
                std::thread::sleep(delay - since);
            }
        }
        last.insert(site.to_string(), Instant::now());
    }

    /// The site's robots.txt rules for our user agent; a missing file allows everything, and a server
    /// error disallows everything (the conservative reading of RFC 9309).
    fn robots(&self, url: &Url, last: &mut HashMap<String, Instant>) -> Robots {
        let Ok(robots_url) = url.join("/robots.txt") else {
            return Robots::default();
        };
        self.wait(&site(url), self.opts.delay, last);
        match self.agent.get(robots_url.as_str()).call() {
            Ok(mut r) if r.status().is_success() => {
                let text = r
                    .body_mut()
                    .with_config()
                    .limit(512 << 10)
                    .read_to_string()
                    .unwrap_or_default();
                Robots::parse(&text, &self.opts.user_agent)
            }
            Ok(r) if r.status().is_server_error() => Robots::disallow_all(),
            _ => Robots::default(),
        }
    }
}

pub(crate) fn same_site(a: &Url, b: &Url) -> bool {
    site(a) == site(b)
}

fn site(url: &Url) -> String {
    format!(
        "{}://{}:{}",
        url.scheme(),
        url.host_str().unwrap_or(""),
        url.port_or_known_default().unwrap_or(0)
    )
}

fn canonical(url: &Url) -> String {
    let mut u = url.clone();
    u.set_fragment(None);
    u.to_string()
}

fn path_and_query(url: &Url) -> String {
    match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_string(),
    }
}

/// `*` matches any run of characters; everything else literally; the whole text must match.
pub fn wildcard(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let Some(rest) = text.strip_prefix(parts[0]) else {
        return false;
    };
    let mut rest = rest;
    for (i, part) in parts[1..].iter().enumerate() {
        let last = i == parts.len() - 2;
        if last {
            return rest.ends_with(part);
        }
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    true
}

/// robots.txt rules that apply to one user agent (RFC 9309): the most specific matching rule wins,
/// Allow over Disallow on a tie.
#[derive(Debug, Clone, Default)]
pub struct Robots {
    rules: Vec<(bool, String)>,
    pub crawl_delay: Option<Duration>,
}

impl Robots {
    fn disallow_all() -> Self {
        Robots {
            rules: vec![(false, "/".into())],
            crawl_delay: None,
        }
    }

    /// Rules of the group naming our agent (by product token, case-insensitive), else the `*` group.
    pub fn parse(text: &str, user_agent: &str) -> Self {
        let token = user_agent
            .split(['/', ' '])
            .next()
            .unwrap_or(user_agent)
            .to_ascii_lowercase();
        // Groups: (agents, rules, delay).
        type Group = (Vec<String>, Vec<(bool, String)>, Option<Duration>);
        let mut groups: Vec<Group> = Vec::new();
        let mut in_agents = false;
        for line in text.lines() {
            let line = line.split('#').next().unwrap_or("").trim();
            let Some((key, value)) = line.split_once(':') else {
                continue;
            };
            let (key, value) = (key.trim().to_ascii_lowercase(), value.trim());
            match key.as_str() {
                "user-agent" => {
                    if !in_agents {
                        groups.push((Vec::new(), Vec::new(), None));
                    }
                    in_agents = true;
                    if let Some(g) = groups.last_mut() {
                        g.0.push(value.to_ascii_lowercase());
                    }
                }
                "allow" | "disallow" => {
                    in_agents = false;
                    if let Some(g) = groups.last_mut() {
                        // An empty Disallow allows everything: no rule.
                        if !value.is_empty() {
                            g.1.push((key == "allow", value.to_string()));
                        }
                    }
                }
                "crawl-delay" => {
                    in_agents = false;
                    if let (Some(g), Ok(secs)) = (groups.last_mut(), value.parse::<f64>()) {
                        if secs.is_finite() && secs >= 0.0 {
                            g.2 = Some(Duration::from_secs_f64(secs.min(60.0)));
                        }
                    }
                }
                _ => {}
            }
        }
        let pick = |want: &dyn Fn(&str) -> bool| {
            let chosen: Vec<_> = groups.iter().filter(|g| g.0.iter().any(|a| want(a))).collect();
            (!chosen.is_empty()).then(|| Robots {
                rules: chosen.iter().flat_map(|g| g.1.iter().cloned()).collect(),
                crawl_delay: chosen.iter().find_map(|g| g.2),
            })
        };
        pick(&|a: &str| a != "*" && token.starts_with(a))
            .or_else(|| pick(&|a: &str| a == "*"))
            .unwrap_or_default()
    }

    /// Whether a path (with its query) may be fetched.
    pub fn allows(&self, path: &str) -> bool {
        if path == "/robots.txt" {
            return true;
        }
        let mut best: Option<(usize, bool)> = None;
        for (allow, pattern) in &self.rules {
            if robots_match(pattern, path) {
                let len = pattern.len();
                best = match best {
                    Some((l, a)) if l > len || (l == len && a) => Some((l, a)),
                    _ => Some((len, *allow)),
                };
            }
        }
        best.is_none_or(|(_, allow)| allow)
    }
}

/// A robots.txt path pattern: a prefix match, with `*` for any run and a final `$` anchoring the end.
fn robots_match(pattern: &str, path: &str) -> bool {
    match pattern.strip_suffix('$') {
        Some(p) => wildcard(p, path),
        None => wildcard(&format!("{pattern}*"), path),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards() {
        assert!(wildcard("https://a.org/docs/*", "https://a.org/docs/x/y"));
        assert!(!wildcard("https://a.org/docs/*", "https://a.org/blog/"));
        assert!(wildcard("*.pdf", "https://a.org/x.pdf"));
        assert!(wildcard("*/print/*", "https://a.org/print/1"));
        assert!(!wildcard("*/print/*", "https://a.org/x"));
        assert!(wildcard("exact", "exact") && !wildcard("exact", "exactly"));
    }

    #[test]
    fn robots_groups_longest_match_and_delay() {
        let text = "# comment\nUser-agent: *\nDisallow: /private\nAllow: /private/open\nDisallow: /*.zip$\n\n\
                    User-agent: OtherBot\nDisallow: /\n\nUser-agent: quarrybot\nUser-agent: x\nDisallow: /secret\nCrawl-delay: 2\n";
        let r = Robots::parse(text, "QuarryBot/0.1");
        assert!(!r.allows("/secret/a") && r.allows("/private"));
        assert_eq!(r.crawl_delay, Some(Duration::from_secs(2)));
        let any = Robots::parse(text, "Mozilla/5.0");
        assert!(!any.allows("/private/x"));
        assert!(any.allows("/private/open/y"), "the longer Allow wins");
        assert!(!any.allows("/a/b.zip") && any.allows("/a/b.zip?x=1"));
        assert!(any.allows("/") && any.allows("/robots.txt"));
        assert!(Robots::parse("", "QuarryBot").allows("/anything"));
        assert!(Robots::parse("User-agent: *\nDisallow:\n", "QuarryBot").allows("/x"));
    }
}
