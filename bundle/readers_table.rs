//! The reader list (`supported_readers.txt`) and what is generated from it:
//! the Rust table compiled into the driver and the bundle's Info.plist.
//! Shared by `build.rs` and `tests/bundle.rs` (included with `#[path]`), so
//! it depends on nothing but std.
//!
//! Format: one reader per line, `VVVV PPPP SECTION NAME` (VID and PID in
//! 4 hexadecimal digits, single spaces, the name to the end of the line);
//! empty lines and lines starting with `#` are ignored. Sections:
//! `supported`, `shouldwork`, `unsupported` (all three listed in
//! Info.plist) and `disabled` (kept in the table, left out of Info.plist).

#![allow(dead_code)]

use std::collections::HashMap;
use std::fmt::Write as _;

/// The sections of the list, as written in the file.
pub const SECTIONS: [&str; 4] = ["supported", "shouldwork", "unsupported", "disabled"];

/// One reader of the list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// idVendor.
    pub vid: u16,
    /// idProduct.
    pub pid: u16,
    /// One of [`SECTIONS`].
    pub section: &'static str,
    /// The reader's name.
    pub name: String,
    /// 1-based line in the list.
    pub line: usize,
}

impl Row {
    /// Whether the reader goes into Info.plist.
    pub fn listed(&self) -> bool {
        self.section != "disabled"
    }
}

fn hex4(s: &str) -> Option<u16> {
    if s.len() != 4 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u16::from_str_radix(s, 16).ok()
}

/// Parses the list; `source` names it in errors (`source:line: what`).
/// Rejects malformed lines, unknown sections and a VID/PID listed twice.
pub fn parse(text: &str, source: &str) -> Result<Vec<Row>, String> {
    let mut rows = Vec::new();
    let mut seen: HashMap<(u16, u16), usize> = HashMap::new();
    for (i, raw) in text.lines().enumerate() {
        let n = i + 1;
        let err = |what: String| format!("{source}:{n}: {what}: {raw:?}");
        if raw.trim().is_empty() || raw.starts_with('#') {
            continue;
        }
        let mut it = raw.splitn(4, ' ');
        let vid = it
            .next()
            .and_then(hex4)
            .ok_or_else(|| err("VID of 4 hex digits expected".into()))?;
        let pid = it
            .next()
            .and_then(hex4)
            .ok_or_else(|| err("PID of 4 hex digits expected".into()))?;
        let section = it.next().unwrap_or("");
        let section = SECTIONS
            .iter()
            .find(|s| **s == section)
            .ok_or_else(|| err(format!("section {section:?} is not one of {SECTIONS:?}")))?;
        let name = it.next().unwrap_or("").trim();
        if name.is_empty() {
            return Err(err("reader name expected".into()));
        }
        if name.chars().any(char::is_control) {
            return Err(err("control character in the name".into()));
        }
        if let Some(first) = seen.insert((vid, pid), n) {
            return Err(err(format!(
                "{vid:04X}:{pid:04X} already listed on line {first}"
            )));
        }
        rows.push(Row {
            vid,
            pid,
            section,
            name: name.to_string(),
            line: n,
        });
    }
    if rows.is_empty() {
        return Err(format!("{source}: no readers"));
    }
    Ok(rows)
}

/// Escapes text for XML character data.
pub fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The Rust source of the `READERS` table (`ReaderEntry` and `Section`
/// come from the including module).
pub fn render_table(rows: &[Row]) -> String {
    let mut rs = String::from(
        "/// Every reader of supported_readers.txt, in file order.\n\
         pub static READERS: &[ReaderEntry] = &[\n",
    );
    for r in rows {
        let section = match r.section {
            "supported" => "Supported",
            "shouldwork" => "ShouldWork",
            "unsupported" => "Unsupported",
            _ => "Disabled",
        };
        let _ = writeln!(
            rs,
            "    ReaderEntry {{ vendor_id: 0x{:04X}, product_id: 0x{:04X}, section: Section::{section}, name: {:?} }},",
            r.vid, r.pid, r.name
        );
    }
    rs.push_str("];\n");
    rs
}

/// `ifdVersionNumber` of a `MAJOR.MINOR.PATCH` version: 0xMMmmpppp.
pub fn version_number(version: &str) -> u32 {
    let mut parts = version
        .split(['.', '-', '+'])
        .map(|p| p.parse::<u32>().unwrap_or(0));
    let major = parts.next().unwrap_or(0) & 0xFF;
    let minor = parts.next().unwrap_or(0) & 0xFF;
    let patch = parts.next().unwrap_or(0) & 0xFFFF;
    major << 24 | minor << 16 | patch
}

/// Fills the Info.plist template: `@TARGET@` (the library's file name),
/// `@VERSION@`, `@VERSION_NUMBER@`, and the `@VENDOR_IDS@`,
/// `@PRODUCT_IDS@`, `@NAMES@` lines with one `<string>` per listed
/// reader. Every placeholder must be present exactly where expected.
pub fn render_plist(
    template: &str,
    rows: &[Row],
    version: &str,
    target: &str,
) -> Result<String, String> {
    let (mut v, mut p, mut n) = (String::new(), String::new(), String::new());
    for r in rows.iter().filter(|r| r.listed()) {
        let _ = writeln!(v, "\t\t<string>0x{:04X}</string>", r.vid);
        let _ = writeln!(p, "\t\t<string>0x{:04X}</string>", r.pid);
        let _ = writeln!(n, "\t\t<string>{}</string>", xml_escape(&r.name));
    }
    let known = [
        "@VENDOR_IDS@",
        "@PRODUCT_IDS@",
        "@NAMES@",
        "@TARGET@",
        "@VERSION_NUMBER@",
        "@VERSION@",
    ];
    let mut rest = template;
    while let Some(i) = rest.find('@') {
        let from = rest.get(i..).unwrap_or("");
        match known.iter().find(|k| from.starts_with(**k)) {
            Some(k) => rest = from.get(k.len()..).unwrap_or(""),
            None => {
                let word: String = from.chars().take(24).collect();
                return Err(format!(
                    "Info.plist template: unknown placeholder at {word:?}"
                ));
            }
        }
    }
    let mut out = template.to_string();
    for (placeholder, value) in [
        ("@VENDOR_IDS@\n", v),
        ("@PRODUCT_IDS@\n", p),
        ("@NAMES@\n", n),
        ("@TARGET@", xml_escape(target)),
        (
            "@VERSION_NUMBER@",
            format!("0x{:08X}", version_number(version)),
        ),
        ("@VERSION@", xml_escape(version)),
    ] {
        if !out.contains(placeholder) {
            return Err(format!(
                "Info.plist template: {:?} missing",
                placeholder.trim_end()
            ));
        }
        out = out.replace(placeholder, &value);
    }
    Ok(out)
}
