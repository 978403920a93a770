//! Logging in a process of its own (the global subscriber is set once per process): a line is in
//! the log file as soon as it is logged, with no writer thread to flush, and without colours.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[test]
fn a_line_is_in_the_log_file_as_soon_as_it_is_logged() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::env::set_var("PQX_LOG_DIR", &logs);
    std::env::set_var("RUST_LOG", "info");
    pqx_util::init_logging("probe");
    tracing::info!(queue = "h1", "first line");
    tracing::warn!("second line");
    let files: Vec<_> = std::fs::read_dir(&logs).unwrap().flatten().collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let name = files[0].file_name().to_string_lossy().into_owned();
    assert!(
        name.starts_with("probe.") && name.ends_with(".log"),
        "{name}"
    );
    let text = std::fs::read_to_string(files[0].path()).unwrap();
    let lines: Vec<_> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(
        lines[0].ends_with(r#"INFO first line queue="h1""#),
        "{text}"
    );
    assert!(lines[1].ends_with("WARN second line"), "{text}");
    assert!(!text.contains('\u{1b}'), "{text:?}");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&logs).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700);
}
