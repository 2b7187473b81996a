//! `deltaenergy`: the native command line (tokenize, embed, score, bench, convert, inspect,
//! compare, train, tune, eval); each subcommand lives in `cli/`.
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
    tune_allocator();
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
    match std::panic::catch_unwind(|| on_the_pool(cli::run)) {
        Ok(Ok(code)) => code,
        Ok(Err(e)) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
        Err(_) => ExitCode::from(1),
    }
}

/// burn's CPU backend allocates and frees every intermediate tensor, and glibc hands freed
/// memory at the top of the heap back to the kernel at once, then faults it in again on the next
/// step; keeping freed memory and growing the heap in large steps avoids that system time
/// (measured on training: docs/PERFORMANCE.md). Outputs above glibc's mmap threshold are each
/// a fresh mapping, faulted in page by page and unmapped on free; that threshold otherwise
/// moves with what happened to be freed while loading, so a forward's outputs (a few MB at
/// batch 8) are kept on the heap by a fixed one.
fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; called before any thread starts.
    unsafe {
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
        libc::mallopt(libc::M_TOP_PAD, 256 << 20);
        // 32 MiB, the most glibc takes on 64-bit (half its heap size).
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
    }
}

/// `run` on a worker of rayon's pool, so that each product's tasks are split with the thread
/// that asks for them, not handed over by a main thread that then sleeps until they are done
/// (1–6% of a batch-1 forward here: docs/PERFORMANCE.md). The workers get the main thread's
/// 8 MiB of stack, so no command has less than it had on the main thread.
fn on_the_pool<R: Send>(run: impl FnOnce() -> R + Send) -> R {
    // An error is a pool already built, which serves as well.
    let _ = rayon::ThreadPoolBuilder::new()
        .stack_size(8 << 20)
        .build_global();
    rayon::scope(|_| run())
}
