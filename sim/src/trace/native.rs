//! The crate's own trace format: one event per line, a keyword and its
//! arguments, `#` comments, and a first line `# ccid-trace 1`.
//!
//! ```text
//! # ccid-trace 1
//! vid-pid 08E6:4433
//! call create-channel lun=0 device=usb:08e6/4433:libudev:0:/dev/bus/usb/001/002
//! out 65 00 00 00 00 00 00 00 00 00
//! in 81 00 00 00 00 00 00 00 00 00
//! interrupt 50 03
//! call power-up lun=0
//! out reader=1 62 00 00 00 00 00 01 00 00 00
//! in 80 02 00 00 00 00 01 00 00 00 3B 00 cut
//! gap
//! ```
//!
//! `out`/`in` take an optional `reader=N` first and the flags `cut` and
//! `rebuilt` last; `in` with no bytes is a zero-length packet.

use super::{hex, Call, Direction, Event, EventKind, ParseError, Source, Trace, Transfer};
use std::fmt::Write;

/// The first line of a native trace.
pub(crate) const MAGIC: &str = "# ccid-trace 1";

fn opt_reader(reader: Option<u32>) -> String {
    reader.map(|r| format!(" reader={r}")).unwrap_or_default()
}

fn bytes_arg(b: &[u8]) -> String {
    if b.is_empty() {
        String::new()
    } else {
        format!(" {}", hex::format(b))
    }
}

fn call_text(call: &Call, lun: Option<u32>) -> String {
    let lun = lun.map(|l| format!(" lun={l:X}")).unwrap_or_default();
    match call {
        Call::CreateChannel { device } => format!(
            "create-channel{lun}{}",
            device
                .as_ref()
                .map(|d| format!(" device={d}"))
                .unwrap_or_default()
        ),
        Call::CreateChannelFailed => format!("create-channel-failed{lun}"),
        Call::CloseChannel => format!("close-channel{lun}"),
        Call::PowerUp => format!("power-up{lun}"),
        Call::PowerDown => format!("power-down{lun}"),
        Call::Reset => format!("reset{lun}"),
        Call::Presence => format!("presence{lun}"),
        Call::Transmit => format!("transmit{lun}"),
        Call::Control { code } => format!("control{lun} code=0x{code:08X}"),
        Call::SetProtocol { protocol } => format!("set-protocol{lun} t={protocol}"),
        Call::SetCapabilities { tag } => format!("set-capabilities{lun} tag=0x{tag:X}"),
        Call::GetCapabilities { tag } => format!("get-capabilities{lun} tag=0x{tag:X}"),
    }
}

/// Writes `trace` in the native format.
pub(crate) fn write(trace: &Trace) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "{MAGIC}");
    let _ = writeln!(s, "# from {} ({})", trace.name, trace.format.name());
    for e in &trace.events {
        let line = match &e.kind {
            EventKind::BulkOut(t) | EventKind::BulkIn(t) => {
                let kw = if matches!(e.kind, EventKind::BulkOut(_)) {
                    "out"
                } else {
                    "in"
                };
                format!(
                    "{kw}{}{}{}{}",
                    opt_reader(t.reader),
                    bytes_arg(&t.data),
                    if t.cut { " cut" } else { "" },
                    if t.reconstructed { " rebuilt" } else { "" }
                )
            }
            EventKind::Interrupt { reader, data } => {
                format!("interrupt{}{}", opt_reader(*reader), bytes_arg(data))
            }
            EventKind::ControlRequest { request } => format!("control-request 0x{request:02X}"),
            EventKind::ControlIn(d) => format!("control-in{}", bytes_arg(d)),
            EventKind::ControlOut(d) => format!("control-out{}", bytes_arg(d)),
            EventKind::T1Block { direction, block } => format!(
                "t1-{}{}",
                if *direction == Direction::Out {
                    "out"
                } else {
                    "in"
                },
                bytes_arg(block)
            ),
            EventKind::Pps { direction, data } => format!(
                "pps-{}{}",
                if *direction == Direction::Out {
                    "out"
                } else {
                    "in"
                },
                bytes_arg(data)
            ),
            EventKind::Call { call, lun } => format!("call {}", call_text(call, *lun)),
            EventKind::Atr(d) => format!("atr{}", bytes_arg(d)),
            EventKind::Apdu(d) => format!("apdu{}", bytes_arg(d)),
            EventKind::Response(d) => format!("response{}", bytes_arg(d)),
            EventKind::ControlTx(d) => format!("control-tx{}", bytes_arg(d)),
            EventKind::ControlRx(d) => format!("control-rx{}", bytes_arg(d)),
            EventKind::Protocol(p) => format!("protocol {p}"),
            EventKind::PresenceResult { present } => {
                format!(
                    "presence-result {}",
                    if *present { "present" } else { "absent" }
                )
            }
            EventKind::ReadTimeout => "read-timeout".to_string(),
            EventKind::DeviceOpened => "device-opened".to_string(),
            EventKind::DeviceRemoved => "device-removed".to_string(),
            EventKind::NoDevice => "no-device".to_string(),
            EventKind::ReaderIndex { index } => format!("reader-index {index}"),
            EventKind::DeviceName(n) => format!("device-name {n}"),
            EventKind::VidPid { vendor, product } => format!("vid-pid {vendor:04X}:{product:04X}"),
            EventKind::DescriptorField { name, value } => format!("descriptor {name} {value}"),
            EventKind::Gap => "gap".to_string(),
        };
        let _ = writeln!(s, "{line}");
    }
    s
}

/// Parses `key=value` (value in hex when `hex_value`).
fn keyed<'a>(tok: &'a str, key: &str) -> Option<&'a str> {
    tok.strip_prefix(key)?.strip_prefix('=')
}

fn hex_u32(text: &str) -> Option<u32> {
    let t = text.trim_start_matches("0x").trim_start_matches("0X");
    u32::from_str_radix(t, 16).ok()
}

/// Parses a native trace.
pub(crate) fn parse(src: &Source<'_>) -> Result<Vec<Event>, ParseError> {
    let mut events = Vec::new();
    for (idx, raw) in src.lines.iter().enumerate() {
        let line = idx + 1;
        let text = raw.trim();
        if text.is_empty() || text.starts_with('#') {
            continue;
        }
        let (kw, rest) = text.split_once(' ').unwrap_or((text, ""));
        let rest = rest.trim();
        let err = |m: String| src.error(line, m);
        let bytes = |t: &str| -> Result<Vec<u8>, ParseError> {
            let run = hex::run(t);
            if run.rest.is_empty() {
                Ok(run.bytes)
            } else {
                Err(err(format!("invalid hex byte '{}'", run.rest)))
            }
        };
        let kind = match kw {
            "out" | "in" => {
                let mut toks: Vec<&str> = rest.split_whitespace().collect();
                let mut reader = None;
                if let Some(r) = toks.first().and_then(|t| keyed(t, "reader")) {
                    reader = Some(r.parse().map_err(|_| err(format!("bad reader '{r}'")))?);
                    toks.remove(0);
                }
                let mut cut = false;
                let mut reconstructed = false;
                while let Some(last) = toks.last() {
                    match *last {
                        "cut" => cut = true,
                        "rebuilt" => reconstructed = true,
                        _ => break,
                    }
                    toks.pop();
                }
                let data = bytes(&toks.join(" "))?;
                let t = Transfer {
                    reader,
                    data,
                    cut,
                    reconstructed,
                };
                if kw == "out" {
                    EventKind::BulkOut(t)
                } else {
                    EventKind::BulkIn(t)
                }
            }
            "interrupt" => {
                let (reader, body) = match rest.split_once(' ') {
                    Some((first, b)) if keyed(first, "reader").is_some() => {
                        (keyed(first, "reader").and_then(|r| r.parse().ok()), b)
                    }
                    _ => (None, rest),
                };
                EventKind::Interrupt {
                    reader,
                    data: bytes(body)?,
                }
            }
            "control-request" => EventKind::ControlRequest {
                request: hex_u32(rest)
                    .and_then(|v| u8::try_from(v).ok())
                    .ok_or_else(|| err(format!("bad request '{rest}'")))?,
            },
            "control-in" => EventKind::ControlIn(bytes(rest)?),
            "control-out" => EventKind::ControlOut(bytes(rest)?),
            "t1-out" | "t1-in" | "pps-out" | "pps-in" => {
                let direction = if kw.ends_with("out") {
                    Direction::Out
                } else {
                    Direction::In
                };
                let data = bytes(rest)?;
                if kw.starts_with("t1") {
                    EventKind::T1Block {
                        direction,
                        block: data,
                    }
                } else {
                    EventKind::Pps { direction, data }
                }
            }
            "call" => parse_call(rest).map_err(err)?,
            "atr" => EventKind::Atr(bytes(rest)?),
            "apdu" => EventKind::Apdu(bytes(rest)?),
            "response" => EventKind::Response(bytes(rest)?),
            "control-tx" => EventKind::ControlTx(bytes(rest)?),
            "control-rx" => EventKind::ControlRx(bytes(rest)?),
            "protocol" => EventKind::Protocol(match rest {
                "0" => 0,
                "1" => 1,
                _ => return Err(err(format!("bad protocol '{rest}'"))),
            }),
            "presence-result" => EventKind::PresenceResult {
                present: match rest {
                    "present" => true,
                    "absent" => false,
                    _ => return Err(err(format!("bad presence '{rest}'"))),
                },
            },
            "read-timeout" => EventKind::ReadTimeout,
            "device-opened" => EventKind::DeviceOpened,
            "device-removed" => EventKind::DeviceRemoved,
            "no-device" => EventKind::NoDevice,
            "device-name" if !rest.is_empty() => EventKind::DeviceName(rest.to_string()),
            "reader-index" => EventKind::ReaderIndex {
                index: rest
                    .parse()
                    .map_err(|_| err(format!("bad reader index '{rest}'")))?,
            },
            "vid-pid" => {
                let (v, p) = rest
                    .split_once(':')
                    .ok_or_else(|| err(format!("bad vid-pid '{rest}'")))?;
                let parse16 = |t: &str| u16::from_str_radix(t, 16).ok();
                match (parse16(v), parse16(p)) {
                    (Some(vendor), Some(product)) => EventKind::VidPid { vendor, product },
                    _ => return Err(err(format!("bad vid-pid '{rest}'"))),
                }
            }
            "descriptor" => {
                let (name, value) = rest
                    .split_once(' ')
                    .ok_or_else(|| err("descriptor needs a name and a value".into()))?;
                EventKind::DescriptorField {
                    name: name.to_string(),
                    value: value.trim().to_string(),
                }
            }
            "gap" => EventKind::Gap,
            other => return Err(err(format!("unknown keyword '{other}'"))),
        };
        events.push(Event { line, kind });
    }
    Ok(events)
}

fn parse_call(rest: &str) -> Result<EventKind, String> {
    let (name, args) = rest.split_once(' ').unwrap_or((rest, ""));
    let mut lun = None;
    let mut code = None;
    let mut tag = None;
    let mut protocol = None;
    let mut device = None;
    let mut remaining = args.trim();
    while !remaining.is_empty() {
        if let Some(d) = remaining.strip_prefix("device=") {
            device = Some(d.to_string());
            break;
        }
        let (tok, r) = remaining.split_once(' ').unwrap_or((remaining, ""));
        remaining = r.trim_start();
        let (k, v) = tok
            .split_once('=')
            .ok_or_else(|| format!("bad call argument '{tok}'"))?;
        let n = hex_u32(v).ok_or_else(|| format!("bad value '{v}' of {k}"))?;
        match k {
            "lun" => lun = Some(n),
            "code" => code = Some(n),
            "tag" => tag = Some(n),
            "t" => protocol = Some(u8::try_from(n).map_err(|_| format!("bad protocol {v}"))?),
            _ => return Err(format!("unknown call argument '{k}'")),
        }
    }
    let need = |v: Option<u32>, what: &str| v.ok_or_else(|| format!("{name} needs {what}="));
    let call = match name {
        "create-channel" => Call::CreateChannel { device },
        "create-channel-failed" => Call::CreateChannelFailed,
        "close-channel" => Call::CloseChannel,
        "power-up" => Call::PowerUp,
        "power-down" => Call::PowerDown,
        "reset" => Call::Reset,
        "presence" => Call::Presence,
        "transmit" => Call::Transmit,
        "control" => Call::Control {
            code: need(code, "code")?,
        },
        "set-protocol" => Call::SetProtocol {
            protocol: protocol.ok_or_else(|| format!("{name} needs t="))?,
        },
        "set-capabilities" => Call::SetCapabilities {
            tag: need(tag, "tag")?,
        },
        "get-capabilities" => Call::GetCapabilities {
            tag: need(tag, "tag")?,
        },
        other => return Err(format!("unknown call '{other}'")),
    };
    Ok(EventKind::Call { call, lun })
}
