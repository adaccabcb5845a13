//! Generates, from `supported_readers.txt`, the reader table compiled into
//! the driver (`$OUT_DIR/readers.rs`) and the bundle's Info.plist
//! (`$OUT_DIR/Info.plist`, from `bundle/Info.plist.in`).

use std::fmt::Write as _;
use std::path::Path;

struct Row {
    vid: u16,
    pid: u16,
    section: String,
    name: String,
}

fn parse(text: &str) -> Result<Vec<Row>, String> {
    let mut rows = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim_end();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut it = line.splitn(4, ' ');
        let err = |what: &str| format!("supported_readers.txt:{}: {what}: {line:?}", n + 1);
        let vid = it
            .next()
            .and_then(|v| u16::from_str_radix(v, 16).ok())
            .ok_or_else(|| err("bad VID"))?;
        let pid = it
            .next()
            .and_then(|v| u16::from_str_radix(v, 16).ok())
            .ok_or_else(|| err("bad PID"))?;
        let section = it.next().ok_or_else(|| err("no section"))?.to_string();
        if !["supported", "shouldwork", "unsupported", "disabled"].contains(&section.as_str()) {
            return Err(err("unknown section"));
        }
        let name = it.next().ok_or_else(|| err("no name"))?.trim().to_string();
        if name.is_empty() {
            return Err(err("empty name"));
        }
        if !seen.insert((vid, pid)) {
            return Err(err("duplicate VID/PID"));
        }
        rows.push(Row {
            vid,
            pid,
            section,
            name,
        });
    }
    Ok(rows)
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn main() {
    println!("cargo:rerun-if-changed=supported_readers.txt");
    println!("cargo:rerun-if-changed=bundle/Info.plist.in");
    let out = std::env::var("OUT_DIR").expect("OUT_DIR");
    let text = std::fs::read_to_string("supported_readers.txt").expect("supported_readers.txt");
    let rows = parse(&text).unwrap_or_else(|e| panic!("{e}"));

    let mut rs = String::from(
        "/// Every reader of supported_readers.txt.\npub static READERS: &[ReaderEntry] = &[\n",
    );
    for r in &rows {
        let _ = writeln!(
            rs,
            "    ReaderEntry {{ vendor_id: 0x{:04X}, product_id: 0x{:04X}, section: Section::{}, name: {:?} }},",
            r.vid,
            r.pid,
            match r.section.as_str() {
                "supported" => "Supported",
                "shouldwork" => "ShouldWork",
                "unsupported" => "Unsupported",
                _ => "Disabled",
            },
            r.name
        );
    }
    rs.push_str("];\n");
    std::fs::write(Path::new(&out).join("readers.rs"), rs).expect("write readers.rs");

    let version = std::env::var("CARGO_PKG_VERSION").unwrap_or_default();
    let parts: Vec<u32> = version.split('.').filter_map(|p| p.parse().ok()).collect();
    let number = parts.first().unwrap_or(&0) << 24
        | parts.get(1).unwrap_or(&0) << 16
        | parts.get(2).unwrap_or(&0);
    let target = if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("macos") {
        "libccid.dylib"
    } else {
        "libccid.so"
    };
    let (mut v, mut p, mut n) = (String::new(), String::new(), String::new());
    for r in rows.iter().filter(|r| r.section != "disabled") {
        let _ = writeln!(v, "\t\t<string>0x{:04X}</string>", r.vid);
        let _ = writeln!(p, "\t\t<string>0x{:04X}</string>", r.pid);
        let _ = writeln!(n, "\t\t<string>{}</string>", xml_escape(&r.name));
    }
    let template = std::fs::read_to_string("bundle/Info.plist.in").expect("bundle/Info.plist.in");
    let plist = template
        .replace("@TARGET@", target)
        .replace("@VERSION@", &version)
        .replace("@VERSION_NUMBER@", &format!("0x{number:08X}"))
        .replace("@VENDOR_IDS@\n", &v)
        .replace("@PRODUCT_IDS@\n", &p)
        .replace("@NAMES@\n", &n);
    std::fs::write(Path::new(&out).join("Info.plist"), plist).expect("write Info.plist");
}
