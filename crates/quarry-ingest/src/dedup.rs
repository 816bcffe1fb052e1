//! Near-duplicate documents: a 64-bit SimHash (Charikar, 2002) of the document's content-word counts. Two documents
//! are near-duplicates when their fingerprints differ in at most [`MAX_DISTANCE`] bits, the setting Manku,
//! Jain and Das Sarma (WWW 2007) used for 64-bit fingerprints of web pages. SimHash bits disagree with
//! probability angle/π, so 3 of 64 bits means a cosine similarity of word counts of about 0.99: the same
//! text reformatted (case, punctuation, markup, line breaks: distance 0) or lightly edited, not two texts
//! on one topic. Measured on SciFact (tests/near_duplicates.rs): no pair of its 5,183 abstracts is
//! flagged, and about half of the copies with one word in a hundred replaced are caught; heavier edits
//! are not (3-word shingles would catch fewer: one edited word moves them by 6-8 bits).
//! Lookup splits a fingerprint into four 16-bit blocks: fingerprints within 3 bits share a block exactly.

use std::collections::HashMap;

/// Documents with fewer content words (four letters or more) are not compared: table rows and short
/// records repeat legitimately, and fingerprints of short texts are noisy.
pub const MIN_WORDS: usize = 30;
/// Largest Hamming distance between fingerprints of near-duplicates.
pub const MAX_DISTANCE: u32 = 3;

/// The SimHash of a text's lowercased content words (each occurrence votes), or `None` when it has too
/// few of them.
pub fn simhash(text: &str) -> Option<u64> {
    // Content words: function words ("the", "of", "and") are short, and would make every English text
    // look alike.
    let words: Vec<String> = text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| w.chars().count() >= 4)
        .map(str::to_lowercase)
        .collect();
    if words.len() < MIN_WORDS {
        return None;
    }
    let mut votes = [0i32; 64];
    for w in &words {
        let h = mix(fnv1a(FNV_OFFSET, w.as_bytes()));
        for (bit, v) in votes.iter_mut().enumerate() {
            *v += if h >> bit & 1 == 1 { 1 } else { -1 };
        }
    }
    Some(
        votes
            .iter()
            .enumerate()
            .filter(|(_, v)| **v > 0)
            .fold(0u64, |acc, (bit, _)| acc | 1 << bit),
    )
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

/// FNV-1a: stable across builds and platforms, unlike `std`'s hasher (fingerprints are stored).
fn fnv1a(mut h: u64, bytes: &[u8]) -> u64 {
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// splitmix64's finaliser: spreads FNV's weak high bits over all 64.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Fingerprints of the documents in an index, searchable for near-duplicates.
#[derive(Debug, Default)]
pub struct NearDuplicates {
    by_id: HashMap<String, u64>,
    blocks: [HashMap<u16, Vec<String>>; 4],
}

fn block(fp: u64, i: usize) -> u16 {
    (fp >> (16 * i)) as u16
}

impl NearDuplicates {
    pub fn new(entries: impl IntoIterator<Item = (String, u64)>) -> Self {
        let mut n = NearDuplicates::default();
        for (id, fp) in entries {
            n.insert(&id, fp);
        }
        n
    }

    pub fn insert(&mut self, id: &str, fp: u64) {
        self.by_id.insert(id.to_string(), fp);
        for (i, b) in self.blocks.iter_mut().enumerate() {
            b.entry(block(fp, i)).or_default().push(id.to_string());
        }
    }

    /// Forgets a document (its block entries go stale and are skipped on lookup).
    pub fn remove(&mut self, id: &str) {
        self.by_id.remove(id);
    }

    /// The closest other document within [`MAX_DISTANCE`] bits, with its distance.
    pub fn find(&self, fp: u64, except: &str) -> Option<(&str, u32)> {
        let mut best: Option<(&str, u32)> = None;
        for (i, b) in self.blocks.iter().enumerate() {
            for id in b.get(&block(fp, i)).into_iter().flatten() {
                // Stale entries (removed or re-fingerprinted documents) no longer match their id's value.
                let Some(&current) = self.by_id.get(id) else { continue };
                if id == except || block(current, i) != block(fp, i) {
                    continue;
                }
                let d = (current ^ fp).count_ones();
                if d <= MAX_DISTANCE && best.is_none_or(|(other, bd)| d < bd || (d == bd && id.as_str() < other)) {
                    best = Some((id.as_str(), d));
                }
            }
        }
        best
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "Scurvy is a disease resulting from a lack of vitamin C. Early symptoms of deficiency include \
        weakness, feeling tired, and sore arms and legs. Without treatment, decreased red blood cells, gum disease, \
        changes to hair, and bleeding from the skin may occur. As scurvy worsens there can be poor wound healing, \
        personality changes, and finally death from infection or bleeding. It takes at least a month of little to no \
        vitamin C in the diet before symptoms occur. In modern times, scurvy occurs most commonly in people with \
        mental disorders, unusual eating habits, alcoholism, and older people who live alone. Other risk factors \
        include intestinal malabsorption and dialysis. While many animals produce their own vitamin C, humans and a \
        few others do not. Vitamin C is required to make the building blocks for collagen. Diagnosis is typically \
        based on physical signs, X-rays, and improvement after treatment.";

    #[test]
    fn near_copies_match_and_different_texts_do_not() {
        let a = simhash(TEXT).unwrap();
        // The same article with a changed word and different punctuation and case.
        let edited = TEXT.replace("finally", "eventually").to_uppercase().replace(',', ";");
        let b = simhash(&edited).unwrap();
        assert!(
            (a ^ b).count_ones() <= MAX_DISTANCE,
            "{} bits apart",
            (a ^ b).count_ones()
        );
        let other = "Tides are the rise and fall of sea levels caused by the combined effects of the gravitational \
            forces exerted by the Moon and the Sun, and the rotation of the Earth. Tide tables can be used for any \
            given locale to find the predicted times and amplitude. The predictions are influenced by many factors \
            including the alignment of the Sun and Moon, the phase and amplitude of the tide.";
        let c = simhash(other).unwrap();
        assert!((a ^ c).count_ones() > 10);
        assert_eq!(simhash("too short to compare"), None);

        let mut n = NearDuplicates::new([("scurvy".to_string(), a), ("tides".to_string(), c)]);
        assert_eq!(n.find(b, "copy").map(|(id, _)| id), Some("scurvy"));
        assert_eq!(n.find(a, "scurvy"), None, "a document is no duplicate of itself");
        n.remove("scurvy");
        assert_eq!(n.find(b, "copy"), None);
        // A fingerprint that changed leaves no stale match under its old blocks.
        n.insert("tides", a ^ 0xFFFF_0000_0000_0000 ^ 0xFFFF);
        assert_eq!(n.find(c, "x"), None);
    }
}
