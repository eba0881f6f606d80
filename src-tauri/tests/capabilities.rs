//! The window's grants, listed: exactly what the UI uses (its one command, listening to events
//! and unlistening). A new capability file or permission must be added here on purpose; the
//! desktop smoke test checks in the running window that anything else is refused.

use serde_json::Value;
use std::path::Path;

#[test]
fn the_window_is_granted_only_what_the_ui_uses() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("capabilities");
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(files, ["default.json"], "capability files in {dir:?}");
    let cap: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("default.json")).unwrap()).unwrap();
    assert_eq!(cap["windows"], serde_json::json!(["main"]));
    let mut granted: Vec<&str> = cap["permissions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            p.as_str()
                .expect("permissions are plain identifiers, no scopes")
        })
        .collect();
    granted.sort();
    assert_eq!(
        granted,
        [
            "allow-api",
            "core:event:allow-listen",
            "core:event:allow-unlisten"
        ]
    );
    assert!(cap.get("remote").is_none(), "no remote URL may use the IPC");
}
