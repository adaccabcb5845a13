//! The bundle: the reader list and its parser, the generated Info.plist
//! (every enabled reader listed, disabled ones absent, the keys pcscd and
//! the driver read, well-formed XML), agreement with the reference reader
//! list, and `make install` / `make uninstall` into a scratch DESTDIR.

#[path = "../bundle/readers_table.rs"]
mod readers_table;

use ccid::config::{parse_plist, PlistValue};
use ccid::readers::{Section, INFO_PLIST, READERS};
use readers_table::{parse, render_plist, Row};
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn our_rows() -> Vec<Row> {
    let text = std::fs::read_to_string(root().join("supported_readers.txt")).unwrap();
    parse(&text, "supported_readers.txt").unwrap()
}

fn plist_items() -> Vec<(String, PlistValue)> {
    parse_plist(INFO_PLIST).expect("the generated Info.plist parses")
}

fn string(items: &[(String, PlistValue)], key: &str) -> String {
    match items.iter().find(|(k, _)| k == key) {
        Some((_, PlistValue::String(s))) => s.clone(),
        other => panic!("{key}: {other:?}"),
    }
}

fn array(items: &[(String, PlistValue)], key: &str) -> Vec<String> {
    match items.iter().find(|(k, _)| k == key) {
        Some((_, PlistValue::Array(a))) => a.clone(),
        other => panic!("{key}: {other:?}"),
    }
}

#[test]
fn list_parser_rejects_bad_lines() {
    let ok = "# comment\n\n08E6 3437 supported Gemalto USB Shell Token V2\n\
              1050 0407 shouldwork Yubico YubiKey OTP+FIDO+CCID\n";
    let rows = parse(ok, "t").unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(
        (rows[1].vid, rows[1].pid, rows[1].section, rows[1].line),
        (0x1050, 0x0407, "shouldwork", 4)
    );
    assert_eq!(rows[1].name, "Yubico YubiKey OTP+FIDO+CCID");
    for (text, what) in [
        (
            "08E6 3437 supported A\n1050 0407 supported B\n08e6 3437 disabled C",
            "t:3: 08E6:3437 already listed on line 1",
        ),
        ("8E6 3437 supported A", "t:1: VID of 4 hex digits"),
        ("08E6 34G7 supported A", "t:1: PID of 4 hex digits"),
        ("\n08E6 3437 works A", "t:2: section \"works\""),
        ("08E6 3437 supported", "t:1: reader name expected"),
        ("08E6 3437 supported   ", "t:1: reader name expected"),
        ("08E6 3437 supported A\tB", "t:1: control character"),
        ("08E6\t3437 supported A", "t:1: VID"),
        ("# nothing\n", "t: no readers"),
    ] {
        let e = parse(text, "t").expect_err(text);
        assert!(e.starts_with(what), "{text:?}: {e}");
    }
}

#[test]
fn plist_template_placeholders_are_checked() {
    let rows = parse(
        "08E6 3437 supported A & B <x>\n08E6 3438 disabled Off\n",
        "t",
    )
    .unwrap();
    let template = "@TARGET@ @VERSION@ @VERSION_NUMBER@\n@VENDOR_IDS@\n@PRODUCT_IDS@\n@NAMES@\n";
    let out = render_plist(template, &rows, "1.2.3", "libccid.so").unwrap();
    assert_eq!(
        out,
        "libccid.so 1.2.3 0x01020003\n\t\t<string>0x08E6</string>\n\
         \t\t<string>0x3437</string>\n\t\t<string>A &amp; B &lt;x&gt;</string>\n"
    );
    let e = render_plist("@TARGET@ @VERSION@", &rows, "1", "x").unwrap_err();
    assert!(e.contains("missing"), "{e}");
    let e = render_plist(&format!("{template}@OTHER@"), &rows, "1", "x").unwrap_err();
    assert!(e.contains("@OTHER@"), "{e}");
    assert_eq!(readers_table::version_number("0.1.0"), 0x0001_0000);
    assert_eq!(readers_table::version_number("1.5.2-rc1"), 0x0105_0002);
}

#[test]
fn table_follows_the_list() {
    let rows = our_rows();
    assert_eq!(rows.len(), READERS.len());
    for (r, e) in rows.iter().zip(READERS) {
        let section = match e.section {
            Section::Supported => "supported",
            Section::ShouldWork => "shouldwork",
            Section::Unsupported => "unsupported",
            Section::Disabled => "disabled",
        };
        assert_eq!(
            (r.vid, r.pid, r.section, r.name.as_str()),
            (e.vendor_id, e.product_id, section, e.name),
            "line {}",
            r.line
        );
    }
}

#[test]
fn info_plist_lists_every_enabled_reader_and_no_disabled_one() {
    let items = plist_items();
    let vids = array(&items, "ifdVendorID");
    let pids = array(&items, "ifdProductID");
    let names = array(&items, "ifdFriendlyName");
    let listed: Vec<Row> = our_rows().into_iter().filter(Row::listed).collect();
    assert_eq!(vids.len(), listed.len());
    assert_eq!(pids.len(), listed.len());
    assert_eq!(names.len(), listed.len());
    for (i, r) in listed.iter().enumerate() {
        assert_eq!(vids[i], format!("0x{:04X}", r.vid), "line {}", r.line);
        assert_eq!(pids[i], format!("0x{:04X}", r.pid), "line {}", r.line);
        assert_eq!(names[i], r.name, "line {}", r.line);
    }
    let disabled: Vec<&_> = READERS
        .iter()
        .filter(|r| r.section == Section::Disabled)
        .collect();
    assert!(!disabled.is_empty());
    for d in disabled {
        let present = vids.iter().zip(&pids).any(|(v, p)| {
            *v == format!("0x{:04X}", d.vendor_id) && *p == format!("0x{:04X}", d.product_id)
        });
        assert!(!present, "disabled reader {d:?} in Info.plist");
    }
    // Names with '&' are escaped in the file and read back unescaped.
    let amp = names
        .iter()
        .find(|n| n.contains('&'))
        .expect("a name with '&'");
    assert!(INFO_PLIST.contains(&amp.replace('&', "&amp;")));
}

#[test]
fn info_plist_has_the_keys_pcscd_and_the_driver_read() {
    let items = plist_items();
    let exe = if cfg!(target_os = "macos") {
        "libccid.dylib"
    } else {
        "libccid.so"
    };
    assert_eq!(string(&items, "CFBundleExecutable"), exe);
    assert_eq!(string(&items, "CFBundleName"), "CCIDCLASSDRIVER");
    assert!(!string(&items, "CFBundleIdentifier").is_empty());
    assert_eq!(
        string(&items, "CFBundleShortVersionString"),
        env!("CARGO_PKG_VERSION")
    );
    // libccid refuses a bundle without these three.
    for key in ["ifdManufacturerString", "ifdProductString", "Copyright"] {
        assert!(!string(&items, key).is_empty(), "{key}");
    }
    assert_eq!(string(&items, "ifdCapabilities"), "0x00000000");
    assert_eq!(string(&items, "ifdLogLevel"), "0x0003");
    assert_eq!(string(&items, "ifdDriverOptions"), "0x0000");
    assert_eq!(string(&items, "ifdTimeoutCap"), "600000");
    assert_eq!(
        string(&items, "ifdVersionNumber"),
        format!(
            "0x{:08X}",
            readers_table::version_number(env!("CARGO_PKG_VERSION"))
        )
    );
    let (cfg, warnings) = ccid::config::Config::from_plist(INFO_PLIST, &|_| None);
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(cfg.log_level.bits(), 3);
    assert_eq!(cfg.driver_options.bits(), 0);
    assert_eq!(cfg.timeout_cap_ms, ccid::config::DEFAULT_TIMEOUT_CAP_MS);
}

/// Checks XML well-formedness as far as a property list needs: one
/// declaration first, balanced elements, closed comments without `--`,
/// no stray `<` or `&`.
fn check_xml(text: &str) -> Result<(), String> {
    if !text.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n") {
        return Err("no XML declaration first".into());
    }
    let mut stack: Vec<&str> = Vec::new();
    let mut rest = text;
    let mut roots = 0;
    while let Some(i) = rest.find(['<', '&']) {
        let at = text.len() - rest.len() + i;
        let line = text[..at].matches('\n').count() + 1;
        let here = &rest[i..];
        if let Some(after) = here.strip_prefix('&') {
            let ok = ["amp;", "lt;", "gt;", "quot;", "apos;"]
                .iter()
                .any(|e| after.starts_with(e));
            if !ok {
                return Err(format!("line {line}: bare '&'"));
            }
            rest = after;
            continue;
        }
        if let Some(c) = here.strip_prefix("<!--") {
            let end = c.find("-->").ok_or(format!("line {line}: open comment"))?;
            if c[..end].contains("--") {
                return Err(format!("line {line}: '--' inside a comment"));
            }
            rest = &c[end + 3..];
            continue;
        }
        let end = here.find('>').ok_or(format!("line {line}: open tag"))?;
        let tag = &here[1..end];
        rest = &here[end + 1..];
        if tag.contains('<') {
            return Err(format!("line {line}: '<' inside a tag"));
        }
        if tag.starts_with('?') || tag.starts_with("!DOCTYPE") {
            if !stack.is_empty() {
                return Err(format!("line {line}: <{tag}> inside an element"));
            }
            continue;
        }
        if let Some(name) = tag.strip_prefix('/') {
            match stack.pop() {
                Some(open) if open == name => {}
                other => return Err(format!("line {line}: </{name}> closes {other:?}")),
            }
            continue;
        }
        let name = tag.split_whitespace().next().unwrap_or("");
        if name.is_empty() {
            return Err(format!("line {line}: empty tag"));
        }
        if stack.is_empty() {
            roots += 1;
        }
        if !tag.ends_with('/') {
            stack.push(name);
        }
    }
    if let Some(open) = stack.last() {
        return Err(format!("<{open}> never closed"));
    }
    if roots != 1 {
        return Err(format!("{roots} root elements"));
    }
    Ok(())
}

#[test]
fn info_plist_is_well_formed() {
    check_xml(INFO_PLIST).unwrap();
    assert!(INFO_PLIST.contains("<plist version=\"1.0\">\n<dict>"));
    // The checker catches what it is meant to.
    let decl = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n";
    for bad in [
        "<plist></dict>",
        "<plist><dict></plist></dict>",
        "<plist>a & b</plist>",
        "<plist><!-- a -- b --></plist>",
        "<plist>",
        "<a/><b/>",
    ] {
        assert!(check_xml(&format!("{decl}{bad}")).is_err(), "{bad}");
    }
    assert!(check_xml(&format!("{decl}<a><b/>&amp;<!-- c --></a>")).is_ok());
}

/// The shared reference list: `0xVVVV:0xPPPP:Name` lines in `# section:`
/// sections, disabled ones commented out.
#[test]
fn every_reader_of_the_reference_list_is_listed() {
    let path = root().join("../shared/ccid-data/supported_readers.txt");
    let Ok(text) = std::fs::read_to_string(&path) else {
        println!("skipped: {} is not available", path.display());
        return;
    };
    let items = plist_items();
    let vids = array(&items, "ifdVendorID");
    let pids = array(&items, "ifdProductID");
    let names = array(&items, "ifdFriendlyName");
    let mut section = String::new();
    let mut active = 0;
    for line in text.lines() {
        if let Some(s) = line.strip_prefix("# section:") {
            section = s.trim().to_string();
            continue;
        }
        if line.starts_with('#') || line.trim().is_empty() || section == "duplicates" {
            continue;
        }
        let mut f = line.splitn(3, ':');
        let (Some(v), Some(p), Some(name)) = (f.next(), f.next(), f.next()) else {
            panic!("reference line {line:?}");
        };
        active += 1;
        let i = vids
            .iter()
            .zip(&pids)
            .position(|(a, b)| a.eq_ignore_ascii_case(v) && b.eq_ignore_ascii_case(p))
            .unwrap_or_else(|| panic!("{line} missing from Info.plist"));
        assert_eq!(names[i], name.trim(), "{line}");
    }
    assert_eq!(
        active,
        vids.len(),
        "Info.plist lists readers the reference does not"
    );
}

/// The target directory and profile this test was built in
/// (`<target>/<profile>/deps/bundle-*`).
fn build_dirs() -> Option<(PathBuf, String)> {
    let exe = std::env::current_exe().ok()?;
    let profile_dir = exe.parent()?.parent()?;
    let profile = profile_dir.file_name()?.to_str()?.to_string();
    Some((profile_dir.parent()?.to_path_buf(), profile))
}

#[test]
fn make_install_and_uninstall_into_a_destdir() {
    if Command::new("make").arg("--version").output().is_err() {
        println!("skipped: make is not available");
        return;
    }
    let Some((target_dir, profile)) = build_dirs() else {
        println!("skipped: cannot tell the target directory from the test's path");
        return;
    };
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let scratch = std::env::temp_dir().join(format!("ccid-bundle-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&scratch);
    let dest = scratch.join("dest");
    let run = |goal: &str| {
        let out = Command::new("make")
            .current_dir(root())
            .arg("--no-print-directory")
            .arg(goal)
            .arg(format!("DESTDIR={}", dest.display()))
            .arg(format!(
                "BUNDLE={}",
                scratch.join("ifd-ccid.bundle").display()
            ))
            .arg(format!("PROFILE={profile}"))
            .arg("USBDROPDIR=/usr/lib/pcsc/drivers")
            .arg(format!("CARGO={cargo}"))
            .env("CARGO_TARGET_DIR", &target_dir)
            .output()
            .expect("make runs");
        assert!(
            out.status.success(),
            "make {goal} failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run("install");
    let (arch, lib) = if cfg!(target_os = "macos") {
        ("MacOS", "libccid.dylib")
    } else {
        ("Linux", "libccid.so")
    };
    let bundle = dest.join("usr/lib/pcsc/drivers/ifd-ccid.bundle/Contents");
    let plist = std::fs::read_to_string(bundle.join("Info.plist")).unwrap();
    assert_eq!(plist, INFO_PLIST);
    let so = std::fs::read(bundle.join(arch).join(lib)).unwrap();
    if cfg!(target_os = "linux") {
        assert_eq!(so.get(..4), Some(&b"\x7fELF"[..]), "not an ELF file");
        // ELF type at offset 16: ET_DYN (3), a shared object.
        assert_eq!(so.get(16), Some(&3), "not a shared object");
    }
    if cfg!(target_os = "linux") {
        library_logs_through_its_host(&bundle, &scratch);
    }
    run("uninstall");
    assert!(!bundle.join("Info.plist").exists());
    assert!(!bundle.join(arch).join(lib).exists());
    assert!(!dest.join("usr/lib/pcsc/drivers/ifd-ccid.bundle").exists());
    std::fs::remove_dir_all(&scratch).unwrap();
}

/// A stand-in for pcscd: exports `log_msg` / `log_xxd` (printing what it
/// receives), loads the driver and opens a device name.
const HOST_C: &str = r#"
#include <dlfcn.h>
#include <stdarg.h>
#include <stdio.h>

void log_msg(const int priority, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    printf("msg %d [", priority);
    vprintf(fmt, ap);
    printf("]\n");
    va_end(ap);
}

void log_xxd(const int priority, const char *msg, const unsigned char *buffer, const int size)
{
    printf("xxd %d [%s", priority, msg);
    for (int i = 0; i < size; i++)
        printf("%02X ", buffer[i]);
    printf("]\n");
}

int main(int argc, char *argv[])
{
    if (argc != 3)
        return 2;
    void *lib = dlopen(argv[1], RTLD_NOW);
    if (!lib) {
        fprintf(stderr, "%s\n", dlerror());
        return 2;
    }
    long (*create)(unsigned long, char *) =
        (long (*)(unsigned long, char *))dlsym(lib, "IFDHCreateChannelByName");
    if (!create)
        return 2;
    printf("rc %ld\n", create(0, argv[2]));
    return 0;
}
"#;

/// Loads the installed driver into [`HOST_C`]: its lines reach the host's
/// `log_msg` with user text never used as the format, and the level comes
/// from the Info.plist next to the library (then the environment).
fn library_logs_through_its_host(contents: &Path, scratch: &Path) {
    let src = scratch.join("host.c");
    let exe = scratch.join("host");
    std::fs::write(&src, HOST_C).unwrap();
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    match Command::new(&cc)
        .args(["-rdynamic", "-o"])
        .arg(&exe)
        .arg(&src)
        .arg("-ldl")
        .status()
    {
        Ok(s) if s.success() => {}
        other => {
            println!("skipped the host-process check: {cc}: {other:?}");
            return;
        }
    }
    let lib = contents.join("Linux/libccid.so");
    let plist_path = contents.join("Info.plist");
    let original = std::fs::read_to_string(&plist_path).unwrap();
    let with_level = |level: &str| {
        let from = "<key>ifdLogLevel</key>\n\t<string>0x0003</string>";
        assert!(original.contains(from));
        let to = format!("<key>ifdLogLevel</key>\n\t<string>{level}</string>");
        std::fs::write(&plist_path, original.replace(from, &to)).unwrap();
    };
    let name = "usb:ffff/fffe:%s%n%x";
    let host = |level_env: Option<&str>| -> String {
        let mut cmd = Command::new(&exe);
        cmd.arg(&lib).arg(name);
        cmd.env_remove("PCSCLITE_HP_DROPDIR")
            .env_remove("CCID_ifdLogLevel")
            .env_remove("RUST_LOG");
        match level_env {
            Some(l) => cmd.env("LIBCCID_ifdLogLevel", l),
            None => cmd.env_remove("LIBCCID_ifdLogLevel"),
        };
        let out = cmd.output().expect("host runs");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.lines().any(|l| l.starts_with("rc ")), "{stdout}");
        stdout
    };

    // Information level from the bundle's own Info.plist.
    with_level("0x0002");
    let out = host(None);
    let opened = out
        .lines()
        .find(|l| l.contains("IFDHCreateChannelByName lun: 0, device: "))
        .unwrap_or_else(|| panic!("no open line:\n{out}"));
    // "msg 1 [file.rs:line:module() text]": PCSC_LOG_INFO, the text verbatim.
    assert!(opened.starts_with("msg 1 ["), "{opened}");
    assert!(opened.contains(".rs:"), "{opened}");
    assert!(opened.ends_with(&format!("device: {name}]")), "{opened}");
    assert!(
        out.lines()
            .all(|l| l.starts_with("msg ") || l.starts_with("rc ")),
        "{out}"
    );

    // Level 0 in that Info.plist silences the driver: it was the one read.
    with_level("0x0000");
    let out = host(None);
    assert!(!out.contains("msg "), "{out}");
    // The environment overrides it.
    let out = host(Some("2"));
    assert!(out.contains("IFDHCreateChannelByName lun: 0"), "{out}");
    std::fs::write(&plist_path, original).unwrap();
}
