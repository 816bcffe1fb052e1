//! Progress bars for long ingests, drawn on stderr only when it is a terminal.

use std::path::Path;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use quarry_ingest::Observer;

pub struct Bars {
    files: ProgressBar,
    docs: ProgressBar,
}

/// One bar of the pair; both live in one `MultiProgress` so they draw on separate lines.
fn bar(multi: &MultiProgress, prefix: &'static str, stats: &str) -> ProgressBar {
    let b = multi.add(ProgressBar::new(0));
    let template = format!("{{prefix:>9}} [{{bar:30}}] {{pos}}/{{len}} {stats}");
    b.set_style(
        ProgressStyle::with_template(&template)
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    b.set_prefix(prefix);
    b
}

impl Bars {
    pub fn new() -> Self {
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
        Bars {
            files: bar(&multi, "files", "{wide_msg}"),
            docs: bar(&multi, "documents", "{per_sec} eta {eta}"),
        }
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
