//! `ccid-sim session`: the driver's core against a virtual reader built from
//! a descriptor dump: open, power up, select the protocol, exchange APDUs
//! (short; a 256-byte answer; 65 535-byte extended APDUs both ways when the
//! reader can carry them), power down; one JSON line with the outcome.

use crate::card::{Card, IsoApplet};
use crate::model::{ReaderConfig, VirtualReader};
use crate::timing::TimeModel;
use crate::transport::SimTransport;
use ccid::config::Config;
use ccid::error::Error;
use ccid::ifd::protocol::{SCARD_PROTOCOL_T0, SCARD_PROTOCOL_T1};
use ccid::iso7816::atr::Atr;
use ccid::iso7816::params;
use ccid::proto::descriptor::ExchangeLevel;
use ccid::reader::device::{Device, OpenOptions};
use ccid::reader::protocol::set_protocol;
use ccid::reader::slot::Slot;
use std::path::Path;
use std::time::{Duration, Instant};

/// What to run.
#[derive(Debug, Clone, Default)]
pub struct SessionOptions {
    /// Interface of the dump.
    pub interface: usize,
    /// The card's ATR (default: the test card offering T=0 and T=1).
    pub atr: Option<Vec<u8>>,
    /// The protocol to select (default: T=1 when the card and reader offer
    /// it, else T=0).
    pub protocol: Option<u8>,
    /// Model USB latency, card processing and line speed.
    pub timed: bool,
    /// Driver options (`ifdDriverOptions`).
    pub driver_options: u32,
}

/// How a session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Every step worked.
    Pass,
    /// The driver refused the reader on purpose.
    Refused(String),
    /// A step failed.
    Fail(String),
}

/// The result of a session.
#[derive(Debug, Clone)]
pub struct Report {
    /// Outcome.
    pub outcome: Outcome,
    /// Exchange level used.
    pub level: Option<ExchangeLevel>,
    /// Protocol selected (0 or 1).
    pub protocol: Option<u8>,
    /// Baud rate after protocol selection.
    pub baud: Option<u32>,
    /// APDUs exchanged.
    pub apdus: usize,
    /// Largest command and answer sent.
    pub largest: (usize, usize),
    /// CCID messages the reader received.
    pub frames: u64,
    /// Wall time.
    pub elapsed: Duration,
}

impl Report {
    /// One JSON line.
    pub fn json(&self) -> String {
        let (outcome, reason) = match &self.outcome {
            Outcome::Pass => ("pass", String::new()),
            Outcome::Refused(r) => ("refused", r.clone()),
            Outcome::Fail(r) => ("fail", r.clone()),
        };
        let esc = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"");
        format!(
            "{{\"outcome\":\"{outcome}\",\"reason\":\"{}\",\"exchange_level\":\"{}\",\"protocol\":{},\"baud_rate\":{},\"apdus\":{},\"largest_command\":{},\"largest_response\":{},\"frames\":{},\"time_ms\":{:.1}}}",
            esc(&reason),
            self.level.map_or("unknown", |l| l.name()),
            self.protocol.map_or("null".into(), |p| format!("\"T={p}\"")),
            self.baud.map_or("null".into(), |b| b.to_string()),
            self.apdus,
            self.largest.0,
            self.largest.1,
            self.frames,
            self.elapsed.as_secs_f64() * 1000.0
        )
    }
}

fn check(what: &str, got: &[u8], want_len: usize, want_sw: [u8; 2]) -> Result<(), String> {
    let sw = got
        .len()
        .checked_sub(2)
        .and_then(|i| got.get(i..))
        .unwrap_or_default();
    if sw != want_sw || got.len() != want_len + 2 {
        return Err(format!(
            "{what}: got {} bytes ending {:02X?}, expected {want_len} + {want_sw:02X?}",
            got.len(),
            sw
        ));
    }
    Ok(())
}

/// Runs a session against interface `opts.interface` of the dump `path`.
pub fn run(path: &Path, opts: &SessionOptions) -> Report {
    let start = Instant::now();
    let mut report = Report {
        outcome: Outcome::Pass,
        level: None,
        protocol: None,
        baud: None,
        apdus: 0,
        largest: (0, 0),
        frames: 0,
        elapsed: Duration::ZERO,
    };
    let fail = |mut r: Report, o: Outcome| {
        r.outcome = o;
        r.elapsed = start.elapsed();
        r
    };
    let cfg = match ReaderConfig::from_dump_file(path, opts.interface) {
        Ok(c) => c,
        Err(e) => return fail(report, Outcome::Fail(format!("dump: {e}"))),
    };
    let cfg = if opts.timed {
        cfg.with_timing(TimeModel::realistic())
    } else {
        cfg
    };
    let card = match &opts.atr {
        Some(atr) => match Card::new(atr.clone(), IsoApplet::new()) {
            Ok(c) => c,
            Err(e) => return fail(report, Outcome::Fail(format!("ATR: {e}"))),
        },
        None => {
            let level = cfg.descriptor.exchange_level();
            let reader_t1 = cfg.descriptor.dwProtocols & 2 != 0;
            let reader_t0 = cfg.descriptor.dwProtocols & 1 != 0;
            match opts.protocol {
                Some(0) => Card::with_protocols(true, false),
                Some(_) => Card::with_protocols(false, true),
                None if level == ExchangeLevel::Character || !reader_t1 => {
                    Card::with_protocols(true, reader_t1 && !reader_t0)
                }
                None => Card::test_card(),
            }
        }
    };
    let card_atr = card.atr().to_vec();
    let reader = VirtualReader::with_card(cfg, Some(card));
    let (transport, control) = SimTransport::shared(reader);
    let open = OpenOptions {
        card_events: false,
        driver_options: ccid::config::DriverOptions::from_bits_retain(opts.driver_options),
        ..OpenOptions::default()
    };
    let name = path
        .file_name()
        .map_or_else(|| "dump".into(), |n| n.to_string_lossy().into_owned());
    let device = match Device::open(transport, &name, 0, &open) {
        Ok(d) => d,
        Err(Error::Refused(r)) => return fail(report, Outcome::Refused(r)),
        Err(e) => return fail(report, Outcome::Fail(format!("open: {e}"))),
    };
    let level = device.caps().level();
    report.level = Some(level);
    let config = Config {
        driver_options: ccid::config::DriverOptions::from_bits_retain(opts.driver_options),
        ..Config::default()
    };
    let slot = Slot::new(device.clone(), 0, 0, config);
    let result = (|| -> Result<(), String> {
        let atr = slot.power_up().map_err(|e| format!("power up: {e}"))?;
        if atr != card_atr {
            return Err(format!("ATR {atr:02X?} differs from the card's"));
        }
        let parsed = Atr::parse(&atr).map_err(|e| format!("ATR: {e}"))?;
        let reader_protocols = device.caps().descriptor.dwProtocols;
        let want = opts.protocol.unwrap_or_else(|| {
            if parsed.offers(1) && reader_protocols & 2 != 0 {
                1
            } else {
                0
            }
        });
        let scard = if want == 1 {
            SCARD_PROTOCOL_T1
        } else {
            SCARD_PROTOCOL_T0
        };
        match set_protocol(&slot, scard, 0, [0; 3]) {
            Ok(()) => {}
            // The reader configures itself; the card's default protocol is used.
            Err(Error::CommandNotSupported) => {}
            Err(e) => return Err(format!("set protocol T={want}: {e}")),
        }
        report.protocol = Some(want);
        if let Some((_, params_data)) = control.with_reader(|r| r.parameters(0)) {
            if let Some(fi_di) = params_data.first() {
                if let Some((f, d)) = params::fi_di_values(*fi_di) {
                    report.baud = Some(params::baud_rate(
                        device.caps().descriptor.dwDefaultClock,
                        f,
                        d,
                    ));
                }
            }
        }
        let mut xmit = |apdu: &[u8]| -> Result<Vec<u8>, String> {
            let mut r = slot
                .transmit(scard, apdu)
                .map_err(|e| format!("APDU {:02X?}: {e}", &apdu[..4.min(apdu.len())]))?;
            // What an application does on T=0: fetch the answer with GET
            // RESPONSE (61xx), resend with the right Le (6Cxx).
            for _ in 0..64 {
                match r.as_slice() {
                    [0x61, n] => {
                        let cla = apdu.first().copied().unwrap_or(0) & 0x03;
                        r = slot
                            .transmit(scard, &[cla, 0xC0, 0x00, 0x00, *n])
                            .map_err(|e| format!("GET RESPONSE: {e}"))?;
                        report.apdus += 1;
                    }
                    [0x6C, n] if apdu.len() == 5 => {
                        let mut again = apdu.to_vec();
                        again[4] = *n;
                        r = slot
                            .transmit(scard, &again)
                            .map_err(|e| format!("resend: {e}"))?;
                        report.apdus += 1;
                    }
                    _ => break,
                }
            }
            report.apdus += 1;
            report.largest.0 = report.largest.0.max(apdu.len());
            report.largest.1 = report.largest.1.max(r.len());
            Ok(r)
        };
        // SELECT the test application.
        let sel = xmit(&[
            0x00, 0xA4, 0x04, 0x00, 0x08, 0xF0, 0x45, 0x32, 0x45, 0x43, 0x43, 0x49, 0x44,
        ])?;
        check("SELECT", &sel, 0, [0x90, 0x00])?;
        // A short answer and a 256-byte answer.
        check(
            "GET DATA 16",
            &xmit(&[0x00, 0xCA, 0x00, 0x00, 0x10])?,
            16,
            [0x90, 0x00],
        )?;
        // A 256-byte answer travels in one message below extended level
        // (or with T=0): only when the reader's messages can hold it.
        let one_message =
            level == ExchangeLevel::ShortApdu || (level == ExchangeLevel::Tpdu && want == 0);
        if !one_message || device.caps().max_data() >= 258 {
            check(
                "GET DATA 256",
                &xmit(&[0x00, 0xCA, 0x00, 0x00, 0x00])?,
                256,
                [0x90, 0x00],
            )?;
        }
        // ECHO of a short command.
        let mut echo = vec![0x80, 0xEE, 0x00, 0x00, 0x20];
        echo.extend((0..0x20u8).map(|i| i ^ 0x5A));
        let r = xmit(&echo)?;
        check("ECHO 32", &r, 0, [0x90, 0x00])
            .or_else(|_| check("ECHO 32", &r, 32, [0x90, 0x00]))?;
        // Extended APDUs both ways when the reader carries them.
        // The virtual reader does what its descriptor says, whatever level
        // the driver's quirks assume for the real firmware.
        let raw_level = device.raw_descriptor().exchange_level();
        let extended = (level == ExchangeLevel::ExtendedApdu
            && raw_level == ExchangeLevel::ExtendedApdu)
            || (want == 1 && matches!(level, ExchangeLevel::Tpdu | ExchangeLevel::Character));
        if extended {
            let mut big = vec![0x80, 0xEE, 0x00, 0x00, 0x00, 0xFF, 0xFF];
            big.extend((0..65535u32).map(|i| (i % 251) as u8));
            big.extend_from_slice(&[0x00, 0x00]);
            let r = xmit(&big)?;
            check("ECHO 65535", &r, 65535, [0x90, 0x00])?;
            if r.get(..65535) != big.get(7..7 + 65535) {
                return Err("ECHO 65535: data differs".into());
            }
            let r = xmit(&[0x80, 0xEE, 0x01, 0x00, 0x00, 0x00, 0x00])?;
            check("GET 65536", &r, 65536, [0x90, 0x00])?;
        }
        slot.power_down().map_err(|e| format!("power down: {e}"))?;
        Ok(())
    })();
    report.frames = control.stats().commands;
    device.shutdown();
    match result {
        Ok(()) => {
            report.elapsed = start.elapsed();
            report
        }
        Err(e) => fail(report, Outcome::Fail(e)),
    }
}

fn parse_hex(s: &str) -> Option<Vec<u8>> {
    let s: String = s
        .chars()
        .filter(|c| !c.is_whitespace() && *c != ':')
        .collect();
    if s.len() % 2 != 0 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// `ccid-sim session --descriptor FILE [--interface N] [--atr HEX]
/// [--protocol t0|t1] [--timed] [--driver-options N]`: exit 0 on success,
/// 3 when the driver refuses the reader on purpose, 1 on failure, 2 on bad
/// arguments.
pub fn cli(args: &[String]) -> i32 {
    let usage = "usage: ccid-sim session --descriptor FILE [--interface N] [--atr HEX] [--protocol t0|t1] [--timed] [--driver-options N]";
    let mut path = None;
    let mut opts = SessionOptions::default();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{name} needs a value"))
        };
        let r: Result<(), String> = match a.as_str() {
            "--descriptor" => value("--descriptor").map(|v| path = Some(v)),
            "--interface" => value("--interface").and_then(|v| {
                v.parse()
                    .map(|n| opts.interface = n)
                    .map_err(|_| format!("bad interface {v}"))
            }),
            "--atr" => value("--atr").and_then(|v| {
                parse_hex(&v)
                    .map(|b| opts.atr = Some(b))
                    .ok_or_else(|| format!("bad ATR {v}"))
            }),
            "--protocol" => value("--protocol").and_then(|v| match v.as_str() {
                "t0" | "T0" | "0" => {
                    opts.protocol = Some(0);
                    Ok(())
                }
                "t1" | "T1" | "1" => {
                    opts.protocol = Some(1);
                    Ok(())
                }
                _ => Err(format!("bad protocol {v}")),
            }),
            "--timed" => {
                opts.timed = true;
                Ok(())
            }
            "--driver-options" => value("--driver-options").and_then(|v| {
                ccid::config::parse_number(&v)
                    .map(|n| opts.driver_options = n as u32)
                    .ok_or_else(|| format!("bad number {v}"))
            }),
            "-h" | "--help" => {
                println!("{usage}");
                return 0;
            }
            other => Err(format!("unknown argument {other}")),
        };
        if let Err(e) = r {
            eprintln!("{e}\n{usage}");
            return 2;
        }
    }
    let Some(path) = path else {
        eprintln!("{usage}");
        return 2;
    };
    ccid::logging::init();
    let report = run(Path::new(&path), &opts);
    println!("{}", report.json());
    match report.outcome {
        Outcome::Pass => 0,
        Outcome::Refused(r) => {
            eprintln!("refused: {r}");
            3
        }
        Outcome::Fail(r) => {
            eprintln!("fail: {r}");
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_and_json() {
        assert_eq!(parse_hex("3B 02:14 50"), Some(vec![0x3B, 0x02, 0x14, 0x50]));
        assert_eq!(parse_hex("3B0"), None);
        let r = Report {
            outcome: Outcome::Refused("bogus \"fw\"".into()),
            level: Some(ExchangeLevel::Tpdu),
            protocol: Some(1),
            baud: Some(9600),
            apdus: 3,
            largest: (5, 258),
            frames: 12,
            elapsed: Duration::from_millis(3),
        };
        let j = r.json();
        assert!(
            j.starts_with("{\"outcome\":\"refused\",\"reason\":\"bogus \\\"fw\\\"\""),
            "{j}"
        );
        assert!(j.contains("\"protocol\":\"T=1\""));
    }
}
