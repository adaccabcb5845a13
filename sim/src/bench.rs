//! `ccid-sim bench-multislot`: aggregate APDU throughput of multi-slot
//! readers through the driver's IFDH entry points, in process.
//!
//! Every slot is opened the way pcscd opens it (`IFDHCreateChannelByName`
//! with `Lun = reader << 16 | slot`), powered (`IFDHPowerICC`), set to T=0
//! (`IFDHSetProtocolParameters`) and then driven by its own thread calling
//! `IFDHTransmitToICC`, as pcscd does when the driver reports
//! `TAG_IFD_SLOT_THREAD_SAFE = 1`. The readers are virtual ([`Rig`]),
//! built from a descriptor dump, and their cards take a fixed time per
//! APDU, so the aggregate rate shows how many commands the driver really
//! keeps in flight.

#![forbid(unsafe_code)]

use crate::card::{AtrBuilder, Card, IsoApplet};
use crate::model::{ReaderConfig, VirtualReader};
use crate::timing::TimeModel;
use crate::transport::{SimControl, SimTransport};
use ccid::error::Error;
use ccid::ffi::caller;
use ccid::ffi::{DWORD, RESPONSECODE};
use ccid::reader::registry;
use ccid::transport::Transport;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier, Mutex, Once};
use std::time::{Duration, Instant};

/// `IFD_SUCCESS`.
pub const IFD_SUCCESS: RESPONSECODE = 0;
const POWER_UP: DWORD = 500;
/// SCARD_PROTOCOL_T0 for IFDHSetProtocolParameters.
const SCARD_PROTOCOL_T0: DWORD = 1;
/// pcscd's answer buffer.
const RX_CAPACITY: usize = 65_546;
const TAG_IFD_SLOT_THREAD_SAFE: DWORD = 0x0FAC;

/// Transports waiting to be opened by name.
static PENDING: Mutex<Option<HashMap<String, Arc<dyn Transport>>>> = Mutex::new(None);
static FACTORY: Once = Once::new();
/// Reader numbers handed out in this process (Luns never repeat).
static NEXT_READER: AtomicU64 = AtomicU64::new(1);

fn install_factory() {
    FACTORY.call_once(|| {
        registry::set_transport_factory(Some(Arc::new(|name: &str, _cfg: &_| {
            PENDING
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .as_mut()
                .and_then(|m| m.remove(name))
                .ok_or_else(|| Error::NoReader(format!("{name}: no virtual reader of that name")))
        })));
    });
}

/// One virtual reader opened through the IFDH functions.
pub struct RigReader {
    /// The device name given to `IFDHCreateChannelByName`.
    pub name: String,
    /// `reader << 16`: the Lun of slot 0.
    pub lun_base: DWORD,
    /// Slots opened.
    pub slots: u8,
    /// The model's control handle (statistics, faults).
    pub control: SimControl,
}

impl RigReader {
    /// The Lun of `slot`.
    pub fn lun(&self, slot: u8) -> DWORD {
        self.lun_base | DWORD::from(slot)
    }
}

/// Virtual readers whose every slot is open, powered and in T=0.
pub struct Rig {
    /// The readers.
    pub readers: Vec<RigReader>,
}

/// A T=0 card whose application takes `per_apdu` for every APDU.
pub fn timed_card(per_apdu: Duration) -> Result<Card, String> {
    let atr = AtrBuilder::new()
        .protocols(true, false)
        .build()
        .map_err(|e| format!("ATR: {e}"))?;
    Card::new(atr, IsoApplet::new().with_processing_time(per_apdu)).map_err(|e| format!("ATR: {e}"))
}

impl Rig {
    /// Opens one reader per configuration, a card from `card` in every
    /// slot, through `IFDHCreateChannelByName` / `IFDHPowerICC` /
    /// `IFDHSetProtocolParameters`; checks that the driver reports each
    /// slot thread-safe.
    pub fn open(
        configs: &[ReaderConfig],
        card: &dyn Fn() -> Result<Card, String>,
    ) -> Result<Rig, String> {
        install_factory();
        let mut rig = Rig {
            readers: Vec::new(),
        };
        for cfg in configs {
            let slots = u8::try_from(cfg.descriptor.slot_count())
                .map_err(|_| "more than 255 slots".to_string())?;
            let mut reader = VirtualReader::with_card(cfg.clone(), None);
            for s in 0..slots {
                reader
                    .insert_card(s, card()?)
                    .map_err(|e| format!("card in slot {s}: {e}"))?;
            }
            let (transport, control) = SimTransport::shared(reader);
            let n = NEXT_READER.fetch_add(1, Ordering::Relaxed);
            let name = format!("sim:bench-{n}");
            let lun_base = DWORD::try_from(n << 16).map_err(|_| "Lun overflow".to_string())?;
            PENDING
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get_or_insert_with(HashMap::new)
                .insert(name.clone(), transport);
            let r = RigReader {
                name,
                lun_base,
                slots: 0,
                control,
            };
            rig.readers.push(r);
            let r = rig.readers.last_mut().ok_or("no reader")?;
            for s in 0..slots {
                let lun = r.lun(s);
                let rc = caller::create_channel_by_name(lun, &r.name);
                if rc != IFD_SUCCESS {
                    return Err(format!("IFDHCreateChannelByName({lun:#X}) = {rc}"));
                }
                r.slots = s + 1;
                let (rc, atr) = caller::power_icc(lun, POWER_UP);
                if rc != IFD_SUCCESS || atr.is_empty() {
                    return Err(format!("IFDHPowerICC({lun:#X}) = {rc}"));
                }
                let rc = caller::set_protocol_parameters(lun, SCARD_PROTOCOL_T0, 0, [0; 3]);
                if rc != IFD_SUCCESS {
                    return Err(format!("IFDHSetProtocolParameters({lun:#X}) = {rc}"));
                }
                let (rc, v) = caller::get_capabilities(lun, TAG_IFD_SLOT_THREAD_SAFE);
                if rc != IFD_SUCCESS || v != [1] {
                    return Err(format!(
                        "TAG_IFD_SLOT_THREAD_SAFE of {lun:#X}: {rc} {v:02X?}, expected 1"
                    ));
                }
            }
        }
        Ok(rig)
    }

    /// Every open Lun, reader by reader.
    pub fn luns(&self) -> Vec<DWORD> {
        self.readers
            .iter()
            .flat_map(|r| (0..r.slots).map(|s| r.lun(s)))
            .collect()
    }

    /// Commands the readers answered 'slot busy' (0 when the driver keeps
    /// within bMaxCCIDBusySlots).
    pub fn busy_answers(&self) -> u64 {
        self.readers.iter().map(|r| r.control.stats().busy).sum()
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        for r in &self.readers {
            for s in (0..r.slots).rev() {
                let _ = caller::close_channel(r.lun(s));
            }
        }
    }
}

/// `IFDHTransmitToICC` in T=0 as pcscd passes it; answers ending `61 xx`
/// are completed with GET RESPONSE as a PC/SC application would. Returns
/// the answer, or the first failing code.
pub fn transmit_t0(lun: DWORD, apdu: &[u8]) -> Result<Vec<u8>, RESPONSECODE> {
    let (rc, mut rx) = caller::transmit_to_icc(lun, 0, apdu, RX_CAPACITY);
    if rc != IFD_SUCCESS {
        return Err(rc);
    }
    let mut data = Vec::new();
    loop {
        let n = rx.len();
        match rx.get(n.saturating_sub(2)..) {
            Some([0x61, le]) if n == 2 => {
                let (rc, next) =
                    caller::transmit_to_icc(lun, 0, &[0x00, 0xC0, 0, 0, *le], RX_CAPACITY);
                if rc != IFD_SUCCESS {
                    return Err(rc);
                }
                rx = next;
            }
            _ => {
                data.extend_from_slice(&rx);
                return Ok(data);
            }
        }
    }
}

/// One benchmark case.
#[derive(Debug, Clone)]
pub struct Case {
    /// What is measured.
    pub label: String,
    /// Identical readers opened at once.
    pub readers: usize,
    /// Slots per reader.
    pub slots: u8,
    /// bMaxCCIDBusySlots declared.
    pub busy: u8,
    /// Slots per reader driven by a thread (the first ones).
    pub active: u8,
}

/// The measurement of one case.
#[derive(Debug, Clone)]
pub struct Row {
    /// The case.
    pub case: Case,
    /// APDUs exchanged (all answered correctly).
    pub apdus: u64,
    /// Wall time from the start signal to the last answer.
    pub elapsed: Duration,
    /// Answers that were wrong or failed.
    pub errors: u64,
    /// Commands the readers answered 'slot busy'.
    pub busy_answers: u64,
    /// The first wrong answer or failure code.
    pub first_error: Option<String>,
}

impl Row {
    /// Aggregate APDUs per second.
    pub fn rate(&self) -> f64 {
        self.apdus as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// What libccid's design allows on a case: pcscd serializes every slot of
/// a reader unless libccid reports TAG_IFD_SLOT_THREAD_SAFE = 1, which it
/// does only when bMaxCCIDBusySlots equals the slot count. Returns the
/// factor over one slot's rate (per reader, times the readers).
pub fn libccid_factor(case: &Case) -> f64 {
    let per_reader = if usize::from(case.busy) == usize::from(case.slots) {
        case.active
    } else {
        case.active.min(1)
    };
    f64::from(per_reader) * case.readers as f64
}

/// Benchmark options.
#[derive(Debug, Clone)]
pub struct Options {
    /// APDUs per active slot.
    pub apdus: u64,
    /// The card's time per APDU.
    pub card_time: Duration,
    /// The descriptor dump of the multi-slot reader.
    pub dump: PathBuf,
}

/// The benchmark APDU: GET DATA (case 2, 16 bytes of `00 01 02 …`), one
/// T=0 exchange per APDU.
const BENCH_APDU: [u8; 5] = [0x00, 0xCA, 0x00, 0x00, 0x10];

/// Runs one case.
pub fn run_case(case: &Case, opts: &Options) -> Result<Row, String> {
    let base = ReaderConfig::from_dump_file(&opts.dump, 0)
        .map_err(|e| format!("{}: {e}", opts.dump.display()))?
        .with_timing(TimeModel::card_only())
        .with_slots(case.slots, case.busy);
    let configs = vec![base; case.readers];
    let per_apdu = opts.card_time;
    let rig = Rig::open(&configs, &move || timed_card(per_apdu))?;
    let luns: Vec<DWORD> = rig
        .readers
        .iter()
        .flat_map(|r| (0..case.active.min(r.slots)).map(|s| r.lun(s)))
        .collect();
    let want: Vec<u8> = (0u8..0x10).chain([0x90, 0x00]).collect();
    let barrier = Arc::new(Barrier::new(luns.len() + 1));
    let handles: Vec<_> = luns
        .iter()
        .map(|&lun| {
            let barrier = barrier.clone();
            let want = want.clone();
            let n = opts.apdus;
            std::thread::spawn(move || {
                barrier.wait();
                let (mut ok, mut bad, mut first) = (0u64, 0u64, None);
                for _ in 0..n {
                    match transmit_t0(lun, &BENCH_APDU) {
                        Ok(a) if a == want => ok += 1,
                        other => {
                            bad += 1;
                            first.get_or_insert_with(|| format!("Lun {lun:#X}: {other:02X?}"));
                        }
                    }
                }
                (ok, bad, first, Instant::now())
            })
        })
        .collect();
    barrier.wait();
    let start = Instant::now();
    let (mut apdus, mut errors, mut end, mut first_error) = (0, 0, start, None);
    for h in handles {
        let (ok, bad, first, t) = h.join().map_err(|_| "a slot thread panicked".to_string())?;
        apdus += ok;
        errors += bad;
        end = end.max(t);
        if first_error.is_none() {
            first_error = first;
        }
    }
    Ok(Row {
        case: case.clone(),
        apdus,
        elapsed: end.duration_since(start),
        errors,
        busy_answers: rig.busy_answers(),
        first_error,
    })
}

/// The cases of the benchmark for a reader of `slots` slots.
pub fn cases(slots: u8) -> Vec<Case> {
    let c = |label: &str, readers: usize, slots: u8, busy: u8, active: u8| Case {
        label: label.to_string(),
        readers,
        slots,
        busy,
        active,
    };
    let mut v = Vec::new();
    let mut a = 1u8;
    while a < slots {
        v.push(c("sysmoOCTSIM", 1, slots, slots, a));
        a *= 2;
    }
    v.push(c("sysmoOCTSIM", 1, slots, slots, slots));
    let mut b = 1u8;
    while b < slots {
        v.push(c("sysmoOCTSIM as busy-limited", 1, slots, b, slots));
        b *= 2;
    }
    v.push(c("3-slot reader", 1, 3, 2, 3));
    v.push(c("2-slot reader", 1, 2, 5, 2));
    v.push(c("12 x sysmoOCTSIM", 12, slots, slots, slots));
    v
}

/// The path of the sysmoOCTSIM dump in the shared data directory.
pub fn default_dump() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/ccid-data/readers/sysmocom_sysmoOCTSIM.txt")
}

const USAGE: &str = "usage: ccid-sim bench-multislot [--apdus N] [--card-ms MS] [--dump FILE]

Aggregate APDU/s of multi-slot virtual readers through the IFDH functions,
one thread per slot. N APDUs per slot (default 200), MS ms of card time per
APDU (default 5), FILE the 8-slot descriptor dump (default: sysmoOCTSIM
from the shared data). Exit 0 when every target is met, 1 otherwise,
2 on bad arguments, 3 when the dump is missing.";

fn parse(args: &[String]) -> Result<Option<Options>, String> {
    let mut o = Options {
        apdus: 200,
        card_time: Duration::from_millis(5),
        dump: default_dump(),
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |what: &str| it.next().cloned().ok_or(format!("{what} needs a value"));
        match a.as_str() {
            "--apdus" => {
                o.apdus = value(a)?.parse().map_err(|e| format!("--apdus: {e}"))?;
                if o.apdus == 0 {
                    return Err("--apdus must be at least 1".into());
                }
            }
            "--card-ms" => {
                let ms: f64 = value(a)?.parse().map_err(|e| format!("--card-ms: {e}"))?;
                if !(0.0..=10_000.0).contains(&ms) {
                    return Err("--card-ms must be between 0 and 10000".into());
                }
                o.card_time = Duration::from_secs_f64(ms / 1000.0);
            }
            "--dump" => o.dump = PathBuf::from(value(a)?),
            "-h" | "--help" => return Ok(None),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(Some(o))
}

/// The command line entry point; returns the exit code.
pub fn cli(args: &[String]) -> i32 {
    let opts = match parse(args) {
        Ok(Some(o)) => o,
        Ok(None) => {
            println!("{USAGE}");
            return 0;
        }
        Err(e) => {
            eprintln!("bench-multislot: {e}\n{USAGE}");
            return 2;
        }
    };
    if !opts.dump.is_file() {
        eprintln!("bench-multislot: {} not found", opts.dump.display());
        return 3;
    }
    let slots = match ReaderConfig::from_dump_file(&opts.dump, 0) {
        Ok(c) => match u8::try_from(c.descriptor.slot_count()) {
            Ok(s) if s >= 2 => s,
            _ => {
                eprintln!("bench-multislot: the dump's reader needs 2 to 255 slots");
                return 2;
            }
        },
        Err(e) => {
            eprintln!("bench-multislot: {}: {e}", opts.dump.display());
            return 2;
        }
    };
    println!(
        "bench-multislot: {} APDUs per slot, card {:.1} ms per APDU, dump {}",
        opts.apdus,
        opts.card_time.as_secs_f64() * 1000.0,
        opts.dump.display()
    );
    println!("path: IFDHCreateChannelByName / IFDHPowerICC / IFDHSetProtocolParameters, then IFDHTransmitToICC from one thread per slot\n");
    let mut rows = Vec::new();
    for case in cases(slots) {
        match run_case(&case, &opts) {
            Ok(r) => rows.push(r),
            Err(e) => {
                eprintln!("bench-multislot: {}: {e}", case.label);
                return 1;
            }
        }
    }
    // The one-slot rate is the baseline of every ratio: measured again
    // after the other cases, the better of the two runs (other load on
    // the machine only ever slows a run down).
    let Some(first) = rows
        .iter()
        .find(|r| r.case.readers == 1 && r.case.active == 1)
        .cloned()
    else {
        eprintln!("bench-multislot: no one-slot case");
        return 1;
    };
    let again = match run_case(&first.case, &opts) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("bench-multislot: {}: {e}", first.case.label);
            return 1;
        }
    };
    println!(
        "one slot: {:.0} and {:.0} APDU/s (first and last run; the better is the baseline)",
        first.rate(),
        again.rate()
    );
    let one = first.rate().max(again.rate());
    print!("{}", table(&rows, one));
    // No more than `lim` cards working at once: at most lim / card time.
    let card_s = opts.card_time.as_secs_f64();
    let within = |rate: f64, lim: f64| card_s == 0.0 || rate <= lim / card_s * 1.02;
    let mut ok = true;
    let mut target = |what: String, met: bool| {
        println!("target {}: {what}", if met { "met" } else { "MISSED" });
        ok &= met;
    };
    for r in &rows {
        let ratio = r.rate() / one;
        let c = &r.case;
        if r.errors > 0 {
            target(
                format!(
                    "{}: {} wrong answers, first {}",
                    c.label,
                    r.errors,
                    r.first_error.as_deref().unwrap_or("?")
                ),
                false,
            );
        }
        if c.readers == 1 && c.busy == c.slots && c.active == c.slots {
            target(
                format!(
                    "{} busy slots at {ratio:.2}x one slot (>= {}x)",
                    c.slots,
                    c.slots - 1
                ),
                ratio >= f64::from(c.slots - 1),
            );
        }
        if c.readers == 1 && c.busy != c.slots && c.active == c.slots {
            let lim = f64::from(c.busy.min(c.slots));
            let lib = ratio / libccid_factor(c);
            target(
                format!(
                    "{} ({} slots, busy {}): {ratio:.2}x one slot, {lib:.2}x libccid; limit {lim} obeyed: {} 'slot busy' answers, rate <= {lim} / card time",
                    c.label, c.slots, c.busy, r.busy_answers
                ),
                within(r.rate(), lim) && r.busy_answers == 0 && (c.busy < 2 || lib >= 1.8),
            );
        }
        if c.readers > 1 {
            let n = c.readers * usize::from(c.slots);
            let want = n as f64 * 80.0 / 96.0;
            target(
                format!("{n} slots at {ratio:.1}x one slot (>= {want:.0}x)"),
                ratio >= want,
            );
        }
    }
    i32::from(!ok)
}

/// The result table.
pub fn table(rows: &[Row], one: f64) -> String {
    let mut s = format!(
        "{:<28} {:>7} {:>5} {:>6} {:>7} {:>8} {:>9} {:>7} {:>5} {:>10} {:>8}\n",
        "reader",
        "readers",
        "slots",
        "busy",
        "active",
        "APDUs",
        "APDU/s",
        "x1slot",
        "E0",
        "libccid*",
        "ours/lib"
    );
    for r in rows {
        let c = &r.case;
        let lib = one * libccid_factor(c);
        s += &format!(
            "{:<28} {:>7} {:>5} {:>6} {:>7} {:>8} {:>9.0} {:>7.2} {:>5} {:>10.0} {:>8.2}\n",
            c.label,
            c.readers,
            c.slots,
            c.busy,
            usize::from(c.active) * c.readers,
            r.apdus,
            r.rate(),
            r.rate() / one,
            r.busy_answers,
            lib,
            r.rate() / lib.max(1e-9),
        );
    }
    s += "\nbusy: bMaxCCIDBusySlots declared; active: slots driven at once; E0: commands the reader\n\
          answered 'slot busy' (0: the driver kept within the declared limit).\n\
          * libccid APDU/s: libccid (serialized by its TAG_IFD_SLOT_THREAD_SAFE=0, computed), not\n\
          \x20 measured: libccid reports TAG_IFD_SLOT_THREAD_SAFE=1 only when bMaxCCIDBusySlots equals\n\
          \x20 the slot count, otherwise pcscd serializes every slot of the reader; the column is the\n\
          \x20 measured one-slot rate x (active slots per reader if thread-safe, else 1) x readers.\n";
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libccid_serializes_partial_readers_only() {
        let case = |readers, slots, busy, active| Case {
            label: String::new(),
            readers,
            slots,
            busy,
            active,
        };
        assert_eq!(libccid_factor(&case(1, 8, 8, 8)), 8.0);
        assert_eq!(libccid_factor(&case(1, 8, 4, 8)), 1.0);
        assert_eq!(libccid_factor(&case(1, 3, 2, 3)), 1.0);
        assert_eq!(libccid_factor(&case(1, 2, 5, 2)), 1.0);
        assert_eq!(libccid_factor(&case(12, 8, 8, 8)), 96.0);
    }

    #[test]
    fn arguments() {
        let a = |v: &[&str]| parse(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        let o = a(&["--apdus", "7", "--card-ms", "2.5"]).unwrap().unwrap();
        assert_eq!(o.apdus, 7);
        assert_eq!(o.card_time, Duration::from_micros(2500));
        assert!(a(&["--apdus", "0"]).is_err());
        assert!(a(&["--apdus"]).is_err());
        assert!(a(&["--card-ms", "x"]).is_err());
        assert!(a(&["--bogus"]).is_err());
        assert!(a(&["-h"]).unwrap().is_none());
    }

    #[test]
    fn cases_cover_the_issue() {
        let v = cases(8);
        let actives: Vec<u8> = v
            .iter()
            .filter(|c| c.readers == 1 && c.slots == 8 && c.busy == 8)
            .map(|c| c.active)
            .collect();
        assert_eq!(actives, [1, 2, 4, 8]);
        let limited: Vec<u8> = v
            .iter()
            .filter(|c| c.slots == 8 && c.busy < 8)
            .map(|c| c.busy)
            .collect();
        assert_eq!(limited, [1, 2, 4]);
        assert!(v.iter().any(|c| (c.slots, c.busy) == (3, 2)));
        assert!(v.iter().any(|c| (c.slots, c.busy) == (2, 5)));
        assert!(v.iter().any(|c| c.readers == 12));
    }
}
