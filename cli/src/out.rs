//! Standard output that a closed pipe stops quietly (`phasegate runs | head -1`).
//!
//! `println!` panics when stdout is a closed pipe (Rust ignores SIGPIPE, so the write fails with
//! EPIPE). Everything the commands print goes through [`outln!`]/[`out!`] instead: after EPIPE the
//! rest of the output is dropped without a message and the command ends with its normal exit code
//! (streams such as `logs --follow` check [`closed`] and stop). Any other write error (a full disk
//! behind a redirect) is kept and reported once by `main` as an infrastructure failure.

use std::io::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

static CLOSED: AtomicBool = AtomicBool::new(false);
static FAILED: Mutex<Option<std::io::Error>> = Mutex::new(None);

/// Writes formatted text to stdout; see the module doc for what happens when that fails.
pub fn write(args: std::fmt::Arguments<'_>) {
    if CLOSED.load(Ordering::Relaxed) {
        return;
    }
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = stdout.write_fmt(args).and_then(|()| stdout.flush()) {
        CLOSED.store(true, Ordering::Relaxed);
        if e.kind() != std::io::ErrorKind::BrokenPipe
            && let Ok(mut failed) = FAILED.lock()
        {
            failed.get_or_insert(e);
        }
    }
}

/// Whether stdout stopped taking output (its reader went away, or it failed).
pub fn closed() -> bool {
    CLOSED.load(Ordering::Relaxed)
}

/// The first stdout error that was not a closed pipe, if any.
pub fn take_failure() -> Option<std::io::Error> {
    FAILED.lock().ok().and_then(|mut f| f.take())
}

/// `println!` through [`write`].
macro_rules! outln {
    () => { $crate::out::write(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::out::write(format_args!("{}\n", format_args!($($arg)*))) };
}

/// `print!` through [`write`].
macro_rules! out {
    ($($arg:tt)*) => { $crate::out::write(format_args!($($arg)*)) };
}

pub(crate) use {out, outln};
