//! The source tree as the layout tests read it (tests/layers.rs, tests/modules.rs).

use std::path::{Path, PathBuf};

/// Every `.rs` file under `dir`, in subfolders too.
pub fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    out
}
