//! Hex quoted in prose, as in questions about Android or ChromeOS hosts:
//! `Request:` / `Response:` / `Command` labels, spaced or contiguous hex,
//! Java `(byte) 0x62, …` arrays, backticks. Lines of prose are skipped.
//! Without a label, the direction follows from `bMessageType` (0x6x host
//! to reader, 0x8x reader to host, 0x50/0x51 interrupt).

use super::{hex, is_gap, Direction, Event, EventKind, ParseError, Source, Transfer};

/// A direction label at the start of a line, and the text after it.
fn label(text: &str) -> Option<(Direction, &str)> {
    let words = [
        ("Request", Direction::Out),
        ("Command", Direction::Out),
        ("TX", Direction::Out),
        ("Response", Direction::In),
        ("Answer", Direction::In),
        ("RX", Direction::In),
    ];
    for (w, d) in words {
        if let Some(rest) = text.strip_prefix(w) {
            if rest.is_empty() || rest.starts_with([' ', ':', '(']) {
                return Some((d, rest));
            }
        }
    }
    None
}

/// Java byte-array elements: `(byte) 0x62, (byte) 0x00000000, …`. A
/// `(byte)` cast keeps the low byte, which is what went on the wire.
fn java_bytes(text: &str) -> Option<Vec<u8>> {
    if !text.contains("(byte)") {
        return None;
    }
    let mut out = Vec::new();
    for part in text.split(',') {
        let p = part.trim();
        if p.is_empty() {
            continue;
        }
        let v = p.strip_prefix("(byte)")?.trim();
        let n = v
            .strip_prefix("0x")
            .or_else(|| v.strip_prefix("0X"))
            .and_then(|h| u64::from_str_radix(h, 16).ok())?;
        out.push((n & 0xFF) as u8);
    }
    Some(out)
}

fn direction_of(data: &[u8]) -> Option<Direction> {
    match data.first()? {
        0x61..=0x73 => Some(Direction::Out),
        0x80..=0x84 | 0x50 | 0x51 => Some(Direction::In),
        _ => None,
    }
}

/// The bytes of a quoted frame and whether a remark replaces its end.
fn frame_bytes(text: &str) -> Option<(Vec<u8>, bool)> {
    if let Some(b) = java_bytes(text) {
        return Some((b, false));
    }
    if let Some(b) = hex::contiguous(text).filter(|b| b.len() >= 2) {
        return Some((b, false));
    }
    let run = hex::run(text);
    if run.bytes.len() < 2 {
        return None;
    }
    if run.rest.is_empty() {
        Some((run.bytes, false))
    } else if run.bytes.len() >= 10 || run.rest.starts_with('<') {
        // The rest of the frame was not quoted.
        Some((run.bytes, true))
    } else {
        None
    }
}

/// Parses plain quoted hex.
pub(super) fn parse(src: &Source<'_>) -> Result<Vec<Event>, ParseError> {
    let mut events = Vec::new();
    let mut pending: Option<Direction> = None;
    for (idx, raw) in src.lines.iter().enumerate() {
        let line = idx + 1;
        if is_gap(raw) {
            events.push(Event {
                line,
                kind: EventKind::Gap,
            });
            pending = None;
            continue;
        }
        let mut text = raw.trim().trim_matches('`').trim();
        let mut dir = None;
        if let Some((d, rest)) = label(text) {
            text = rest.trim_start_matches(':').trim();
            if text.is_empty() || (text.starts_with('(') && java_bytes(text).is_none()) {
                pending = Some(d);
                continue;
            }
            dir = Some(d);
        }
        let Some((data, cut)) = frame_bytes(text) else {
            let first = text.split_whitespace().next().unwrap_or("");
            let looks_hex = hex::byte(first).is_some()
                || (first.len() >= 4 && first.bytes().all(|c| c.is_ascii_hexdigit()));
            if dir.or(pending).is_some() && looks_hex {
                return Err(src.error(line, format!("unreadable frame '{text}'")));
            }
            continue; // prose
        };
        let direction = match dir.or(pending) {
            Some(d) => d,
            None => match direction_of(&data) {
                Some(d) => d,
                None => continue, // an APDU or other bytes quoted in prose
            },
        };
        pending = None;
        let kind = match direction {
            Direction::Out => EventKind::BulkOut(Transfer {
                cut,
                ..Transfer::new(data)
            }),
            Direction::In if matches!(data.first(), Some(0x50 | 0x51)) && data.len() < 10 => {
                EventKind::Interrupt { reader: None, data }
            }
            Direction::In => EventKind::BulkIn(Transfer {
                cut,
                ..Transfer::new(data)
            }),
        };
        events.push(Event { line, kind });
    }
    Ok(events)
}
