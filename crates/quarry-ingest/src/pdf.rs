//! PDF text extraction: positioned glyphs from `pdf-extract` (which parses with `lopdf` and decodes fonts),
//! then our own layout on top: lines, columns (reading order), paragraphs, tables as Markdown pipe rows,
//! right-to-left runs, ligature expansion and hyphenation repair.
//! Library calls run under `catch_unwind` (the parser can panic on malformed input) and under a time budget;
//! form XObjects that draw themselves (a cycle that would overflow the stack) are detected before a page is run.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

use pdf_extract::{Dictionary, Document, MediaBox, Object, ObjectId, OutputDev, OutputError, Transform};

const MAX_PAGES: usize = 20_000; // refuse documents claiming more pages than this
const MAX_GLYPHS_PER_PAGE: usize = 500_000; // stop reading a page past this many glyphs
const TIME_BUDGET: Duration = Duration::from_secs(120); // wall-clock budget for one document
const MAX_FORM_DEPTH: usize = 32; // nesting depth of form XObjects we accept

pub struct PdfText {
    /// One string per page, in page order (reading order, paragraphs separated by a blank line,
    /// ligatures expanded, line-end hyphenation repaired, tables as Markdown pipe rows).
    pub pages: Vec<String>,
    /// Document title from the info dictionary / XMP if present.
    pub title: Option<String>,
    /// 1-based numbers of pages that have no extractable text (scanned images, or a page that failed to parse).
    pub empty_pages: Vec<usize>,
}

#[derive(Debug, thiserror::Error)]
pub enum PdfError {
    #[error("the PDF is encrypted")]
    Encrypted,
    #[error("not a readable PDF: {0}")]
    Corrupt(String),
    #[error("no page has extractable text (a scanned PDF needs OCR)")]
    NoText,
}

/// Extract the text of every page of a PDF held in memory.
pub fn extract(bytes: &[u8]) -> Result<PdfText, PdfError> {
    let deadline = Instant::now() + TIME_BUDGET;
    let mut doc = match catch_unwind(AssertUnwindSafe(|| Document::load_mem(bytes))) {
        Ok(Ok(doc)) => doc,
        Ok(Err(e)) if ["crypt", "password"].iter().any(|w| e.to_string().contains(w)) => {
            return Err(PdfError::Encrypted)
        }
        Ok(Err(e)) => return Err(PdfError::Corrupt(e.to_string())),
        Err(_) => return Err(PdfError::Corrupt("the parser panicked while loading".into())),
    };
    if doc.is_encrypted() || doc.trailer.get(b"Encrypt").is_ok() {
        // An empty user password (owner-password-only files) opens like a normal document.
        match catch_unwind(AssertUnwindSafe(|| doc.decrypt(""))) {
            Ok(Ok(())) => {}
            _ => return Err(PdfError::Encrypted),
        }
    }
    let page_ids: Vec<(u32, ObjectId)> = match catch_unwind(AssertUnwindSafe(|| doc.get_pages())) {
        Ok(pages) => pages.into_iter().collect(),
        Err(_) => return Err(PdfError::Corrupt("page tree is unreadable".into())),
    };
    if page_ids.len() > MAX_PAGES {
        return Err(PdfError::Corrupt(format!("absurd page count {}", page_ids.len())));
    }
    let title = catch_unwind(AssertUnwindSafe(|| document_title(&doc))).ok().flatten();
    let (mut pages, mut empty_pages, mut failed) = (Vec::new(), Vec::new(), 0usize);
    for (index, (number, id)) in page_ids.iter().enumerate() {
        if Instant::now() > deadline {
            return Err(PdfError::Corrupt("extraction exceeded its time budget".into()));
        }
        let text = page_glyphs(&doc, *number, *id, deadline).map(|mut c| layout_page(&mut c));
        failed += usize::from(text.is_none());
        let text = text.unwrap_or_default();
        if text.trim().is_empty() {
            empty_pages.push(index + 1);
        }
        pages.push(text);
    }
    if failed == pages.len() {
        return Err(PdfError::Corrupt("no page could be parsed".into()));
    }
    if empty_pages.len() == pages.len() {
        return Err(PdfError::NoText);
    }
    Ok(PdfText {
        pages,
        title,
        empty_pages,
    })
}

/// `dict[key]`, following one indirect reference.
fn get<'a>(doc: &'a Document, dict: &'a Dictionary, key: &[u8]) -> Option<&'a Object> {
    match dict.get(key).ok()? {
        Object::Reference(id) => doc.get_object(*id).ok(),
        other => Some(other),
    }
}

fn dict<'a>(doc: &'a Document, dict: &'a Dictionary, key: &[u8]) -> Option<&'a Dictionary> {
    get(doc, dict, key)?.as_dict().ok()
}

fn document_title(doc: &Document) -> Option<String> {
    let title = dict(doc, &doc.trailer, b"Info").and_then(|d| get(doc, d, b"Title")?.as_str().ok());
    let title = title.map(|t| decode_text_string(t).trim().to_string());
    title.filter(|t| !t.is_empty()).or_else(|| xmp_title(doc))
}

fn xmp_title(doc: &Document) -> Option<String> {
    let stream = get(doc, doc.catalog().ok()?, b"Metadata")?.as_stream().ok()?;
    let data = stream.decompressed_content().unwrap_or_else(|_| stream.content.clone());
    let xml = String::from_utf8_lossy(&data);
    let rest = &xml[xml.find("<dc:title")?..];
    let start = rest[rest.find("<rdf:li")?..].find('>')? + rest.find("<rdf:li")? + 1;
    let end = rest[start..].find("</rdf:li>")? + start;
    let title = rest[start..end].replace("&amp;", "&");
    Some(title.trim().to_string()).filter(|t| !t.is_empty())
}

/// PDF text strings: UTF-16BE with a byte-order mark, UTF-8 with a BOM, else PDFDocEncoding (≈ Latin-1).
fn decode_text_string(bytes: &[u8]) -> String {
    if let Some(rest) = bytes.strip_prefix(&[0xFE, 0xFF]) {
        let units: Vec<u16> = rest.chunks_exact(2).map(|c| u16::from_be_bytes([c[0], c[1]])).collect();
        return String::from_utf16_lossy(&units);
    }
    match bytes.strip_prefix(&[0xEF, 0xBB, 0xBF]) {
        Some(rest) => String::from_utf8_lossy(rest).into_owned(),
        None => bytes.iter().map(|&b| char::from(b)).collect(),
    }
}

/// True when a form XObject reachable from `resources` draws itself (the parser would recurse until the stack
/// overflows, which aborts the process and cannot be caught) or forms nest absurdly deep.
fn has_form_cycle(doc: &Document, resources: Option<&Dictionary>, stack: &mut Vec<ObjectId>, seen: &mut usize) -> bool {
    let Some(xobjects) = resources.and_then(|r| dict(doc, r, b"XObject")) else {
        return false;
    };
    for (_, value) in xobjects.iter() {
        *seen += 1;
        let Object::Reference(id) = value else { continue };
        if stack.contains(id) || stack.len() >= MAX_FORM_DEPTH || *seen > 100_000 {
            return true;
        }
        let Some(form) = doc.get_object(*id).ok().and_then(|o| o.as_stream().ok()) else {
            continue;
        };
        if form.dict.get(b"Subtype").ok().and_then(|o| o.as_name().ok()) != Some(b"Form".as_slice()) {
            continue;
        }
        // A form without resources of its own draws with its parent's.
        let inner = dict(doc, &form.dict, b"Resources").or(resources);
        stack.push(*id);
        let cyclic = has_form_cycle(doc, inner, stack, seen);
        stack.pop();
        if cyclic {
            return true;
        }
    }
    false
}

/// The page's resources, inherited from the page tree when the page has none.
fn page_resources(doc: &Document, page: ObjectId) -> Option<&Dictionary> {
    let mut current = doc.get_dictionary(page).ok()?;
    for _ in 0..64 {
        if let Some(res) = dict(doc, current, b"Resources") {
            return Some(res);
        }
        let parent = current.get(b"Parent").ok()?.as_reference().ok()?;
        current = doc.get_dictionary(parent).ok()?;
    }
    None
}

/// Run the content stream of one page, collecting glyphs. `None` when the page cannot be interpreted.
fn page_glyphs(doc: &Document, number: u32, id: ObjectId, deadline: Instant) -> Option<Collector> {
    if has_form_cycle(doc, page_resources(doc, id), &mut Vec::new(), &mut 0) {
        return None;
    }
    let mut out = Collector {
        deadline: Some(deadline),
        ..Collector::default()
    };
    match catch_unwind(AssertUnwindSafe(|| pdf_extract::output_doc_page(doc, &mut out, number))) {
        Ok(Ok(())) => Some(out),
        // Keep what was drawn before a late error (e.g. one bad font) if there is any.
        _ if !out.glyphs.is_empty() => Some(out),
        _ => None,
    }
}

#[derive(Default)]
struct Collector {
    glyphs: Vec<Frag>,
    /// Text drawn rotated (margin notes, vertical labels), kept in drawing order.
    rotated: String,
    pending_space: bool,
    deadline: Option<Instant>,
}

impl OutputDev for Collector {
    fn begin_page(&mut self, _: u32, _: &MediaBox, _: Option<(f64, f64, f64, f64)>) -> Result<(), OutputError> {
        Ok(())
    }
    fn end_page(&mut self) -> Result<(), OutputError> {
        Ok(())
    }
    fn output_character(&mut self, trm: &Transform, w: f64, _: f64, size: f64, t: &str) -> Result<(), OutputError> {
        if self.deadline.is_some_and(|d| Instant::now() > d) || self.glyphs.len() >= MAX_GLYPHS_PER_PAGE {
            return Err(OutputError::FormatError(std::fmt::Error));
        }
        let text = normalise_chars(t);
        if text.trim().is_empty() {
            self.pending_space = true;
            return Ok(());
        }
        if trm.m12.abs() > 0.5 * trm.m11.abs() {
            let sep = if std::mem::take(&mut self.pending_space) {
                " "
            } else {
                ""
            };
            self.rotated.push_str(&format!("{sep}{text}"));
            return Ok(());
        }
        let scale_y = trm.m21.hypot(trm.m22);
        let size = size.abs() * scale_y;
        let advance = w * size.max(0.0) * trm.m11.hypot(trm.m12) / scale_y.max(f64::MIN_POSITIVE);
        let (x0, y) = (trm.m31, trm.m32);
        if !(x0.is_finite() && y.is_finite() && size.is_finite() && advance.is_finite()) || size <= 0.0 {
            return Ok(());
        }
        let advance = if advance > 0.0 { advance } else { size * 0.5 };
        let space_before = std::mem::take(&mut self.pending_space);
        self.glyphs
            .push(Frag::glyph(x0, x0 + advance, y, size, text, space_before));
        Ok(())
    }
    fn begin_word(&mut self) -> Result<(), OutputError> {
        Ok(())
    }
    fn end_word(&mut self) -> Result<(), OutputError> {
        Ok(())
    }
    fn end_line(&mut self) -> Result<(), OutputError> {
        Ok(())
    }
}

/// One glyph, or a run of glyphs on one baseline with no wide gap (a word group, a column's share of a line, a cell).
#[derive(Clone, Debug)]
struct Frag {
    x0: f64,
    x1: f64,
    y: f64,
    size: f64,
    text: String,
    space_before: bool,
}

impl Frag {
    fn glyph(x0: f64, x1: f64, y: f64, size: f64, text: String, space_before: bool) -> Frag {
        Frag {
            x0,
            x1,
            y,
            size,
            text,
            space_before,
        }
    }
}

type Rows = Vec<Vec<String>>;

enum Block {
    Text(Vec<Frag>),
    Table(Rows),
}

fn layout_page(collector: &mut Collector) -> String {
    let lines = build_lines(std::mem::take(&mut collector.glyphs));
    let (tables, rest) = find_tables(lines);
    let mut out: Vec<String> = Vec::new();
    for block in reading_order(rest.into_iter().flatten().collect(), tables) {
        let text = match block {
            Block::Text(frags) => paragraphs(&frags),
            Block::Table(rows) => render_table(&rows),
        };
        if !text.trim().is_empty() {
            out.push(text.trim_matches('\n').to_string());
        }
    }
    out.push(collector.rotated.split_whitespace().collect::<Vec<_>>().join(" "));
    out.retain(|b| !b.is_empty());
    out.join("\n\n")
}

/// Group glyphs by baseline, then split each line into fragments at gaps wider than about one em.
fn build_lines(mut glyphs: Vec<Frag>) -> Vec<Vec<Frag>> {
    glyphs.sort_by(|a, b| b.y.total_cmp(&a.y).then(a.x0.total_cmp(&b.x0)));
    let mut rows: Vec<Vec<Frag>> = Vec::new();
    for g in glyphs {
        match rows.last_mut() {
            Some(row) if (row[0].y - g.y).abs() <= 0.3 * row[0].size.max(g.size) => row.push(g),
            _ => rows.push(vec![g]),
        }
    }
    let mut lines = Vec::new();
    for mut row in rows {
        row.sort_by(|a, b| a.x0.total_cmp(&b.x0));
        // Drop fake-bold duplicates: the same glyph drawn again at (almost) the same spot.
        row.dedup_by(|b, a| a.text == b.text && (a.x0 - b.x0).abs() < 0.15 * a.size);
        let mut frags: Vec<Vec<Frag>> = Vec::new();
        for g in row {
            match frags.last_mut() {
                Some(f) if g.x0 - f.iter().map(|x| x.x1).fold(f64::MIN, f64::max) <= 0.75 * g.size => f.push(g),
                _ => frags.push(vec![g]),
            }
        }
        lines.push(frags.into_iter().map(make_frag).collect());
    }
    lines
}

fn make_frag(glyphs: Vec<Frag>) -> Frag {
    let mut frag = glyphs[0].clone(); // never empty: built from `vec![g]`
    frag.size = glyphs.iter().map(|g| g.size).fold(0.0, f64::max);
    frag.x0 = glyphs.iter().map(|g| g.x0).fold(f64::MAX, f64::min);
    frag.x1 = glyphs.iter().map(|g| g.x1).fold(f64::MIN, f64::max);
    let mut units: Vec<(f64, f64, String, bool)> = Vec::new();
    for g in glyphs {
        if g.text.chars().all(is_combining) && !units.is_empty() {
            // A combining mark joins the base glyph it is drawn over (else the one before it).
            let centre = (g.x0 + g.x1) / 2.0;
            let over = |u: &(f64, f64, String, bool)| u.0 <= centre && centre <= u.1;
            let k = units.iter().rposition(over).unwrap_or(units.len() - 1);
            units[k].2.push_str(&g.text);
            continue;
        }
        let gap = units.last().map_or(0.0, |u| g.x0 - u.1);
        let space = !units.is_empty() && (gap > 0.15 * g.size || (g.space_before && gap > 0.05 * g.size));
        units.push((g.x0, g.x1, g.text, space));
    }
    // Frags are in visual (left-to-right) order; right-to-left runs are reversed into logical order.
    let mut i = 0;
    while i < units.len() {
        let neutral = |u: &&(f64, f64, String, bool)| is_rtl(&u.2) || !u.2.chars().any(char::is_alphanumeric);
        let run = units[i..].iter().take_while(neutral).count();
        let last_rtl = units[i..i + run].iter().rposition(|u| is_rtl(&u.2)).unwrap_or(0);
        let end = if is_rtl(&units[i].2) { i + last_rtl } else { i };
        if end > i {
            let spaces: Vec<bool> = units[i..=end].iter().map(|u| u.3).collect();
            units[i..=end].reverse();
            // The space before visual unit k now belongs after it: shift the flags by one.
            for (k, u) in units[i..=end].iter_mut().enumerate() {
                u.3 = if k == 0 { spaces[0] } else { spaces[spaces.len() - k] };
            }
        }
        i = end + 1;
    }
    let mut text = String::new();
    for (k, u) in units.iter().enumerate() {
        if u.3 && k > 0 {
            text.push(' ');
        }
        text.push_str(&u.2);
    }
    frag.text = text;
    frag
}

fn is_combining(c: char) -> bool {
    matches!(c, '\u{0300}'..='\u{036F}' | '\u{0591}'..='\u{05C7}' | '\u{064B}'..='\u{065F}' | '\u{0670}'
        | '\u{06D6}'..='\u{06ED}' | '\u{0E31}' | '\u{0E34}'..='\u{0E3A}' | '\u{0E47}'..='\u{0E4E}')
}

fn is_rtl(s: &str) -> bool {
    let rtl = |c: char| matches!(c, '\u{0590}'..='\u{065F}' | '\u{066A}'..='\u{08FF}' | '\u{FB1D}'..='\u{FEFF}');
    s.chars().next().is_some_and(rtl)
}

/// Expand ligatures, turn odd spaces into plain ones, drop soft hyphens inside words.
fn normalise_chars(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\u{FB00}'..='\u{FB06}' => out.push_str(["ff", "fi", "fl", "ffi", "ffl", "st", "st"][c as usize - 0xFB00]),
            '\u{00A0}' | '\u{2000}'..='\u{200A}' | '\u{202F}' => out.push(' '),
            '\u{200B}' | '\u{FEFF}' | '\u{FFFD}' => {}
            c if c.is_control() => {}
            _ => out.push(c),
        }
    }
    out
}

/// Tables: runs of at least three consecutive lines that each split into four or more mostly short cells.
/// Returns the tables (top y, rows of cells) and the lines that are not part of a table.
fn find_tables(lines: Vec<Vec<Frag>>) -> (Vec<(f64, Rows)>, Vec<Vec<Frag>>) {
    let cellish =
        |l: &Vec<Frag>| l.len() >= 4 && l.iter().filter(|f| f.text.chars().count() <= 20).count() * 10 >= l.len() * 7;
    let (mut tables, mut rest) = (Vec::new(), Vec::new());
    let mut i = 0;
    while i < lines.len() {
        let run = lines[i..].iter().take_while(|l| cellish(l)).count();
        if run >= 3 {
            let top = lines[i].iter().map(|f| f.y + f.size).fold(f64::MIN, f64::max);
            tables.push((top, table_rows(&lines[i..i + run])));
            i += run;
        } else {
            rest.push(lines[i].clone());
            i += 1;
        }
    }
    (tables, rest)
}

fn table_rows(lines: &[Vec<Frag>]) -> Vec<Vec<String>> {
    // Column gaps come from rows holding digits: header cells, centred over right-aligned numbers or spanning
    // several columns, would split or hide them.
    let has_digit = |l: &&Vec<Frag>| l.iter().any(|f| f.text.chars().any(|c| c.is_ascii_digit()));
    let mut body: Vec<&Frag> = lines.iter().filter(has_digit).flatten().collect();
    if lines.iter().filter(has_digit).count() < 2 {
        body = lines.iter().flatten().collect();
    }
    let size = median(body.iter().map(|f| f.size).collect());
    let gutters = gaps(&body.iter().map(|f| (f.x0, f.x1)).collect::<Vec<_>>(), 0, 0.3 * size);
    let bounds: Vec<f64> = gutters.iter().map(|(a, b)| (a + b) / 2.0).collect();
    let mut rows = Vec::new();
    for line in lines {
        let mut cells = vec![String::new(); bounds.len() + 1];
        for f in line {
            let col = bounds.iter().filter(|b| **b < (f.x0 + f.x1) / 2.0).count();
            let text = f.text.trim().replace('|', "\\|");
            cells[col] = format!("{} {text}", cells[col]).trim().to_string();
        }
        rows.push(cells);
    }
    // Leading rows with no number in them are header lines: merge them column-wise into one header row.
    let numeric = |c: &String| c.chars().any(|ch| ch.is_ascii_digit());
    let header_lines = rows.iter().take_while(|r| !r.iter().any(numeric)).count();
    if header_lines > 1 {
        let mut header = vec![String::new(); bounds.len() + 1];
        for row in rows.drain(..header_lines) {
            for (h, c) in header.iter_mut().zip(row) {
                *h = format!("{h} {c}").trim().to_string();
            }
        }
        rows.insert(0, header);
    }
    rows
}

fn render_table(rows: &[Vec<String>]) -> String {
    let mut out: Vec<String> = rows.iter().map(|r| format!("| {} |", r.join(" | "))).collect();
    let rule = format!("|{}", " --- |".repeat(rows.first().map_or(0, Vec::len)));
    out.insert(out.len().min(1), rule);
    out.join("\n")
}

/// Intervals inside the span of `spans` covered by at most `allowed` spans and at least `min_width` wide.
fn gaps(spans: &[(f64, f64)], allowed: usize, min_width: f64) -> Vec<(f64, f64)> {
    let mut events: Vec<(f64, i32)> = spans.iter().flat_map(|&(a, b)| [(a, 1), (b, -1)]).collect();
    events.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    let (mut depth, mut open, mut out) = (0i32, None::<f64>, Vec::new());
    let allowed = i32::try_from(allowed).unwrap_or(i32::MAX);
    for (x, delta) in events {
        let before = depth;
        depth += delta;
        if before > allowed && depth <= allowed {
            open = Some(x);
        } else if before <= allowed && depth > allowed {
            if let Some(start) = open.take().filter(|s| x - s >= min_width) {
                out.push((start, x));
            }
        }
    }
    out
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(10.0)
}

/// Column detection: vertical gutters that almost no fragment crosses, with real text on both sides.
/// Fragments crossing a gutter (titles, full-width captions) split the page into sections; within a section
/// columns are read left to right, each top to bottom.
fn reading_order(frags: Vec<Frag>, tables: Vec<(f64, Rows)>) -> Vec<Block> {
    let size = median(frags.iter().map(|f| f.size).collect());
    let mass = |f: &Frag| f.text.chars().count();
    let total: usize = frags.iter().map(mass).sum();
    let spans: Vec<(f64, f64)> = frags.iter().map(|f| (f.x0, f.x1)).collect();
    let gutters: Vec<(f64, f64)> = gaps(&spans, frags.len() / 20, 0.8 * size)
        .into_iter()
        .filter(|&(a, b)| {
            let left: usize = frags.iter().filter(|f| f.x1 <= a).map(mass).sum();
            let right: usize = frags.iter().filter(|f| f.x0 >= b).map(mass).sum();
            left * 10 >= total && right * 10 >= total
        })
        .collect();
    let column_of = |f: &Frag| -> Option<usize> {
        // Spanning means covering the whole gutter; a glyph poking into it (a protruding hyphen) does not count.
        if gutters.iter().any(|&(a, b)| f.x0 < a && f.x1 > b) {
            return None;
        }
        let centre = (f.x0 + f.x1) / 2.0;
        Some(gutters.iter().filter(|&&(a, b)| centre > (a + b) / 2.0).count())
    };
    // Walk top to bottom; a table or a fragment crossing a gutter closes the current section.
    let mut items: Vec<(f64, Result<Frag, Rows>)> = frags.into_iter().map(|f| (f.y, Ok(f))).collect();
    items.extend(tables.into_iter().map(|(top, rows)| (top, Err(rows))));
    items.sort_by(|a, b| b.0.total_cmp(&a.0));
    let mut blocks = Vec::new();
    let mut section: Vec<Vec<Frag>> = vec![Vec::new(); gutters.len() + 1];
    let mut spanning_open = false;
    let flush = |section: &mut Vec<Vec<Frag>>, blocks: &mut Vec<Block>| {
        for column in section.iter_mut().filter(|c| !c.is_empty()) {
            blocks.push(Block::Text(std::mem::take(column)));
        }
    };
    for (_, item) in items {
        match item {
            Ok(f) => match column_of(&f) {
                Some(col) => {
                    section[col].push(f);
                    spanning_open = false;
                }
                None => {
                    flush(&mut section, &mut blocks);
                    match blocks.last_mut() {
                        Some(Block::Text(run)) if spanning_open => run.push(f),
                        _ => blocks.push(Block::Text(vec![f])),
                    }
                    spanning_open = true;
                }
            },
            Err(rows) => {
                flush(&mut section, &mut blocks);
                blocks.push(Block::Table(rows));
                spanning_open = false;
            }
        }
    }
    flush(&mut section, &mut blocks);
    blocks
}

/// Lines of one column (fragments sorted top to bottom) → paragraphs with hyphenation repaired.
fn paragraphs(frags: &[Frag]) -> String {
    let mut lines: Vec<Frag> = Vec::new();
    for f in frags {
        match lines.last_mut() {
            Some(l) if (l.y - f.y).abs() <= 0.3 * l.size.max(f.size) => {
                l.text.push(' ');
                l.text.push_str(&f.text);
                l.x1 = f.x1;
            }
            _ => lines.push(f.clone()),
        }
    }
    let steps: Vec<f64> = lines.windows(2).map(|w| w[0].y - w[1].y).filter(|d| *d > 0.0).collect();
    let step = if lines.len() >= 3 { median(steps) } else { 0.0 };
    let left = lines.iter().map(|l| l.x0).fold(f64::MAX, f64::min);
    let mut out = String::new();
    for (i, line) in lines.iter().enumerate() {
        if i > 0 {
            let prev = &lines[i - 1];
            let gap = prev.y - line.y;
            let indented = line.x0 > left + 0.8 * line.size && prev.x0 <= left + 0.8 * prev.size;
            let tall = prev.size.max(line.size);
            let new_para = gap > 1.45 * step.max(0.9 * tall) || gap > 2.5 * tall || indented;
            out.push_str(if new_para { "\n\n" } else { "\n" });
        }
        out.push_str(line.text.trim());
    }
    repair_hyphens(&out)
}

/// "infor-\nmation rest" → "information\nrest"; compounds (next part capitalised or a digit) and dashes stay.
fn repair_hyphens(text: &str) -> String {
    let mut lines: Vec<String> = text.split('\n').map(str::to_string).collect();
    for i in 0..lines.len().saturating_sub(1) {
        let line = &lines[i];
        let hyphen = line.ends_with('-') || line.ends_with('\u{00AD}') || line.ends_with('\u{2010}');
        let before_ok = line.chars().rev().nth(1).is_some_and(char::is_alphabetic);
        let next_lower = lines[i + 1].chars().next().is_some_and(char::is_lowercase);
        if hyphen && before_ok && next_lower {
            let next = std::mem::take(&mut lines[i + 1]);
            let (word, rest) = next.split_once(' ').unwrap_or((next.as_str(), ""));
            lines[i].pop();
            lines[i].push_str(word);
            let rest = if rest.is_empty() { "\u{0}" } else { rest };
            lines[i + 1] = rest.to_string();
        }
    }
    lines.retain(|l| l != "\u{0}");
    lines.join("\n")
}

/// PDF files: one document whose pages are separated by form feeds, so chunks keep their page number.
pub struct PdfLoader;

impl crate::loader::Loader for PdfLoader {
    fn name(&self) -> &'static str {
        "pdf"
    }

    fn load(
        &self,
        path: &std::path::Path,
        source: &str,
        bytes: &[u8],
    ) -> Result<crate::loader::Loaded, crate::error::Error> {
        use quarry_core::{MetaValue, Metadata};
        let invalid = |reason: String| crate::error::Error::Invalid {
            path: path.to_path_buf(),
            reason,
        };
        let mut pdf = extract(bytes).map_err(|e| invalid(e.to_string()))?;
        let boilerplate = strip_running_lines(&mut pdf.pages);
        let mut errors = Vec::new();
        if !pdf.empty_pages.is_empty() {
            // Indexed anyway, but never silently: a partly scanned PDF is reported page by page.
            let list = pdf
                .empty_pages
                .iter()
                .map(usize::to_string)
                .collect::<Vec<_>>()
                .join(", ");
            errors.push(invalid(format!(
                "page(s) {list} of {} have no extractable text (scanned? needs OCR); the other pages were indexed",
                pdf.pages.len()
            )));
        }
        let mut metadata = Metadata::new();
        metadata.insert("format".into(), MetaValue::String("pdf".into()));
        metadata.insert("pages".into(), MetaValue::Number(pdf.pages.len() as f64));
        if boilerplate > 0 {
            metadata.insert("running_lines_removed".into(), MetaValue::Number(boilerplate as f64));
        }
        let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or(source).to_string();
        // Form feeds inside a page would shift page numbers: the extractor never emits them, but be sure.
        let text = pdf
            .pages
            .iter()
            .map(|p| p.replace('\u{c}', "\n"))
            .collect::<Vec<_>>()
            .join("\u{c}");
        Ok(crate::loader::Loaded {
            documents: vec![quarry_core::Document {
                id: source.to_string(),
                source: source.to_string(),
                title: Some(pdf.title.filter(|t| is_real_title(t)).unwrap_or(stem)),
                text,
                metadata,
            }],
            format: Some(crate::chunker::TextFormat::Markdown),
            errors,
        })
    }
}

/// Lines within [`EDGE_LINES`] of a page's top or bottom that recur on most pages.
const EDGE_LINES: usize = 3;

/// Removes running headers and footers: lines at the top or bottom of a page that recur (digits aside,
/// so "Page 3 of 9" matches "Page 4 of 9") on at least half of the pages of a document of three or more
/// pages. Table rows are never touched. Returns how many lines were removed.
fn strip_running_lines(pages: &mut [String]) -> usize {
    if pages.len() < 3 {
        return 0;
    }
    let key = |line: &str| -> Option<String> {
        let t = line.trim();
        if t.is_empty() || t.starts_with('|') {
            return None;
        }
        let k: String = t
            .chars()
            .map(|c| {
                if c.is_ascii_digit() {
                    '#'
                } else {
                    c.to_ascii_lowercase()
                }
            })
            .collect();
        Some(k.split_whitespace().collect::<Vec<_>>().join(" "))
    };
    let edges = |page: &str| -> Vec<(usize, String)> {
        let lines: Vec<(usize, &str)> = page.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()).collect();
        let n = lines.len();
        lines
            .into_iter()
            .enumerate()
            .filter(|(i, _)| *i < EDGE_LINES || *i + EDGE_LINES >= n)
            .filter_map(|(_, (at, l))| key(l).map(|k| (at, k)))
            .collect()
    };
    let mut counts: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for page in pages.iter() {
        let unique: std::collections::HashSet<String> = edges(page).into_iter().map(|(_, k)| k).collect();
        for k in unique {
            *counts.entry(k).or_default() += 1;
        }
    }
    let threshold = pages.len().div_ceil(2).max(3);
    let mut removed = 0;
    for page in pages.iter_mut() {
        let drop: std::collections::HashSet<usize> = edges(page)
            .into_iter()
            .filter(|(_, k)| counts[k] >= threshold)
            .map(|(at, _)| at)
            .collect();
        if drop.is_empty() {
            continue;
        }
        removed += drop.len();
        let kept: Vec<&str> = page
            .lines()
            .enumerate()
            .filter(|(i, _)| !drop.contains(i))
            .map(|(_, l)| l)
            .collect();
        *page = kept.join("\n").trim().to_string();
    }
    removed
}

/// Info-dictionary titles are often the name of the file the PDF was printed from ("10811.exe",
/// "Microsoft Word - draft3.doc"): those are no title.
fn is_real_title(title: &str) -> bool {
    let t = title.trim();
    let file_like = t.rsplit_once('.').is_some_and(|(stem, ext)| {
        !stem.is_empty()
            && !stem.contains(' ')
            && (2..=4).contains(&ext.len())
            && ext.chars().all(|c| c.is_ascii_alphanumeric())
    });
    !t.is_empty() && !file_like && !t.starts_with("Microsoft Word - ") && t != "untitled" && t != "Untitled"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn running_headers_and_footers_leave_but_body_and_tables_stay() {
        let words = ["alpha", "beta", "gamma", "delta"];
        let mut pages: Vec<String> = (1..=4)
            .map(|n| {
                let w = words[n - 1];
                format!(
                    "Federal Register / Vol. 85 / Proposed Rules\n\nBody text about {w}.\n| 1 | 2 |\n\nPage {n} of 4"
                )
            })
            .collect();
        pages[2].push_str("\nA closing line only here.");
        let removed = strip_running_lines(&mut pages);
        assert_eq!(removed, 8);
        assert_eq!(pages[0], "Body text about alpha.\n| 1 | 2 |");
        assert!(
            pages[2].ends_with("| 1 | 2 |\n\nA closing line only here."),
            "{}",
            pages[2]
        );
        let mut two = vec!["Header\nA".to_string(), "Header\nB".to_string()];
        assert_eq!(strip_running_lines(&mut two), 0, "too few pages to tell");
    }

    /// A valid PDF (computed xref offsets) whose pages draw Helvetica strings at (x, y), titled "Test Title".
    fn pdf(pages: &[&[(f64, f64, &str)]], trailer_extra: &str) -> Vec<u8> {
        let font = "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>";
        let mut objs = vec![
            "<< /Type /Catalog /Pages 2 0 R >>".to_string(),
            String::new(),
            font.into(),
        ];
        objs.push("<< /Title (Test Title) >>".into());
        let mut kids = Vec::new();
        for page in pages {
            let content: String = page
                .iter()
                .map(|(x, y, t)| format!("BT /F1 10 Tf {x} {y} Td ({t}) Tj ET\n"))
                .collect();
            objs.push(format!("<< /Length {} >>\nstream\n{content}endstream", content.len()));
            let res = "/Resources << /Font << /F1 3 0 R >> >>";
            objs.push(format!(
                "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents {} 0 R {res} >>",
                objs.len()
            ));
            kids.push(format!("{} 0 R", objs.len()));
        }
        objs[1] = format!("<< /Type /Pages /Kids [{}] /Count {} >>", kids.join(" "), kids.len());
        let mut out = b"%PDF-1.4\n".to_vec();
        let mut xref = format!("xref\n0 {}\n0000000000 65535 f \n", objs.len() + 1);
        for (i, o) in objs.iter().enumerate() {
            xref.push_str(&format!("{:010} 00000 n \n", out.len()));
            out.extend(format!("{} 0 obj\n{o}\nendobj\n", i + 1).bytes());
        }
        let (start, size) = (out.len(), objs.len() + 1);
        let trailer =
            format!("trailer\n<< /Size {size} /Root 1 0 R /Info 4 0 R {trailer_extra} >>\nstartxref\n{start}\n%%EOF\n");
        out.extend(format!("{xref}{trailer}").bytes());
        out
    }

    #[test]
    fn text_title_columns_and_tables() {
        let text = extract(&pdf(&[&[(72.0, 700.0, "Hello world")]], "")).unwrap();
        assert_eq!(text.pages, ["Hello world"]);
        assert_eq!(text.title.as_deref(), Some("Test Title"));
        let mut draws = Vec::new();
        for y in (0..12).map(|i| 700.0 - 12.0 * f64::from(i)) {
            draws.push((72.0, y, "left column words here"));
            draws.push((330.0, y, "right column words here"));
        }
        let page = &extract(&pdf(&[&draws], "")).unwrap().pages[0];
        assert!(page.rfind("left").unwrap() < page.find("right").unwrap(), "{page}");
        let mut draws = vec![(72.0, 720.0, "Before the table."), (72.0, 620.0, "After the table.")];
        for (i, row) in ["Name Qty Cost Tax", "Apple 1 2,500 3", "Pear 10 20 30"]
            .iter()
            .enumerate()
        {
            for (j, c) in row.split(' ').enumerate() {
                draws.push((72.0 + 90.0 * j as f64, 690.0 - 14.0 * i as f64, c));
            }
        }
        let want = "Before the table.\n\n| Name | Qty | Cost | Tax |\n| --- | --- | --- | --- |\n\
                    | Apple | 1 | 2,500 | 3 |\n| Pear | 10 | 20 | 30 |\n\nAfter the table.";
        assert_eq!(extract(&pdf(&[&draws], "")).unwrap().pages[0], want);
    }

    #[test]
    fn hyphenation_ligatures_and_rtl() {
        let fixed = repair_hyphens("infor-\nmation is here\nwell-\nKnown 737–\n9 x\ntwo-\nword");
        assert_eq!(fixed, "information\nis here\nwell-\nKnown 737–\n9 x\ntwoword");
        assert_eq!(normalise_chars("\u{FB01}sh \u{FB00}ort"), "fish ffort");
        // Visual order (left to right) of "سلم" is م ل س: it must come out in logical order.
        let glyphs = ["م", "ل", "س"].iter().enumerate();
        let glyphs =
            glyphs.map(|(i, t)| Frag::glyph(5.0 * i as f64, 5.0 * i as f64 + 5.0, 0.0, 10.0, t.to_string(), false));
        assert_eq!(make_frag(glyphs.collect()).text, "سلم");
    }

    #[test]
    fn bad_input_gives_errors_and_never_panics() {
        assert!(matches!(extract(b"this is not a pdf"), Err(PdfError::Corrupt(_))));
        assert!(matches!(extract(b""), Err(PdfError::Corrupt(_))));
        let good = pdf(&[&[(72.0, 700.0, "Hello world")], &[(72.0, 700.0, "Second page")]], "");
        assert!(matches!(extract(&good[..good.len() / 2]), Err(PdfError::Corrupt(_))));
        assert!(matches!(extract(&pdf(&[&[]], "")), Err(PdfError::NoText)));
        let mixed = extract(&pdf(&[&[(72.0, 700.0, "Text")], &[]], "")).unwrap();
        assert_eq!(mixed.empty_pages, [2]);
        let encrypt = "/Encrypt << /Filter /Standard /V 1 /R 2 /O (0123456789abcdef0123456789abcdef) \
                       /U (0123456789abcdef0123456789abcdef) /P -4 >> /ID [(0123456789abcdef) (0123456789abcdef)]";
        let locked = pdf(&[&[(72.0, 700.0, "Secret")]], encrypt);
        assert!(matches!(extract(&locked), Err(PdfError::Encrypted)));
        for i in (0..good.len()).step_by(5) {
            let _ = extract(&good[..i]);
            let mut flipped = good.clone();
            flipped[i] ^= 0x5A;
            let _ = extract(&flipped);
        }
    }
}
