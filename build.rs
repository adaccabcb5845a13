//! Generates, from `supported_readers.txt`:
//!
//! * `$OUT_DIR/readers.rs`, the reader table compiled into the driver
//!   (`src/readers.rs` includes it);
//! * `$OUT_DIR/Info.plist`, the bundle's Info.plist from
//!   `bundle/Info.plist.in`. `src/readers.rs` embeds it and the
//!   `ccid-info-plist` program prints it: `make bundle` writes the bundle's
//!   copy with that program, so no path inside Cargo's target directory is
//!   ever guessed.
//!
//! A malformed list (bad line, unknown section, VID/PID twice) fails the
//! build with the file and line.

#[path = "bundle/readers_table.rs"]
mod readers_table;

use std::path::Path;

fn main() {
    println!("cargo:rerun-if-changed=supported_readers.txt");
    println!("cargo:rerun-if-changed=bundle/Info.plist.in");
    println!("cargo:rerun-if-changed=bundle/readers_table.rs");
    if let Err(e) = run() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), String> {
    let out = std::env::var("OUT_DIR").map_err(|e| format!("OUT_DIR: {e}"))?;
    let read = |p: &str| std::fs::read_to_string(p).map_err(|e| format!("{p}: {e}"));
    let rows = readers_table::parse(&read("supported_readers.txt")?, "supported_readers.txt")?;
    let write = |name: &str, text: &str| {
        let p = Path::new(&out).join(name);
        std::fs::write(&p, text).map_err(|e| format!("{}: {e}", p.display()))
    };
    write("readers.rs", &readers_table::render_table(&rows))?;

    let version = std::env::var("CARGO_PKG_VERSION").unwrap_or_default();
    let target = if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("macos") {
        "libccid.dylib"
    } else {
        "libccid.so"
    };
    let plist =
        readers_table::render_plist(&read("bundle/Info.plist.in")?, &rows, &version, target)?;
    write("Info.plist", &plist)
}
