//! All eight slots of a sysmoOCTSIM (bMaxCCIDBusySlots 8) exchange ECHO
//! APDUs at once through the IFDH functions, one thread per slot, while the
//! reader sends stray frames next to the real answers: copies addressed to
//! an impossible slot (8, 255), to another existing slot, with a wrong
//! bSeq, duplicated answers and zero-length packets. Every answer must be
//! the echo of its own command: nothing lost, nothing misrouted.

use ccid::proto::message::MessageType;
use ccid_sim::bench::{timed_card, transmit_t0, Rig};
use ccid_sim::fault::{Fault, FaultRule};
use ccid_sim::model::ReaderConfig;
use std::path::PathBuf;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

fn dump() -> Option<PathBuf> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/ccid-data/readers/sysmocom_sysmoOCTSIM.txt");
    if p.is_file() {
        Some(p)
    } else {
        eprintln!("SKIP: {} not found", p.display());
        None
    }
}

/// The stray frames injected on each slot's XfrBlock answers.
fn strays(slot: u8) -> Vec<Fault> {
    match slot {
        0 => vec![Fault::StrayCopy {
            slot: Some(8),
            seq_delta: 0,
        }],
        1 => vec![Fault::StrayCopy {
            slot: Some(255),
            seq_delta: 0,
        }],
        2 => vec![Fault::StrayCopy {
            slot: None,
            seq_delta: 1,
        }],
        3 => vec![Fault::StrayCopy {
            slot: Some(4),
            seq_delta: 0,
        }],
        4 => vec![Fault::Duplicate],
        5 => vec![Fault::StrayZlp],
        // A wrong bSeq on the slot's own answer. (A copy readdressed to
        // another slot *and* given another bSeq can carry exactly the header
        // of that slot's pending answer: a forgery no host can tell from the
        // real answer, so it is not injected.)
        6 => vec![Fault::StrayCopy {
            slot: None,
            seq_delta: 128,
        }],
        _ => vec![Fault::Duplicate, Fault::StrayZlp],
    }
}

struct Counts {
    apdus: u64,
    wrong: u64,
    failed: u64,
    faults: u64,
    elapsed: Duration,
}

fn run(per_slot: u32) -> Option<Counts> {
    let path = dump()?;
    let cfg = ReaderConfig::from_dump_file(&path, 0).expect("the sysmoOCTSIM dump reads");
    assert_eq!(cfg.descriptor.slot_count(), 8);
    assert_eq!(cfg.descriptor.bMaxCCIDBusySlots, 8);
    let rig = Rig::open(&[cfg], &|| timed_card(Duration::ZERO)).expect("the reader opens");
    let reader = rig.readers.first().expect("one reader");
    for slot in 0..8u8 {
        for f in strays(slot) {
            reader.control.inject(
                FaultRule::always(f)
                    .on_slot(slot)
                    .on(MessageType::PC_TO_RDR_XFR_BLOCK),
            );
        }
    }
    let luns = rig.luns();
    let barrier = Arc::new(Barrier::new(luns.len()));
    let start = Instant::now();
    let threads: Vec<_> = luns
        .iter()
        .enumerate()
        .map(|(i, &lun)| {
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                barrier.wait();
                let (mut ok, mut wrong, mut failed) = (0u64, 0u64, 0u64);
                for n in 0..per_slot {
                    let mut data = vec![i as u8];
                    data.extend_from_slice(&n.to_be_bytes());
                    let mut apdu = vec![0x80, 0xEE, 0x00, 0x00, data.len() as u8];
                    apdu.extend_from_slice(&data);
                    let mut want = data.clone();
                    want.extend_from_slice(&[0x90, 0x00]);
                    match transmit_t0(lun, &apdu) {
                        Ok(a) if a == want => ok += 1,
                        Ok(a) => {
                            if wrong == 0 {
                                eprintln!("slot {i} APDU {n}: got {a:02X?}, want {want:02X?}");
                            }
                            wrong += 1;
                        }
                        Err(rc) => {
                            if failed == 0 {
                                eprintln!("slot {i} APDU {n}: code {rc}");
                            }
                            failed += 1;
                        }
                    }
                }
                (ok, wrong, failed)
            })
        })
        .collect();
    let mut c = Counts {
        apdus: 0,
        wrong: 0,
        failed: 0,
        faults: 0,
        elapsed: Duration::ZERO,
    };
    for t in threads {
        let (ok, wrong, failed) = t.join().expect("slot thread");
        c.apdus += ok;
        c.wrong += wrong;
        c.failed += failed;
    }
    c.elapsed = start.elapsed();
    c.faults = reader.control.with_reader(|r| r.faults_mut().fired());
    let busy = rig.busy_answers();
    println!(
        "multislot stress: {} echoes correct, {} wrong, {} failed, {} stray-frame faults fired, {} 'slot busy' answers, {:.1} s",
        c.apdus,
        c.wrong,
        c.failed,
        c.faults,
        busy,
        c.elapsed.as_secs_f64()
    );
    Some(c)
}

fn check(per_slot: u32) {
    let Some(c) = run(per_slot) else { return };
    assert_eq!(c.wrong, 0, "misrouted or corrupted answers");
    assert_eq!(c.failed, 0, "lost answers");
    assert_eq!(c.apdus, 8 * u64::from(per_slot));
    // Each ECHO is two XfrBlocks on T=0 (the command, then GET RESPONSE);
    // every one of them met its slot's stray rules (slot 7 has two).
    assert_eq!(c.faults, 2 * 9 * u64::from(per_slot));
}

#[test]
fn eight_slots_with_stray_frames() {
    check(4000);
}

/// 10^6 ECHO APDUs (125 000 per slot): `cargo test --release -p ccid-sim
/// --test multislot_stress -- --ignored`.
#[test]
#[ignore]
fn eight_slots_with_stray_frames_long() {
    check(125_000);
}
