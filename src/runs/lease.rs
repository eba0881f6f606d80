//! One driving process per run: `Service::drive_run` holds the run's lease (pid, host,
//! heartbeat) while it works, so a second window or CLI cannot drive the same run at the same
//! time, and a lease left by a killed process is taken over.

use crate::Service;
use anyhow::Result;
use evolve_store::{RunId, RunLease};
use std::time::{Duration, Instant};

/// Another live process drives the run.
#[derive(Debug, thiserror::Error)]
#[error(
    "run {run} is being driven by process {pid} on {host}: wait for it to finish or pause it there (Ctrl-C, or Pause in the app)"
)]
pub struct RunBusy {
    pub run: i64,
    pub pid: u32,
    pub host: String,
}

/// How often a driver renews its lease.
const HEARTBEAT: Duration = Duration::from_secs(5);

/// This machine's name, to tell a lease of a local process from one on a shared disk.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

/// Whether local process `pid` is still running (a zombie is not). Where `/proc` is missing the
/// answer is "yes", and only the heartbeat can free the lease.
pub fn pid_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name, which may itself hold spaces.
        Ok(stat) => !matches!(
            stat.rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().chars().next()),
            Some(Some('Z' | 'X'))
        ),
        Err(_) => !std::path::Path::new("/proc/self").exists(),
    }
}

/// A held lease: renewed by [`Lease::beat`], released on drop.
pub struct Lease<'s> {
    service: &'s Service,
    run: RunId,
    pid: u32,
    last_beat: Instant,
}

impl Lease<'_> {
    /// Renews the lease when the last heartbeat is older than a few seconds.
    pub fn beat(&mut self) {
        if self.last_beat.elapsed() >= HEARTBEAT {
            self.last_beat = Instant::now();
            let _ = self.service.store().renew_run_lease(self.run, self.pid);
        }
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        let _ = self.service.store().release_run_lease(self.run, self.pid);
    }
}

impl Service {
    /// Takes run `run`'s lease for this process, or fails with [`RunBusy`] naming its holder.
    pub fn lease_run(&self, run: RunId) -> Result<Lease<'_>> {
        let pid = std::process::id();
        match self
            .store()
            .acquire_run_lease(run, pid, &host_name(), pid_alive)?
        {
            Ok(()) => Ok(Lease {
                service: self,
                run,
                pid,
                last_beat: Instant::now(),
            }),
            Err(held) => Err(busy(run, held).into()),
        }
    }

    /// The live process driving run `run` elsewhere, if any (this process's own lease is not
    /// reported).
    pub fn run_driven_elsewhere(&self, run: RunId) -> Result<Option<RunBusy>> {
        let Some(held) = self.store().run_lease(run)? else {
            return Ok(None);
        };
        let here = host_name();
        let elsewhere =
            !held.is_held_by(std::process::id(), &here) && held.is_live(&here, pid_alive);
        Ok(elsewhere.then(|| busy(run, held)))
    }
}

fn busy(run: RunId, held: RunLease) -> RunBusy {
    RunBusy {
        run: run.0,
        pid: held.pid,
        host: held.host,
    }
}
