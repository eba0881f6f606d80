//! Small conversions shared by the command modules.

use std::sync::{Mutex, MutexGuard};

pub use crate::service::rfc3339;

/// Locks ignoring poison: the protected data (caches, flags) stays usable after a panic.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    #[test]
    fn dates_are_rfc3339_utc() {
        assert_eq!(super::rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::rfc3339(1_709_251_199_000), "2024-02-29T23:59:59Z");
    }
}
