//! The progress line on stderr while the gate waits: phase, elapsed vs timeout, last probe.
//! Drawn only when stderr is a terminal; scripts see nothing.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::time::Duration;

pub struct Progress {
    bar: Option<ProgressBar>,
}

impl Progress {
    pub fn new(component: &str) -> Progress {
        if !std::io::stderr().is_terminal() {
            return Progress { bar: None };
        }
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template("{spinner} {prefix}: {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar.set_prefix(component.to_string());
        bar.enable_steady_tick(Duration::from_millis(120));
        Progress { bar: Some(bar) }
    }

    pub fn update(&self, phase: &str, elapsed: Duration, timeout: Duration, last: &str) {
        if let Some(bar) = &self.bar {
            bar.set_message(format!(
                "{phase} ({:.1}s / {}s){}",
                elapsed.as_secs_f64(),
                timeout.as_secs(),
                if last.is_empty() {
                    String::new()
                } else {
                    format!("  last probe: {last}")
                }
            ));
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
