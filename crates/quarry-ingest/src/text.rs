//! Plain text and Markdown files: one document per file.

use std::path::Path;

use quarry_core::{Document, MetaValue, Metadata};

use crate::chunker::{markdown_sections, TextFormat};
use crate::error::Error;
use crate::loader::{utf8, Loaded, Loader};

pub struct TextLoader {
    format: TextFormat,
}

impl TextLoader {
    pub const PLAIN: TextLoader = TextLoader {
        format: TextFormat::Plain,
    };
    pub const MARKDOWN: TextLoader = TextLoader {
        format: TextFormat::Markdown,
    };
}

impl Loader for TextLoader {
    fn name(&self) -> &'static str {
        match self.format {
            TextFormat::Plain => "text",
            TextFormat::Markdown => "markdown",
        }
    }

    fn load(&self, path: &Path, source: &str, bytes: &[u8]) -> Result<Loaded, Error> {
        let text = utf8(path, bytes)?;
        let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or(source).to_string();
        let title = match self.format {
            // The first top-level heading names a Markdown document; otherwise the file name does.
            TextFormat::Markdown => markdown_sections(text)
                .into_iter()
                .find_map(|s| s.path.first().cloned())
                .filter(|t| !t.is_empty())
                .unwrap_or(stem),
            TextFormat::Plain => stem,
        };
        let mut metadata = Metadata::new();
        metadata.insert("format".into(), MetaValue::String(self.name().into()));
        if let Some(ext) = path.extension().and_then(|e| e.to_str()) {
            metadata.insert("extension".into(), MetaValue::String(ext.to_ascii_lowercase()));
        }
        Ok(Loaded {
            documents: vec![Document {
                id: source.to_string(),
                source: source.to_string(),
                title: Some(title),
                text: text.to_string(),
                metadata,
            }],
            format: Some(self.format),
            errors: vec![],
        })
    }
}
