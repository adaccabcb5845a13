//! Where `unsafe` may be: the C ABI that callers enter through (`src/ffi`),
//! the lookup of pcscd's log functions (`src/logging.rs`) and the USB
//! transport (`src/transport/usb.rs`, which today needs none and forbids
//! it). This test reads the sources of the workspace and checks that
//!
//! * no other file has an `unsafe` block, function or impl;
//! * every file without `unsafe` is under `#![forbid(unsafe_code)]`, in
//!   itself or in an enclosing module, except the crate root `src/lib.rs`
//!   that encloses the allowed ones and must itself have none;
//! * every `unsafe` block has a `// SAFETY:` comment just before it.
//!
//! It prints the count per file (`cargo test --test callers_unsafe --
//! --nocapture`), the table of README's Safety section.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

/// Files that may hold `unsafe` code, relative to the workspace root.
const ALLOWED: &[&str] = &["src/ffi/", "src/logging.rs", "src/transport/usb.rs"];
/// Modules that enclose an allowed one and so cannot forbid `unsafe`.
const ENCLOSING: &[&str] = &["src/lib.rs"];
/// The source trees checked.
const TREES: &[&str] = &["src", "sim/src", "e2e-client/src"];

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Count {
    blocks: usize,
    fns: usize,
    impls: usize,
    undocumented: usize,
}

impl Count {
    fn total(&self) -> usize {
        self.blocks + self.fns + self.impls
    }
}

/// The source with comments and string/char literals blanked (kept as
/// spaces, so lines keep their numbers), and the comment text per line.
fn strip(src: &str) -> (String, Vec<String>) {
    let b = src.as_bytes();
    let mut out = String::with_capacity(src.len());
    let mut comments = vec![String::new(); src.lines().count() + 1];
    let mut line = 0;
    let mut i = 0;
    let blank = |c: u8| if c == b'\n' { '\n' } else { ' ' };
    while i < b.len() {
        let c = b[i];
        if c == b'\n' {
            line += 1;
        }
        if c == b'/' && b.get(i + 1) == Some(&b'/') {
            let end = src[i..].find('\n').map_or(b.len(), |n| i + n);
            comments[line].push_str(&src[i..end]);
            out.extend(std::iter::repeat(' ').take(end - i));
            i = end;
        } else if c == b'/' && b.get(i + 1) == Some(&b'*') {
            let end = src[i + 2..].find("*/").map_or(b.len(), |n| i + 2 + n + 2);
            for &x in &b[i..end] {
                if x == b'\n' {
                    line += 1;
                }
                out.push(blank(x));
            }
            i = end;
        } else if c == b'"' || (c == b'r' && b.get(i + 1) == Some(&b'"')) {
            // A string (raw strings without hashes count as plain ones).
            let start = i;
            i += if c == b'r' { 2 } else { 1 };
            while i < b.len() && b[i] != b'"' {
                if b[i] == b'\\' && c != b'r' {
                    i += 1;
                }
                i += 1;
            }
            i = (i + 1).min(b.len());
            for &x in &b[start..i] {
                if x == b'\n' {
                    line += 1;
                }
                out.push(blank(x));
            }
        } else if c == b'\'' && b.get(i + 2) == Some(&b'\'') {
            out.push_str("   ");
            i += 3;
        } else if c == b'\'' && b.get(i + 1) == Some(&b'\\') {
            let end = src[i + 2..].find('\'').map_or(b.len(), |n| i + 2 + n + 1);
            out.extend(std::iter::repeat(' ').take(end - i));
            i = end;
        } else {
            out.push(c as char);
            i += 1;
        }
    }
    (out, comments)
}

fn count(src: &str) -> Count {
    let (code, comments) = strip(src);
    let mut c = Count::default();
    for (n, l) in code.lines().enumerate() {
        let mut rest = l;
        while let Some(p) = rest.find("unsafe") {
            let before = rest[..p].chars().last();
            let after = &rest[p + 6..];
            rest = after;
            if before.is_some_and(|ch| ch.is_alphanumeric() || ch == '_')
                || after
                    .chars()
                    .next()
                    .is_some_and(|ch| ch.is_alphanumeric() || ch == '_')
            {
                continue;
            }
            let next = after.trim_start();
            if next.starts_with('{') {
                c.blocks += 1;
                // The SAFETY comment is on one of the lines above (or this one).
                let documented = (n.saturating_sub(6)..=n)
                    .any(|k| comments.get(k).is_some_and(|t| t.contains("SAFETY:")));
                if !documented {
                    c.undocumented += 1;
                }
            } else if next.starts_with("fn") || next.starts_with("extern") {
                c.fns += 1;
            } else if next.starts_with("impl") || next.starts_with("trait") {
                c.impls += 1;
            }
        }
    }
    c
}

fn has_forbid(src: &str) -> bool {
    src.lines().any(|l| l.trim() == "#![forbid(unsafe_code)]")
}

fn rs_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = fs::read_dir(dir) else { return };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            rs_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The module files enclosing `rel` (for `a/b/c.rs`: `a/b.rs` or
/// `a/b/mod.rs`, then `a.rs` or `a/mod.rs`), then its crate root (`lib.rs`,
/// or `main.rs` for a program without library; files under `bin/` are
/// crate roots themselves).
fn ancestors(root: &Path, tree: &str, rel: &str) -> Vec<String> {
    let inner = rel
        .strip_prefix(tree)
        .unwrap_or(rel)
        .trim_start_matches('/');
    let mut parts: Vec<&str> = inner.split('/').collect();
    parts.pop();
    if inner.ends_with("/mod.rs") {
        parts.pop();
    }
    let mut out = Vec::new();
    while !parts.is_empty() {
        let dir = parts.join("/");
        for cand in [format!("{tree}/{dir}.rs"), format!("{tree}/{dir}/mod.rs")] {
            if root.join(&cand).is_file() {
                out.push(cand);
            }
        }
        parts.pop();
    }
    if !inner.starts_with("bin/") && inner != "main.rs" {
        let lib = format!("{tree}/lib.rs");
        out.push(if root.join(&lib).is_file() {
            lib
        } else {
            format!("{tree}/main.rs")
        });
    }
    out
}

#[test]
fn unsafe_stays_in_its_three_places() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut table: BTreeMap<String, Count> = BTreeMap::new();
    let mut problems = Vec::new();
    for tree in TREES {
        let mut files = Vec::new();
        rs_files(&root.join(tree), &mut files);
        assert!(!files.is_empty(), "no sources under {tree}");
        for f in files {
            let rel = f
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/");
            let src = fs::read_to_string(&f).unwrap();
            let c = count(&src);
            let allowed = ALLOWED.iter().any(|a| rel.starts_with(a));
            if c.total() > 0 && !allowed {
                problems.push(format!("{rel}: {c:?} outside the allowed files"));
            }
            if c.undocumented > 0 {
                problems.push(format!(
                    "{rel}: {} unsafe block(s) without a SAFETY comment",
                    c.undocumented
                ));
            }
            if c.total() == 0 {
                let covered = has_forbid(&src)
                    || ancestors(root, tree, &rel)
                        .iter()
                        .any(|a| fs::read_to_string(root.join(a)).is_ok_and(|s| has_forbid(&s)));
                if !covered && !ENCLOSING.contains(&rel.as_str()) {
                    problems.push(format!(
                        "{rel}: no unsafe, but no #![forbid(unsafe_code)] over it"
                    ));
                }
            }
            table.insert(rel, c);
        }
    }
    println!("| file | unsafe blocks | unsafe fns | unsafe impls |");
    println!("|---|---:|---:|---:|");
    let mut total = Count::default();
    for (f, c) in &table {
        if c.total() > 0 {
            println!("| `{f}` | {} | {} | {} |", c.blocks, c.fns, c.impls);
            total.blocks += c.blocks;
            total.fns += c.fns;
            total.impls += c.impls;
        }
    }
    println!(
        "| every other file ({}) | 0 | 0 | 0 |",
        table.values().filter(|c| c.total() == 0).count()
    );
    println!(
        "| **total** | {} | {} | {} |",
        total.blocks, total.fns, total.impls
    );
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert!(
        total.blocks > 0,
        "the FFI has unsafe blocks: the counter is broken"
    );
}

#[test]
fn the_counter_ignores_comments_and_strings() {
    let src = "// unsafe { x }\nlet s = \"unsafe { }\";\n/* unsafe fn f() */\nfn unsafe_name() {}\n\
               // SAFETY: fine\nunsafe { f() };\nunsafe { g() };\npub unsafe extern \"C\" fn h() {}\n";
    let c = count(src);
    assert_eq!((c.blocks, c.fns, c.impls), (2, 1, 0));
    // The second block is within the lines after the SAFETY comment.
    assert_eq!(c.undocumented, 0);
    let far = format!("// SAFETY: x\n{}unsafe {{ y }}\n", "\n".repeat(10));
    assert_eq!(count(&far).undocumented, 1);
}
