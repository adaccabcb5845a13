//! Trace parsing and replay: the fixtures in `tests/data` (written for
//! these tests), and the recorded traces of the shared data folder when it
//! is present.

use ccid_sim::replay::{self, differences, Options, Outcome, Report};
use ccid_sim::trace::{self, Call, EventKind, Format, Trace};
use std::path::{Path, PathBuf};

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

fn parse(name: &str) -> Trace {
    trace::parse_file(&data(name)).unwrap_or_else(|e| panic!("{e}"))
}

fn replay_fixture(name: &str, descriptor: Option<&str>) -> Report {
    let opts = Options {
        descriptor: descriptor.map(data),
        data_dir: None,
    };
    replay::replay_file(&data(name), &opts).unwrap_or_else(|e| panic!("{e}"))
}

fn count(t: &Trace, pred: impl Fn(&EventKind) -> bool) -> usize {
    t.events.iter().filter(|e| pred(&e.kind)).count()
}

#[test]
fn fixtures_parse_in_each_format() {
    let t = parse("libccid-1.5.log");
    assert_eq!(t.format, Format::Libccid);
    assert_eq!((t.host_frames(), t.reader_frames()), (8, 8));
    assert_eq!(t.segments().len(), 2);
    assert_eq!(count(&t, |k| matches!(k, EventKind::Interrupt { .. })), 1);
    assert_eq!(
        count(&t, |k| matches!(
            k,
            EventKind::Call {
                call: Call::Transmit,
                ..
            }
        )),
        2
    );

    let t = parse("libccid-1.8.log");
    assert_eq!(t.format, Format::Libccid);
    assert_eq!((t.host_frames(), t.reader_frames()), (4, 3));
    assert!(t
        .events
        .iter()
        .any(|e| e.kind == EventKind::ControlRequest { request: 3 }));
    assert_eq!(count(&t, |k| matches!(k, EventKind::T1Block { .. })), 2);
    assert_eq!(count(&t, |k| *k == EventKind::ReadTimeout), 1);
    assert!(t.events.iter().any(|e| matches!(
        &e.kind,
        EventKind::BulkOut(tr) if tr.reader == Some(1)
    )));

    let t = parse("gnupg-ccid-driver.log");
    assert_eq!(t.format, Format::Gnupg);
    assert_eq!((t.host_frames(), t.reader_frames()), (2, 2));
    assert!(t
        .events
        .iter()
        .any(|e| e.kind == EventKind::Response(vec![0x12, 0x34, 0x90, 0x00])));

    let t = parse("libnfc.log");
    assert_eq!(t.format, Format::Libnfc);
    assert_eq!((t.host_frames(), t.reader_frames()), (1, 1));

    let t = parse("quoted-hex.txt");
    assert_eq!(t.format, Format::PlainHex);
    assert_eq!((t.host_frames(), t.reader_frames()), (2, 3));

    let t = parse("zlp-stale.trace");
    assert_eq!(t.format, Format::Native);
    assert_eq!((t.host_frames(), t.reader_frames()), (5, 7));
}

#[test]
fn fixtures_survive_the_native_round_trip() {
    for name in [
        "libccid-1.5.log",
        "libccid-1.8.log",
        "gnupg-ccid-driver.log",
        "libnfc.log",
        "quoted-hex.txt",
        "zlp-stale.trace",
    ] {
        let t = parse(name);
        let back = trace::parse_str("round-trip", &t.to_native()).unwrap();
        let kinds = |t: &Trace| t.events.iter().map(|e| e.kind.clone()).collect::<Vec<_>>();
        assert_eq!(kinds(&t), kinds(&back), "{name}");
    }
}

#[test]
fn malformed_input_names_file_and_line() {
    let e = trace::parse_file(&data("malformed.log")).unwrap_err();
    assert_eq!(e.line, 2);
    assert!(e.file.ends_with("malformed.log"));
    assert!(
        e.to_string()
            .contains("malformed.log:2: invalid hex byte '0G'"),
        "{e}"
    );
    let e = replay::replay_file(&data("malformed.log"), &Options::default()).unwrap_err();
    assert!(e.to_string().contains(":2:"), "{e}");
    let e = trace::parse_file(&data("no-such-file.log")).unwrap_err();
    assert!(e.message.starts_with("cannot read"), "{e}");
}

#[test]
fn zlp_and_stale_answers_are_skipped() {
    let r = replay_fixture("zlp-stale.trace", None);
    print!("{}", r.render(false));
    assert_eq!((r.matched(), r.total()), (5, 5));
    assert!(r.passed());
    assert_eq!(r.zlps, 1, "the stray zero-length packet reached the driver");
    // The zero-length packet and the stale copy of the 64-byte answer.
    assert_eq!(r.dropped_by_driver, 2);
    let responses: Vec<_> = r.results.iter().filter(|c| c.what == "response").collect();
    assert_eq!(responses.len(), 2);
    assert!(responses.iter().all(|c| c.equal), "{responses:?}");
    assert!(r.results.iter().any(|c| c.what == "presence" && c.equal));
}

#[test]
fn libccid_fixture_replays_with_documented_differences_only() {
    let r = replay_fixture("libccid-1.5.log", None);
    print!("{}", r.render(true));
    assert_eq!(r.total(), 8);
    assert_eq!(r.matched(), 7);
    let div: Vec<_> = r.divergences().collect();
    assert_eq!(div.len(), 1);
    assert_eq!(div[0].outcome, Outcome::Missing);
    assert_eq!(div[0].difference, Some(&differences::WARM_UP_ONCE));
    assert!(r.passed());
    assert!(r.results.iter().all(|c| c.equal), "{:?}", r.results);
    // ATR, two responses, two presence answers.
    assert_eq!(r.results.len(), 5);
}

#[test]
fn gnupg_fixture_uses_the_printed_features() {
    let r = replay_fixture("gnupg-ccid-driver.log", None);
    print!("{}", r.render(true));
    assert!(
        r.adjustments.iter().any(|a| a.contains("0x00010230")),
        "{:?}",
        r.adjustments
    );
    // The power-on matches; the T=1 exchange depends on the T=1 engine.
    assert!(r
        .frames
        .iter()
        .any(|c| c.outcome == Outcome::Matched && c.detail.starts_with("PC_to_RDR_IccPowerOn")));
}

#[test]
fn descriptor_given_on_the_command_line() {
    let r = replay_fixture("zlp-stale.trace", Some("qemu-usb-ccid.txt"));
    assert!(r.descriptor.contains("qemu-usb-ccid.txt"));
    assert!(r.passed());
    let dumps =
        replay::parse_dump(&std::fs::read_to_string(data("qemu-usb-ccid.txt")).unwrap()).unwrap();
    assert_eq!(dumps.len(), 1);
    assert_eq!(dumps[0].descriptor.dwFeatures, 0x0001_04FE);
    assert_eq!(dumps[0].descriptor.dwMaximumClock, 65536);
    assert_eq!(dumps[0].descriptor.dwMaxCCIDMessageLength, 65554);
}

#[test]
fn cli_exit_codes() {
    let s = |p: &Path| p.display().to_string();
    assert_eq!(replay::cli(&[s(&data("zlp-stale.trace"))]), 0);
    assert_eq!(replay::cli(&[s(&data("malformed.log"))]), 2);
    assert_eq!(replay::cli(&[]), 2);
    assert_eq!(replay::cli(&["a".into(), "b".into()]), 2);
    assert_eq!(
        replay::cli(&[s(&data("zlp-stale.trace")), "--descriptor".into()]),
        2
    );
}

#[test]
fn every_documented_difference_is_explained_in_the_docs() {
    let doc = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/replay-differences.md");
    let text = std::fs::read_to_string(&doc).unwrap_or_else(|e| panic!("{}: {e}", doc.display()));
    for d in differences::ALL {
        assert!(
            text.contains(&format!("## `{}`", d.id)),
            "{} has no section in {}",
            d.id,
            doc.display()
        );
    }
}

/// The shared traces folder, or `None` (with the reason printed) when absent.
fn traces_dir() -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/ccid-data/traces");
    if dir.is_dir() {
        Some(dir)
    } else {
        println!("skipped: {} is absent", dir.display());
        None
    }
}

fn trace_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("readable traces folder")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    v.sort();
    v
}

fn find(dir: &Path, prefix: &str) -> Option<PathBuf> {
    trace_files(dir).into_iter().find(|p| {
        p.file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with(prefix))
    })
}

#[test]
fn every_trace_parses() {
    let Some(dir) = traces_dir() else { return };
    let files = trace_files(&dir);
    assert!(!files.is_empty(), "no traces in {}", dir.display());
    for f in files {
        let t = trace::parse_file(&f).unwrap_or_else(|e| panic!("{e}"));
        println!(
            "{}: {} format, {} host / {} reader frames, {} segment(s)",
            f.file_name().unwrap().to_string_lossy(),
            t.format.name(),
            t.host_frames(),
            t.reader_frames(),
            t.segments().len()
        );
        assert!(
            t.host_frames() + t.reader_frames() > 0,
            "{}: no frames found",
            f.display()
        );
    }
}

#[test]
fn every_trace_replays() {
    let Some(dir) = traces_dir() else { return };
    for f in trace_files(&dir) {
        let r = replay::replay_file(&f, &Options::default()).unwrap_or_else(|e| panic!("{e}"));
        println!(
            "{}: frames matched {}/{}, {} divergence(s), {} undocumented",
            f.file_name().unwrap().to_string_lossy(),
            r.matched(),
            r.total(),
            r.divergences().count(),
            r.undocumented()
        );
        let t = trace::parse_file(&f).unwrap();
        assert_eq!(r.total(), t.host_frames(), "{}", f.display());
    }
}

fn qemu_replay(dir: &Path, prefix: &str) -> Option<Report> {
    let Some(f) = find(dir, prefix) else {
        println!("skipped: no trace {prefix}* in {}", dir.display());
        return None;
    };
    let opts = Options {
        descriptor: Some(data("qemu-usb-ccid.txt")),
        data_dir: None,
    };
    Some(replay::replay_file(&f, &opts).unwrap_or_else(|e| panic!("{e}")))
}

#[test]
fn qemu_uhci_full_log_matches() {
    let Some(dir) = traces_dir() else { return };
    let Some(r) = qemu_replay(&dir, "22-") else {
        return;
    };
    print!("{}", r.render(false));
    assert!(r.total() > 600);
    assert!(
        r.matched() * 10 >= r.total() * 9,
        "{}/{} is under 90%",
        r.matched(),
        r.total()
    );
    assert!(r.passed(), "undocumented divergences:\n{}", r.render(false));
    assert!(r.results.iter().all(|c| c.equal), "{}", r.render(false));
}

#[test]
fn qemu_xhci_zlp_does_not_desync_the_driver() {
    let Some(dir) = traces_dir() else { return };
    let Some(r) = qemu_replay(&dir, "23-") else {
        return;
    };
    print!("{}", r.render(false));
    assert!(
        r.matched() * 10 >= r.total() * 9,
        "{}/{} is under 90%",
        r.matched(),
        r.total()
    );
    assert!(r.passed(), "undocumented divergences:\n{}", r.render(false));
    assert!(r.zlps >= 1, "the zero-length packet was not replayed");
    assert!(r.dropped_by_driver >= r.zlps as u64);
    // Where libccid returned the previous command's answer (or nothing,
    // for the zero-length packet), the driver returned the answer that
    // carries its own bSeq.
    let stale: Vec<_> = r.results.iter().filter(|c| !c.equal).collect();
    assert!(!stale.is_empty(), "libccid's desync is not visible");
    assert!(
        stale
            .iter()
            .all(|c| c.difference == Some(&differences::ANSWER_BY_BSEQ)),
        "{stale:?}"
    );
    // Every response after the desync is the one recorded for its command.
    assert!(r
        .results
        .iter()
        .filter(|c| c.what == "response")
        .all(|c| c.equal || c.difference.is_some()));
}
