//! Live progress of one load run: an `indicatif` bar with the current rate
//! (drawn only when stderr is a terminal, so CI logs stay clean), and the
//! records done in each second of the run, which the stored-data chart plots.

use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A run longer than a day keeps only its first day of per-second samples.
const SAMPLES_MAX: usize = 86_400;
const REDRAWS_PER_SECOND: u8 = 4;

pub struct Progress {
    bar: ProgressBar,
    last_sample: Instant,
    done_at_last_sample: u64,
    per_second: Vec<u64>,
}

impl Progress {
    pub fn new(label: &str, total: u64) -> Self {
        let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr_with_hz(REDRAWS_PER_SECOND));
        bar.set_style(
            ProgressStyle::with_template("{msg:>10} [{bar:30}] {human_pos}/{human_len} records, {per_sec}, eta {eta}")
                .expect("a valid template")
                .progress_chars("=> "),
        );
        bar.set_message(label.to_string());
        Self {
            bar,
            last_sample: Instant::now(),
            done_at_last_sample: 0,
            per_second: Vec::new(),
        }
    }

    /// `done` records so far; cheap enough to call every few thousand records.
    pub fn set(&mut self, done: u64) {
        self.bar.set_position(done);
        if self.last_sample.elapsed() >= Duration::from_secs(1) && self.per_second.len() < SAMPLES_MAX {
            self.per_second.push(done.saturating_sub(self.done_at_last_sample));
            self.done_at_last_sample = done;
            self.last_sample = Instant::now();
        }
    }

    /// Clears the bar; returns the records done in each whole second.
    pub fn finish(self) -> Vec<u64> {
        self.bar.finish_and_clear();
        self.per_second
    }
}
