//! Small text helpers shared by chunking, answering and evaluation.

/// Converts byte offsets of one string into character offsets, in O(1) per lookup after an O(n) scan.
pub struct CharOffsets {
    /// `char_at[b]` is the number of chars before byte `b`, for every char boundary `b` (and len).
    char_at: Vec<u32>,
}

impl CharOffsets {
    pub fn new(text: &str) -> Self {
        let mut char_at = vec![0u32; text.len() + 1];
        let mut n = 0u32;
        for (b, _) in text.char_indices() {
            char_at[b] = n;
            n += 1;
        }
        char_at[text.len()] = n;
        CharOffsets { char_at }
    }

    /// Character offset of byte offset `byte`, which must be on a char boundary.
    pub fn char_of(&self, byte: usize) -> usize {
        self.char_at[byte] as usize
    }
}

/// The substring between two character offsets (end exclusive), clamped to the text.
pub fn char_slice(text: &str, start: usize, end: usize) -> &str {
    let mut idx = text.char_indices().map(|(b, _)| b).chain(std::iter::once(text.len()));
    let s = idx.nth(start).unwrap_or(text.len());
    let e = if end > start {
        idx.nth(end - start - 1).unwrap_or(text.len())
    } else {
        s
    };
    &text[s..e]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn char_offsets_follow_multibyte_text() {
        let t = "añb€c";
        let o = CharOffsets::new(t);
        assert_eq!(o.char_of(0), 0);
        assert_eq!(o.char_of(1), 1); // ñ starts at byte 1
        assert_eq!(o.char_of(3), 2); // b
        assert_eq!(o.char_of(4), 3); // €
        assert_eq!(o.char_of(7), 4); // c
        assert_eq!(o.char_of(8), 5);
        assert_eq!(char_slice(t, 1, 4), "ñb€");
        assert_eq!(char_slice(t, 4, 9), "c");
        assert_eq!(char_slice(t, 2, 2), "");
    }
}
