//! A progress bar on stderr: redrawn in place on a terminal, a line per tenth otherwise (so logs
//! stay short), never on stdout where results go.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

pub struct Progress {
    label: String,
    total: usize,
    start: Instant,
    tty: bool,
    last_tenth: AtomicUsize,
    last_draw: Mutex<Instant>,
}

impl Progress {
    pub fn new(label: impl Into<String>, total: usize) -> Self {
        Self {
            label: label.into(),
            total: total.max(1),
            start: Instant::now(),
            tty: std::io::stderr().is_terminal(),
            last_tenth: AtomicUsize::new(0),
            last_draw: Mutex::new(Instant::now()),
        }
    }

    /// Reports that `done` of the total are finished (callable from any thread).
    pub fn set(&self, done: usize) {
        let finished = done >= self.total;
        if self.tty {
            let mut last = self.last_draw.lock().unwrap_or_else(|e| e.into_inner());
            if !finished && last.elapsed().as_millis() < 100 {
                return;
            }
            *last = Instant::now();
            let width = 30;
            let filled = width * done.min(self.total) / self.total;
            eprint!(
                "\r{} [{}{}] {done}/{} {:.1}s{}",
                self.label,
                "#".repeat(filled),
                " ".repeat(width - filled),
                self.total,
                self.start.elapsed().as_secs_f64(),
                if finished { "\n" } else { "" }
            );
            let _ = std::io::stderr().flush();
        } else {
            let tenth = 10 * done.min(self.total) / self.total;
            if tenth > self.last_tenth.fetch_max(tenth, Ordering::Relaxed) {
                eprintln!(
                    "{}: {done}/{} ({:.1}s)",
                    self.label,
                    self.total,
                    self.start.elapsed().as_secs_f64()
                );
            }
        }
    }
}
