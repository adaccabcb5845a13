//! The one path every CCID command takes: allocate `bSeq`, write the
//! command, wait for the response addressed to this `(bSlot, bSeq)`, check
//! its message type, and honour time extensions within a bound.
//!
//! Bulk-IN is read by whichever waiting thread gets there first (a
//! leader/follower scheme): the reader routes every frame it receives to the
//! command it answers, so commands on different slots run in parallel without
//! a dedicated thread, and a frame is never handed to the wrong command.
//! Zero-length packets, stale answers (a `bSeq` nobody waits for) and frames
//! for slots that do not exist are dropped and logged.

use crate::error::{Error, Result};
use crate::logging;
use crate::proto::message::{
    split_frames, Command, CommandStatus, FrameError, Header, MessageType, Response, HEADER_LEN,
    MAX_MESSAGE_LEN,
};
use crate::transport::{Transport, TransportError};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// How long one bulk-OUT write may take.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// The longest single bulk-IN read; a reader waiting longer reads again, so
/// that a removed device or a stop is noticed within this time.
const READ_SLICE: Duration = Duration::from_millis(500);

/// Limits that bound one exchange.
#[derive(Debug, Clone, Copy)]
pub struct ExchangeLimits {
    /// Time allowed for the answer (and for each time extension, multiplied
    /// by the reader's `bError` factor).
    pub timeout: Duration,
    /// Hard cap on the total time of the exchange, time extensions included.
    pub cap: Duration,
}

impl ExchangeLimits {
    /// The same timeout for the answer, capped at `cap`.
    pub fn new(timeout: Duration, cap: Duration) -> Self {
        ExchangeLimits {
            timeout: timeout.min(cap),
            cap,
        }
    }
}

#[derive(Default)]
struct Waiter {
    frames: VecDeque<std::result::Result<Vec<u8>, FrameError>>,
    /// Frames for this slot with another bSeq arrived while waiting.
    mismatches: u32,
}

#[derive(Default)]
struct MuxState {
    waiters: HashMap<(u8, u8), Waiter>,
    reading: bool,
    /// Set once the device is gone: every waiter fails.
    gone: bool,
    dropped: u64,
}

/// Routes bulk-IN frames to the commands waiting for them.
pub struct Exchanger {
    transport: Arc<dyn Transport>,
    slot_count: usize,
    seq: AtomicU8,
    state: Mutex<MuxState>,
    cond: Condvar,
    gone: AtomicBool,
    /// Lun of slot 0, for logs.
    lun_base: u64,
    read_buf_len: usize,
    /// The bulk-IN buffer, used by whichever thread is reading.
    read_buf: Mutex<Vec<u8>>,
    /// Set for ICCD tokens: commands go over the control pipe.
    iccd: Option<super::iccd::Version>,
}

impl std::fmt::Debug for Exchanger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exchanger")
            .field("slots", &self.slot_count)
            .finish()
    }
}

impl Exchanger {
    /// An exchanger over `transport` for a reader with `slot_count` slots.
    pub fn new(transport: Arc<dyn Transport>, slot_count: usize, lun_base: u64) -> Self {
        let packet = usize::from(transport.info().bulk_in_packet_size.max(8));
        let read_buf_len = MAX_MESSAGE_LEN.div_ceil(packet) * packet;
        Exchanger {
            transport,
            slot_count,
            seq: AtomicU8::new(0),
            state: Mutex::new(MuxState::default()),
            cond: Condvar::new(),
            gone: AtomicBool::new(false),
            lun_base,
            read_buf_len,
            read_buf: Mutex::new(Vec::new()),
            iccd: None,
        }
    }

    /// Carries commands over the control pipe (ICCD version A or B).
    pub fn with_iccd(mut self, version: Option<super::iccd::Version>) -> Self {
        self.iccd = version;
        self
    }

    /// The transport.
    pub fn transport(&self) -> &Arc<dyn Transport> {
        &self.transport
    }

    /// Whether the device is gone; then no I/O is attempted any more.
    pub fn is_gone(&self) -> bool {
        self.gone.load(Ordering::Acquire) || self.transport.is_gone()
    }

    /// Marks the device gone and wakes every waiter.
    pub fn mark_gone(&self) {
        self.gone.store(true, Ordering::Release);
        let mut st = self.lock();
        st.gone = true;
        drop(st);
        self.cond.notify_all();
    }

    /// Frames dropped so far (stale, misaddressed, zero-length).
    pub fn dropped_frames(&self) -> u64 {
        self.lock().dropped
    }

    fn lock(&self) -> MutexGuard<'_, MuxState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Allocates the next sequence number.
    pub fn next_seq(&self) -> u8 {
        self.seq.fetch_add(1, Ordering::Relaxed)
    }

    /// Sends `cmd` to `slot` and returns its checked response: right slot,
    /// right `bSeq`, the message type the command expects, time extensions
    /// waited out. A failed command status is returned as a response; the
    /// caller decides what `bError` means for its command.
    pub fn exchange(&self, slot: u8, cmd: &Command, limits: ExchangeLimits) -> Result<Response> {
        if self.is_gone() {
            return Err(Error::NoDevice);
        }
        if usize::from(slot) >= self.slot_count {
            return Err(Error::InvalidArgument("slot index"));
        }
        let seq = self.next_seq();
        if let Some(version) = self.iccd {
            let iccd = super::iccd::Iccd {
                version,
                transport: self.transport.as_ref(),
                interface: u16::from(self.transport.info().interface_number),
                deadline: Instant::now() + limits.timeout,
            };
            logging::comm(
                "->",
                self.lun_base + u64::from(slot),
                &cmd.encode(slot, seq),
            );
            let _serial = self.lock();
            return iccd.exchange(slot, seq, cmd).map_err(|e| match e {
                Error::NoDevice => {
                    drop(_serial);
                    self.mark_gone();
                    Error::NoDevice
                }
                e => e,
            });
        }
        // bSeq unique among the commands in flight on this device: a stray
        // or late frame can then never carry the header of another slot's
        // pending answer.
        let seq = {
            let mut st = self.lock();
            let mut s = seq;
            for _ in 0..=u8::MAX {
                if !st.waiters.keys().any(|(_, q)| *q == s) {
                    break;
                }
                s = self.next_seq();
            }
            st.waiters.insert((slot, s), Waiter::default());
            s
        };
        let frame = cmd.encode(slot, seq);
        let result = self.exchange_registered(slot, seq, cmd, &frame, limits);
        self.lock().waiters.remove(&(slot, seq));
        result
    }

    fn exchange_registered(
        &self,
        slot: u8,
        seq: u8,
        cmd: &Command,
        frame: &[u8],
        limits: ExchangeLimits,
    ) -> Result<Response> {
        let lun = self.lun_base + u64::from(slot);
        log_out(lun, frame);
        if let Err(e) = self.transport.bulk_out(frame, WRITE_TIMEOUT) {
            return Err(self.transport_error(e));
        }
        let expected = cmd.message_type().expected_response();
        let start = Instant::now();
        let hard_deadline = start + limits.cap;
        let mut deadline = (start + limits.timeout).min(hard_deadline);
        loop {
            let raw = self.wait_frame(slot, seq, deadline)?;
            let resp = Response::parse(&raw).map_err(|e| {
                log::error!("invalid frame from the reader: {e}");
                Error::Frame(e)
            })?;
            if resp.status.command() == CommandStatus::TimeExtension {
                // CCID §6.2.7: the reader asks for more time; bError is the
                // multiplier of the waiting time. Bounded by the hard cap.
                let factor = u32::from(resp.error.0.max(1));
                let now = Instant::now();
                if now >= hard_deadline {
                    log::error!(
                        "time extension beyond the {} ms cap",
                        limits.cap.as_millis()
                    );
                    return Err(Error::Timeout {
                        ms: limits.cap.as_millis() as u64,
                    });
                }
                deadline = (now + limits.timeout.saturating_mul(factor)).min(hard_deadline);
                log::debug!(target: "ccid::comm", "time extension x{factor} requested");
                continue;
            }
            if let Some(exp) = expected {
                if resp.message_type != exp
                    && resp.message_type == MessageType::RDR_TO_PC_SLOT_STATUS
                    && resp.status.command() == CommandStatus::Failed
                {
                    // Some readers refuse a command they do not know with a
                    // failed SlotStatus instead of the expected message:
                    // the caller sees a failed command.
                    log::debug!(
                        target: "ccid::comm",
                        "{:?} refused with a failed SlotStatus",
                        cmd.message_type()
                    );
                    return Ok(resp);
                }
                if resp.message_type != exp {
                    log::error!(
                        "unexpected answer {:?} to {:?}",
                        resp.message_type,
                        cmd.message_type()
                    );
                    return Err(Error::Unexpected {
                        what: "bMessageType",
                        expected: exp.0.into(),
                        got: resp.message_type.0.into(),
                    });
                }
            }
            return Ok(resp);
        }
    }

    fn transport_error(&self, e: TransportError) -> Error {
        if e == TransportError::NoDevice {
            self.mark_gone();
            return Error::NoDevice;
        }
        Error::Transport(e)
    }

    /// Waits for the frame addressed to `(slot, seq)`, reading bulk-IN when
    /// no other thread is.
    fn wait_frame(&self, slot: u8, seq: u8, deadline: Instant) -> Result<Vec<u8>> {
        let mut st = self.lock();
        loop {
            if let Some(w) = st.waiters.get_mut(&(slot, seq)) {
                if let Some(f) = w.frames.pop_front() {
                    return f.map_err(|e| {
                        log::error!("invalid frame from the reader: {e}");
                        Error::Frame(e)
                    });
                }
            }
            if st.gone {
                return Err(Error::NoDevice);
            }
            let now = Instant::now();
            if now >= deadline {
                let mismatches = st.waiters.get(&(slot, seq)).map_or(0, |w| w.mismatches);
                if mismatches > 0 {
                    log::error!(
                        "no answer with bSeq {seq} for slot {slot}; {mismatches} frame(s) with another bSeq dropped"
                    );
                    return Err(Error::Unexpected {
                        what: "bSeq",
                        expected: seq.into(),
                        got: 0,
                    });
                }
                return Err(Error::Timeout { ms: 0 });
            }
            if !st.reading {
                st.reading = true;
                drop(st);
                let slice = (deadline - now)
                    .min(READ_SLICE)
                    .max(Duration::from_millis(1));
                let outcome = self.read_and_route(slice);
                st = self.lock();
                st.reading = false;
                self.cond.notify_all();
                if let Err(e) = outcome {
                    if e == Error::NoDevice {
                        st.gone = true;
                        drop(st);
                        self.gone.store(true, Ordering::Release);
                        self.cond.notify_all();
                        return Err(Error::NoDevice);
                    }
                    if !matches!(e, Error::Transport(TransportError::Timeout)) {
                        return Err(e);
                    }
                }
            } else {
                let (g, _) = self
                    .cond
                    .wait_timeout(st, deadline - now)
                    .unwrap_or_else(|p| p.into_inner());
                st = g;
            }
        }
    }

    /// Reads one bulk-IN transfer and routes its frames.
    fn read_and_route(&self, timeout: Duration) -> Result<()> {
        // Only the reading thread takes this lock: it never waits.
        let mut guard = self.read_buf.lock().unwrap_or_else(|p| p.into_inner());
        if guard.len() != self.read_buf_len {
            guard.resize(self.read_buf_len, 0);
        }
        let buf = &mut *guard;
        let n = match self.transport.bulk_in(buf, timeout) {
            Ok(n) => n,
            Err(TransportError::NoDevice) => return Err(Error::NoDevice),
            Err(e) => return Err(Error::Transport(e)),
        };
        let data = buf.get(..n).unwrap_or(&[]);
        if data.is_empty() {
            log::debug!(target: "ccid::comm", "zero-length packet ignored");
            self.lock().dropped += 1;
            return Ok(());
        }
        let (frames, missing) = split_frames(data);
        let mut st = self.lock();
        for (i, f) in frames.iter().enumerate() {
            let incomplete = missing.is_some() && i + 1 == frames.len();
            self.route(&mut st, f, incomplete);
        }
        if frames.is_empty() {
            // Shorter than a header: nobody can be identified.
            self.route_unaddressed(&mut st, data);
        }
        Ok(())
    }

    fn route(&self, st: &mut MuxState, frame: &[u8], incomplete: bool) {
        let Ok(h) = Header::parse(frame) else {
            self.route_unaddressed(st, frame);
            return;
        };
        logging::comm("<-", self.lun_base + u64::from(h.slot), frame);
        if usize::from(h.slot) >= self.slot_count {
            log::error!(
                "frame for slot {} but the reader has {} slot(s): dropped",
                h.slot,
                self.slot_count
            );
            st.dropped += 1;
            self.note_mismatch_single(st);
            return;
        }
        if let Some(w) = st.waiters.get_mut(&(h.slot, h.seq)) {
            if incomplete {
                w.frames.push_back(Err(FrameError::LengthMismatch {
                    declared: h.length,
                    actual: frame.len().saturating_sub(HEADER_LEN),
                }));
            } else {
                w.frames.push_back(Ok(frame.to_vec()));
            }
            return;
        }
        st.dropped += 1;
        let mut matched_slot = false;
        for ((s, _), w) in st.waiters.iter_mut() {
            if *s == h.slot {
                w.mismatches += 1;
                matched_slot = true;
            }
        }
        log::info!(
            "stale or unexpected frame (bSlot {}, bSeq {}, {:?}) dropped{}",
            h.slot,
            h.seq,
            MessageType(h.message_type),
            if matched_slot {
                ""
            } else {
                ": nobody waits for it"
            }
        );
    }

    fn route_unaddressed(&self, st: &mut MuxState, frame: &[u8]) {
        logging::comm("<-", self.lun_base, frame);
        st.dropped += 1;
        log::error!(
            "frame of {} bytes is shorter than a CCID header",
            frame.len()
        );
        // With exactly one command in flight the frame can only be its
        // answer: fail that command now rather than at its timeout.
        if st.waiters.len() == 1 {
            if let Some(w) = st.waiters.values_mut().next() {
                w.frames
                    .push_back(Err(FrameError::Short { len: frame.len() }));
            }
        }
    }

    fn note_mismatch_single(&self, st: &mut MuxState) {
        if st.waiters.len() == 1 {
            if let Some(w) = st.waiters.values_mut().next() {
                w.mismatches += 1;
            }
        }
    }
}

/// INS codes whose command data carries a PIN: VERIFY, CHANGE REFERENCE
/// DATA, RESET RETRY COUNTER.
const PIN_INS: [u8; 3] = [0x20, 0x24, 0x2C];

/// The bytes of an outgoing frame that must never reach a log: the PIN
/// template of a Secure command, and the data of PIN-carrying APDUs (sent
/// as an APDU or inside a T=1 I-block).
pub fn sensitive_range(frame: &[u8]) -> Option<std::ops::Range<usize>> {
    let data = frame.get(HEADER_LEN..)?;
    let start = match MessageType(*frame.first()?) {
        MessageType::PC_TO_RDR_SECURE => {
            // bPINOperation, the fixed PIN-structure fields, then the
            // message indexes, prologue and APDU template.
            HEADER_LEN + 15 + if data.first() == Some(&0) { 5 } else { 0 }
        }
        MessageType::PC_TO_RDR_XFR_BLOCK => {
            if data.len() > 5 && PIN_INS.contains(&data[1]) {
                HEADER_LEN + 5
            } else if data.len() > 8 && data[1] & 0x80 == 0 && PIN_INS.contains(&data[4]) {
                HEADER_LEN + 8
            } else {
                return None;
            }
        }
        _ => return None,
    };
    (start < frame.len()).then_some(start..frame.len())
}

/// Logs an outgoing frame at COMM level with its sensitive bytes masked.
fn log_out(lun: u64, frame: &[u8]) {
    match sensitive_range(frame) {
        None => logging::comm("->", lun, frame),
        Some(r) => {
            if logging::level().contains(crate::config::LogLevel::COMM) {
                let shown = frame.get(..r.start).unwrap_or(frame);
                let masked = "** ".repeat(r.len());
                log::debug!(target: "ccid::comm", "-> lun: {lun:X}, {}{masked}", logging::hex(shown));
            }
        }
    }
}
