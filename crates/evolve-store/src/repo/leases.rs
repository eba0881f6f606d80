//! Run leases: one driving process per run (see `migrations/0006_run_leases.sql`).

use crate::sql::now_ms;
use crate::{RunId, Store, StoreError};
use rusqlite::{OptionalExtension, params};

/// Who drives a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunLease {
    pub pid: u32,
    pub host: String,
    /// Last heartbeat, Unix milliseconds.
    pub heartbeat_at: i64,
}

/// A lease silent this long is stale: its holder died without releasing it (or hangs).
pub const LEASE_STALE_MS: i64 = 60_000;

impl RunLease {
    /// Whether the holder still drives the run, seen from `host`: a local holder while its pid
    /// is alive (`alive(pid)`), a remote one while its heartbeat is fresh.
    pub fn is_live(&self, host: &str, alive: impl Fn(u32) -> bool) -> bool {
        if self.host == host {
            alive(self.pid)
        } else {
            now_ms() - self.heartbeat_at < LEASE_STALE_MS
        }
    }

    /// Whether process `pid` on `host` holds it.
    pub fn is_held_by(&self, pid: u32, host: &str) -> bool {
        self.pid == pid && self.host == host
    }
}

impl Store {
    /// Takes run `run`'s lease for process `pid` on `host`, in one transaction. Refused with the
    /// holder when another live process holds it: same host and its pid still alive
    /// (`alive(pid)`), or another host with a heartbeat in the last [`LEASE_STALE_MS`].
    pub fn acquire_run_lease(
        &self,
        run: RunId,
        pid: u32,
        host: &str,
        alive: impl Fn(u32) -> bool,
    ) -> Result<Result<(), RunLease>, StoreError> {
        let tx = self.write_tx()?;
        if let Some(held) = self.run_lease(run)?
            && !held.is_held_by(pid, host)
            && held.is_live(host, &alive)
        {
            return Ok(Err(held));
        }
        self.conn.execute(
            "INSERT INTO run_leases (run_id, pid, host, heartbeat_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (run_id) DO UPDATE SET pid = ?2, host = ?3, heartbeat_at = ?4",
            params![run, pid, host, now_ms()],
        )?;
        tx.commit()?;
        Ok(Ok(()))
    }

    /// The lease of run `run`, if any process holds one.
    pub fn run_lease(&self, run: RunId) -> Result<Option<RunLease>, StoreError> {
        Ok(self
            .conn
            .query_row(
                "SELECT pid, host, heartbeat_at FROM run_leases WHERE run_id = ?1",
                params![run],
                |row| {
                    Ok(RunLease {
                        pid: row.get(0)?,
                        host: row.get(1)?,
                        heartbeat_at: row.get(2)?,
                    })
                },
            )
            .optional()?)
    }

    /// Renews process `pid`'s lease on `run` (a heartbeat).
    pub fn renew_run_lease(&self, run: RunId, pid: u32) -> Result<(), StoreError> {
        self.conn.execute(
            "UPDATE run_leases SET heartbeat_at = ?3 WHERE run_id = ?1 AND pid = ?2",
            params![run, pid, now_ms()],
        )?;
        Ok(())
    }

    /// Gives up process `pid`'s lease on `run` (another process's lease is left alone).
    pub fn release_run_lease(&self, run: RunId, pid: u32) -> Result<(), StoreError> {
        self.conn.execute(
            "DELETE FROM run_leases WHERE run_id = ?1 AND pid = ?2",
            params![run, pid],
        )?;
        Ok(())
    }
}
