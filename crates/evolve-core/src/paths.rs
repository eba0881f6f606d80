//! Where EVOLVE Studio keeps its database, models and adapters.

use std::path::{Path, PathBuf};

/// Environment variable that overrides the platform data directory.
pub const DATA_DIR_ENV: &str = "EVOLVE_DATA_DIR";

/// The data directory: `--data-dir`, else `$EVOLVE_DATA_DIR`, else the platform convention
/// (`~/.local/share/evolve-studio` on Linux, `~/Library/Application Support/...` on macOS).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataDir {
    root: PathBuf,
}

impl DataDir {
    /// A relative `root` is made absolute against the current directory: the database stores
    /// adapter paths under it, which must still resolve from another working directory.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        let root = root.into();
        Self {
            root: std::path::absolute(&root).unwrap_or(root),
        }
    }

    /// Resolves the directory from an explicit flag, the environment, then the platform default.
    pub fn resolve(explicit: Option<&Path>) -> Result<Self, String> {
        if let Some(p) = explicit {
            return Ok(Self::new(p));
        }
        if let Some(p) = std::env::var_os(DATA_DIR_ENV).filter(|v| !v.is_empty()) {
            return Ok(Self::new(PathBuf::from(p)));
        }
        directories::ProjectDirs::from("org", "evolve", "evolve-studio")
            .map(|d| Self::new(d.data_dir()))
            .ok_or_else(|| {
                format!("cannot determine a data directory (no home directory); pass --data-dir or set {DATA_DIR_ENV}")
            })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn database(&self) -> PathBuf {
        self.root.join("evolve.db")
    }
    pub fn models(&self) -> PathBuf {
        self.root.join("models")
    }
    pub fn adapters(&self) -> PathBuf {
        self.root.join("adapters")
    }

    /// Creates the directory tree; errors name the path that failed.
    pub fn ensure(&self) -> std::io::Result<()> {
        for dir in [self.root.clone(), self.models(), self.adapters()] {
            std::fs::create_dir_all(&dir).map_err(|e| {
                std::io::Error::new(e.kind(), format!("cannot create {}: {e}", dir.display()))
            })?;
        }
        Ok(())
    }
}

/// What a file with metadata `meta` is when it is not a regular file (`"a directory"`, `"a
/// FIFO, socket or device"`), `None` for a regular file. Check (with `std::fs::metadata`) before
/// opening a file to read: opening a FIFO for reading blocks until a writer comes, and a device
/// may never end.
pub fn not_a_regular_file(meta: &std::fs::Metadata) -> Option<&'static str> {
    if meta.is_file() {
        None
    } else if meta.is_dir() {
        Some("a directory")
    } else {
        Some("a FIFO, socket or device")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_path_wins_and_layout_is_under_root() {
        let d = DataDir::resolve(Some(Path::new("/tmp/x"))).unwrap();
        assert_eq!(d.database(), Path::new("/tmp/x/evolve.db"));
        assert_eq!(d.adapters(), Path::new("/tmp/x/adapters"));
    }

    #[test]
    fn only_regular_files_pass() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, b"x").unwrap();
        let kind = |p: &Path| not_a_regular_file(&std::fs::metadata(p).unwrap());
        assert_eq!(kind(&file), None);
        assert_eq!(kind(dir.path()), Some("a directory"));
        let fifo = dir.path().join("fifo");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        assert!(made.unwrap().success());
        assert_eq!(kind(&fifo), Some("a FIFO, socket or device"));
    }

    #[test]
    fn a_relative_directory_is_kept_as_an_absolute_path() {
        let d = DataDir::resolve(Some(Path::new("./data"))).unwrap();
        assert!(d.root().is_absolute(), "{}", d.root().display());
        assert_eq!(
            d.adapters(),
            std::env::current_dir().unwrap().join("data/adapters")
        );
    }
}
