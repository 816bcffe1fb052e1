//! Web pages: main-content extraction rendered as Markdown-ish text, page metadata, and the page's outgoing links.
//!
//! Choosing the article is delegated to `dom_smoothie` (a port of Mozilla Readability, the algorithm behind Firefox
//! Reader View): on the Readability test pages in `shared/documents/html` its selected article matched Readability's
//! (token F1 1.000 on all five, before rendering), where the other crates measured lost sections or whole pages. This
//! module renders the selected article as Markdown-ish text (headings, lists, fences, pipe tables), so chunking can
//! follow the structure, and collects the links of the whole page for the crawler. When Readability finds no
//! article, the page's `<body>` is rendered without its navigation, headers, footers and sidebars.
//!
//! Images contribute their alt text only when it is text of the page: not for decorative images (`alt=""`), images
//! without alt (a file name is no text), alt text that is a file name, or icons beside text; formulas (TeX alt text
//! of formula images, MathML) read as Unicode text (`A Hermitian ⟺ a_ij=a̅_ji`, see `math.rs`), once. The
//! rendered text scores token F1 0.975 on average against the visible text of Readability's expected articles
//! (0.903-1.000 per page; `cargo test -p quarry-ingest --test html_f1_report -- --nocapture`); what remains is
//! mostly the formulas, which the expected articles carry only as images.
#![deny(unsafe_code)]

use std::collections::{HashMap, HashSet};

use dom_query::{Document, NodeRef};
use dom_smoothie::Readability;

use crate::math;

/// A web page's main content and metadata.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Article {
    pub title: Option<String>,
    pub byline: Option<String>,
    pub excerpt: Option<String>,
    pub lang: Option<String>,
    pub dir: Option<String>,
    /// Main content as Markdown-ish text: headings as `#`/`##`/... lines (levels from h1..h6, so a section path can be
    /// built), paragraphs separated by blank lines, list items as `- item`, code/pre as fenced ``` blocks, and tables as
    /// Markdown pipe rows: header row first (`| Name | Value |`), then a `|---|---|` line, then one line per row; cells
    /// never run together; blank line before and after a table. Navigation, ads, footers, scripts, styles dropped.
    pub text: String,
    /// Absolute URLs of every <a href> in the whole page (not just the article), resolved against `base_url`
    /// (or <base href>) when given, fragments stripped, deduplicated, in document order: the crawler follows these.
    pub links: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum HtmlError {
    #[error("the page has no readable text")]
    NoText,
}

/// Extracts the main content, metadata and links of an HTML page. `base_url` is the page's own URL, used to resolve
/// relative links (a `<base href>` in the page takes precedence, itself resolved against `base_url`). Without any
/// absolute base, only links that are already absolute are kept. Only `http`/`https` links are returned.
pub fn extract(html: &str, base_url: Option<&str>) -> Result<Article, HtmlError> {
    let doc = Document::from(html);
    let links = collect_links(&doc, base_url);
    // Readability rejects relative document URLs; the URL only serves to absolutise links in its output, unused here.
    let doc_url = base_url.filter(|u| url::Url::parse(u).is_ok());
    // dom_smoothie recurses over the tree: absurdly deep markup (never seen on real pages) skips to the fallback.
    let (mut article, mut kept) = (Article::default(), None);
    if max_depth(&doc) > MAX_READABILITY_DEPTH {
        kept = Some(doc);
    } else if let Ok(a) = Readability::with_document(doc, doc_url, None).and_then(|mut r| r.parse()) {
        article = Article {
            title: non_empty(Some(a.title)),
            byline: non_empty(a.byline),
            excerpt: non_empty(a.excerpt),
            lang: non_empty(a.lang),
            dir: non_empty(a.dir),
            text: render(Document::from(a.content.as_ref()).root(), false),
            links: Vec::new(),
        };
    }
    if article.text.is_empty() {
        // No article found (or an empty one): render the whole body minus page furniture, keep what metadata we can.
        // Readability consumed (and changed) the document: parse again, unless it was never given the document.
        let doc = kept.unwrap_or_else(|| Document::from(html));
        if let Ok(r) = Readability::with_document(doc.clone(), None, None) {
            let meta = r.get_article_metadata(r.parse_json_ld());
            article.title = article.title.or(non_empty(Some(meta.title)));
            article.byline = article.byline.or(non_empty(meta.byline));
            article.excerpt = article.excerpt.or(non_empty(meta.excerpt));
        }
        let html_el = doc.select_single("html");
        let attr = |name: &str| non_empty(html_el.attr(name).map(|s| s.to_string()));
        article.lang = article.lang.or_else(|| attr("lang"));
        article.dir = article.dir.or_else(|| attr("dir"));
        article.text = doc.body().map(|b| render(b, true)).unwrap_or_default();
    }
    if article.text.is_empty() {
        return Err(HtmlError::NoText);
    }
    article.links = links;
    Ok(article)
}

/// Element nesting depth of a document, computed without recursion.
fn max_depth(doc: &Document) -> usize {
    let mut deepest = 0;
    let mut stack = vec![(doc.root(), 0usize)];
    while let Some((node, depth)) = stack.pop() {
        deepest = deepest.max(depth);
        stack.extend(
            node.children_it(false)
                .filter(|c| c.is_element())
                .map(|c| (c, depth + 1)),
        );
    }
    deepest
}

fn non_empty(s: Option<String>) -> Option<String> {
    s.map(|s| s.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|s| !s.is_empty())
}

/// `http`/`https` targets of every `<a href>`, absolute, without fragments, deduplicated, in document order.
fn collect_links(doc: &Document, base_url: Option<&str>) -> Vec<String> {
    let page = base_url.and_then(|u| url::Url::parse(u).ok());
    let base_href = doc.select_single("base[href]").attr("href");
    let base = match (base_href, &page) {
        (Some(h), Some(p)) => p.join(h.trim()).ok().or_else(|| page.clone()),
        (Some(h), None) => url::Url::parse(h.trim()).ok(),
        (None, p) => p.clone(),
    };
    let mut seen = HashSet::new();
    let mut links = Vec::new();
    for node in doc.root().descendants_it() {
        if node.node_name().as_deref() != Some("a") {
            continue;
        }
        let Some(href) = node.attr("href") else { continue };
        let href = href.trim();
        if href.is_empty() || href.starts_with('#') {
            continue; // the page itself
        }
        let resolved = match &base {
            Some(b) => b.join(href),
            None => url::Url::parse(href),
        };
        let Ok(mut u) = resolved else { continue };
        if !matches!(u.scheme(), "http" | "https") {
            continue;
        }
        u.set_fragment(None);
        let s = String::from(u);
        if seen.insert(s.clone()) {
            links.push(s);
        }
    }
    links
}

/// Links of a page (see [`Article::links`]), for pages whose text could not be extracted.
pub fn links(html: &str, base_url: Option<&str>) -> Vec<String> {
    collect_links(&Document::from(html), base_url)
}

/// Elements whose content is never text of the page.
const DROP: &[&str] = &[
    "script", "style", "noscript", "template", "head", "title", "meta", "link", "svg", "math", "canvas", "iframe",
    "object", "embed", "audio", "video", "select", "option", "textarea", "input", "button",
];
/// Page furniture, dropped from rendered content (Readability has usually removed it already).
const FURNITURE: &[&str] = &["nav", "footer", "aside", "form", "dialog"];
/// Elements that start and end a block (a paragraph break) in rendered and visible text.
#[rustfmt::skip]
const BLOCKS: &[&str] = &[
    "address", "article", "aside", "blockquote", "center", "dd", "details", "dialog", "div", "dl", "dt", "fieldset",
    "figcaption", "figure", "footer", "form", "header", "hgroup", "hr", "legend", "li", "main", "nav", "ol", "p", "pre",
    "section", "summary", "table", "tbody", "td", "tfoot", "th", "thead", "tr", "ul", "caption", "h1", "h2", "h3",
    "h4", "h5", "h6", "br", "img", "option", "label",
];
/// Documents nested deeper than this skip Readability (whose recursion could exhaust a thread's stack).
const MAX_READABILITY_DEPTH: usize = 1000;
/// Images this small (width and height attributes, in pixels) are icons.
const ICON_MAX_PX: f64 = 48.0;
/// List nesting deeper than this is not indented further.
const MAX_LIST_INDENT: usize = 8;
/// Deeper than this, a subtree is rendered as plain text (keeps garbage markup from exhausting the stack).
const MAX_DEPTH: usize = 200;

/// Renders a DOM subtree as Markdown-ish text. `page` drops page headers too (used on whole bodies, not articles).
fn render(root: NodeRef<'_>, page: bool) -> String {
    let mut r = Renderer {
        page,
        ..Renderer::default()
    };
    r.walk(&root, 0);
    r.flush();
    r.out
}

#[derive(Default)]
struct Renderer {
    /// Finished blocks.
    out: String,
    /// The paragraph being collected, whitespace already collapsed; `\n` only from `<br>`.
    line: String,
    space: bool,
    /// Nesting of lists, and the depth of the list item whose first block is still to come.
    list_depth: usize,
    item: Option<usize>,
    last_was_item: bool,
    in_cell: bool,
    /// The table cell being rendered has no text of its own (only images, say): an icon's alt text is its value.
    cell_without_text: bool,
    in_pre: bool,
    page: bool,
    /// TeX of the last formula rendered from MathML, so that its fallback image does not repeat it.
    last_formula: Option<String>,
}

impl Renderer {
    fn text(&mut self, s: &str) {
        if !s.trim().is_empty() {
            self.last_formula = None;
        }
        for c in s.chars() {
            if c.is_whitespace() || matches!(c, '\u{feff}' | '\u{200b}' | '\u{00ad}') {
                self.space = true;
            } else {
                if self.space && !self.line.is_empty() && !self.line.ends_with('\n') {
                    self.line.push(' ');
                }
                self.space = false;
                self.line.push(c);
            }
        }
    }

    fn emit(&mut self, block: &str, is_item: bool) {
        if !self.out.is_empty() {
            self.out
                .push_str(if is_item && self.last_was_item { "\n" } else { "\n\n" });
        }
        self.out.push_str(block);
        self.last_was_item = is_item;
    }

    /// Ends the current paragraph (as a list item if one is pending).
    fn flush(&mut self) {
        let line = std::mem::take(&mut self.line);
        self.space = false;
        let lines: Vec<&str> = line.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
        if lines.is_empty() {
            return;
        }
        match self.item.take() {
            Some(depth) => {
                let indent = "  ".repeat(depth.saturating_sub(1).min(MAX_LIST_INDENT));
                let block = format!("{indent}- {}", lines.join(&format!("\n{indent}  ")));
                self.emit(&block, true);
            }
            None => self.emit(&lines.join("\n"), false),
        }
    }

    fn children(&mut self, node: &NodeRef<'_>, depth: usize) {
        for child in node.children_it(false) {
            self.walk(&child, depth + 1);
        }
    }

    /// A MathML formula, once, as readable text: from its presentation markup, else from its TeX.
    fn math(&mut self, node: &NodeRef<'_>) {
        let tex = math::mathml_tex(node);
        let text = math::mathml_text(node).or_else(|| tex.as_deref().map(math::latex_to_text));
        if let Some(text) = text {
            self.text(" ");
            self.text(&text);
            self.text(" ");
        }
        self.last_formula = tex.map(|t| math::tex_key(&t));
    }

    /// The text an image contributes: its alt text when that is text of the page. Nothing for images marked
    /// decorative (`alt=""`, `role="presentation"`) or without alt (their file name is no text of the page), alt
    /// text that is only a file name, or icons (small images) beside text, whose alt names the pictogram; an icon
    /// that is the only content of a table cell keeps its alt ("Yes", "Done"): it is the cell's value. A formula
    /// image (TeX alt text, as on Wikipedia) reads as the formula, unless MathML just gave the same formula.
    fn image_text(&self, node: &NodeRef<'_>) -> Option<String> {
        let alt = node.attr("alt")?;
        let alt = alt.trim();
        let role = node.attr("role").map(|r| r.trim().to_ascii_lowercase());
        if alt.is_empty() || matches!(role.as_deref(), Some("presentation" | "none")) {
            return None;
        }
        if math::looks_like_tex(alt) {
            if self.last_formula.as_deref() == Some(math::tex_key(alt).as_str()) {
                return None;
            }
            return Some(math::latex_to_text(alt));
        }
        if is_file_name(alt) || (is_icon(node) && !(self.in_cell && self.cell_without_text)) {
            return None;
        }
        Some(alt.to_string())
    }

    fn walk(&mut self, node: &NodeRef<'_>, depth: usize) {
        if node.is_text() {
            let t = node.text();
            if self.in_pre {
                self.line.push_str(&t);
            } else {
                self.text(&t);
            }
            return;
        }
        let Some(name) = node.node_name() else {
            if node.is_document() || node.is_fragment() {
                self.children(node, depth);
            }
            return;
        };
        let name: &str = &name;
        if name == "math" && !hidden(node) {
            self.math(node);
            return;
        }
        if DROP.contains(&name) || FURNITURE.contains(&name) || (self.page && name == "header") || hidden(node) {
            return;
        }
        if depth > MAX_DEPTH {
            self.text(&node.text());
            return;
        }
        match name {
            "h1" | "h2" | "h3" | "h4" | "h5" | "h6" if !self.in_cell => {
                self.flush();
                self.item = None;
                self.children(node, depth);
                let title = std::mem::take(&mut self.line)
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ");
                // Wiki section-edit links ("Heading[edit]") are not part of the heading.
                let title = title
                    .strip_suffix("[edit]")
                    .map_or(title.as_str(), str::trim_end)
                    .to_string();
                if !title.is_empty() {
                    let level = name[1..].parse::<usize>().unwrap_or(1);
                    self.emit(&format!("{} {title}", "#".repeat(level)), false);
                }
            }
            "pre" if !self.in_cell && !self.in_pre => {
                self.flush();
                self.in_pre = true;
                self.children(node, depth);
                self.in_pre = false;
                let code = std::mem::take(&mut self.line);
                let code = code.trim_matches('\n').trim_end();
                if !code.trim().is_empty() {
                    self.emit(&format!("```\n{code}\n```"), false);
                }
            }
            "code" | "kbd" | "samp" if !self.in_pre => {
                let empty = node.text().trim().is_empty();
                if !empty {
                    self.text(" ");
                    self.line.push('`');
                    self.children(node, depth);
                    self.line.push('`');
                    self.space = false;
                }
            }
            "br" => {
                if self.in_pre {
                    self.line.push('\n');
                } else if !self.in_cell {
                    self.line.push('\n');
                    self.space = false;
                } else {
                    self.space = true;
                }
            }
            "img" => {
                if let Some(alt) = self.image_text(node) {
                    self.text(" ");
                    self.text(&alt);
                    self.text(" ");
                }
            }
            "ul" | "ol" | "menu" if !self.in_cell => {
                self.flush();
                self.list_depth += 1;
                self.children(node, depth);
                self.flush();
                self.list_depth -= 1;
            }
            "li" if !self.in_cell => {
                self.flush();
                self.item = Some(self.list_depth.max(1));
                self.children(node, depth);
                self.flush();
                self.item = None;
            }
            "table" if !self.in_cell => {
                self.flush();
                self.table(node, depth);
            }
            _ if !self.in_cell && BLOCKS.contains(&name) => {
                self.flush();
                self.children(node, depth);
                self.flush();
            }
            _ => {
                if self.in_cell && BLOCKS.contains(&name) {
                    self.text(" ");
                }
                self.children(node, depth);
                if self.in_cell && BLOCKS.contains(&name) {
                    self.text(" ");
                }
            }
        }
    }

    /// A table as pipe rows (header first), or as plain blocks when it has a single column (a layout table).
    fn table(&mut self, table: &NodeRef<'_>, depth: usize) {
        let mut rows = Vec::new();
        let mut caption = None;
        table_rows(table, false, &mut rows, &mut caption);
        if let Some(c) = caption {
            let text = self.cell_text(&c, depth);
            if !text.is_empty() {
                self.emit(&text, false);
            }
        }
        let width = rows
            .iter()
            .map(|r| r.cells.iter().map(|(_, span)| span).sum::<usize>())
            .max()
            .unwrap_or(0);
        if width <= 1 {
            for row in &rows {
                for (cell, _) in &row.cells {
                    self.children(cell, depth);
                    self.flush();
                }
            }
            return;
        }
        let mut lines: Vec<String> = Vec::new();
        for row in &rows {
            let mut cells: Vec<String> = Vec::with_capacity(width);
            for (cell, span) in &row.cells {
                cells.push(self.cell_text(cell, depth).replace('|', "\\|"));
                cells.extend(std::iter::repeat_n(String::new(), span - 1));
            }
            if cells.iter().all(String::is_empty) {
                continue;
            }
            cells.resize(width, String::new());
            lines.push(format!("| {} |", cells.join(" | ")));
        }
        if lines.is_empty() {
            return;
        }
        // The header row: the first row (a `<thead>` row or all `<th>`, or else simply the first one).
        lines.insert(1, format!("|{}", "---|".repeat(width)));
        self.emit(&lines.join("\n"), false);
    }

    fn cell_text(&mut self, cell: &NodeRef<'_>, depth: usize) -> String {
        let mut sub = Renderer {
            in_cell: true,
            cell_without_text: cell.text().trim().is_empty(),
            page: self.page,
            ..Renderer::default()
        };
        sub.children(cell, depth);
        sub.line.split_whitespace().collect::<Vec<_>>().join(" ")
    }
}

struct Row<'a> {
    cells: Vec<(NodeRef<'a>, usize)>,
}

/// Rows of a table (not of tables nested in its cells), with each cell's column span.
fn table_rows<'a>(node: &NodeRef<'a>, nested: bool, rows: &mut Vec<Row<'a>>, caption: &mut Option<NodeRef<'a>>) {
    for child in node.children_it(false) {
        match child.node_name().as_deref() {
            Some("tr") => {
                let cells = child
                    .children_it(false)
                    .filter(|c| matches!(c.node_name().as_deref(), Some("td" | "th")))
                    .map(|c| {
                        let span = c
                            .attr("colspan")
                            .and_then(|s| s.trim().parse::<usize>().ok())
                            .unwrap_or(1);
                        (c, span.clamp(1, 50))
                    })
                    .collect();
                rows.push(Row { cells });
            }
            Some("caption") if caption.is_none() => *caption = Some(child),
            Some("thead" | "tbody" | "tfoot") if !nested => table_rows(&child, true, rows, caption),
            _ => {}
        }
    }
}

/// Inline `display:none` or the `hidden` attribute.
fn hidden(node: &NodeRef<'_>) -> bool {
    node.has_attr("hidden")
        || node.attr("style").is_some_and(|s| {
            let s: String = s
                .chars()
                .filter(|c| !c.is_whitespace())
                .collect::<String>()
                .to_lowercase();
            s.contains("display:none") || s.contains("visibility:hidden")
        })
}

/// Alt text that is only a file name (`Company logo.png`, as tools fill it in): not a description.
fn is_file_name(alt: &str) -> bool {
    const IMAGE_EXTENSIONS: &[&str] = &[
        "png", "jpg", "jpeg", "gif", "svg", "webp", "bmp", "tif", "tiff", "ico", "avif",
    ];
    alt.rsplit_once('.').is_some_and(|(stem, ext)| {
        !stem.is_empty() && !ext.contains(' ') && IMAGE_EXTENSIONS.contains(&ext.to_ascii_lowercase().as_str())
    })
}

/// Icons: images whose declared size (`width`/`height` attributes, in pixels) is at most [`ICON_MAX_PX`] in every
/// declared dimension. Images without a declared size are not icons.
fn is_icon(node: &NodeRef<'_>) -> bool {
    let px = |name: &str| {
        node.attr(name)
            .and_then(|v| v.trim().trim_end_matches("px").trim().parse::<f64>().ok())
    };
    let sizes: Vec<f64> = [px("width"), px("height")].into_iter().flatten().collect();
    !sizes.is_empty() && sizes.iter().all(|&s| s <= ICON_MAX_PX)
}

/// Tokens for [`text_similarity`]: maximal runs of alphanumeric characters, lowercased.
fn tokens(s: &str) -> impl Iterator<Item = String> + '_ {
    s.split(|c: char| !c.is_alphanumeric())
        .filter(|t| !t.is_empty())
        .map(str::to_lowercase)
}

/// Similarity in [0,1] between two texts: token-level F1 over bags of words. Tokens are maximal runs of
/// alphanumeric characters (Unicode), lowercased, so punctuation and Markdown markup (`#`, `|`, `-`, backticks) do
/// not count. With `common` the size of the multiset intersection, precision = common/|a|, recall = common/|b|,
/// F1 = 2PR/(P+R). Symmetric; two texts without tokens are identical (1.0), one empty text scores 0.0.
pub fn text_similarity(a: &str, b: &str) -> f64 {
    let mut counts: HashMap<String, usize> = HashMap::new();
    let mut na = 0usize;
    for t in tokens(a) {
        *counts.entry(t).or_default() += 1;
        na += 1;
    }
    let (mut nb, mut common) = (0usize, 0usize);
    for t in tokens(b) {
        nb += 1;
        if let Some(c) = counts.get_mut(&t).filter(|c| **c > 0) {
            *c -= 1;
            common += 1;
        }
    }
    if na == 0 && nb == 0 {
        return 1.0;
    }
    if common == 0 {
        return 0.0;
    }
    let (p, r) = (common as f64 / na as f64, common as f64 / nb as f64);
    2.0 * p * r / (p + r)
}

/// Visible text of an HTML fragment (or page): text nodes outside scripts, styles, `<head>`, SVG/MathML and form
/// controls, with whitespace between blocks and table cells, whitespace runs collapsed to one space.
pub fn visible_text(html: &str) -> String {
    let doc = Document::from(html);
    let mut out = String::new();
    let mut stack = vec![(doc.root(), false)];
    while let Some((node, closing)) = stack.pop() {
        if closing {
            out.push(' ');
        } else if node.is_text() {
            out.push_str(&node.text());
        } else if let Some(name) = node.node_name() {
            if !DROP.contains(&name.as_ref()) {
                if BLOCKS.contains(&name.as_ref()) {
                    out.push(' ');
                    stack.push((node, true));
                }
                stack.extend(node.children_it(true).map(|c| (c, false)));
            }
        } else {
            stack.extend(node.children_it(true).map(|c| (c, false)));
        }
    }
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Web pages saved as files (and pages fetched by the crawler): the main content as one Markdown document.
pub struct HtmlLoader;

impl HtmlLoader {
    /// Builds the document for a page whose bytes are decoded already; `url` resolves relative links.
    pub fn document(
        source: &str,
        stem: &str,
        html: &str,
        url: Option<&str>,
    ) -> Result<(quarry_core::Document, Vec<String>), HtmlError> {
        use quarry_core::{MetaValue, Metadata};
        let article = extract(html, url)?;
        let mut metadata = Metadata::new();
        metadata.insert("format".into(), MetaValue::String("html".into()));
        for (key, value) in [
            ("byline", &article.byline),
            ("lang", &article.lang),
            ("dir", &article.dir),
            ("excerpt", &article.excerpt),
        ] {
            if let Some(v) = value {
                metadata.insert(key.into(), MetaValue::String(v.clone()));
            }
        }
        if let Some(u) = url {
            metadata.insert("url".into(), MetaValue::String(u.to_string()));
        }
        let doc = quarry_core::Document {
            id: source.to_string(),
            source: source.to_string(),
            title: Some(article.title.unwrap_or_else(|| stem.to_string())),
            text: article.text,
            metadata,
        };
        Ok((doc, article.links))
    }
}

/// Decodes a page: a byte-order mark, then the `charset` the page declares in its first 1024 bytes, then UTF-8.
pub fn decode(bytes: &[u8]) -> Result<String, usize> {
    if let Some((enc, bom_len)) = encoding_rs::Encoding::for_bom(bytes) {
        return Ok(enc.decode_without_bom_handling(&bytes[bom_len..]).0.into_owned());
    }
    if let Ok(s) = std::str::from_utf8(bytes) {
        return Ok(s.to_string());
    }
    let head = String::from_utf8_lossy(&bytes[..bytes.len().min(1024)]).to_ascii_lowercase();
    let declared = head.find("charset=").and_then(|i| {
        let rest = head[i + 8..].trim_start_matches(['"', '\'']);
        let end = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'))
            .unwrap_or(rest.len());
        encoding_rs::Encoding::for_label(&rest.as_bytes()[..end])
    });
    match declared {
        Some(enc) if enc != encoding_rs::UTF_8 => Ok(enc.decode_without_bom_handling(bytes).0.into_owned()),
        _ => Err(std::str::from_utf8(bytes)
            .map_err(|e| e.valid_up_to())
            .err()
            .unwrap_or(0)),
    }
}

impl crate::loader::Loader for HtmlLoader {
    fn name(&self) -> &'static str {
        "html"
    }

    fn load(
        &self,
        path: &std::path::Path,
        source: &str,
        bytes: &[u8],
    ) -> Result<crate::loader::Loaded, crate::error::Error> {
        let html = decode(bytes).map_err(|offset| crate::error::Error::InvalidUtf8 {
            path: path.to_path_buf(),
            offset,
        })?;
        let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or(source);
        let (doc, _links) =
            HtmlLoader::document(source, stem, &html, None).map_err(|e| crate::error::Error::Invalid {
                path: path.to_path_buf(),
                reason: e.to_string(),
            })?;
        Ok(crate::loader::Loaded {
            documents: vec![doc],
            format: Some(crate::chunker::TextFormat::Markdown),
            errors: vec![],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROSE: &str = "Quarry indexes documents so that questions about them can be answered with citations. \
        Each loader turns a file into text with structure, and the chunker cuts that text along its headings. ";

    fn page(article: &str) -> String {
        format!(
            "<!DOCTYPE html><html lang=\"en\" dir=\"ltr\"><head><title>The Page</title>\
             <style>p {{ color: red }}</style><script>var tracking = 'SCRIPTTEXT';</script></head><body>\
             <nav><a href=\"/home\">NAVLINK Home</a> <a href=\"/about\">NAVLINK About</a></nav>\
             <div id=\"sidebar\" class=\"sidebar\"><ul><li><a href=\"/ad\">ADTEXT buy now</a></li></ul></div>\
             <article>{article}</article>\
             <footer><p>FOOTERTEXT Copyright 2024</p><a href=\"/legal\">Legal</a></footer></body></html>"
        )
    }

    #[test]
    fn nav_footer_scripts_dropped() {
        let html = page(&format!(
            "<h1>Heading One</h1><p>{PROSE}{PROSE}{PROSE}</p><p>Second paragraph. {PROSE}{PROSE}</p>"
        ));
        let a = extract(&html, None).unwrap();
        for noise in ["NAVLINK", "FOOTERTEXT", "SCRIPTTEXT", "color: red", "ADTEXT"] {
            assert!(!a.text.contains(noise), "{noise} in {}", a.text);
        }
        assert!(a.text.contains("Quarry indexes documents"));
        assert!(
            a.text.contains("\n\nSecond paragraph."),
            "paragraphs separated by a blank line: {}",
            a.text
        );
        assert_eq!(a.lang.as_deref(), Some("en"));
        assert_eq!(a.dir.as_deref(), Some("ltr"));
        assert_eq!(a.title.as_deref(), Some("The Page"));
    }

    #[test]
    fn heading_levels_lists_and_code() {
        let html = page(&format!(
            "<h2>Install</h2><p>{PROSE}{PROSE}</p><h3>From source</h3><p>{PROSE}{PROSE}</p><ul><li>first item</li><li>second \
             <b>item</b><ul><li>nested</li></ul></li></ul><pre><code>cargo build\n  --release</code></pre>\
             <h4>Deep</h4><p>{PROSE}</p>"
        ));
        let t = extract(&html, None).unwrap().text;
        assert!(t.contains("\n## Install\n") || t.starts_with("## Install\n"), "{t}");
        assert!(t.contains("\n### From source\n"), "{t}");
        assert!(t.contains("\n#### Deep\n"), "{t}");
        assert!(t.contains("- first item\n- second item\n  - nested"), "{t}");
        assert!(t.contains("```\ncargo build\n  --release\n```"), "{t}");
    }

    #[test]
    fn table_becomes_pipe_rows_with_header() {
        let html = page(&format!(
            "<p>{PROSE}{PROSE}{PROSE}</p><table><thead><tr><th>Name</th><th>Value</th></tr></thead><tbody>\
             <tr><td>alpha</td><td>1</td></tr><tr><td>beta<br>gamma</td><td>2|3</td></tr></tbody></table><p>{PROSE}{PROSE}</p>"
        ));
        let t = extract(&html, None).unwrap().text;
        let want = "\n\n| Name | Value |\n|---|---|\n| alpha | 1 |\n| beta gamma | 2\\|3 |\n\n";
        assert!(t.contains(want), "{t}");
    }

    #[test]
    fn table_without_th_uses_first_row_and_keeps_cells_apart() {
        let html = "<table><tr><td></td><td>UX</td><td>UI</td></tr>\
                    <tr><td>Load map</td><td><img src=\"/img/done.png\"></td><td>no</td></tr>\
                    <tr><td colspan=\"2\">Save</td><td>yes</td></tr></table>";
        let t = render(Document::from(html).root(), false);
        assert_eq!(
            t,
            "|  | UX | UI |\n|---|---|---|\n| Load map |  | no |\n| Save |  | yes |"
        );
        let one_column = "<table><tr><td><p>Layout only</p></td></tr><tr><td>Second</td></tr></table>";
        assert_eq!(
            render(Document::from(one_column).root(), false),
            "Layout only\n\nSecond"
        );
    }

    #[test]
    fn image_alt_text_only_when_it_is_text_of_the_page() {
        let html = "<p>Intro <img src=\"/i/spacer.gif\" alt=\"\"> <img src=\"/i/photo-1234.jpg\"> \
                    <img src=\"/i/x.png\" alt=\"Company logo.png\"> \
                    <img src=\"/i/b.png\" alt=\"Book\" width=\"16\" height=\"16\"> Books \
                    <img src=\"/i/c.png\" alt=\"Deco\" role=\"presentation\"> \
                    <img src=\"/i/chart.png\" alt=\"Sales chart for 2024\" width=\"600\"> end</p>\
                    <table><tr><th>Feature</th><th>Status</th><th>Note</th></tr>\
                    <tr><td>Export</td><td><img src=\"/i/yes.png\" alt=\"Yes\" width=\"20px\"></td>\
                    <td><img src=\"/i/warn.png\" alt=\"Warning\" width=\"12\"> slow</td></tr></table>";
        let t = render(Document::from(html).root(), false);
        assert_eq!(
            t,
            "Intro Books Sales chart for 2024 end\n\n| Feature | Status | Note |\n|---|---|---|\n| Export | Yes | slow |"
        );
    }

    #[test]
    fn formulas_read_as_text_once() {
        // Wikipedia: hidden MathML, then the fallback image whose alt is the TeX.
        let wiki = "<p>so <span><span style=\"display: none;\"><math alttext=\"{\\displaystyle A=A^{\\mathsf {H}}}\">\
                    <mi>A</mi></math></span><img src=\"/m/1\" alt=\"{\\displaystyle A=A^{\\mathsf {H}}}\"></span> holds</p>";
        assert_eq!(render(Document::from(wiki).root(), false), "so A=A^H holds");
        // Visible MathML and its fallback image: the formula once, from the MathML.
        let both =
            "<p>so <math alttext=\"a_{ij}\\leq b\"><msub><mi>a</mi><mi>ij</mi></msub><mo>≤</mo><mi>b</mi></math>\
                    <img src=\"/m/2\" alt=\"a_{ij}\\leq b\"> holds</p>";
        assert_eq!(render(Document::from(both).root(), false), "so a_ij ≤ b holds");
        // MathML with only a TeX annotation; a formula image in a table cell.
        let tex_only = "<p>so <math><semantics><annotation encoding=\"application/x-tex\">\\frac{1}{2}</annotation>\
                        </semantics></math></p><table><tr><td>f</td><td><img src=\"/m/3\" width=\"10\" \
                        alt=\"\\sqrt{x}\"></td></tr></table>";
        assert_eq!(
            render(Document::from(tex_only).root(), false),
            "so 1/2\n\n| f | √x |\n|---|---|"
        );
    }

    #[test]
    fn links_resolved_deduplicated_in_order() {
        let html = page(&format!(
            "<p>{PROSE}{PROSE}{PROSE} <a href=\"docs/intro.html#part\">intro</a> <a href=\"https://other.org/x?q=1#f\">x</a> \
             <a href=\"#local\">here</a> <a href=\"mailto:a@b.c\">mail</a> <a href=\"/home\">again</a> \
             <a href=\"javascript:void(0)\">js</a> <a href=\" docs/intro.html \">dup</a></p>"
        ));
        let a = extract(&html, Some("https://example.com/site/page.html")).unwrap();
        assert_eq!(
            a.links,
            vec![
                "https://example.com/home",
                "https://example.com/about",
                "https://example.com/ad",
                "https://example.com/site/docs/intro.html",
                "https://other.org/x?q=1",
                "https://example.com/legal",
            ]
        );
        // <base href> wins over the page URL; without any base only absolute links survive.
        let based = "<html><head><base href=\"/v2/\"></head><body><p>text</p><a href=\"a\">a</a></body></html>";
        assert_eq!(
            extract(based, Some("http://h.org/x/y")).unwrap().links,
            vec!["http://h.org/v2/a"]
        );
        let a = extract(&html, None).unwrap();
        assert_eq!(a.links, vec!["https://other.org/x?q=1"]);
        // A relative "base URL" is ignored rather than failing the page.
        assert!(extract(&html, Some("not a url")).is_ok());
    }

    #[test]
    fn broken_markup_does_not_panic() {
        let inputs = [
            String::new(),
            "<html><head><title>T</ti".to_string(),
            "<<<>>><p <a href='x'>unclosed <table><td>cell<tr><li>item</ul></table></b></i><script>var x='<".into(),
            format!("<p>{PROSE}{PROSE}{PROSE}{PROSE}</p><div><table><tr><td>cut here"),
            "\u{0}\u{feff}<p>\u{0}zero</p>".into(),
            format!("{}deep{}", "<div><span>".repeat(1500), "</b>".repeat(10)),
            format!("<ul>{}x", "<li><ul>".repeat(300)),
            "<a href=\"http://[::1\">bad url</a><a href=\"http://ok.org/\">ok</a>".into(),
        ];
        for html in &inputs {
            match extract(html, Some("http://example.com/")) {
                Ok(a) => assert!(!a.text.trim().is_empty()),
                Err(HtmlError::NoText) => {}
            }
        }
        let a = extract(&inputs[3], None).unwrap();
        assert!(a.text.contains("cut here"), "{}", a.text);
        assert_eq!(extract(&inputs[7], None).unwrap().links, vec!["http://ok.org/"]);
    }

    #[test]
    fn empty_pages_have_no_text() {
        for html in [
            "",
            "<html><body><script>x()</script><nav>Menu</nav></body></html>",
            "<p>   </p>",
        ] {
            assert!(matches!(extract(html, None), Err(HtmlError::NoText)), "{html}");
        }
    }

    #[test]
    fn similarity_and_visible_text() {
        assert_eq!(text_similarity("Hello, World!", "hello world"), 1.0);
        assert_eq!(text_similarity("", ""), 1.0);
        assert_eq!(text_similarity("a b", ""), 0.0);
        assert_eq!(text_similarity("apple", "pear"), 0.0);
        // "a b c d" vs "a b": precision 2/4, recall 2/2 -> F1 2/3.
        assert!((text_similarity("a b c d", "a b") - 2.0 / 3.0).abs() < 1e-9);
        assert!((text_similarity("## Title\n| x | y |", "<Title> x, y") - 1.0).abs() < 1e-9);
        let v = visible_text(
            "<div><script>hidden()</script><p>One<b>Two</b></p><table><tr><td>a</td><td>b</td></tr></table></div>",
        );
        assert_eq!(v, "OneTwo a b");
        assert_eq!(visible_text("<p>حَبيبي\n  habibi</p>"), "حَبيبي habibi");
    }
}
