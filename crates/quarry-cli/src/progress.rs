//! Progress bars for long ingests, drawn on stderr only when it is a terminal.

use std::path::Path;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use quarry_ingest::Observer;

pub struct Bars {
    files: ProgressBar,
    docs: ProgressBar,
}

impl Bars {
    pub fn new() -> Self {
        let files = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
        files.set_style(
            ProgressStyle::with_template("{prefix:>9} [{bar:30}] {pos}/{len} {wide_msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        files.set_prefix("files");
        let docs = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
        docs.set_style(
            ProgressStyle::with_template("{prefix:>9} [{bar:30}] {pos}/{len} {per_sec} eta {eta}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        docs.set_prefix("documents");
        Bars { files, docs }
    }

    pub fn finish(&self) {
        self.docs.finish_and_clear();
        self.files.finish_and_clear();
    }
}

impl Observer for Bars {
    fn files_planned(&self, total: usize) {
        self.files.set_length(total as u64);
    }
    fn file_started(&self, path: &Path) {
        self.files.inc(1);
        self.files.set_message(path.display().to_string());
    }
    fn documents_planned(&self, total: usize) {
        self.docs.reset();
        self.docs.set_length(total as u64);
    }
    fn documents_done(&self, n: usize) {
        self.docs.inc(n as u64);
    }
}
