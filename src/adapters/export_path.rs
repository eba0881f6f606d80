//! Where an export may write. The folder comes from the UI (over HTTP: from anyone holding the
//! token), so it is checked before anything is written and the result is checked again after:
//! the folder must be absolute and free of `..`, and the written file must lie inside the folder
//! once symlinks are resolved.

use anyhow::{Result, bail};
use std::path::{Component, Path, PathBuf};

/// The canonical export folder for `dir` (created if missing) and the target `name` inside it.
/// `name` is ours (never user input), but is checked anyway: one plain file name.
pub fn target_in(dir: &str, name: &str) -> Result<(PathBuf, PathBuf)> {
    let raw = Path::new(dir.trim());
    if raw.as_os_str().is_empty() {
        bail!("choose an export folder");
    }
    if !raw.is_absolute() {
        bail!(
            "the export folder must be an absolute path, not {}",
            raw.display()
        );
    }
    if raw.components().any(|c| c == Component::ParentDir) {
        bail!("the export folder must not contain '..': {}", raw.display());
    }
    let mut parts = Path::new(name).components();
    if !matches!(
        (parts.next(), parts.next()),
        (Some(Component::Normal(_)), None)
    ) {
        bail!("bad export file name {name}");
    }
    std::fs::create_dir_all(raw)
        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", raw.display()))?;
    let folder = raw
        .canonicalize()
        .map_err(|e| anyhow::anyhow!("cannot open {}: {e}", raw.display()))?;
    let target = folder.join(name);
    // A symlink in the folder could point anywhere: never write through one.
    if target
        .symlink_metadata()
        .is_ok_and(|m| m.file_type().is_symlink())
    {
        bail!(
            "{} is a symbolic link: refusing to write through it",
            target.display()
        );
    }
    Ok((folder, target))
}

/// After writing: the file (or folder) must still resolve to a place inside `folder`.
pub fn check_written(folder: &Path, written: &Path) -> Result<PathBuf> {
    let real = written
        .canonicalize()
        .map_err(|e| anyhow::anyhow!("the export {} is missing: {e}", written.display()))?;
    if !real.starts_with(folder) {
        let _ = std::fs::remove_file(written);
        bail!(
            "the export resolved to {}, outside {}: refused",
            real.display(),
            folder.display()
        );
    }
    Ok(real)
}

/// Refuses to replace an export that is already there unless `overwrite` is set.
pub fn check_free(target: &Path, overwrite: bool) -> Result<()> {
    if target.symlink_metadata().is_ok() && !overwrite {
        bail!(
            "{} already exists: choose another folder, or overwrite it (CLI: --force)",
            target.display()
        );
    }
    Ok(())
}

/// A new, empty place beside `target` in its folder for an export to be written into.
pub struct Partial {
    pub path: PathBuf,
    /// The file created for a file export, to write through: reopening it by name could
    /// follow whatever was put under that name meanwhile. `None` for a folder export, and once
    /// a writer took it.
    pub file: Option<std::fs::File>,
}

impl Partial {
    /// The partial file, open for writing.
    pub fn file(&mut self) -> Result<&mut std::fs::File> {
        match &mut self.file {
            Some(f) => Ok(f),
            None => bail!("{} is not a file being written", self.path.display()),
        }
    }
}

/// A file (or, with `dir`, a folder) created afresh beside `target`, never an existing file or
/// a symbolic link, so a crash leaves at most a `.partial` behind and never half an export
/// under the real name.
pub fn fresh_partial(target: &Path, dir: bool) -> Result<Partial> {
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    for attempt in 0..100u32 {
        let path =
            target.with_file_name(format!(".{name}.{}-{attempt}.partial", std::process::id()));
        let made = if dir {
            std::fs::create_dir(&path).map(|()| None)
        } else {
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
                .map(Some)
        };
        match made {
            Ok(file) => return Ok(Partial { path, file }),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => bail!("cannot create {}: {e}", path.display()),
        }
    }
    bail!("cannot create a temporary file beside {}", target.display())
}

/// Moves a finished `partial` onto `target` (replacing an old export, which `check_free`
/// allowed), its file synced first. A failed export removes its partial instead.
pub fn commit_partial(partial: Partial, target: &Path, result: Result<()>) -> Result<()> {
    let path = &partial.path;
    let result = result.and_then(|()| match &partial.file {
        Some(f) => f
            .sync_all()
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display())),
        None => Ok(()),
    });
    if let Err(e) = result {
        let _ = std::fs::remove_dir_all(path).or_else(|_| std::fs::remove_file(path));
        return Err(e);
    }
    if target.is_dir() && !target.is_symlink() {
        std::fs::remove_dir_all(target)
            .map_err(|e| anyhow::anyhow!("cannot replace {}: {e}", target.display()))?;
    }
    std::fs::rename(path, target)
        .map_err(|e| anyhow::anyhow!("cannot move the export to {}: {e}", target.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_and_dotdot_folders_are_refused() {
        let err = target_in("../x", "a.gguf").unwrap_err();
        assert!(err.to_string().contains("absolute"), "{err}");
        let tmp = tempfile::tempdir().unwrap();
        let sneaky = format!("{}/sub/../../etc", tmp.path().display());
        let err = target_in(&sneaky, "a.gguf").unwrap_err();
        assert!(err.to_string().contains(".."), "{err}");
    }

    #[test]
    fn a_name_that_leaves_the_folder_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().display().to_string();
        for name in ["../a.gguf", "/etc/passwd", "sub/a.gguf", ""] {
            assert!(target_in(&dir, name).is_err(), "{name} accepted");
        }
    }

    #[test]
    fn symlinks_escaping_the_folder_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let outside = tmp.path().join("outside");
        let folder = tmp.path().join("exports");
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::create_dir_all(&folder).unwrap();
        std::os::unix::fs::symlink(outside.join("x.gguf"), folder.join("x.gguf")).unwrap();
        let err = target_in(folder.to_str().unwrap(), "x.gguf").unwrap_err();
        assert!(err.to_string().contains("symbolic link"), "{err}");

        // A file that ends up outside (e.g. a link swapped in while writing) is caught after.
        std::fs::write(outside.join("y"), b"1").unwrap();
        std::os::unix::fs::symlink(outside.join("y"), folder.join("y")).unwrap();
        let canon = folder.canonicalize().unwrap();
        assert!(check_written(&canon, &canon.join("y")).is_err());
        std::fs::write(folder.join("z"), b"1").unwrap();
        assert!(check_written(&canon, &canon.join("z")).is_ok());
    }

    #[test]
    fn a_partial_file_is_written_through_the_handle_that_created_it() {
        use std::io::Write;
        let tmp = tempfile::tempdir().unwrap();
        let outside = tmp.path().join("outside");
        std::fs::write(&outside, b"keep").unwrap();
        let target = tmp.path().join("export.gguf");
        let mut partial = fresh_partial(&target, false).unwrap();
        // The name swapped for a link to another file while the export runs.
        std::fs::remove_file(&partial.path).unwrap();
        std::os::unix::fs::symlink(&outside, &partial.path).unwrap();
        partial.file().unwrap().write_all(b"export").unwrap();
        assert_eq!(std::fs::read(&outside).unwrap(), b"keep");

        let mut folder = fresh_partial(&tmp.path().join("peft"), true).unwrap();
        assert!(folder.path.is_dir());
        assert!(folder.file().is_err());
    }

    #[test]
    fn a_new_absolute_folder_is_created() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a/b");
        let (folder, target) = target_in(dir.to_str().unwrap(), "f.jsonl").unwrap();
        assert!(folder.is_dir());
        assert_eq!(target, folder.join("f.jsonl"));
    }
}
