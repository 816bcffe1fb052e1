//! Boilerplate repeated across the pages of a crawled site: blocks that Readability kept in page after page (a
//! cookie notice, a "subscribe" box, a signature) are indexed once, not once per page.
//!
//! A block is a run of the page's Markdown-ish text between blank lines (a paragraph, a list, a table, a fenced code
//! block, which may hold blank lines itself); headings are never boilerplate, since they give the section structure
//! that chunking and citations follow. Blocks are compared by a hash of their text with case and whitespace
//! normalised. A block found on at least [`BoilerplateThreshold::pages`] of the crawl's pages is boilerplate: it
//! stays in the first page (in crawl order) that has it, so its information is still indexed once, and is removed
//! from every other page before the page becomes a document. The stored text is the text without those blocks, so
//! chunk offsets and citations refer to what is stored.

use std::collections::{HashMap, HashSet};

use sha2::{Digest, Sha256};

/// When a block counts as boilerplate: found on at least `max(min_pages, ⌈min_share × pages⌉)` of the crawl's
/// pages (and never on fewer than 2).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BoilerplateThreshold {
    /// Fewest pages a block must be found on (default 3).
    pub min_pages: usize,
    /// Least share of the crawl's pages a block must be found on (default 0.3, that is 30 %).
    pub min_share: f64,
}

impl Default for BoilerplateThreshold {
    fn default() -> Self {
        BoilerplateThreshold {
            min_pages: 3,
            min_share: 0.3,
        }
    }
}

impl BoilerplateThreshold {
    /// Pages a block must be found on, out of `total`, to be boilerplate.
    pub fn pages(&self, total: usize) -> usize {
        let share = (self.min_share.clamp(0.0, 1.0) * total as f64).ceil() as usize;
        self.min_pages.max(share).max(2)
    }
}

/// The blocks of a text: runs of lines between blank lines; a fenced (```) block runs to its closing fence.
pub fn blocks(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut start, mut in_fence) = (None::<usize>, false);
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let bare = line.trim_end_matches(['\n', '\r']);
        let at = offset;
        offset += line.len();
        if bare.trim().is_empty() && !in_fence {
            if let Some(s) = start.take() {
                out.push(text[s..at].trim_end_matches(['\n', '\r']));
            }
            continue;
        }
        if start.is_none() {
            start = Some(at);
        }
        if bare.trim_start().starts_with("```") {
            in_fence = !in_fence;
        }
    }
    if let Some(s) = start {
        out.push(text[s..].trim_end_matches(['\n', '\r']));
    }
    out
}

/// A block's identity across pages: a hash of its words, lowercased. `None` for headings, which are never
/// boilerplate.
pub fn block_key(block: &str) -> Option<u64> {
    let first = block.trim_start();
    let is_heading = first.starts_with('#') && first.trim_start_matches('#').starts_with(' ') && !block.contains('\n');
    if is_heading || first.is_empty() {
        return None;
    }
    let normalized = block.split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase();
    let digest = Sha256::digest(normalized.as_bytes());
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    Some(u64::from_le_bytes(bytes))
}

/// What [`remove_repeated`] did to one page.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PageRemoval {
    /// The page's text without its boilerplate blocks; `None` when nothing was removed.
    pub text: Option<String>,
    /// Keys of the blocks removed, sorted, without repeats: what the page's stored text depends on besides
    /// its own bytes.
    pub removed: Vec<u64>,
}

/// What [`remove_repeated`] did to a crawl's pages.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Removal {
    /// One entry per page, in the order given.
    pub pages: Vec<PageRemoval>,
    /// Distinct blocks found to be boilerplate.
    pub blocks: usize,
    /// Copies removed, over all pages.
    pub removed: usize,
}

/// Removes boilerplate blocks from the texts of a crawl's pages, given in crawl order: each boilerplate block stays
/// in the first page that has it and leaves the others (the remaining blocks joined by blank lines).
pub fn remove_repeated(texts: &[&str], threshold: &BoilerplateThreshold) -> Removal {
    let keyed: Vec<Vec<(&str, Option<u64>)>> = texts
        .iter()
        .map(|t| blocks(t).into_iter().map(|b| (b, block_key(b))).collect())
        .collect();
    // Pages per block, and the first page of each.
    let mut found: HashMap<u64, (usize, usize)> = HashMap::new();
    for (page, blocks) in keyed.iter().enumerate() {
        let distinct: HashSet<u64> = blocks.iter().filter_map(|(_, k)| *k).collect();
        for key in distinct {
            found.entry(key).or_insert((0, page)).0 += 1;
        }
    }
    let need = threshold.pages(texts.len());
    let first_page_of = |key: Option<u64>| key.and_then(|k| found.get(&k).filter(|(n, _)| *n >= need).map(|f| f.1));
    let mut removal = Removal {
        blocks: found.values().filter(|(n, _)| *n >= need).count(),
        ..Removal::default()
    };
    for (page, blocks) in keyed.iter().enumerate() {
        let mut kept = Vec::with_capacity(blocks.len());
        let mut removed = Vec::new();
        for (block, key) in blocks {
            match (first_page_of(*key), key) {
                (Some(first), Some(k)) if first != page => removed.push(*k),
                _ => kept.push(*block),
            }
        }
        removal.removed += removed.len();
        removed.sort_unstable();
        removed.dedup();
        let text = (!removed.is_empty()).then(|| kept.join("\n\n"));
        removal.pages.push(PageRemoval { text, removed });
    }
    removal
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_split_at_blank_lines_but_not_inside_fences() {
        let text = "# Title\n\nFirst para\nsame para\n\n- a\n- b\n\n```\ncode\n\nmore code\n```\n\n\nLast";
        assert_eq!(
            blocks(text),
            vec![
                "# Title",
                "First para\nsame para",
                "- a\n- b",
                "```\ncode\n\nmore code\n```",
                "Last"
            ]
        );
        assert!(blocks("").is_empty() && blocks("\n\n \n").is_empty());
        assert_eq!(block_key("# Title"), None);
        assert_eq!(block_key("Some  text\nhere"), block_key("some text here"));
        assert_ne!(block_key("#hashtag text"), None, "not a heading");
    }

    #[test]
    fn thresholds() {
        let t = BoilerplateThreshold::default();
        assert_eq!(
            (t.pages(1), t.pages(5), t.pages(10), t.pages(11), t.pages(100)),
            (3, 3, 3, 4, 30)
        );
        let loose = BoilerplateThreshold {
            min_pages: 0,
            min_share: 0.0,
        };
        assert_eq!(loose.pages(10), 2, "a block on one page is never boilerplate");
    }

    #[test]
    fn repeated_blocks_stay_in_their_first_page_only() {
        let cookie = "We use cookies to improve your experience.";
        let pair = "Shared by two pages only.";
        let pages: Vec<String> = (0..5)
            .map(|i| {
                let extra = if i == 1 || i == 3 {
                    format!("\n\n{pair}")
                } else {
                    String::new()
                };
                format!("# Page {i}\n\nUnique text of page {i}.\n\n{cookie}{extra}\n\n## Contact\n\nMail us.")
            })
            .collect();
        let texts: Vec<&str> = pages.iter().map(String::as_str).collect();
        let r = remove_repeated(&texts, &BoilerplateThreshold::default());
        // The cookie notice and "Mail us." are on all five pages; the heading "## Contact" is never removed.
        assert_eq!((r.blocks, r.removed), (2, 8));
        assert_eq!(r.pages[0], PageRemoval::default());
        for (i, p) in r.pages.iter().enumerate().skip(1) {
            let text = p.text.as_deref().unwrap();
            assert!(!text.contains(cookie) && !text.contains("Mail us."), "{text}");
            assert!(text.contains(&format!("Unique text of page {i}.")) && text.contains("## Contact"));
            assert_eq!(text.contains(pair), i == 1 || i == 3);
            assert_eq!(p.removed.len(), 2);
        }
        // Too few pages for the threshold: nothing changes.
        let r = remove_repeated(&texts[..2], &BoilerplateThreshold::default());
        assert!(r.pages.iter().all(|p| p.text.is_none()) && r.removed == 0);
    }
}
