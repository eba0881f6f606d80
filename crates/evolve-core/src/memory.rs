//! How much memory this machine has free: what a training is sized against.

/// Bytes free for a new training: `EVOLVE_MEMORY_LIMIT` (bytes) when set, else Linux's
/// `MemAvailable`; `None` where neither is known.
pub fn available_memory() -> Option<u64> {
    if let Some(limit) = std::env::var("EVOLVE_MEMORY_LIMIT")
        .ok()
        .and_then(|v| v.trim().parse().ok())
    {
        return Some(limit);
    }
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
}
