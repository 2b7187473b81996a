//! `deltaenergy`: the native command line (tokenize, embed, score, bench).
//!
//! Contract: results go to stdout (one JSON line per input with `--json`), errors to stderr with
//! a non-zero exit, and no input makes it panic.

mod cli;

use std::process::ExitCode;

fn main() -> ExitCode {
    // `deltaenergy … | head` should end quietly like any Unix tool, not report a write error.
    #[cfg(unix)]
    // SAFETY: restoring the default disposition of SIGPIPE before any thread is started.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    // A panic anywhere (a backend assertion, a driver) becomes a one-line error, not a backtrace.
    std::panic::set_hook(Box::new(|info| {
        let msg = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into());
        eprintln!("error: internal error: {msg}");
    }));
    match std::panic::catch_unwind(cli::run) {
        Ok(Ok(code)) => code,
        Ok(Err(e)) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
        Err(_) => ExitCode::from(1),
    }
}
