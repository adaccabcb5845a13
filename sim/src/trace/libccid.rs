//! libccid COMM output inside pcscd logs (inventory §8.3).

use super::{hex, is_gap, Call, Direction, Event, EventKind, ParseError, Source, Transfer};

/// Removes ANSI colour sequences (`ESC [ … m`).
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            chars.next();
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
            continue;
        }
        out.push(c);
    }
    out
}

/// Removes pcscd's `%.8d` delay (cut excerpts may show fewer digits) and
/// the optional `[thread]` field. Returns the message and whether a delay
/// prefix was present.
fn message(line: &str) -> (bool, &str) {
    let s = line.trim_end();
    let digits = s.bytes().take_while(u8::is_ascii_digit).count();
    let mut delay = false;
    let mut rest = s;
    if (1..=8).contains(&digits) {
        let after = &s[digits..];
        if after.is_empty() || after.starts_with(' ') {
            delay = true;
            rest = after.strip_prefix(' ').unwrap_or(after);
        }
    }
    if let Some(inner) = rest.strip_prefix('[') {
        let n = inner.bytes().take_while(u8::is_ascii_digit).count();
        if n > 0 && inner[n..].starts_with(']') {
            let after = &inner[n + 1..];
            rest = after.strip_prefix(' ').unwrap_or(after);
        }
    }
    (delay, rest)
}

/// A `file:line:function() text` line of pcscd or the driver.
struct CodeLine<'a> {
    func: &'a str,
    text: &'a str,
}

fn code_line(msg: &str) -> Option<CodeLine<'_>> {
    // The file part contains no blanks; the line number is all digits.
    let colon = msg.find(':')?;
    let file = &msg[..colon];
    if file.is_empty() || file.contains(char::is_whitespace) || !file.contains('.') {
        return None;
    }
    let rest = &msg[colon + 1..];
    let n = rest.bytes().take_while(u8::is_ascii_digit).count();
    if n == 0 || !rest[n..].starts_with(':') {
        return None;
    }
    let body = &rest[n + 1..];
    let end = body.find(['(', ' ']).unwrap_or(body.len());
    let func = &body[..end];
    let mut text = &body[end..];
    text = text.strip_prefix("()").unwrap_or(text);
    Some(CodeLine {
        func,
        text: text.trim(),
    })
}

/// Whether a line looks like libccid or pcscd output.
pub(super) fn is_signature(line: &str) -> bool {
    let clean = strip_ansi(line);
    let (delay, msg) = message(&clean);
    if let Some(rest) = msg.strip_prefix("-> ").or_else(|| msg.strip_prefix("<- ")) {
        return rest.starts_with("lun: ") || channel6(rest).is_some();
    }
    delay && code_line(msg).is_some()
}

/// A six-hex-digit reader field at the start of `text`: (value, rest).
fn channel6(text: &str) -> Option<(u32, &str)> {
    let tok = text.get(..6)?;
    if !tok.bytes().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    let after = &text[6..];
    if !(after.is_empty() || after.starts_with(' ')) {
        return None;
    }
    Some((u32::from_str_radix(tok, 16).ok()?, after))
}

/// `lun: X, ` at the start of `text`: (lun, rest).
fn lun_field(text: &str) -> Option<(u32, &str)> {
    let rest = text.strip_prefix("lun: ")?;
    let comma = rest.find(',')?;
    let lun = u32::from_str_radix(rest[..comma].trim(), 16).ok()?;
    Some((lun, rest[comma + 1..].trim_start()))
}

/// The Lun printed as `(lun: X)` at the end of IFDH lines.
fn paren_lun(text: &str) -> Option<u32> {
    let start = text.rfind("(lun: ")? + 6;
    let end = text[start..].find(')')? + start;
    u32::from_str_radix(text[start..end].trim(), 16).ok()
}

/// `VVVV/PPPP` (hex) at the start of `text`.
fn vid_pid(text: &str) -> Option<(u16, u16)> {
    let t = text.trim();
    let slash = t.find('/')?;
    let v = u16::from_str_radix(t.get(..slash)?, 16).ok()?;
    let p_text: String = t[slash + 1..]
        .chars()
        .take_while(char::is_ascii_hexdigit)
        .collect();
    if p_text.is_empty() || p_text.len() > 4 {
        return None;
    }
    let p = u16::from_str_radix(&p_text, 16).ok()?;
    Some((v, p))
}

/// The pcscd device name (`usb:VVVV/PPPP:…`) an IFDH line mentions.
fn usb_device_name(msg: &str) -> Option<String> {
    if !msg.contains("IFDH") && !msg.contains("CreateChannel") {
        return None;
    }
    let start = msg.find("usb:")?;
    let name: String = msg[start..]
        .chars()
        .take_while(|c| !c.is_whitespace() && *c != ',')
        .collect();
    vid_pid(name.strip_prefix("usb:")?)?;
    Some(name)
}

/// `T=N` somewhere in `text`.
fn protocol_in(text: &str) -> Option<u8> {
    let i = text.find("T=")?;
    match text.as_bytes().get(i + 2)? {
        b'0' => Some(0),
        b'1' => Some(1),
        _ => None,
    }
}

/// Parses a libccid/pcscd log.
pub(super) fn parse(src: &Source<'_>) -> Result<Vec<Event>, ParseError> {
    let mut events = Vec::new();
    let mut names: Vec<String> = Vec::new();
    for (idx, raw) in src.lines.iter().enumerate() {
        let line_no = idx + 1;
        if is_gap(raw) {
            events.push(Event {
                line: line_no,
                kind: EventKind::Gap,
            });
            continue;
        }
        let clean = strip_ansi(raw);
        let (_, msg) = message(&clean);
        for kind in parse_message(src, idx, msg)? {
            events.push(Event {
                line: line_no,
                kind,
            });
        }
        if let Some(name) = usb_device_name(msg) {
            if !names.contains(&name) {
                names.push(name.clone());
                events.push(Event {
                    line: line_no,
                    kind: EventKind::DeviceName(name),
                });
            }
        }
    }
    Ok(events)
}

/// Reads a hex payload; a cut last token is tolerated only at the end of
/// an excerpt.
fn payload(src: &Source<'_>, idx: usize, text: &str) -> Result<(Vec<u8>, bool), ParseError> {
    let r = hex::run(text);
    if r.rest.is_empty() {
        return Ok((r.bytes, false));
    }
    if src.is_excerpt_end(idx) && !r.rest.contains(char::is_whitespace) {
        return Ok((r.bytes, true));
    }
    let tok = r.rest.split_whitespace().next().unwrap_or(r.rest);
    Err(src.error(
        idx + 1,
        format!("invalid hex byte '{tok}' after {} byte(s)", r.bytes.len()),
    ))
}

fn parse_message(src: &Source<'_>, idx: usize, msg: &str) -> Result<Vec<EventKind>, ParseError> {
    let mut out = Vec::new();
    for (prefix, out_dir) in [("-> ", Direction::Out), ("<- ", Direction::In)] {
        let arrow = prefix.trim_end();
        let rest = if let Some(r) = msg.strip_prefix(prefix) {
            r
        } else if msg == arrow {
            ""
        } else {
            continue;
        };
        let (reader, body) = if let Some((lun, r)) = lun_field(rest) {
            (Some(lun >> 16), r)
        } else if let Some((n, r)) = channel6(rest) {
            (Some(n), r)
        } else {
            (None, rest)
        };
        let (data, cut) = payload(src, idx, body)?;
        let t = Transfer {
            reader,
            data,
            cut,
            reconstructed: false,
        };
        out.push(match out_dir {
            Direction::Out => EventKind::BulkOut(t),
            Direction::In => EventKind::BulkIn(t),
        });
        return Ok(out);
    }
    for prefix in [
        "NotifySlotChange: ",
        "HardwareError: ",
        "Unrecognized notification: ",
    ] {
        if let Some(rest) = msg.strip_prefix(prefix) {
            let (reader, body) = match lun_field(rest) {
                Some((lun, r)) => (Some(lun >> 16), r),
                None => (None, rest),
            };
            let (data, _) = payload(src, idx, body)?;
            out.push(EventKind::Interrupt { reader, data });
            return Ok(out);
        }
    }
    type Ctor = fn(Vec<u8>) -> EventKind;
    let simple: [(&str, Ctor); 11] = [
        ("receive: ", EventKind::ControlIn),
        ("send: ", EventKind::ControlOut),
        ("sending: ", |b| EventKind::T1Block {
            direction: Direction::Out,
            block: b,
        }),
        ("received: ", |b| EventKind::T1Block {
            direction: Direction::In,
            block: b,
        }),
        ("PPS: Sending request: ", |b| EventKind::Pps {
            direction: Direction::Out,
            data: b,
        }),
        ("PPS: Receiving confirm: ", |b| EventKind::Pps {
            direction: Direction::In,
            data: b,
        }),
        ("Control TxBuffer: ", EventKind::ControlTx),
        ("Control RxBuffer: ", EventKind::ControlRx),
        ("Card ATR: ", EventKind::Atr),
        ("APDU: ", EventKind::Apdu),
        ("SW: ", EventKind::Response),
    ];
    for (prefix, ctor) in simple {
        let bare = prefix.trim_end();
        let body = if let Some(r) = msg.strip_prefix(prefix) {
            r
        } else if msg == bare {
            ""
        } else {
            continue;
        };
        let (data, _) = payload(src, idx, body)?;
        out.push(ctor(data));
        return Ok(out);
    }
    if let Some(c) = code_line(msg) {
        code_events(&c, &mut out);
    }
    Ok(out)
}

/// The events a `file:line:function()` line reveals.
fn code_events(c: &CodeLine<'_>, out: &mut Vec<EventKind>) {
    let text = c.text;
    let lun = paren_lun(text);
    let call = |call: Call| EventKind::Call { call, lun };
    match c.func {
        "IFDHPowerICC" => {
            if let Some(action) = text.strip_prefix("action: ") {
                let word = action.split([',', ' ']).next().unwrap_or("");
                match word {
                    "PowerUp" => out.push(call(Call::PowerUp)),
                    "PowerDown" => out.push(call(Call::PowerDown)),
                    "Reset" => out.push(call(Call::Reset)),
                    _ => {}
                }
            }
        }
        "IFDHICCPresence" => {
            if lun.is_some() {
                out.push(call(Call::Presence));
            } else if text.starts_with("Card present") {
                out.push(EventKind::PresenceResult { present: true });
            } else if text.starts_with("Card absent") {
                out.push(EventKind::PresenceResult { present: false });
            }
        }
        "IFDHTransmitToICC" if lun.is_some() => out.push(call(Call::Transmit)),
        "IFDHCloseChannel" if lun.is_some() => out.push(call(Call::CloseChannel)),
        "IFDHControl" => {
            if let Some(code) = text
                .strip_prefix("ControlCode: ")
                .and_then(|r| hex::number(r.split(',').next().unwrap_or("")))
            {
                out.push(call(Call::Control { code }));
            }
        }
        "IFDHSetProtocolParameters" => {
            if let Some(r) = text.strip_prefix("protocol ") {
                if let Some(p) = protocol_in(r) {
                    out.push(call(Call::SetProtocol { protocol: p }));
                }
            } else if text.starts_with("T=") {
                if let Some(p) = protocol_in(text) {
                    out.push(EventKind::Protocol(p));
                }
            }
        }
        "IFDHSetCapabilities" | "IFDHGetCapabilities" => {
            if let Some(tag) = text
                .strip_prefix("tag: ")
                .and_then(|r| hex::number(r.split(',').next().unwrap_or("")))
            {
                out.push(call(if c.func == "IFDHSetCapabilities" {
                    Call::SetCapabilities { tag }
                } else {
                    Call::GetCapabilities { tag }
                }));
            }
        }
        "CreateChannelByNameOrChannel" | "IFDHCreateChannelByName" | "IFDHCreateChannel" => {
            if let Some(r) = text.strip_prefix("Lun: ") {
                let lun = u32::from_str_radix(r.split(',').next().unwrap_or("").trim(), 16).ok();
                let device = r
                    .find("device: ")
                    .map(|i| r[i + 8..].trim().to_string())
                    .or_else(|| r.find("Channel: ").map(|i| r[i + 9..].trim().to_string()));
                if let Some(vp) = device
                    .as_deref()
                    .and_then(|d| d.strip_prefix("usb:"))
                    .and_then(vid_pid)
                {
                    out.push(EventKind::VidPid {
                        vendor: vp.0,
                        product: vp.1,
                    });
                }
                out.push(EventKind::Call {
                    call: Call::CreateChannel { device },
                    lun,
                });
            } else if text.starts_with("failed") {
                out.push(EventKind::Call {
                    call: Call::CreateChannelFailed,
                    lun: None,
                });
            }
        }
        "OpenUSBByName" => {
            if text.starts_with("Using USB bus/device") {
                out.push(EventKind::DeviceOpened);
            }
            if let Some(r) = text.strip_prefix("Reader index: ") {
                if let Some(n) = r.split(',').next().and_then(|t| t.trim().parse().ok()) {
                    out.push(EventKind::ReaderIndex { index: n });
                }
            }
            let vp = text
                .strip_prefix("vid/pid : ")
                .or_else(|| text.strip_prefix("Found Vendor/Product: "))
                .and_then(vid_pid);
            if let Some((vendor, product)) = vp {
                out.push(EventKind::VidPid { vendor, product });
            }
        }
        "ReadUSB" | "WriteUSB" => {
            if text.contains("TIMEOUT") && c.func == "ReadUSB" {
                out.push(EventKind::ReadTimeout);
            } else if text.contains("NO_DEVICE") {
                out.push(EventKind::NoDevice);
            }
        }
        "HPRemoveDevice" => out.push(EventKind::DeviceRemoved),
        "ControlUSB" => {
            if let Some(req) = text
                .strip_prefix("request: ")
                .and_then(|r| hex::number(r.split([',', ' ']).next().unwrap_or("")))
            {
                out.push(EventKind::ControlRequest {
                    request: (req & 0xFF) as u8,
                });
            }
        }
        "SCardTransmit" => {
            if let Some(p) = text.strip_prefix("Send Protocol: ").and_then(protocol_in) {
                out.push(EventKind::Protocol(p));
            }
        }
        "SCardConnect" | "SCardReconnect" => {
            if let Some(p) = text.strip_prefix("Active Protocol: ").and_then(protocol_in) {
                out.push(EventKind::Protocol(p));
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes() {
        assert_eq!(
            message("00000013 [139703] -> 000000 65"),
            (true, "-> 000000 65")
        );
        assert_eq!(message("0000010 APDU: 00"), (true, "APDU: 00"));
        assert_eq!(message("-> lun: 0, 62"), (false, "-> lun: 0, 62"));
        assert_eq!(message("00000006"), (true, ""));
        let coloured = "\u{1b}[36m00000010\u{1b}[0m [1402] \u{1b}[35m-> lun: 0, 65 \u{1b}[0m";
        assert_eq!(strip_ansi(coloured), "00000010 [1402] -> lun: 0, 65 ");
    }

    #[test]
    fn code_lines() {
        let c =
            code_line("ifdhandler.c:1246:IFDHPowerICC() action: PowerUp, usb:x (lun: 0)").unwrap();
        assert_eq!(c.func, "IFDHPowerICC");
        assert!(c.text.starts_with("action: PowerUp"));
        let c = code_line("commands.c:243:CmdPowerOn Card absent or mute").unwrap();
        assert_eq!(c.func, "CmdPowerOn");
        assert_eq!(c.text, "Card absent or mute");
        assert!(code_line("Card ATR: 3B").is_none());
        assert_eq!(
            paren_lun("usb:1050/0407:libudev:2:/dev (lun: 10000)"),
            Some(0x10000)
        );
        assert_eq!(vid_pid("08e6/4433:libudev:0"), Some((0x08E6, 0x4433)));
        assert_eq!(vid_pid("072F/B100 (ACS)"), Some((0x072F, 0xB100)));
    }
}
