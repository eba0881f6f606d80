//! Panics in engine code (a bug in ours or a library's) become errors of the work they stopped,
//! so a run is marked failed with the message and can resume, instead of a worker dying silently.

use std::any::Any;
use std::panic::{AssertUnwindSafe, catch_unwind};

/// The text a panic was raised with (`panic!("…")` carries a `&str` or a `String`).
pub fn panic_message(payload: &(dyn Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_string())
}

/// Runs `f`; a panic comes back as `Err` with its message. Callers must not reuse state `f` left
/// half-updated: the run paths that use this drop their engines and re-read the store.
pub fn catch_panic<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|p| panic_message(p.as_ref()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_of_str_and_string_panics_are_kept() {
        assert_eq!(catch_panic(|| 7), Ok(7));
        assert_eq!(
            catch_panic(|| panic!("plain")),
            Err::<(), _>("plain".into())
        );
        let n = 3;
        assert_eq!(
            catch_panic(|| panic!("index {n} out of range")),
            Err::<(), _>("index 3 out of range".into())
        );
        assert_eq!(
            catch_panic(|| std::panic::panic_any(42u8)),
            Err::<(), _>("a panic without a message".into())
        );
    }
}
