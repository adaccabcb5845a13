//! The driver's core against a virtual reader built from every real
//! descriptor dump: open, power up, protocol, APDUs (extended both ways
//! where the reader can carry them), power down. Prints pass / refused /
//! fail counts; any failure fails the test.

use ccid_sim::session::{run, Outcome, SessionOptions};
use std::path::PathBuf;

fn readers_dir() -> Option<PathBuf> {
    let d = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/ccid-data/readers");
    d.is_dir().then_some(d)
}

#[test]
fn every_dump_runs_a_session() {
    let Some(dir) = readers_dir() else {
        println!("skipped: ../shared/ccid-data/readers is absent");
        return;
    };
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "txt"))
        .collect();
    files.sort();
    let (mut pass, mut refused, mut failed, mut no_ccid) = (0, 0, Vec::new(), 0);
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap_or_default();
        let devices = match ccid::dump::parse(&text, &f.display().to_string()) {
            Ok(d) => d,
            Err(e) => {
                failed.push(format!("{}: {e}", f.display()));
                continue;
            }
        };
        no_ccid += devices
            .iter()
            .map(|d| {
                d.interfaces
                    .iter()
                    .filter(|i| i.descriptor.is_none())
                    .count()
            })
            .sum::<usize>();
        let count = ccid::dump::ccid_interfaces(&devices).len();
        for i in 0..count {
            let r = run(
                f,
                &SessionOptions {
                    interface: i,
                    ..SessionOptions::default()
                },
            );
            match r.outcome {
                Outcome::Pass => pass += 1,
                Outcome::Refused(why) => {
                    println!("refused: {} #{i}: {why}", f.display());
                    refused += 1;
                }
                Outcome::Fail(why) => failed.push(format!("{} #{i}: {why}", f.display())),
            }
        }
    }
    for f in &failed {
        println!("FAIL {f}");
    }
    println!(
        "session coverage: {} dumps, {pass} passed, {refused} refused, {} failed, {no_ccid} interfaces without a CCID descriptor",
        files.len(),
        failed.len()
    );
    assert!(failed.is_empty(), "{} sessions failed", failed.len());
}
