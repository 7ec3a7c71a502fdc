//! Small helpers every layer uses, depending on nothing else here.

use std::sync::{Mutex, MutexGuard};

use sha2::{Digest, Sha256};

/// Wall-clock Unix milliseconds: only for the host's own bookkeeping
/// (load times, audit records, file names), never for a detector's memory,
/// which runs on event time.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// The sha256 of `bytes`, in lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Locks `m`, going on with the data if a thread panicked while holding it:
/// every structure guarded here stays consistent between operations, and a
/// panicking plugin thread must never take the host down with it.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
