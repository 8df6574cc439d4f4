//! What `decentcom migrate` shows while it runs: one progress bar per table (rows, rows/s, ETA)
//! and one for media bytes, hidden in quiet mode; and the tables printed at the end.

use std::fmt;
use std::time::Duration;

use indicatif::{HumanCount, MultiProgress, ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};

#[derive(Clone)]
pub struct Progress {
    bars: MultiProgress,
    quiet: bool,
}

impl Progress {
    pub fn new(quiet: bool) -> Progress {
        let target = if quiet { ProgressDrawTarget::hidden() } else { ProgressDrawTarget::stderr() };
        Progress { bars: MultiProgress::with_draw_target(target), quiet }
    }

    fn bar(&self, total: u64, template: &str, label: &str) -> ProgressBar {
        let bar = self.bars.add(ProgressBar::new(total));
        let style = ProgressStyle::with_template(template).expect("valid template").with_key("rate", rate);
        bar.set_style(style.progress_chars("=> "));
        bar.set_prefix(label.to_owned());
        bar.enable_steady_tick(Duration::from_millis(200));
        bar
    }

    /// A bar for the rows of one table.
    pub fn table(&self, name: &str, total: u64) -> ProgressBar {
        self.bar(total, "{prefix:>28} [{bar:30}] {human_pos:>10}/{human_len:<10} {rate:>14} ETA {eta}", name)
    }

    /// A bar for media bytes.
    pub fn media(&self, total_bytes: u64) -> ProgressBar {
        self.bar(
            total_bytes,
            "{prefix:>28} [{bar:30}] {bytes:>10}/{total_bytes:<10} {bytes_per_sec:>14} ETA {eta}",
            "media",
        )
    }

    /// A bar for the target's deferred work: keys, indexes, foreign keys and statistics rebuilt
    /// once the tables they involve are loaded.
    pub fn work(&self, pieces: u64) -> ProgressBar {
        self.bar(pieces, "{prefix:>28} [{bar:30}] {pos:>10}/{len:<10} rebuilt   {elapsed}", "keys, indexes, statistics")
    }

    /// A line for the operator (suppressed in quiet mode), printed above the bars.
    pub fn note(&self, line: impl AsRef<str>) {
        if !self.quiet {
            let _ = self.bars.println(line.as_ref());
        }
    }
}

/// Items per second, whole and grouped ("12,345/s"). indicatif's own `{per_sec}` reads a width as
/// its precision: `{per_sec:>14}` printed fourteen decimals.
fn rate(state: &ProgressState, out: &mut dyn fmt::Write) {
    let _ = write!(out, "{}/s", HumanCount(state.per_sec() as u64));
}

/// Formats rows of cells as an aligned text table with a header rule.
pub fn render_table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i > 0 {
                out.push_str("  ");
            }
            // the first column (names) left-aligned, the rest (numbers, digests) right-aligned
            if i == 0 {
                out.push_str(&format!("{cell:<w$}"));
            } else {
                out.push_str(&format!("{cell:>w$}"));
            }
        }
        out.trim_end().to_owned() + "\n"
    };
    let mut out = line(header.to_vec());
    out.push_str(&line(widths.iter().map(|w| "-".repeat(*w)).collect::<Vec<_>>().iter().map(String::as_str).collect()));
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}
