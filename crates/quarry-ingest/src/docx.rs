//! Word (.docx) files: the body's paragraphs and tables in document order, rendered as Markdown so
//! that the chunker sees the structure: heading styles become `#` levels (the section path), list
//! paragraphs become `- ` items, tables become pipe rows under their header row, footnote and endnote
//! references become `[n]` with the notes in a closing section. A text box stored twice (DrawingML
//! and its VML fallback) is read once.
//!
//! A .docx is a zip archive; every part read is capped, so a zip bomb is refused, not inflated.

use std::collections::HashMap;
use std::io::{Cursor, Read};
use std::path::Path;

use quarry_core::{Document, MetaValue, Metadata};
use quick_xml::events::{BytesStart, Event};
use quick_xml::Reader;

use crate::chunker::TextFormat;
use crate::error::Error;
use crate::loader::{Loaded, Loader};

pub struct DocxLoader;

/// Largest inflated size accepted for one XML part.
const MAX_PART_BYTES: u64 = 64 << 20;
/// Largest inflation ratio accepted for a part bigger than 1 MiB (zip bombs compress ~1000:1).
const MAX_RATIO: u64 = 200;

#[derive(Debug, Clone, PartialEq)]
enum Block {
    Para {
        text: String,
        heading: Option<usize>,
        list: Option<usize>,
    },
    Table(Vec<Vec<String>>),
}

struct Para {
    text: String,
    style: Option<String>,
    list: Option<usize>,
}

#[derive(Default)]
struct TableBuf {
    rows: Vec<Vec<String>>,
    row: Option<Vec<String>>,
    cell: Option<String>,
}

/// Reads a part of the archive, refusing oversized or suspiciously compressed ones.
fn read_part(zip: &mut zip::ZipArchive<Cursor<&[u8]>>, name: &str) -> Result<Option<Vec<u8>>, String> {
    let file = match zip.by_name(name) {
        Ok(f) => f,
        Err(zip::result::ZipError::FileNotFound) => return Ok(None),
        Err(e) => return Err(format!("cannot read {name}: {e}")),
    };
    let declared = file.size();
    let packed = file.compressed_size().max(1);
    if declared > MAX_PART_BYTES || (declared > 1 << 20 && declared / packed > MAX_RATIO) {
        return Err(format!(
            "{name} inflates to {declared} bytes from {packed} (a zip bomb?); refused"
        ));
    }
    let mut out = Vec::with_capacity(declared as usize);
    // The declared size can lie: cap what is actually inflated too.
    file.take(MAX_PART_BYTES + 1)
        .read_to_end(&mut out)
        .map_err(|e| format!("cannot inflate {name}: {e}"))?;
    if out.len() as u64 > MAX_PART_BYTES {
        return Err(format!("{name} inflates past {MAX_PART_BYTES} bytes; refused"));
    }
    if out.starts_with(b"\xEF\xBB\xBF") {
        out.drain(..3);
    }
    Ok(Some(out))
}

fn local(name: &[u8]) -> &[u8] {
    name.iter().position(|b| *b == b':').map_or(name, |i| &name[i + 1..])
}

fn attr(e: &BytesStart, key: &[u8]) -> Option<String> {
    e.attributes()
        .flatten()
        .find(|a| local(a.key.as_ref()) == key)
        .and_then(|a| a.unescape_value().ok().map(|v| v.into_owned()))
}

/// Heading level of each paragraph style: from the style's outline level or a "heading N" name.
fn heading_styles(xml: &[u8]) -> HashMap<String, usize> {
    let mut out = HashMap::new();
    let mut reader = Reader::from_reader(xml);
    let mut buf = Vec::new();
    let mut current: Option<String> = None;
    loop {
        match reader.read_event_into(&mut buf) {
            Ok(Event::Start(e)) | Ok(Event::Empty(e)) => match local(e.name().as_ref()) {
                b"style" => current = attr(&e, b"styleId"),
                b"name" => {
                    if let (Some(id), Some(name)) = (&current, attr(&e, b"val")) {
                        let lower = name.to_ascii_lowercase();
                        if lower == "title" {
                            out.insert(id.clone(), 1);
                        } else if let Some(n) = lower.strip_prefix("heading ").and_then(|n| n.trim().parse().ok()) {
                            out.entry(id.clone()).or_insert(n);
                        }
                    }
                }
                b"outlineLvl" => {
                    if let (Some(id), Some(n)) = (&current, attr(&e, b"val").and_then(|v| v.parse::<usize>().ok())) {
                        if n < 9 {
                            out.insert(id.clone(), n + 1);
                        }
                    }
                }
                _ => {}
            },
            Ok(Event::End(e)) if local(e.name().as_ref()) == b"style" => current = None,
            Ok(Event::Eof) | Err(_) => break,
            _ => {}
        }
        buf.clear();
    }
    out
}

/// Paragraphs and tables of a WordprocessingML part (document.xml, or one note's content).
fn blocks(xml: &[u8], headings: &HashMap<String, usize>) -> Result<Vec<Block>, String> {
    let mut reader = Reader::from_reader(xml);
    let mut buf = Vec::new();
    let mut out = Vec::new();
    let mut paras: Vec<Para> = Vec::new();
    let mut tables: Vec<TableBuf> = Vec::new();
    let mut in_text = false;
    loop {
        let event = reader
            .read_event_into(&mut buf)
            .map_err(|e| format!("malformed XML at byte {}: {e}", reader.error_position()))?;
        match event {
            Event::Start(e) => match local(e.name().as_ref()) {
                // The VML copy of a text box (or any other fallback) repeats the DrawingML content.
                b"Fallback" => {
                    let end = e.to_end().into_owned();
                    reader
                        .read_to_end_into(end.name(), &mut Vec::new())
                        .map_err(|e| format!("malformed XML: {e}"))?;
                }
                b"p" => paras.push(Para {
                    text: String::new(),
                    style: None,
                    list: None,
                }),
                b"t" => in_text = true,
                b"numPr" => {
                    if let Some(p) = paras.last_mut() {
                        p.list = p.list.or(Some(0));
                    }
                }
                b"tbl" => tables.push(TableBuf::default()),
                b"tr" => {
                    if let Some(t) = tables.last_mut() {
                        t.row = Some(Vec::new());
                    }
                }
                b"tc" => {
                    if let Some(t) = tables.last_mut() {
                        t.cell = Some(String::new());
                    }
                }
                // Deleted text (tracked changes) and field instructions are not content.
                b"delText" | b"instrText" => {
                    let end = e.to_end().into_owned();
                    reader
                        .read_to_end_into(end.name(), &mut Vec::new())
                        .map_err(|e| format!("malformed XML: {e}"))?;
                }
                _ => {}
            },
            Event::Empty(e) => {
                let p = paras.last_mut();
                match (local(e.name().as_ref()), p) {
                    (b"pStyle", Some(p)) => p.style = attr(&e, b"val"),
                    (b"numPr", Some(p)) => p.list = p.list.or(Some(0)),
                    (b"ilvl", Some(p)) => p.list = attr(&e, b"val").and_then(|v| v.parse().ok()).or(p.list),
                    // A run's tab (not a tab stop definition, which has a `val`).
                    (b"tab", Some(p)) if attr(&e, b"val").is_none() => p.text.push('\t'),
                    (b"br" | b"cr", Some(p)) => p.text.push('\n'),
                    (b"footnoteReference" | b"endnoteReference", Some(p)) => {
                        if let Some(id) = attr(&e, b"id") {
                            p.text.push_str(&format!("[{id}]"));
                        }
                    }
                    _ => {}
                }
            }
            Event::Text(t) if in_text => {
                if let Some(p) = paras.last_mut() {
                    let s = t.unescape().map_err(|e| format!("malformed XML text: {e}"))?;
                    p.text.push_str(&s);
                }
            }
            Event::End(e) => match local(e.name().as_ref()) {
                b"t" => in_text = false,
                b"p" => {
                    let Some(p) = paras.pop() else { continue };
                    let text = p.text.trim().to_string();
                    let heading = p.style.as_ref().and_then(|s| {
                        headings.get(s).copied().or_else(|| {
                            let l = s.to_ascii_lowercase();
                            l.strip_prefix("heading").and_then(|n| n.parse().ok())
                        })
                    });
                    match tables.last_mut().and_then(|t| t.cell.as_mut()) {
                        // A paragraph in a table cell joins the cell's text (unless it sits in a
                        // text box inside a paragraph of that cell).
                        Some(cell) if paras.is_empty() && !text.is_empty() => {
                            if !cell.is_empty() {
                                cell.push(' ');
                            }
                            cell.push_str(&text);
                        }
                        Some(_) if paras.is_empty() => {}
                        _ if !text.is_empty() => out.push(Block::Para {
                            text,
                            heading: heading.map(|h| h.clamp(1, 6)),
                            list: p.list,
                        }),
                        _ => {}
                    }
                }
                b"tc" => {
                    if let Some(t) = tables.last_mut() {
                        if let (Some(row), Some(cell)) = (t.row.as_mut(), t.cell.take()) {
                            row.push(cell);
                        }
                    }
                }
                b"tr" => {
                    if let Some(t) = tables.last_mut() {
                        if let Some(row) = t.row.take() {
                            t.rows.push(row);
                        }
                    }
                }
                b"tbl" => {
                    let Some(t) = tables.pop() else { continue };
                    if t.rows.iter().all(|r| r.iter().all(|c| c.trim().is_empty())) {
                        continue;
                    }
                    match tables.last_mut().and_then(|outer| outer.cell.as_mut()) {
                        // A table nested in a cell: its rows flow into the cell's text.
                        Some(cell) => {
                            let flat: Vec<String> = t
                                .rows
                                .iter()
                                .map(|r| {
                                    r.iter()
                                        .filter(|c| !c.is_empty())
                                        .cloned()
                                        .collect::<Vec<_>>()
                                        .join(", ")
                                })
                                .filter(|r| !r.is_empty())
                                .collect();
                            if !cell.is_empty() {
                                cell.push(' ');
                            }
                            cell.push_str(&flat.join("; "));
                        }
                        None => out.push(Block::Table(t.rows)),
                    }
                }
                _ => {}
            },
            Event::Eof => break,
            _ => {}
        }
        buf.clear();
    }
    Ok(out)
}

/// Footnotes or endnotes (skipping the separator pseudo-notes) as (id, text).
fn notes(xml: &[u8], headings: &HashMap<String, usize>, element: &[u8]) -> Result<Vec<(String, String)>, String> {
    let mut reader = Reader::from_reader(xml);
    let mut buf = Vec::new();
    let mut out = Vec::new();
    loop {
        match reader
            .read_event_into(&mut buf)
            .map_err(|e| format!("malformed XML: {e}"))?
        {
            Event::Start(e) if local(e.name().as_ref()) == element => {
                let id = attr(&e, b"id").unwrap_or_default();
                let kind = attr(&e, b"type");
                let end = e.to_end().into_owned();
                // The span is the note's content, without its own start and end tags.
                let span = reader
                    .read_to_end_into(end.name(), &mut Vec::new())
                    .map_err(|e| format!("malformed XML: {e}"))?;
                if kind.is_some_and(|k| k != "normal") {
                    continue;
                }
                let inner = xml.get(span.start as usize..span.end as usize).unwrap_or_default();
                let text = blocks(inner, headings)?
                    .into_iter()
                    .map(|b| match b {
                        Block::Para { text, .. } => text,
                        Block::Table(rows) => rows.iter().map(|r| r.join(" | ")).collect::<Vec<_>>().join("; "),
                    })
                    .collect::<Vec<_>>()
                    .join(" ");
                if !text.trim().is_empty() {
                    out.push((id, text.trim().to_string()));
                }
            }
            Event::Eof => break,
            _ => {}
        }
        buf.clear();
    }
    Ok(out)
}

fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace(['\n', '\t'], " ").trim().to_string()
}

/// Blocks as Markdown: headings, list items, paragraphs, pipe tables.
fn render(blocks: &[Block]) -> String {
    let mut out = String::new();
    let mut prev_list = false;
    for b in blocks {
        match b {
            Block::Para { text, heading, list } => {
                let is_list = list.is_some() && heading.is_none();
                if !out.is_empty() {
                    out.push_str(if is_list && prev_list { "\n" } else { "\n\n" });
                }
                match (heading, list) {
                    (Some(h), _) => out.push_str(&format!("{} {}", "#".repeat(*h), text.replace('\n', " "))),
                    (None, Some(level)) => out.push_str(&format!("{}- {text}", "  ".repeat(*level))),
                    (None, None) => out.push_str(text),
                }
                prev_list = is_list;
            }
            Block::Table(rows) => {
                if !out.is_empty() {
                    out.push_str("\n\n");
                }
                let width = rows.iter().map(Vec::len).max().unwrap_or(0);
                for (i, r) in rows.iter().enumerate() {
                    let mut cells: Vec<String> = r.iter().map(|c| cell(c)).collect();
                    cells.resize(width, String::new());
                    out.push_str(&format!("| {} |\n", cells.join(" | ")));
                    if i == 0 {
                        out.push_str(&format!("|{}\n", "---|".repeat(width)));
                    }
                }
                out.truncate(out.trim_end().len());
                prev_list = false;
            }
        }
    }
    out
}

fn core_title(xml: &[u8]) -> Option<String> {
    let mut reader = Reader::from_reader(xml);
    let mut buf = Vec::new();
    let mut in_title = false;
    loop {
        match reader.read_event_into(&mut buf) {
            Ok(Event::Start(e)) => in_title = local(e.name().as_ref()) == b"title",
            Ok(Event::Text(t)) if in_title => {
                return t
                    .unescape()
                    .ok()
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
            }
            Ok(Event::End(_)) => in_title = false,
            Ok(Event::Eof) | Err(_) => return None,
            _ => {}
        }
        buf.clear();
    }
}

/// The text of a .docx as Markdown, and its title (core properties, else the first heading).
pub fn extract(bytes: &[u8]) -> Result<(String, Option<String>), String> {
    let mut zip =
        zip::ZipArchive::new(Cursor::new(bytes)).map_err(|e| format!("not a DOCX (not a zip archive: {e})"))?;
    let document = read_part(&mut zip, "word/document.xml")?
        .ok_or("not a Word document (the archive has no word/document.xml)")?;
    let styles = read_part(&mut zip, "word/styles.xml")?
        .map(|x| heading_styles(&x))
        .unwrap_or_default();
    let mut body = blocks(&document, &styles).map_err(|e| format!("word/document.xml: {e}"))?;
    for (part, element, heading) in [
        ("word/footnotes.xml", &b"footnote"[..], "Footnotes"),
        ("word/endnotes.xml", &b"endnote"[..], "Endnotes"),
    ] {
        if let Some(xml) = read_part(&mut zip, part)? {
            let found = notes(&xml, &styles, element).map_err(|e| format!("{part}: {e}"))?;
            if !found.is_empty() {
                body.push(Block::Para {
                    text: heading.into(),
                    heading: Some(1),
                    list: None,
                });
                body.extend(found.into_iter().map(|(id, text)| Block::Para {
                    text: format!("[{id}] {text}"),
                    heading: None,
                    list: None,
                }));
            }
        }
    }
    let title = read_part(&mut zip, "docProps/core.xml")?
        .and_then(|x| core_title(&x))
        .or_else(|| {
            body.iter().find_map(|b| match b {
                Block::Para {
                    text, heading: Some(_), ..
                } => Some(text.clone()),
                _ => None,
            })
        });
    Ok((render(&body), title))
}

impl Loader for DocxLoader {
    fn name(&self) -> &'static str {
        "docx"
    }

    fn load(&self, path: &Path, source: &str, bytes: &[u8]) -> Result<Loaded, Error> {
        let invalid = |reason: String| Error::Invalid {
            path: path.to_path_buf(),
            reason,
        };
        let (text, title) = extract(bytes).map_err(invalid)?;
        if text.trim().is_empty() {
            return Err(invalid("the document has no text".into()));
        }
        let mut metadata = Metadata::new();
        metadata.insert("format".into(), MetaValue::String("docx".into()));
        let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or(source).to_string();
        Ok(Loaded {
            documents: vec![Document {
                id: source.to_string(),
                source: source.to_string(),
                title: Some(title.unwrap_or(stem)),
                text,
                metadata,
            }],
            format: Some(TextFormat::Markdown),
            errors: vec![],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    const NS: &str = r#"xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main" xmlns:mc="http://schemas.openxmlformats.org/markup-compatibility/2006""#;

    fn docx(parts: &[(&str, &str)]) -> Vec<u8> {
        let mut buf = Cursor::new(Vec::new());
        {
            let mut z = zip::ZipWriter::new(&mut buf);
            for (name, body) in parts {
                z.start_file(*name, zip::write::SimpleFileOptions::default()).unwrap();
                z.write_all(body.as_bytes()).unwrap();
            }
            z.finish().unwrap();
        }
        buf.into_inner()
    }

    fn p(text: &str) -> String {
        format!("<w:p><w:r><w:t>{text}</w:t></w:r></w:p>")
    }

    #[test]
    fn headings_lists_tables_and_text_boxes() {
        let body = format!(
            r#"<w:document {NS}><w:body>
            <w:p><w:pPr><w:pStyle w:val="Heading1"/></w:pPr><w:r><w:t>Guide</w:t></w:r></w:p>
            {}
            <w:p><w:pPr><w:numPr><w:ilvl w:val="0"/><w:numId w:val="1"/></w:numPr></w:pPr><w:r><w:t>Apple</w:t></w:r></w:p>
            <w:p><w:pPr><w:numPr><w:ilvl w:val="1"/><w:numId w:val="1"/></w:numPr></w:pPr><w:r><w:t>Banana</w:t></w:r></w:p>
            <w:tbl><w:tr><w:tc>{}</w:tc><w:tc>{}</w:tc></w:tr><w:tr><w:tc>{}</w:tc><w:tc>{}{}</w:tc></w:tr></w:tbl>
            <w:p><w:r><mc:AlternateContent><mc:Choice><w:drawing><w:txbxContent>{}</w:txbxContent></w:drawing></mc:Choice>
              <mc:Fallback><w:pict><w:txbxContent>{}</w:txbxContent></w:pict></mc:Fallback></mc:AlternateContent></w:r></w:p>
            <w:p><w:r><w:t>A &amp; B</w:t><w:delText>gone</w:delText></w:r></w:p>
            </w:body></w:document>"#,
            p("Intro."),
            p("State"),
            p("Count"),
            p("Alabama"),
            p("71,137"),
            p("a|b"),
            p("Datum plane"),
            p("Datum plane"),
        );
        let (text, title) = extract(&docx(&[("word/document.xml", &body)])).unwrap();
        assert_eq!(
            text,
            "# Guide\n\nIntro.\n\n- Apple\n  - Banana\n\n| State | Count |\n|---|---|\n| Alabama | 71,137 a\\|b |\n\nDatum plane\n\nA & B"
        );
        assert_eq!(title.as_deref(), Some("Guide"));
    }

    #[test]
    fn footnotes_are_referenced_and_collected() {
        let body = format!(
            r#"<w:document {NS}><w:body><w:p><w:r><w:t>Ouch</w:t></w:r><w:r><w:footnoteReference w:id="1"/></w:r></w:p></w:body></w:document>"#
        );
        let notes = format!(
            r#"<w:footnotes {NS}><w:footnote w:type="separator" w:id="-1"><w:p><w:r><w:separator/></w:r></w:p></w:footnote>
            <w:footnote w:id="1"><w:p><w:r><w:t xml:space="preserve"> A tachyon walks into a bar.</w:t></w:r></w:p></w:footnote></w:footnotes>"#
        );
        let (text, _) = extract(&docx(&[("word/document.xml", &body), ("word/footnotes.xml", &notes)])).unwrap();
        assert_eq!(text, "Ouch[1]\n\n# Footnotes\n\n[1] A tachyon walks into a bar.");
    }

    #[test]
    fn not_a_zip_missing_parts_and_bombs_are_refused() {
        assert!(extract(b"plain text")
            .unwrap_err()
            .starts_with("not a DOCX (not a zip archive"));
        let e = extract(&docx(&[("other.xml", "<a/>")])).unwrap_err();
        assert_eq!(e, "not a Word document (the archive has no word/document.xml)");
        // 80 MiB of zeros deflates to ~80 KiB.
        let mut buf = Cursor::new(Vec::new());
        {
            let mut z = zip::ZipWriter::new(&mut buf);
            let opts = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
            z.start_file("word/document.xml", opts).unwrap();
            let zeros = vec![b' '; 1 << 20];
            for _ in 0..80 {
                z.write_all(&zeros).unwrap();
            }
            z.finish().unwrap();
        }
        let bytes = buf.into_inner();
        assert!(bytes.len() < 1 << 20);
        let e = extract(&bytes).unwrap_err();
        assert!(e.contains("zip bomb") || e.contains("refused"), "{e}");
        let e = extract(&docx(&[("word/document.xml", "<w:document><w:body><w:p></w:bod")])).unwrap_err();
        assert!(e.starts_with("word/document.xml: malformed XML"), "{e}");
    }
}
