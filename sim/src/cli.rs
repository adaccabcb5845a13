//! The `dump` and `coverage` subcommands of `ccid-sim`, and the reader
//! builder the `gadget` subcommand uses.
#![forbid(unsafe_code)]

use crate::card::{Card, IsoApplet};
use crate::coverage::{self, Outcome};
use crate::gadget;
use crate::model::{ReaderConfig, VirtualReader};
use crate::transport::SimTransport;
use ccid::dump::{InterfaceDump, ReaderDump};
use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;

/// Usage of the `dump` subcommand.
pub const DUMP_USAGE: &str = "usage: ccid-sim dump FILE

Prints what was read from a descriptor dump (the `parse` tool's format):
each device, each interface, the class descriptor and the data-rate and
clock lists.";

/// Usage of the `coverage` subcommand.
pub const COVERAGE_USAGE: &str = "usage: ccid-sim coverage [-v] DIR

Builds a virtual reader from every CCID interface of every DIR/*.txt dump,
checks its class requests against the dump, powers on a test card and
exchanges a SELECT at the reader's exchange level, once per protocol the
reader offers. Prints pass/refused/fail counts (-v: every check); exits 1
when a check fails or a dump does not parse.";

fn features_text(f: u32) -> String {
    let names = [
        (0x02, "auto-conf-ATR"),
        (0x04, "auto-activation"),
        (0x08, "auto-voltage"),
        (0x10, "auto-clock"),
        (0x20, "auto-baud"),
        (0x40, "auto-PPS-prop"),
        (0x80, "auto-PPS-cur"),
        (0x100, "clock-stop"),
        (0x200, "NAD"),
        (0x400, "auto-IFSD"),
        (0x800, "ICCD-token"),
        (0x10_0000, "wake-up"),
    ];
    let v: Vec<&str> = names
        .iter()
        .filter(|(b, _)| f & b != 0)
        .map(|(_, n)| *n)
        .collect();
    v.join(" ")
}

/// The text `dump` prints for one device.
pub fn describe(dev: &ReaderDump) -> String {
    let mut s = String::new();
    let opt = |o: &Option<String>| o.clone().unwrap_or_else(|| "-".into());
    let _ = writeln!(
        s,
        "device {:04X}:{:04X} bcdDevice {:X}.{:02X} manufacturer {:?} product {:?}",
        dev.vendor_id,
        dev.product_id,
        dev.bcd_device >> 8,
        dev.bcd_device & 0xFF,
        opt(&dev.manufacturer),
        opt(&dev.product)
    );
    for i in &dev.interfaces {
        describe_interface(&mut s, i);
    }
    s
}

fn describe_interface(s: &mut String, i: &InterfaceDump) {
    let kind = match i.protocol {
        0 => "CCID",
        1 => "ICCD-A",
        2 => "ICCD-B",
        _ => "unknown protocol",
    };
    let _ = writeln!(
        s,
        "  interface {} class {:#04x} subclass {} protocol {} ({kind}) endpoints {} name {:?}",
        i.number,
        i.class,
        i.subclass,
        i.protocol,
        i.num_endpoints,
        i.name.clone().unwrap_or_else(|| "-".into())
    );
    let Some(d) = &i.descriptor else {
        let _ = writeln!(s, "    no CCID class descriptor");
        return;
    };
    let _ = writeln!(
        s,
        "    bcdCCID {:X}.{:02X} type {:#04x} slots {} busy {} voltages {:#04x} protocols {:#x}",
        d.bcdCCID >> 8,
        d.bcdCCID & 0xFF,
        d.bDescriptorType,
        d.slot_count(),
        d.bMaxCCIDBusySlots,
        d.bVoltageSupport,
        d.dwProtocols
    );
    let _ = writeln!(
        s,
        "    clock {} kHz (max {}, {} listed) rate {} bps (max {}, {} listed) IFSD {}",
        d.dwDefaultClock,
        d.dwMaximumClock,
        d.bNumClockSupported,
        d.dwDataRate,
        d.dwMaxDataRate,
        d.bNumDataRatesSupported,
        d.dwMaxIFSD
    );
    let _ = writeln!(
        s,
        "    features {:#010x} level {} [{}]",
        d.dwFeatures,
        d.exchange_level().name(),
        features_text(d.dwFeatures)
    );
    let _ = writeln!(
        s,
        "    max message {} classes {:#04x}/{:#04x} LCD {:#06x} PIN {:#04x} synch {:#x} mechanical {:#x}",
        d.dwMaxCCIDMessageLength,
        d.bClassGetResponse,
        d.bClassEnvelope,
        d.wLcdLayout,
        d.bPINSupport,
        d.dwSynchProtocols,
        d.dwMechanical
    );
    if !i.clock_frequencies.is_empty() {
        let _ = writeln!(
            s,
            "    GET_CLOCK_FREQUENCIES (kHz): {:?}",
            i.clock_frequencies
        );
    }
    if !i.data_rates.is_empty() {
        let _ = writeln!(s, "    GET_DATA_RATES (bps): {:?}", i.data_rates);
    }
}

/// `ccid-sim dump FILE`. Returns the exit status.
pub fn dump(args: &[String]) -> i32 {
    let [file] = args else {
        eprintln!("{DUMP_USAGE}");
        return 2;
    };
    if file == "-h" || file == "--help" {
        println!("{DUMP_USAGE}");
        return 0;
    }
    let path = Path::new(file);
    let text = match std::fs::read(path) {
        Ok(b) => String::from_utf8_lossy(&b).into_owned(),
        Err(e) => {
            eprintln!("ccid-sim dump: {file}: {e}");
            return 1;
        }
    };
    let name = path
        .file_name()
        .map_or_else(|| file.clone(), |n| n.to_string_lossy().into_owned());
    match ccid::dump::parse(&text, &name) {
        Ok(devices) => {
            for d in &devices {
                print!("{}", describe(d));
            }
            0
        }
        Err(e) => {
            eprintln!("ccid-sim dump: {e}");
            1
        }
    }
}

/// `ccid-sim coverage [-v] DIR`. Returns the exit status.
pub fn coverage(args: &[String]) -> i32 {
    let mut verbose = false;
    let mut dir = None;
    for a in args {
        match a.as_str() {
            "-v" | "--verbose" => verbose = true,
            "-h" | "--help" => {
                println!("{COVERAGE_USAGE}");
                return 0;
            }
            _ if dir.is_none() => dir = Some(a.clone()),
            _ => {
                eprintln!("{COVERAGE_USAGE}");
                return 2;
            }
        }
    }
    let Some(dir) = dir else {
        eprintln!("{COVERAGE_USAGE}");
        return 2;
    };
    let sum = match coverage::run_dir(Path::new(&dir)) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("ccid-sim coverage: {e}");
            return 1;
        }
    };
    for c in &sum.checks {
        let proto = c.protocol.map_or_else(|| "-".into(), |t| format!("T={t}"));
        match &c.outcome {
            Outcome::Fail(m) => println!(
                "FAIL {} if {} {proto} {}: {m}",
                c.source,
                c.interface,
                c.level.name()
            ),
            Outcome::Refused(m) if verbose => {
                println!(
                    "refused {} if {} {proto} {}: {m}",
                    c.source,
                    c.interface,
                    c.level.name()
                )
            }
            Outcome::Pass if verbose => println!(
                "pass {} if {} {proto} {}",
                c.source,
                c.interface,
                c.level.name()
            ),
            _ => {}
        }
    }
    for (name, e) in &sum.unreadable {
        println!("UNREADABLE {name}: {e}");
    }
    println!(
        "{} dumps, {} interfaces, {} checks: {} pass, {} refused, {} fail, {} unreadable",
        sum.dumps,
        sum.interfaces,
        sum.checks.len(),
        sum.passed(),
        sum.refused(),
        sum.failed(),
        sum.unreadable.len()
    );
    if sum.failed() == 0 && sum.unreadable.is_empty() {
        0
    } else {
        1
    }
}

/// Builds the reader a `gadget` spec asks for: the dump's interface, a
/// test card in every slot (with the spec's ATR when given).
pub fn gadget_reader(spec: &gadget::cli::ReaderSpec) -> Result<gadget::VirtualReader, String> {
    let mut cfg = ReaderConfig::from_dump_file(&spec.descriptor, spec.interface)
        .map_err(|e| e.to_string())?;
    cfg.usb.serial = Some(spec.serial.clone());
    let card = |atr: &Option<Vec<u8>>| -> Result<Card, String> {
        match atr {
            Some(a) => Card::new(a.clone(), IsoApplet::new()).map_err(|e| format!("--atr: {e}")),
            None => Ok(Card::test_card()),
        }
    };
    let mut reader = VirtualReader::new(cfg);
    for slot in 0..reader.slot_count() {
        reader
            .insert_card(slot as u8, card(&spec.atr)?)
            .map_err(|e| e.to_string())?;
    }
    let (transport, control) = SimTransport::new(reader);
    Ok(gadget::VirtualReader {
        transport,
        cards: Some(Arc::new(control)),
    })
}
