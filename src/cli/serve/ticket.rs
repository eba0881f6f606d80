//! Tickets for the event stream. A browser's `EventSource` cannot send an `Authorization`
//! header, and the access token must not travel in a URL (URLs end up in logs, history and
//! `Referer`s). So the page trades its token for a ticket in an authenticated POST and opens the
//! stream with that: a ticket works once, within [`TICKET_TTL`], and reveals nothing else.
//! Tickets and the access token are both random tokens, compared in constant time.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub const TICKET_TTL: Duration = Duration::from_secs(30);
/// Unused tickets kept at most; the oldest go first (a page asks for one per connect).
const MAX_TICKETS: usize = 64;

/// 32 random bytes from the operating system, hex-encoded.
pub fn new_token() -> anyhow::Result<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("no OS random source: {e}"))?;
    Ok(hex::encode(bytes))
}

/// Compares without an early exit, so the time taken says nothing about how much matched.
pub fn same_token(given: &str, token: &str) -> bool {
    let (a, b) = (given.as_bytes(), token.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[derive(Default)]
pub struct Tickets {
    issued: Mutex<HashMap<String, Instant>>,
}

impl Tickets {
    pub fn issue(&self) -> anyhow::Result<String> {
        let ticket = new_token()?;
        let now = Instant::now();
        let mut issued = self.issued.lock().unwrap_or_else(|p| p.into_inner());
        issued.retain(|_, at| now.duration_since(*at) < TICKET_TTL);
        while issued.len() >= MAX_TICKETS {
            let oldest = issued
                .iter()
                .min_by_key(|(_, at)| **at)
                .map(|(t, _)| t.clone());
            oldest.map(|t| issued.remove(&t));
        }
        issued.insert(ticket.clone(), now);
        Ok(ticket)
    }

    /// True once for a ticket issued less than [`TICKET_TTL`] ago.
    pub fn redeem(&self, ticket: &str) -> bool {
        let mut issued = self.issued.lock().unwrap_or_else(|p| p.into_inner());
        // Compared in constant time, like the token.
        let found = issued.keys().find(|t| same_token(ticket, t)).cloned();
        match found.and_then(|t| issued.remove(&t)) {
            Some(at) => at.elapsed() < TICKET_TTL,
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ticket_works_once_and_only_when_issued() {
        let t = Tickets::default();
        let a = t.issue().unwrap();
        let b = t.issue().unwrap();
        assert_ne!(a, b);
        assert!(!t.redeem(&"0".repeat(64)));
        assert!(!t.redeem(""));
        assert!(t.redeem(&a));
        assert!(!t.redeem(&a), "a ticket is single-use");
        assert!(t.redeem(&b));
    }

    #[test]
    fn expired_tickets_are_refused_and_old_ones_make_way() {
        let t = Tickets::default();
        let old = t.issue().unwrap();
        t.issued
            .lock()
            .unwrap()
            .insert(old.clone(), Instant::now() - TICKET_TTL);
        assert!(!t.redeem(&old));
        let first = t.issue().unwrap();
        for _ in 0..MAX_TICKETS {
            t.issue().unwrap();
        }
        assert_eq!(t.issued.lock().unwrap().len(), MAX_TICKETS);
        assert!(!t.redeem(&first), "the oldest unused ticket was dropped");
    }
}
