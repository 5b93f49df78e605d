//! A test hook: `LEARNLAKE_TEST_CRASH_AFTER_WRITES` kills the process after
//! that many lake writes, so tests can interrupt ingest at chosen points.

use std::sync::atomic::{AtomicUsize, Ordering};

static WRITES: AtomicUsize = AtomicUsize::new(0);

/// Kills the process (as `kill -9` would) after the number of lake writes in
/// `LEARNLAKE_TEST_CRASH_AFTER_WRITES`, so tests can interrupt ingest at
/// chosen points.
pub(crate) fn crash_point() {
    static LIMIT: std::sync::OnceLock<Option<usize>> = std::sync::OnceLock::new();
    let limit = LIMIT.get_or_init(|| {
        std::env::var("LEARNLAKE_TEST_CRASH_AFTER_WRITES")
            .ok()
            .and_then(|v| v.parse().ok())
    });
    if let Some(limit) = limit {
        let n = WRITES.fetch_add(1, Ordering::SeqCst) + 1;
        if n >= *limit {
            eprintln!("LEARNLAKE_TEST_CRASH_AFTER_WRITES: aborting after {n} writes");
            std::process::abort();
        }
    }
}
