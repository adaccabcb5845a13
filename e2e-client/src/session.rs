//! PC/SC operations on top of the `pcsc` crate: waiting for readers and
//! cards, connecting, exchanging APDUs, timing them.
#![forbid(unsafe_code)]

use crate::apdu::{follow_up, Assembled, Expectation, Next};
use crate::args::Trigger;
use crate::hex;
use pcsc::{Card, Context, Disposition, Error, Protocols, ReaderState, Scope, ShareMode, State};
use std::ffi::CString;
use std::io::Write;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Longest single SCardGetStatusChange wait; the loops re-check the
/// reader list in between, so a missed notification costs at most this.
const POLL_SLICE: Duration = Duration::from_millis(250);

/// Prints one machine-readable record.
pub fn emit(record: &str) {
    println!("{record}");
}

/// Prints a `TIMING` record with millisecond resolution to 0.1 ms.
pub fn emit_timing(name: &str, ms: f64) {
    emit(&format!("TIMING {name} {ms:.1}"));
}

/// A reference point for latency measurements.
pub enum Origin {
    /// A monotonic instant in this process.
    Instant(Instant),
    /// A wall-clock time in milliseconds since the Unix epoch, taken by
    /// another process (e.g. when it started pcscd).
    EpochMs(u64),
}

impl Origin {
    /// Milliseconds elapsed since the origin.
    pub fn elapsed_ms(&self) -> f64 {
        match self {
            Origin::Instant(t) => t.elapsed().as_secs_f64() * 1000.0,
            Origin::EpochMs(t0) => epoch_ms() - *t0 as f64,
        }
    }
}

fn epoch_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64() * 1000.0)
        .unwrap_or(0.0)
}

/// A time limit for one invocation.
#[derive(Clone, Copy)]
pub struct Deadline(Instant);

impl Deadline {
    /// A deadline `limit` from now.
    pub fn after(limit: Duration) -> Self {
        Deadline(Instant::now() + limit)
    }

    fn remaining(&self) -> Option<Duration> {
        self.0
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
    }
}

/// Names the set bits of a reader state, e.g. `CHANGED|PRESENT|INUSE`.
pub fn state_flags(state: State) -> String {
    const NAMES: [(State, &str); 11] = [
        (State::IGNORE, "IGNORE"),
        (State::CHANGED, "CHANGED"),
        (State::UNKNOWN, "UNKNOWN"),
        (State::UNAVAILABLE, "UNAVAILABLE"),
        (State::EMPTY, "EMPTY"),
        (State::PRESENT, "PRESENT"),
        (State::ATRMATCH, "ATRMATCH"),
        (State::EXCLUSIVE, "EXCLUSIVE"),
        (State::INUSE, "INUSE"),
        (State::MUTE, "MUTE"),
        (State::UNPOWERED, "UNPOWERED"),
    ];
    let names: Vec<&str> = NAMES
        .iter()
        .filter(|(f, _)| state.contains(*f))
        .map(|(_, n)| *n)
        .collect();
    if names.is_empty() {
        "UNAWARE".into()
    } else {
        names.join("|")
    }
}

fn pcsc_err(what: &str, e: Error) -> String {
    format!("{what}: {e} ({e:?})")
}

/// Establishes a context, retrying while pcscd is not (yet) running.
pub fn establish(deadline: Deadline) -> Result<Context, String> {
    loop {
        match Context::establish(Scope::User) {
            Ok(ctx) => return Ok(ctx),
            Err(e) => {
                if deadline.remaining().is_none() {
                    return Err(pcsc_err("SCardEstablishContext", e));
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

/// All reader names; an empty list when there are none.
pub fn readers(ctx: &Context) -> Result<Vec<String>, String> {
    match ctx.list_readers_owned() {
        Ok(names) => Ok(names
            .into_iter()
            .map(|n| n.to_string_lossy().into_owned())
            .collect()),
        Err(Error::NoReadersAvailable) => Ok(Vec::new()),
        Err(e) => Err(pcsc_err("SCardListReaders", e)),
    }
}

/// Reader names containing `filter`.
pub fn matching(ctx: &Context, filter: &str) -> Result<Vec<String>, String> {
    Ok(readers(ctx)?
        .into_iter()
        .filter(|r| r.contains(filter))
        .collect())
}

/// Blocks until the reader list changes or a short slice of time passed,
/// using the PnP pseudo reader of SCardGetStatusChange.
struct ListWatcher {
    pnp: [ReaderState; 1],
}

impl ListWatcher {
    fn new() -> Self {
        ListWatcher {
            pnp: [ReaderState::new(pcsc::PNP_NOTIFICATION(), State::UNAWARE)],
        }
    }

    fn wait(&mut self, ctx: &Context, deadline: Deadline) -> Result<(), String> {
        let slice = deadline
            .remaining()
            .map_or(Duration::ZERO, |r| r.min(POLL_SLICE));
        match ctx.get_status_change(slice, &mut self.pnp) {
            Ok(()) => {
                self.pnp[0].sync_current_state();
                Ok(())
            }
            Err(Error::Timeout) => Ok(()),
            // pcscd drops the PnP waiter while a reader is being (re)initialised
            Err(Error::UnknownReader | Error::ReaderUnavailable) => {
                std::thread::sleep(Duration::from_millis(10));
                Ok(())
            }
            Err(e) => Err(pcsc_err("SCardGetStatusChange(PnP)", e)),
        }
    }
}

/// Waits until some reader matches `filter`; returns its name.
pub fn wait_reader(ctx: &Context, filter: &str, deadline: Deadline) -> Result<String, String> {
    let mut watcher = ListWatcher::new();
    loop {
        if let Some(first) = matching(ctx, filter)?.into_iter().next() {
            return Ok(first);
        }
        if deadline.remaining().is_none() {
            return Err(format!(
                "no reader matching {filter:?} appeared; readers: {:?}",
                readers(ctx).unwrap_or_default()
            ));
        }
        watcher.wait(ctx, deadline)?;
    }
}

/// Waits until no reader matches `filter`.
pub fn wait_gone(ctx: &Context, filter: &str, deadline: Deadline) -> Result<(), String> {
    let mut watcher = ListWatcher::new();
    loop {
        let left = matching(ctx, filter)?;
        if left.is_empty() {
            return Ok(());
        }
        if deadline.remaining().is_none() {
            return Err(format!("reader(s) still listed: {left:?}"));
        }
        watcher.wait(ctx, deadline)?;
    }
}

/// The current state and ATR of `reader`.
pub fn reader_state(ctx: &Context, reader: &str) -> Result<(State, Vec<u8>), String> {
    let name = CString::new(reader).map_err(|_| "reader name contains NUL".to_string())?;
    let mut rs = [ReaderState::new(name, State::UNAWARE)];
    ctx.get_status_change(Duration::ZERO, &mut rs)
        .map_err(|e| pcsc_err("SCardGetStatusChange", e))?;
    Ok((rs[0].event_state(), rs[0].atr().to_vec()))
}

fn card_reached(state: State, present: bool) -> bool {
    if present {
        state.contains(State::PRESENT) && !state.contains(State::MUTE)
    } else {
        state.contains(State::EMPTY)
    }
}

/// Waits with SCardGetStatusChange until `reader` holds a card
/// (`present`) or is empty, printing each state change as an `EVENT`
/// relative to `origin`. Returns the final ATR.
pub fn wait_card(
    ctx: &Context,
    reader: &str,
    present: bool,
    origin: &Origin,
    deadline: Deadline,
) -> Result<Vec<u8>, String> {
    let name = CString::new(reader).map_err(|_| "reader name contains NUL".to_string())?;
    let mut rs = [ReaderState::new(name.clone(), State::UNAWARE)];
    let mut last = State::UNAWARE;
    loop {
        let Some(left) = deadline.remaining() else {
            let status = if last.intersects(State::EMPTY | State::PRESENT) {
                ""
            } else {
                " (the driver never reported the slot's status)"
            };
            return Err(format!(
                "timeout waiting for the card to be {}; last state {}{status}",
                if present { "present" } else { "absent" },
                state_flags(last)
            ));
        };
        let gone = || {
            Err(format!(
                "reader {reader:?} disappeared while waiting for a card event"
            ))
        };
        // waits in slices: a reader that vanishes is not always reported as a state change
        match ctx.get_status_change(left.min(POLL_SLICE), &mut rs) {
            Ok(()) => {}
            Err(Error::Timeout) => {
                if !readers(ctx)?.iter().any(|r| r == reader) {
                    return gone();
                }
                continue;
            }
            Err(Error::UnknownReader) => return gone(),
            Err(e) => return Err(pcsc_err("SCardGetStatusChange", e)),
        }
        let state = rs[0].event_state();
        last = state;
        emit(&format!(
            "EVENT {:.1} {}",
            origin.elapsed_ms(),
            state_flags(state)
        ));
        if state.intersects(State::UNKNOWN | State::IGNORE)
            || !readers(ctx)?.iter().any(|r| r == reader)
        {
            return gone();
        }
        if card_reached(state, present) {
            return Ok(rs[0].atr().to_vec());
        }
        if state.intersects(State::EMPTY | State::PRESENT) {
            rs[0].sync_current_state();
        } else {
            // The reader is still being initialised (no slot status yet).
            // pcsc-lite reports a card as a change only against a known
            // EMPTY/PRESENT state, so ask again as UNAWARE, which answers at once.
            rs = [ReaderState::new(name.clone(), State::UNAWARE)];
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// Writes the trigger line; returns the moment just before the write.
pub fn fire(trigger: &Trigger) -> Result<Origin, String> {
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&trigger.path)
        .map_err(|e| format!("cannot open trigger file {}: {e}", trigger.path))?;
    let origin = Origin::Instant(Instant::now());
    f.write_all(format!("{}\n", trigger.text).as_bytes())
        .map_err(|e| format!("cannot write trigger file {}: {e}", trigger.path))?;
    Ok(origin)
}

/// Connects in shared mode with T=0 or T=1.
pub fn connect(ctx: &Context, reader: &str) -> Result<Card, String> {
    let name = CString::new(reader).map_err(|_| "reader name contains NUL".to_string())?;
    ctx.connect(&name, ShareMode::Shared, Protocols::T0 | Protocols::T1)
        .map_err(|e| pcsc_err("SCardConnect", e))
}

/// Names the protocol the card was connected with.
pub fn protocol_name(card: &Card) -> String {
    match card.status2_owned().map(|s| s.protocol2()) {
        Ok(Some(pcsc::Protocol::T0)) => "T=0".into(),
        Ok(Some(pcsc::Protocol::T1)) => "T=1".into(),
        Ok(Some(pcsc::Protocol::RAW)) => "RAW".into(),
        Ok(None) => "none".into(),
        Err(e) => pcsc_err("SCardStatus", e),
    }
}

/// One SCardTransmit; returns the raw response.
pub fn transmit(card: &Card, command: &[u8]) -> Result<Vec<u8>, String> {
    let mut buf = vec![0u8; pcsc::MAX_BUFFER_SIZE_EXTENDED];
    card.transmit(command, &mut buf)
        .map(<[u8]>::to_vec)
        .map_err(|e| pcsc_err(&format!("SCardTransmit({})", hex::format(command)), e))
}

/// Sends `command` and its T=0 follow-ups (GET RESPONSE, corrected Le);
/// returns the assembled response (data + final status word).
pub fn exchange(card: &Card, command: &[u8]) -> Result<Assembled, String> {
    let mut assembled = Assembled::default();
    let mut next = command.to_vec();
    for _ in 0..64 {
        let resp = transmit(card, &next)?;
        match follow_up(&next, &resp) {
            Next::Done => {
                assembled.push(&resp)?;
                return Ok(assembled);
            }
            Next::Send(cmd) => {
                // a 61xx answer carries no data; 6Cxx replaces the answer entirely
                if resp.first() == Some(&0x6C) {
                    assembled = Assembled::default();
                }
                next = cmd;
            }
        }
    }
    Err(format!(
        "more than 64 follow-up commands for {}",
        hex::format(command)
    ))
}

/// Checks a final status word against an expectation.
pub fn check_sw(exp: &Expectation, resp: &Assembled) -> Result<(), String> {
    match resp.sw() {
        Some(sw) if exp.accepts(sw) => Ok(()),
        Some(sw) => Err(format!(
            "{}: status word {} does not start with {}",
            hex::format(&exp.command),
            hex::format(&sw),
            hex::format(&exp.sw_prefix)
        )),
        None => Err(format!("{}: empty response", hex::format(&exp.command))),
    }
}

/// Disconnects, leaving the card powered.
pub fn disconnect(card: Card) -> Result<(), String> {
    card.disconnect(Disposition::LeaveCard)
        .map_err(|(_, e)| pcsc_err("SCardDisconnect", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_are_named() {
        assert_eq!(state_flags(State::UNAWARE), "UNAWARE");
        assert_eq!(
            state_flags(State::CHANGED | State::PRESENT | State::INUSE),
            "CHANGED|PRESENT|INUSE"
        );
        assert_eq!(state_flags(State::EMPTY), "EMPTY");
    }

    #[test]
    fn card_states() {
        assert!(card_reached(State::CHANGED | State::PRESENT, true));
        assert!(!card_reached(State::PRESENT | State::MUTE, true));
        assert!(!card_reached(State::EMPTY, true));
        assert!(card_reached(State::CHANGED | State::EMPTY, false));
        assert!(!card_reached(State::PRESENT, false));
    }

    #[test]
    fn origin_from_epoch() {
        let now = epoch_ms() as u64;
        let elapsed = Origin::EpochMs(now - 1500).elapsed_ms();
        assert!((1500.0..60_000.0).contains(&elapsed), "{elapsed}");
    }

    #[test]
    fn fire_writes_one_line() {
        let path = std::env::temp_dir().join(format!("e2e-client-trigger-{}", std::process::id()));
        std::fs::write(&path, "first\n").unwrap();
        let t = Trigger {
            path: path.to_string_lossy().into_owned(),
            text: "E2E REQ 7 card-remove".into(),
        };
        fire(&t).unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "first\nE2E REQ 7 card-remove\n"
        );
        std::fs::remove_file(&path).unwrap();
        assert!(fire(&Trigger {
            path: "/nonexistent/dir/x".into(),
            text: "y".into()
        })
        .is_err());
    }
}
