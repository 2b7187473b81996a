//! The threaded build's CPU pool: rayon's threads on Web Workers that share this module's
//! memory, so burn-flex and the int8 kernel split their work as they do natively.
//!
//! wasm-bindgen-rayon does the same, but it starts its workers from `blob:` URLs, which the
//! page's Content-Security-Policy (`worker-src 'self'`) refuses, silently: the pool never starts.
//! Here each thread is `pkg/pool-worker.js`, a file served beside the package, so the policy
//! stays as it is.
//!
//! The order (`pkg/worker.js`, `startPool`): the scorer's worker starts N pool workers; each
//! instantiates the threaded module on the shared memory, says it is ready and calls
//! [`pool_thread`], which waits for a rayon thread to run; then [`start_pool`] builds rayon's
//! global pool, whose spawn handler hands each thread to a waiting worker. Waiting blocks
//! (`memory.atomic.wait`), which workers may do and a page's main thread may not: nothing here
//! runs on the page's thread.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Mutex, OnceLock};

use rayon::ThreadBuilder;
use wasm_bindgen::prelude::*;

use super::js;
use crate::error::Error;

/// rayon's threads, from the spawn handler to the workers that wait for one.
struct Handoff {
    threads: Mutex<Sender<ThreadBuilder>>,
    waiting: Mutex<Receiver<ThreadBuilder>>,
}

fn handoff() -> &'static Handoff {
    static HANDOFF: OnceLock<Handoff> = OnceLock::new();
    HANDOFF.get_or_init(|| {
        let (threads, waiting) = channel();
        Handoff {
            threads: Mutex::new(threads),
            waiting: Mutex::new(waiting),
        }
    })
}

fn pool_error(what: impl std::fmt::Display) -> JsValue {
    js(Error::Device(format!("the CPU thread pool: {what}")))
}

/// Runs in a pool worker for the rest of its life: takes the next rayon thread and runs it.
#[wasm_bindgen(js_name = poolThread)]
pub fn pool_thread() -> Result<(), JsValue> {
    // The guard goes at the end of this statement: the next worker may wait while this one runs.
    let thread = handoff()
        .waiting
        .lock()
        .map_err(pool_error)?
        .recv()
        .map_err(pool_error)?;
    thread.run();
    Ok(())
}

/// Builds rayon's global pool of `threads` threads, once that many workers wait in
/// [`pool_thread`]. Fails if a pool exists already (it cannot be resized).
#[wasm_bindgen(js_name = startPool)]
pub fn start_pool(threads: usize) -> Result<(), JsValue> {
    if threads == 0 {
        return Err(pool_error("it needs at least one thread"));
    }
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("deltaenergy-cpu-{i}"))
        .spawn_handler(|thread| {
            // The errors hold the guard or the thread, neither of which may cross threads: text.
            let handed = match handoff().threads.lock() {
                Ok(sender) => sender.send(thread).map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            handed.map_err(std::io::Error::other)
        })
        .build_global()
        .map_err(pool_error)?;
    THREADS.store(threads, Ordering::Relaxed);
    Ok(())
}

/// Threads in the pool, 0 before [`start_pool`]. Kept here because asking rayon
/// (`current_num_threads`) before the pool exists would make it start its default pool, with
/// threads that wasm cannot spawn.
static THREADS: AtomicUsize = AtomicUsize::new(0);

pub fn threads() -> usize {
    THREADS.load(Ordering::Relaxed)
}

/// Runs `f`, a model's synchronous work, on one of the pool's threads while the calling worker
/// sleeps until it is done (the threaded build's [`super::on_pool`]). Called from outside the
/// pool, every parallel step in `f` (each product, each of flex's parallel ops) would be a job
/// injected into rayon's queue, woken to, and waited for across workers; from a pool thread it is
/// a split that the other threads steal, and the steps between run there too. A `join` with
/// nothing on its other side is how a thread outside the pool gets the global pool to run `f`.
pub(super) fn on_pool<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    if threads() == 0 {
        return f();
    }
    rayon::join(f, || ()).0
}

/// This module, for the pool workers to instantiate.
#[wasm_bindgen(js_name = poolModule)]
pub fn pool_module() -> JsValue {
    wasm_bindgen::module()
}

/// The shared memory, for the pool workers to instantiate the module on.
#[wasm_bindgen(js_name = poolMemory)]
pub fn pool_memory() -> JsValue {
    wasm_bindgen::memory()
}
