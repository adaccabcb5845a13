//! libnfc's acr122_usb driver (`LIBNFC_LOG_LEVEL=3`): `TX:` and `RX:`
//! carry raw CCID frames; a long frame continues on lines holding only hex.

use super::{hex, is_gap, Event, EventKind, ParseError, Source, Transfer};

/// Where the hex of a `TX:` / `RX:` line starts, and whether it is `TX`.
pub(super) fn frame_start(line: &str) -> Option<(usize, bool)> {
    ["TX: ", "RX: "].iter().find_map(|k| {
        let i = line.find(k)?;
        let before = line[..i].chars().last()?;
        before
            .is_whitespace()
            .then_some((i + k.len(), k.starts_with('T')))
    })
}

/// Parses a libnfc log.
pub(super) fn parse(src: &Source<'_>) -> Result<Vec<Event>, ParseError> {
    let mut events: Vec<Event> = Vec::new();
    // The frame being collected: (first line index, out?, bytes, text rest).
    let mut open: Option<(usize, bool, Vec<u8>)> = None;
    let close = |open: &mut Option<(usize, bool, Vec<u8>)>, events: &mut Vec<Event>| {
        if let Some((idx, out, data)) = open.take() {
            let t = Transfer::new(data);
            events.push(Event {
                line: idx + 1,
                kind: if out {
                    EventKind::BulkOut(t)
                } else {
                    EventKind::BulkIn(t)
                },
            });
        }
    };
    for (idx, line) in src.lines.iter().enumerate() {
        if is_gap(line) {
            close(&mut open, &mut events);
            events.push(Event {
                line: idx + 1,
                kind: EventKind::Gap,
            });
            continue;
        }
        let t = line.trim();
        if let Some((_, _, data)) = open.as_mut() {
            let run = hex::run(t);
            if !t.is_empty() && run.rest.is_empty() {
                data.extend_from_slice(&run.bytes);
                continue;
            }
        }
        close(&mut open, &mut events);
        let Some((start, out)) = frame_start(line) else {
            continue;
        };
        if !line[..start].contains("libnfc.") {
            continue;
        }
        let run = hex::run(&line[start..]);
        let cut_at_end = src.is_excerpt_end(idx) && !run.rest.contains(char::is_whitespace);
        if !run.rest.is_empty() && !cut_at_end {
            return Err(src.error(idx + 1, format!("invalid hex byte '{}'", run.rest)));
        }
        open = Some((idx, out, run.bytes));
    }
    close(&mut open, &mut events);
    Ok(events)
}
