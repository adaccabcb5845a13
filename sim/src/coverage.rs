//! A self-consistency check of the reader model over many descriptor
//! dumps: for every CCID interface, build a [`VirtualReader`], check its
//! class requests against the dump, power on a test card and exchange a
//! SELECT of [`TEST_AID`] at the reader's exchange level, once per
//! protocol the reader offers (T=0 and T=1).
//!
//! Outcomes: `pass` (the card answered `90 00`), `refused` (the reader
//! cannot carry the check: no protocol the model supports, a message
//! length too small for the command), `fail` (anything else, with the
//! reason).
#![forbid(unsafe_code)]

use crate::card::{Card, TEST_AID};
use crate::model::{IccdVersion, ReaderConfig, VirtualReader};
use ccid::dump::{InterfaceDump, ReaderDump};
use ccid::iso7816::t0::{T0CharEngine, T0Options, T0Step};
use ccid::iso7816::t1::block::{decode, encode, Block};
use ccid::iso7816::t1::Edc;
use ccid::proto::descriptor::{ExchangeLevel, Features};
use ccid::proto::message::{Command, CommandStatus, Response};
use ccid::transport::{ControlSetup, TransportError};
use std::path::Path;
use std::time::Duration;

/// The outcome of one check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The exchange worked.
    Pass,
    /// The reader cannot carry this check (why).
    Refused(String),
    /// Something went wrong (what).
    Fail(String),
}

/// One check: a dump, an interface, a protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// The dump's name.
    pub source: String,
    /// bInterfaceNumber.
    pub interface: u8,
    /// The protocol exercised (0 or 1), `None` when none could be.
    pub protocol: Option<u8>,
    /// The exchange level.
    pub level: ExchangeLevel,
    /// The outcome.
    pub outcome: Outcome,
}

/// Totals of a run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// Dumps read.
    pub dumps: usize,
    /// Interfaces with a CCID descriptor.
    pub interfaces: usize,
    /// Every check made.
    pub checks: Vec<Check>,
    /// Dumps that did not parse: (name, error).
    pub unreadable: Vec<(String, String)>,
}

impl Summary {
    /// Checks that passed.
    pub fn passed(&self) -> usize {
        self.checks
            .iter()
            .filter(|c| c.outcome == Outcome::Pass)
            .count()
    }

    /// Checks the readers could not carry.
    pub fn refused(&self) -> usize {
        self.checks
            .iter()
            .filter(|c| matches!(c.outcome, Outcome::Refused(_)))
            .count()
    }

    /// Checks that failed.
    pub fn failed(&self) -> usize {
        self.checks
            .iter()
            .filter(|c| matches!(c.outcome, Outcome::Fail(_)))
            .count()
    }
}

/// The SELECT command of the check.
fn select_apdu() -> Vec<u8> {
    let mut a = vec![0x00, 0xA4, 0x04, 0x00, TEST_AID.len() as u8];
    a.extend_from_slice(&TEST_AID);
    a
}

/// Checks every `*.txt` dump of `dir` (sorted by name).
pub fn run_dir(dir: &Path) -> Result<Summary, String> {
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "txt"))
        .collect();
    names.sort();
    let mut sum = Summary::default();
    for path in names {
        let name = path
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        sum.dumps += 1;
        let text = match std::fs::read(&path) {
            Ok(b) => String::from_utf8_lossy(&b).into_owned(),
            Err(e) => {
                sum.unreadable.push((name, e.to_string()));
                continue;
            }
        };
        match ccid::dump::parse(&text, &name) {
            Ok(devices) => {
                for (dev, iface) in ccid::dump::ccid_interfaces(&devices) {
                    sum.interfaces += 1;
                    sum.checks.extend(check_interface(&name, dev, iface));
                }
            }
            Err(e) => sum.unreadable.push((name, e.to_string())),
        }
    }
    Ok(sum)
}

/// The checks of one interface.
pub fn check_interface(source: &str, dev: &ReaderDump, iface: &InterfaceDump) -> Vec<Check> {
    let mk = |protocol, level, outcome| Check {
        source: source.to_string(),
        interface: iface.number,
        protocol,
        level,
        outcome,
    };
    let cfg = match ReaderConfig::from_dump(dev, iface) {
        Ok(c) => c,
        Err(e) => {
            return vec![mk(
                None,
                ExchangeLevel::Character,
                Outcome::Refused(e.to_string()),
            )]
        }
    };
    let level = cfg.descriptor.exchange_level();
    if let Err(e) = check_class_requests(&cfg) {
        return vec![mk(None, level, Outcome::Fail(e))];
    }
    let protocols: Vec<u8> = [0u8, 1]
        .into_iter()
        .filter(|t| cfg.descriptor.dwProtocols & (1 << t) != 0)
        .collect();
    if protocols.is_empty() {
        return vec![mk(
            None,
            level,
            Outcome::Refused(format!(
                "dwProtocols {:#x}: neither T=0 nor T=1",
                cfg.descriptor.dwProtocols
            )),
        )];
    }
    protocols
        .into_iter()
        .map(|t| {
            let card = Card::with_protocols(t == 0, t == 1);
            let mut r = VirtualReader::with_card(cfg.clone(), Some(card));
            r.start();
            let outcome = match check_exchange(&mut r, t) {
                Ok(()) => Outcome::Pass,
                Err(Verdict::Refused(m)) => Outcome::Refused(m),
                Err(Verdict::Fail(m)) => Outcome::Fail(m),
            };
            mk(Some(t), level, outcome)
        })
        .collect()
}

enum Verdict {
    Refused(String),
    Fail(String),
}

fn fail(m: impl Into<String>) -> Verdict {
    Verdict::Fail(m.into())
}

/// GET_DATA_RATES / GET_CLOCK_FREQUENCIES answer the dump's lists.
fn check_class_requests(cfg: &ReaderConfig) -> Result<(), String> {
    if IccdVersion::from_protocol(cfg.usb.interface_protocol).is_some() {
        return Ok(());
    }
    let mut r = VirtualReader::new(cfg.clone());
    for (req, list, what) in [
        (0x03, &cfg.data_rates, "GET_DATA_RATES"),
        (0x02, &cfg.clock_frequencies, "GET_CLOCK_FREQUENCIES"),
    ] {
        let setup = ControlSetup {
            request_type: 0xA1,
            request: req,
            value: 0,
            index: u16::from(cfg.usb.interface_number),
        };
        let got = r.control_in(setup, 4 * 256, Duration::ZERO);
        match (got, list.is_empty()) {
            (Err(TransportError::Pipe), true) => {}
            (Ok(bytes), false) => {
                let values: Vec<u32> = bytes
                    .chunks_exact(4)
                    .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect();
                if values != **list {
                    return Err(format!("{what}: {values:?} instead of {list:?}"));
                }
            }
            (other, _) => return Err(format!("{what}: unexpected {other:?}")),
        }
    }
    Ok(())
}

fn transact(r: &mut VirtualReader, seq: &mut u8, cmd: &Command) -> Result<Response, Verdict> {
    *seq = seq.wrapping_add(1);
    let rsp = r
        .transact(0, *seq, cmd)
        .map_err(|e| fail(format!("{:?}: {e}", cmd.message_type())))?;
    if rsp.seq != *seq || rsp.slot != 0 {
        return Err(fail(format!(
            "answer bSlot {} bSeq {} for bSeq {}",
            rsp.slot, rsp.seq, seq
        )));
    }
    if Some(rsp.message_type) != cmd.message_type().expected_response() {
        return Err(fail(format!(
            "{:?} answered with {:?}",
            cmd.message_type(),
            rsp.message_type
        )));
    }
    Ok(rsp)
}

fn ok(rsp: &Response, what: &str) -> Result<(), Verdict> {
    if rsp.status.command() != CommandStatus::Ok {
        return Err(fail(format!(
            "{what}: bStatus {:#04x} bError {:?}",
            rsp.status.0, rsp.error
        )));
    }
    Ok(())
}

fn check_sw(resp: &[u8]) -> Result<(), Verdict> {
    if resp.ends_with(&[0x90, 0x00]) {
        Ok(())
    } else {
        Err(fail(format!("SELECT answered {resp:02X?}")))
    }
}

/// Power on, select protocol `t`, SELECT at the reader's level.
fn check_exchange(r: &mut VirtualReader, t: u8) -> Result<(), Verdict> {
    match r.iccd() {
        Some(IccdVersion::A) => return check_iccd_a(r, t),
        Some(IccdVersion::B) => return check_iccd_b(r),
        None => {}
    }
    let d = r.config().descriptor.clone();
    let level = d.exchange_level();
    let max_data = (d.dwMaxCCIDMessageLength as usize).saturating_sub(10);
    let apdu = select_apdu();
    let need = match (level, t) {
        (ExchangeLevel::Tpdu, 1) | (ExchangeLevel::Character, 1) => apdu.len() + 4,
        _ => apdu.len(),
    };
    if max_data < need {
        return Err(Verdict::Refused(format!(
            "dwMaxCCIDMessageLength {} cannot carry a {need}-byte command",
            d.dwMaxCCIDMessageLength
        )));
    }
    let mut seq = 0u8;
    let select = if d
        .features()
        .intersects(Features::AUTO_VOLTAGE | Features::AUTO_ACTIVATION)
    {
        0
    } else {
        match d.bVoltageSupport & 0x07 {
            v if v & 0x01 != 0 => 1,
            v if v & 0x02 != 0 => 2,
            v if v & 0x04 != 0 => 3,
            _ => 0,
        }
    };
    let rsp = transact(
        r,
        &mut seq,
        &Command::IccPowerOn {
            power_select: select,
        },
    )?;
    ok(&rsp, "IccPowerOn")?;
    let expected = r.card(0).map(|c| c.atr().to_vec()).unwrap_or_default();
    if rsp.data != expected {
        return Err(fail(format!(
            "ATR {:02X?} instead of {expected:02X?}",
            rsp.data
        )));
    }
    let status = transact(r, &mut seq, &Command::GetSlotStatus)?;
    ok(&status, "GetSlotStatus")?;
    if status.status.0 & 0x03 != 0 {
        return Err(fail(format!(
            "GetSlotStatus after power on: {:#04x}",
            status.status.0
        )));
    }
    let (proto, params) = r.parameters(0).unwrap_or((0, Vec::new()));
    let rsp = transact(
        r,
        &mut seq,
        &Command::SetParameters {
            protocol: proto,
            data: params,
        },
    )?;
    ok(&rsp, "SetParameters")?;
    match level {
        ExchangeLevel::ShortApdu | ExchangeLevel::ExtendedApdu => {
            let rsp = transact(
                r,
                &mut seq,
                &Command::XfrBlock {
                    bwi: 0,
                    level: 0,
                    data: apdu,
                },
            )?;
            ok(&rsp, "XfrBlock")?;
            check_sw(&rsp.data)
        }
        ExchangeLevel::Tpdu if t == 0 => {
            let rsp = transact(
                r,
                &mut seq,
                &Command::XfrBlock {
                    bwi: 0,
                    level: 0,
                    data: apdu,
                },
            )?;
            ok(&rsp, "XfrBlock")?;
            check_sw(&rsp.data)
        }
        ExchangeLevel::Tpdu => {
            let block = encode(
                0,
                &Block::I {
                    ns: 0,
                    more: false,
                    inf: apdu,
                },
                Edc::Lrc,
            );
            let rsp = transact(
                r,
                &mut seq,
                &Command::XfrBlock {
                    bwi: 0,
                    level: 0,
                    data: block,
                },
            )?;
            ok(&rsp, "XfrBlock")?;
            let (_, b) =
                decode(&rsp.data, Edc::Lrc).map_err(|e| fail(format!("T=1 answer: {e:?}")))?;
            check_sw(b.inf())
        }
        ExchangeLevel::Character if t == 0 => {
            let (mut engine, mut step) = T0CharEngine::start(&apdu, T0Options::default())
                .map_err(|e| fail(format!("T=0 engine: {e}")))?;
            for _ in 0..64 {
                match step {
                    T0Step::Send { bytes, expect } => {
                        let cmd = Command::XfrBlock {
                            bwi: 0,
                            level: expect as u16,
                            data: bytes,
                        };
                        let rsp = transact(r, &mut seq, &cmd)?;
                        ok(&rsp, "XfrBlock")?;
                        step = engine
                            .on_bytes(&rsp.data)
                            .map_err(|e| fail(format!("T=0 engine: {e}")))?;
                    }
                    T0Step::Done { response } => return check_sw(&response),
                }
            }
            Err(fail("T=0 exchange did not end"))
        }
        ExchangeLevel::Character => {
            let block = encode(
                0,
                &Block::I {
                    ns: 0,
                    more: false,
                    inf: apdu,
                },
                Edc::Lrc,
            );
            let cmd = Command::XfrBlock {
                bwi: 0,
                level: 3,
                data: block,
            };
            let head = transact(r, &mut seq, &cmd)?;
            ok(&head, "XfrBlock (prologue)")?;
            let len = head.data.get(2).copied().unwrap_or(0);
            let cmd = Command::XfrBlock {
                bwi: 0,
                level: u16::from(len) + 1,
                data: Vec::new(),
            };
            let tail = transact(r, &mut seq, &cmd)?;
            ok(&tail, "XfrBlock (rest)")?;
            let mut all = head.data;
            all.extend_from_slice(&tail.data);
            let (_, b) = decode(&all, Edc::Lrc).map_err(|e| fail(format!("T=1 answer: {e:?}")))?;
            check_sw(b.inf())
        }
    }
}

fn ctl(request_type: u8, request: u8, value: u16) -> ControlSetup {
    ControlSetup {
        request_type,
        request,
        value,
        index: 0,
    }
}

fn check_iccd_a(r: &mut VirtualReader, t: u8) -> Result<(), Verdict> {
    if t != 0 {
        return Err(Verdict::Refused("ICCD version A carries T=0 only".into()));
    }
    let e = |e: TransportError| fail(format!("ICCD-A: {e}"));
    let now = Duration::ZERO;
    r.control_out(ctl(0x21, 0x63, 0), &[], now).map_err(e)?;
    let atr = r.control_in(ctl(0xA1, 0x62, 0), 33, now).map_err(e)?;
    if atr.is_empty() {
        return Err(fail("ICCD-A: empty ATR"));
    }
    let apdu = select_apdu();
    r.control_out(ctl(0x21, 0x65, 0), apdu.get(..5).unwrap_or_default(), now)
        .map_err(e)?;
    let status = r.control_in(ctl(0xA1, 0xA0, 0), 1, now).map_err(e)?;
    if status != [0x10] {
        return Err(fail(format!(
            "ICCD-A status after the header: {status:02X?}"
        )));
    }
    r.control_out(ctl(0x21, 0x65, 0), apdu.get(5..).unwrap_or_default(), now)
        .map_err(e)?;
    let status = r.control_in(ctl(0xA1, 0xA0, 0), 1, now).map_err(e)?;
    if status != [0x20] {
        return Err(fail(format!("ICCD-A status after the data: {status:02X?}")));
    }
    let sw = r.control_in(ctl(0xA1, 0x6F, 0), 2, now).map_err(e)?;
    check_sw(&sw)
}

fn check_iccd_b(r: &mut VirtualReader) -> Result<(), Verdict> {
    let e = |e: TransportError| fail(format!("ICCD-B: {e}"));
    let now = Duration::ZERO;
    r.control_out(ctl(0x21, 0x63, 0), &[], now).map_err(e)?;
    r.control_out(ctl(0x21, 0x62, 1), &[], now).map_err(e)?;
    let atr = r.control_in(ctl(0xA1, 0x6F, 0), 34, now).map_err(e)?;
    if atr.first() != Some(&0x00) || atr.len() < 2 {
        return Err(fail(format!("ICCD-B ATR block {atr:02X?}")));
    }
    r.control_out(ctl(0x21, 0x65, 0), &select_apdu(), now)
        .map_err(e)?;
    let block = r.control_in(ctl(0xA1, 0x6F, 0), 4097, now).map_err(e)?;
    match block.split_first() {
        Some((0x00, rest)) => check_sw(rest),
        _ => Err(fail(format!("ICCD-B answer block {block:02X?}"))),
    }
}
