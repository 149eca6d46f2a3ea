//! SIGINT, SIGTERM and SIGHUP during a mutating command (docs/gate.md, "Signals").
//!
//! The handlers only note the signal (signal-hook's iterator: the async-signal-safe part lives
//! in the crate); a thread of ours then decides from the command's [`Phase`]:
//!
//! | phase | first signal | second signal |
//! |---|---|---|
//! | `Idle` (lock wait) | exit at once: nothing was changed | — |
//! | `Recovering` | recovery finishes, then stop | exit at once (recovery reruns) |
//! | `Between` transactions | stop before the next change | exit at once |
//! | `Writing` (durable write) | the write finishes, then the gate rolls back | exit once the write is done |
//! | `WritingBack` (rollback's write) | the write finishes, then is confirmed | exit once the write is done |
//! | `Gate` (change being checked) | the gate stops, the change is rolled back | exit at once, left to recovery |
//! | `Confirm` (rollback being checked) | confirmation goes on (bounded) | exit at once, left to recovery |
//! | `Recording` (journal records, output) | finish | finish |
//!
//! The exit code is 128 + the signal (130 SIGINT, 143 SIGTERM, 129 SIGHUP), except that a
//! CRITICAL outcome keeps its 4.

use crate::error::Error;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, AtomicU8, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

#[repr(u8)]
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Phase {
    /// Nothing held and nothing written yet (arguments, lock wait).
    Idle = 0,
    /// Recovering earlier transactions under the lock.
    Recovering = 1,
    /// No durable write in flight: before, between or after transactions.
    Between = 2,
    /// The durable write of the change.
    Writing = 3,
    /// The change is on disk; the gate is judging it.
    Gate = 4,
    /// The previous content is back on disk; the gate is confirming the rollback.
    Confirm = 5,
    /// Recording the outcome and printing it.
    Recording = 6,
    /// The rollback's durable write of the previous content.
    WritingBack = 7,
}

impl Phase {
    fn from_u8(v: u8) -> Phase {
        match v {
            1 => Phase::Recovering,
            2 => Phase::Between,
            3 => Phase::Writing,
            4 => Phase::Gate,
            5 => Phase::Confirm,
            6 => Phase::Recording,
            7 => Phase::WritingBack,
            _ => Phase::Idle,
        }
    }
}

static INSTALLED: AtomicBool = AtomicBool::new(false);
static JSON: AtomicBool = AtomicBool::new(false);
static PHASE: AtomicU8 = AtomicU8::new(Phase::Idle as u8);
/// The first signal received (0: none).
static FIRST: AtomicI32 = AtomicI32::new(0);
static COUNT: AtomicU32 = AtomicU32::new(0);
/// A second signal came while a write had to finish first.
static EXIT_REQUESTED: AtomicI32 = AtomicI32::new(0);
/// Whether this command has started a transaction (for "nothing was changed").
static STARTED: AtomicBool = AtomicBool::new(false);
/// Whether recovery resolved earlier transactions in this command.
static RECOVERED: AtomicBool = AtomicBool::new(false);
/// What is being changed, for the messages ("/etc/kubernetes/manifests/kube-scheduler.yaml").
static SUBJECT: Mutex<String> = Mutex::new(String::new());
/// What was done after the signal, said once at the end.
static NOTES: Mutex<Vec<String>> = Mutex::new(Vec::new());
/// Wakes the gate's naps when a signal arrives.
static WAKE: (Mutex<()>, Condvar) = (Mutex::new(()), Condvar::new());

pub fn name(sig: i32) -> &'static str {
    match sig {
        SIGINT => "SIGINT",
        SIGTERM => "SIGTERM",
        SIGHUP => "SIGHUP",
        _ => "a signal",
    }
}

/// Catch SIGINT, SIGTERM and SIGHUP for the rest of this mutating command. `json`: an exit at
/// once still prints one JSON document on stdout.
pub fn install(json: bool) -> std::io::Result<()> {
    if INSTALLED.swap(true, Ordering::SeqCst) {
        return Ok(());
    }
    JSON.store(json, Ordering::SeqCst);
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP])?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for sig in signals.forever() {
                on_signal(sig);
            }
        })?;
    Ok(())
}

pub fn set_phase(p: Phase) {
    PHASE.store(p as u8, Ordering::SeqCst);
    if p == Phase::Writing {
        STARTED.store(true, Ordering::SeqCst);
    }
}

pub fn phase() -> Phase {
    Phase::from_u8(PHASE.load(Ordering::SeqCst))
}

/// Recovery resolved earlier transactions (said when the command then stops).
pub fn set_recovered() {
    RECOVERED.store(true, Ordering::SeqCst);
}

/// The files the current transaction changes, for the messages.
pub fn set_subject(what: String) {
    if let Ok(mut s) = SUBJECT.lock() {
        *s = what;
    }
}

fn subject() -> String {
    SUBJECT
        .lock()
        .map(|s| s.clone())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "the manifest".into())
}

/// The first signal received, if any.
pub fn received() -> Option<i32> {
    match FIRST.load(Ordering::SeqCst) {
        0 => None,
        s => Some(s),
    }
}

/// "interrupted by SIGINT" once a signal came: the gate's reason to roll back.
pub fn interrupted_reason() -> Option<String> {
    received().map(|s| format!("interrupted by {}", name(s)))
}

/// Something done because of the signal, said in the final message.
pub fn note(what: String) {
    if let Ok(mut n) = NOTES.lock() {
        n.push(what);
    }
}

/// Sleep `d`, or less when a signal arrives.
pub fn nap(d: Duration) {
    let end = Instant::now() + d;
    let (lock, cv) = &WAKE;
    let Ok(mut guard) = lock.lock() else {
        std::thread::sleep(d);
        return;
    };
    while received().is_none() {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        match cv.wait_timeout(guard, left) {
            Ok((g, _)) => guard = g,
            Err(_) => return,
        }
    }
}

/// Before a change is started: after a signal, none is.
pub fn checkpoint() -> Result<(), Error> {
    let Some(sig) = received() else {
        return Ok(());
    };
    let message = if STARTED.load(Ordering::SeqCst) {
        format!(
            "interrupted by {}: no further change was started (the transactions before it are complete)",
            name(sig)
        )
    } else if RECOVERED.load(Ordering::SeqCst) {
        format!(
            "interrupted by {} before the change was started: nothing was changed (the recovery \
             of earlier transactions reported above was finished first)",
            name(sig)
        )
    } else {
        format!(
            "interrupted by {} before any change; nothing was changed",
            name(sig)
        )
    };
    Err(Error::Interrupted {
        signal: sig,
        message,
    })
}

/// A second signal came during a durable write: now that it is done, exit, leaving the
/// transaction to recovery. `state`: what is on disk now.
pub fn exit_if_requested(state: &str) {
    let sig = EXIT_REQUESTED.load(Ordering::SeqCst);
    if sig != 0 {
        leave(sig, &left_to_recovery(state));
    }
}

/// The exit code of a command that ran to its end: 128 + the signal if one came (a CRITICAL 4
/// stays), with one last message saying what was done.
pub fn final_code(code: i32) -> i32 {
    let Some(sig) = received() else {
        return code;
    };
    let notes = NOTES.lock().map(|n| n.join("; ")).unwrap_or_default();
    let what = match code {
        0 if notes.is_empty() => {
            "what had been started was finished and recorded (see the output above)".into()
        }
        _ if !notes.is_empty() => notes,
        3 => "the change was rolled back; the previous content is on disk".into(),
        4 => "the rollback failed (CRITICAL, see above)".into(),
        _ => format!("the command ended with exit {code}"),
    };
    say(&format!("interrupted by {}: {what}", name(sig)));
    if code == 4 {
        4
    } else {
        128 + sig
    }
}

fn say(msg: &str) {
    let _ = writeln!(std::io::stderr(), "kubeharden: {msg}");
}

fn left_to_recovery(state: &str) -> String {
    format!(
        "exiting now without finishing: the transaction changing {} is left incomplete ({state}); \
         'kubeharden recover' (or the next kubeharden command, or the recovery timer \
         kubeharden-recover.timer) will revert it to the previous content",
        subject()
    )
}

/// Exit at once: the durable state is consistent or recoverable in this phase.
fn leave(sig: i32, msg: &str) -> ! {
    say(msg);
    if JSON.load(Ordering::SeqCst) {
        let doc = serde_json::json!({"error": msg, "exit_code": 128 + sig, "signal": name(sig)});
        let _ = writeln!(std::io::stdout(), "{doc}");
    }
    std::process::exit(128 + sig)
}

fn on_signal(sig: i32) {
    let n = COUNT.fetch_add(1, Ordering::SeqCst) + 1;
    let _ = FIRST.compare_exchange(0, sig, Ordering::SeqCst, Ordering::SeqCst);
    {
        let (lock, cv) = &WAKE;
        let _g = lock.lock();
        cv.notify_all();
    }
    let s = name(sig);
    let again = "a second signal exits at once and leaves it to recovery";
    match (phase(), n) {
        (Phase::Idle, _) => leave(
            sig,
            &format!("interrupted by {s} before any change (waiting for the state lock); nothing was changed"),
        ),
        (Phase::Recovering, 1) => say(&format!(
            "{s}: finishing the recovery of earlier transactions first, then stopping before any change"
        )),
        (Phase::Recovering, _) => leave(
            sig,
            &format!("{s} again: exiting now; the recovery of earlier transactions was cut short and the next kubeharden command (or 'kubeharden recover') finishes it"),
        ),
        (Phase::Between, 1) => say(&format!("{s}: stopping before the next change")),
        (Phase::Between, _) => leave(
            sig,
            &format!("{s} again: exiting now; no change was in progress ('kubeharden recover' resolves anything left incomplete)"),
        ),
        (Phase::Writing, 1) => say(&format!(
            "{s}: finishing the durable write of {} first, then rolling it back ({again})",
            subject()
        )),
        (Phase::WritingBack, 1) => say(&format!(
            "{s}: already rolling back; finishing the write of the previous content of {}, then confirming it (bounded by --rollback-timeout; {again})",
            subject()
        )),
        (Phase::Writing | Phase::WritingBack, _) => {
            EXIT_REQUESTED.store(sig, Ordering::SeqCst);
            say(&format!("{s} again: exiting as soon as the durable write is complete"));
        }
        (Phase::Gate, 1) => say(&format!(
            "{s}: stopping the health gate and rolling back the change of {} ({again})",
            subject()
        )),
        (Phase::Gate, _) => leave(
            sig,
            &format!("{s} again: {}", left_to_recovery("the new content may still be on disk, not verified")),
        ),
        (Phase::Confirm, 1) => say(&format!(
            "{s}: the previous content of {} is back on disk; confirming that the component recovers (bounded by --rollback-timeout; {again})",
            subject()
        )),
        (Phase::Confirm, _) => leave(
            sig,
            &format!(
                "{s} again: {}",
                left_to_recovery("the previous content is back on disk; the rollback is not yet confirmed or recorded")
            ),
        ),
        (Phase::Recording, _) => say(&format!("{s}: the outcome is being recorded; finishing")),
    }
}
