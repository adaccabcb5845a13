//! GnuPG scdaemon's built-in ccid-driver (`--debug-ccid-driver`).
//!
//! Frames appear three ways: `ccid-driver: sending 6F 09 …` (raw bytes
//! out), `ccid-driver: status: 00  error: 00  octet[9]: 04  data: …` (the
//! status bytes and data of an answer, without its header) and
//! field-decoded blocks (`PC_to_RDR_IccPowerOn:` followed by `bSeq ...: 1`
//! lines and `[0008]  00 00` byte dumps). Mail archives wrap long lines;
//! a line that does not start a log record continues the previous one.

use super::{hex, is_gap, message_type_named, Event, EventKind, ParseError, Source, Transfer};
use ccid::proto::message::MessageType;

/// A logical record: its first line (0-based index) and joined text.
struct Record {
    idx: usize,
    text: String,
    gap: bool,
}

fn starts_record(line: &str) -> bool {
    let t = line.trim_start_matches('>').trim_start();
    let b = t.as_bytes();
    let dated =
        b.len() > 10 && b[..4].iter().all(u8::is_ascii_digit) && b[4] == b'-' && b[7] == b'-';
    dated || t.starts_with("DBG:")
}

fn records(src: &Source<'_>) -> Vec<Record> {
    let mut out: Vec<Record> = Vec::new();
    let mut open = false;
    for (idx, line) in src.lines.iter().enumerate() {
        if is_gap(line) {
            out.push(Record {
                idx,
                text: String::new(),
                gap: true,
            });
            open = false;
            continue;
        }
        if line.trim().is_empty() {
            open = false;
            continue;
        }
        if starts_record(line) || !open {
            out.push(Record {
                idx,
                text: line.trim_end().to_string(),
                gap: false,
            });
            open = true;
        } else if let Some(last) = out.last_mut() {
            last.text.push(' ');
            last.text.push_str(line.trim());
        }
    }
    out
}

/// A field-decoded message being collected.
struct Decoded {
    idx: usize,
    out: bool,
    bytes: Vec<u8>,
    declared: Option<u32>,
    raw_end: usize,
}

impl Decoded {
    fn set(&mut self, offset: usize, value: &[u8]) {
        if self.bytes.len() < offset + value.len() {
            self.bytes.resize(offset + value.len(), 0);
        }
        self.bytes[offset..offset + value.len()].copy_from_slice(value);
    }

    fn field(&mut self, name: &str, value: u32) {
        let b = (value & 0xFF) as u8;
        match name {
            "dwLength" => {
                self.declared = Some(value);
                self.set(1, &value.to_le_bytes());
            }
            "bSlot" => self.set(5, &[b]),
            "bSeq" => self.set(6, &[b]),
            "bPowerSelect" | "bBWI" | "bClockCommand" | "bmChanges" | "bFunction" | "bStatus" => {
                self.set(7, &[b])
            }
            "bProtocolNum" => self.set(if self.out { 7 } else { 9 }, &[b]),
            "bError" | "bClassGetResponse" => self.set(8, &[b]),
            "wLevelParameter" => self.set(8, &(value as u16).to_le_bytes()),
            "bChainParameter" | "bClockStatus" | "bClassEnvelope" => self.set(9, &[b]),
            _ => {}
        }
    }

    fn finish(self) -> Event {
        let data_len = self.raw_end.saturating_sub(10);
        let cut = self.declared.is_some_and(|d| d as usize > data_len);
        let t = Transfer {
            reader: None,
            data: self.bytes,
            cut,
            reconstructed: true,
        };
        Event {
            line: self.idx + 1,
            kind: if self.out {
                EventKind::BulkOut(t)
            } else {
                EventKind::BulkIn(t)
            },
        }
    }
}

/// Parses a GnuPG ccid-driver debug log.
pub(super) fn parse(src: &Source<'_>) -> Result<Vec<Event>, ParseError> {
    let mut events = Vec::new();
    let mut decoded: Option<Decoded> = None;
    let mut last_out: Option<Vec<u8>> = None;
    let mut pending_sw: Option<Vec<u8>> = None;
    for rec in records(src) {
        let line = rec.idx + 1;
        if rec.gap {
            flush(&mut decoded, &mut events, &mut last_out);
            events.push(Event {
                line,
                kind: EventKind::Gap,
            });
            continue;
        }
        let body = match rec.text.find("DBG:") {
            Some(i) => rec.text[i + 4..].trim(),
            None => continue,
        };
        if let Some(msg) = body.strip_prefix("ccid-driver:") {
            let msg_trim = msg.trim();
            // Inside a decoded block: field lines and byte dumps.
            if let Some(d) = decoded.as_mut() {
                if let Some(r) = msg_trim.strip_prefix('[') {
                    let close = r.find(']').ok_or_else(|| src.error(line, "unclosed '['"))?;
                    let offset: usize = r[..close]
                        .parse()
                        .ok()
                        .filter(|o| *o <= ccid::proto::message::MAX_MESSAGE_LEN)
                        .ok_or_else(|| src.error(line, "bad byte offset"))?;
                    let run = hex::run(&r[close + 1..]);
                    if !run.rest.is_empty() && !src.is_excerpt_end(rec.idx) {
                        return Err(src.error(line, format!("invalid hex byte '{}'", run.rest)));
                    }
                    d.set(offset, &run.bytes);
                    d.raw_end = d.raw_end.max(offset + run.bytes.len());
                    continue;
                }
                if let Some((name, value)) = decoded_field(msg_trim) {
                    let v = hex::number(value)
                        .ok_or_else(|| src.error(line, format!("bad value '{value}' of {name}")))?;
                    d.field(name, v);
                    continue;
                }
            }
            flush(&mut decoded, &mut events, &mut last_out);
            if let Some(name) = msg_trim.strip_suffix(':') {
                if name.starts_with("PC_to_RDR_") || name.starts_with("RDR_to_PC_") {
                    let t = message_type_named(name)
                        .ok_or_else(|| src.error(line, format!("unknown message {name}")))?;
                    let mut bytes = vec![0u8; 10];
                    bytes[0] = t;
                    decoded = Some(Decoded {
                        idx: rec.idx,
                        out: name.starts_with("PC_to_RDR_"),
                        bytes,
                        declared: None,
                        raw_end: 10,
                    });
                    continue;
                }
            }
            if let Some(rest) = msg_trim.strip_prefix("sending ") {
                let run = hex::run(rest);
                if run.bytes.is_empty() {
                    continue; // prose: "sending escape sequence to …"
                }
                let cut = !run.rest.is_empty();
                if cut && !src.is_excerpt_end(rec.idx) {
                    return Err(src.error(line, format!("invalid hex byte '{}'", run.rest)));
                }
                last_out = Some(run.bytes.clone());
                events.push(Event {
                    line,
                    kind: EventKind::BulkOut(Transfer {
                        reader: None,
                        data: run.bytes,
                        cut,
                        reconstructed: false,
                    }),
                });
                continue;
            }
            if msg_trim.starts_with("status:") {
                let t = status_answer(msg_trim, last_out.as_deref())
                    .ok_or_else(|| src.error(line, "unreadable status line"))?;
                events.push(Event {
                    line,
                    kind: EventKind::BulkIn(t),
                });
                continue;
            }
            if let Some((name, value)) = descriptor_field(msg_trim) {
                events.push(Event {
                    line,
                    kind: EventKind::DescriptorField {
                        name: name.to_string(),
                        value: value.to_string(),
                    },
                });
            }
            continue;
        }
        flush(&mut decoded, &mut events, &mut last_out);
        if let Some(rest) = body.strip_prefix("APDU_data:") {
            events.push(Event {
                line,
                kind: EventKind::Apdu(hex::run(rest).bytes),
            });
        } else if let Some(rest) = body.strip_prefix("response:") {
            let sw = rest
                .split_whitespace()
                .find_map(|t| t.strip_prefix("sw="))
                .and_then(hex::contiguous);
            let len = rest
                .split_whitespace()
                .find_map(|t| t.strip_prefix("datalen="))
                .and_then(|n| n.parse::<usize>().ok())
                .unwrap_or(0);
            if let Some(sw) = sw {
                if len == 0 {
                    events.push(Event {
                        line,
                        kind: EventKind::Response(sw),
                    });
                } else {
                    pending_sw = Some(sw);
                }
            }
        } else if let Some(rest) = body.strip_prefix("dump:") {
            if let Some(sw) = pending_sw.take() {
                let mut data = hex::run(rest).bytes;
                data.extend_from_slice(&sw);
                events.push(Event {
                    line,
                    kind: EventKind::Response(data),
                });
            }
        }
    }
    flush(&mut decoded, &mut events, &mut last_out);
    Ok(events)
}

/// Emits the decoded block being collected, if any.
fn flush(decoded: &mut Option<Decoded>, events: &mut Vec<Event>, last_out: &mut Option<Vec<u8>>) {
    if let Some(d) = decoded.take() {
        let ev = d.finish();
        if let EventKind::BulkOut(t) = &ev.kind {
            *last_out = Some(t.data.clone());
        }
        events.push(ev);
    }
}

/// `name ......: value` inside a decoded block.
fn decoded_field(text: &str) -> Option<(&str, &str)> {
    let colon = text.find(':')?;
    let name = text[..colon].trim_end_matches(['.', ' ']);
    if name.is_empty() || name.contains(' ') {
        return None;
    }
    let value = text[colon + 1..].split_whitespace().next()?;
    Some((name, value))
}

/// `dwFeatures       000100BA` in the reader description.
fn descriptor_field(text: &str) -> Option<(&str, &str)> {
    let mut it = text.split_whitespace();
    let name = it.next()?;
    let value = it.next()?;
    if it.next().is_some() {
        return None;
    }
    let field_like = ["b", "dw", "w", "bcd"].iter().any(|p| {
        name.strip_prefix(p)
            .is_some_and(|r| r.starts_with(|c: char| c.is_ascii_uppercase()))
    });
    (field_like && value.bytes().all(|c| c.is_ascii_hexdigit())).then_some((name, value))
}

/// Rebuilds an answer from `status: XX  error: XX  octet[9]: XX  data: …`,
/// taking type, slot and sequence number from the command it answers.
fn status_answer(text: &str, command: Option<&[u8]>) -> Option<Transfer> {
    let after = |key: &str| -> Option<&str> {
        let i = text.find(key)?;
        Some(text[i + key.len()..].trim_start())
    };
    let status = hex::byte(after("status:")?.split_whitespace().next()?)?;
    let error = hex::byte(after("error:")?.split_whitespace().next()?)?;
    let octet9 = hex::byte(after("octet[9]:")?.split_whitespace().next()?)?;
    let data = after("data:")
        .map(|d| hex::run(d).bytes)
        .unwrap_or_default();
    let cmd = command.unwrap_or(&[]);
    let message_type = cmd
        .first()
        .and_then(|t| MessageType(*t).expected_response())
        .map_or(MessageType::RDR_TO_PC_DATA_BLOCK.0, |m| m.0);
    let mut bytes = vec![message_type];
    bytes.extend_from_slice(&(data.len() as u32).to_le_bytes());
    bytes.push(cmd.get(5).copied().unwrap_or(0));
    bytes.push(cmd.get(6).copied().unwrap_or(0));
    bytes.extend_from_slice(&[status, error, octet9]);
    bytes.extend_from_slice(&data);
    Some(Transfer {
        reader: None,
        data: bytes,
        cut: false,
        reconstructed: true,
    })
}
