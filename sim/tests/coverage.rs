//! Every CCID interface of every shared descriptor dump becomes a virtual
//! reader that passes the self-consistency check.

use ccid_sim::coverage::{self, Outcome};
use std::path::PathBuf;

#[test]
fn every_shared_dump_passes_or_is_refused_with_a_reason() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/ccid-data/readers");
    if !dir.is_dir() {
        println!("skipped: {} is absent", dir.display());
        return;
    }
    let sum = coverage::run_dir(&dir).unwrap();
    println!(
        "{} dumps, {} interfaces, {} checks: {} pass, {} refused, {} fail",
        sum.dumps,
        sum.interfaces,
        sum.checks.len(),
        sum.passed(),
        sum.refused(),
        sum.failed()
    );
    let failures: Vec<String> = sum
        .checks
        .iter()
        .filter_map(|c| match &c.outcome {
            Outcome::Fail(m) => Some(format!("{} if {}: {m}", c.source, c.interface)),
            _ => None,
        })
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(sum.unreadable.is_empty(), "{:?}", sum.unreadable);
    assert!(sum.dumps > 0 && sum.interfaces >= sum.dumps);
    // Both protocols of every reader offering both were exercised.
    assert!(sum.checks.iter().any(|c| c.protocol == Some(0)));
    assert!(sum.checks.iter().any(|c| c.protocol == Some(1)));
    for c in &sum.checks {
        if let Outcome::Refused(why) = &c.outcome {
            assert!(!why.is_empty());
        }
    }
}
