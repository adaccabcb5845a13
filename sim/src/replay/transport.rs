//! The transport a replayed driver talks to: every frame the driver writes
//! is compared with the recorded command it stands for, and answered with
//! the reader frames recorded for that command.

use super::differences::{self, Difference};
use super::plan::{complete, HostFrame, Recorded, Silence, StepKind};
use ccid::proto::message::{MessageType, HEADER_LEN};
use ccid::transport::{ControlSetup, Transport, TransportError, UsbInfo, REQUEST_GET_DATA_RATES};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

/// How a frame compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The driver sent the recorded command (bSeq mapped by the offset).
    Matched,
    /// The driver sent a command in place of the recorded one, but it
    /// differs.
    Differs,
    /// A recorded command the driver did not send.
    Missing,
    /// A command the driver sent that the trace does not have.
    Extra,
    /// A command sent to put the driver in the state the trace starts in
    /// (opening the reader, powering the card before an excerpt); not
    /// compared.
    Synthetic,
    /// A command sent after the recorded excerpt ends; not compared.
    BeyondExcerpt,
}

impl Outcome {
    /// Whether this outcome is a divergence.
    pub fn is_divergence(self) -> bool {
        matches!(self, Outcome::Differs | Outcome::Missing | Outcome::Extra)
    }

    /// A short name.
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Matched => "matched",
            Outcome::Differs => "differs",
            Outcome::Missing => "not sent",
            Outcome::Extra => "extra",
            Outcome::Synthetic => "synthetic",
            Outcome::BeyondExcerpt => "beyond excerpt",
        }
    }
}

/// The comparison of one frame.
#[derive(Debug, Clone)]
pub struct FrameCheck {
    /// The reader (device key) concerned.
    pub reader: u32,
    /// Trace line of the recorded frame, or of the step for driver-only
    /// frames.
    pub line: usize,
    /// How it compared.
    pub outcome: Outcome,
    /// What was compared and why it diverges.
    pub detail: String,
    /// The documented difference that explains a divergence.
    pub difference: Option<&'static Difference>,
}

/// What the transport does when the driver reads and nothing is queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OnEmpty {
    /// The reader stays silent: the read times out after its timeout.
    Timeout,
    /// The excerpt ends: the read fails at once.
    NotRecorded,
}

/// The step being executed.
#[derive(Debug, Clone)]
pub(crate) struct Group {
    pub kind: StepKind,
    pub hosts: Vec<usize>,
    pub line: usize,
    /// Frames are put-in-state commands, not compared.
    pub synthetic: bool,
    /// No later step of this reader in the segment: frames past the
    /// recorded ones are beyond the excerpt.
    pub last_in_segment: bool,
}

struct State {
    rec: Recorded,
    consumed: Vec<bool>,
    group: Option<Group>,
    /// Message types the driver sent in the current step.
    sent_types: Vec<u8>,
    offset: Option<u8>,
    offset_seg: usize,
    unanchored: bool,
    queue: VecDeque<Vec<u8>>,
    on_empty: OnEmpty,
    checks: Vec<FrameCheck>,
    last_icc: u8,
    atr: Vec<u8>,
    data_rates: Option<Vec<u8>>,
    zlps_delivered: usize,
    cut_answers: usize,
    joined_answers: usize,
    position: usize,
}

/// A replayed reader.
pub struct ReplayTransport {
    key: u32,
    info: UsbInfo,
    state: Mutex<State>,
    interrupts: Mutex<VecDeque<Vec<u8>>>,
    int_cond: Condvar,
    gone: AtomicBool,
}

fn same_mod_seq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .enumerate()
            .all(|(i, (x, y))| i == 6 || x == y)
}

/// The name of the field at `offset` of a command.
fn field_name(message_type: u8, offset: usize) -> String {
    match offset {
        0 => "bMessageType".into(),
        1..=4 => "dwLength".into(),
        5 => "bSlot".into(),
        6 => "bSeq".into(),
        7..=9 => match (message_type, offset) {
            (0x62, 7) => "bPowerSelect".into(),
            (0x6F | 0x69, 7) => "bBWI".into(),
            (0x6F | 0x69, _) => "wLevelParameter".into(),
            (0x61, 7) => "bProtocolNum".into(),
            _ => format!("header byte {offset}"),
        },
        n => format!("abData[{}]", n - HEADER_LEN),
    }
}

fn describe(data: &[u8]) -> String {
    let name = data
        .first()
        .and_then(|t| MessageType(*t).name())
        .unwrap_or("unknown message");
    format!("{name} {}", crate::trace::hex_string(data))
}

impl ReplayTransport {
    /// A replayed reader `key` answering from `rec`.
    pub(crate) fn new(
        key: u32,
        info: UsbInfo,
        rec: Recorded,
        atr: Vec<u8>,
        data_rates: Option<Vec<u8>>,
    ) -> Self {
        let n = rec.hosts.len();
        ReplayTransport {
            key,
            info,
            state: Mutex::new(State {
                rec,
                consumed: vec![false; n],
                group: None,
                sent_types: Vec::new(),
                offset: None,
                offset_seg: 0,
                unanchored: false,
                queue: VecDeque::new(),
                on_empty: OnEmpty::Timeout,
                checks: Vec::new(),
                last_icc: 0,
                atr,
                data_rates,
                zlps_delivered: 0,
                cut_answers: 0,
                joined_answers: 0,
                position: 0,
            }),
            interrupts: Mutex::new(VecDeque::new()),
            int_cond: Condvar::new(),
            gone: AtomicBool::new(false),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts a step.
    pub(crate) fn begin(&self, group: Group) {
        let mut st = self.lock();
        st.position = group.line;
        if !group.synthetic {
            if let Some(&h) = group.hosts.first() {
                let seg = st.rec.hosts[h].seg;
                if seg != st.offset_seg {
                    st.offset_seg = seg;
                    st.offset = None;
                }
            }
        }
        st.sent_types.clear();
        st.group = Some(group);
    }

    /// Ends the current step; recorded commands it did not send are
    /// reported with `error` (the operation's failure) when given.
    pub(crate) fn end(&self, error: Option<&str>) {
        let mut st = self.lock();
        let Some(g) = st.group.take() else {
            return;
        };
        for h in g.hosts.clone() {
            if st.consumed[h] {
                continue;
            }
            st.consumed[h] = true;
            st.unanchored = true;
            let frame = st.rec.hosts[h].clone();
            let difference =
                differences::classify_missing(&g.kind, &frame.data, frame.silence, &st.sent_types);
            let mut detail = format!("recorded {} not sent", describe(&frame.data));
            if frame.cut {
                detail.push_str(" (cut in the published trace)");
            }
            if let Some(e) = error {
                detail.push_str(&format!(" (the operation failed: {e})"));
            }
            self.push_check(&mut st, frame.line, Outcome::Missing, detail, difference);
        }
    }

    /// Reports recorded commands that no step reached.
    pub(crate) fn finish(&self) {
        let mut st = self.lock();
        for h in 0..st.consumed.len() {
            if !st.consumed[h] {
                st.consumed[h] = true;
                let f = st.rec.hosts[h].clone();
                let detail = format!(
                    "recorded {} not reached by any operation",
                    describe(&f.data)
                );
                self.push_check(&mut st, f.line, Outcome::Missing, detail, None);
            }
        }
    }

    fn push_check(
        &self,
        st: &mut State,
        line: usize,
        outcome: Outcome,
        detail: String,
        difference: Option<&'static Difference>,
    ) {
        st.checks.push(FrameCheck {
            reader: self.key,
            line,
            outcome,
            detail,
            difference,
        });
    }

    /// The comparisons made so far.
    pub(crate) fn checks(&self) -> Vec<FrameCheck> {
        self.lock().checks.clone()
    }

    /// Zero-length packets handed to the driver, answers that were cut in
    /// the published trace, and answers joined from split reads.
    pub(crate) fn counters(&self) -> (usize, usize, usize) {
        let st = self.lock();
        (st.zlps_delivered, st.cut_answers, st.joined_answers)
    }

    /// The final recorded answer to recorded command `h`, if any.
    pub(crate) fn final_answer(&self, h: usize) -> Option<Vec<u8>> {
        let st = self.lock();
        st.rec
            .hosts
            .get(h)?
            .answers
            .iter()
            .rev()
            .find(|a| a.is_final())
            .map(|a| a.data.clone())
    }

    /// Whether a time-extension frame was recorded for command `h`.
    pub(crate) fn had_time_extension(&self, h: usize) -> bool {
        let st = self.lock();
        st.rec.hosts.get(h).is_some_and(|f| {
            f.answers
                .iter()
                .any(|a| complete(&a.data) && a.data.get(7).is_some_and(|s| s & 0xC0 == 0x80))
        })
    }

    /// The reader is unplugged: every call fails with `NoDevice`.
    pub(crate) fn set_gone(&self) {
        self.gone.store(true, Ordering::SeqCst);
        let _q = self.interrupts.lock().unwrap_or_else(|p| p.into_inner());
        self.int_cond.notify_all();
    }

    /// A new reader is plugged in its place.
    pub(crate) fn replug(&self) {
        self.gone.store(false, Ordering::SeqCst);
        let mut st = self.lock();
        st.queue.clear();
        st.offset = None;
        self.interrupts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }

    /// Queues an interrupt-IN message.
    pub(crate) fn notify(&self, data: Vec<u8>) {
        self.interrupts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push_back(data);
        self.int_cond.notify_all();
    }

    /// Queues the answers of recorded command `host` for a driver frame
    /// with sequence number `seq`.
    fn deliver(&self, st: &mut State, host: &HostFrame, seq: u8) {
        let rs = host.data.get(6).copied().unwrap_or(0);
        for a in &host.answers {
            let mut data = a.data.clone();
            if let Some(s) = data.get_mut(6) {
                *s = s.wrapping_sub(rs).wrapping_add(seq);
            }
            if a.cut {
                st.cut_answers += 1;
            }
            if a.joined {
                st.joined_answers += 1;
            }
            self.learn(st, &data, host.data.first().copied());
            st.queue.push_back(data);
        }
        st.on_empty = match host.silence {
            Silence::NotRecorded => OnEmpty::NotRecorded,
            _ => OnEmpty::Timeout,
        };
    }

    /// Keeps the card state answers show, for made-up answers.
    fn learn(&self, st: &mut State, answer: &[u8], command: Option<u8>) {
        if !complete(answer) {
            return;
        }
        if let Some(s) = answer.get(7) {
            st.last_icc = s & 0x03;
        }
        if command == Some(0x62) && answer.first() == Some(&0x80) && answer.len() > HEADER_LEN {
            st.atr = answer[HEADER_LEN..].to_vec();
        }
    }

    /// Answers a frame without a recorded counterpart: the answers of an
    /// identical recorded command nearest in the trace, else a made-up
    /// answer of the expected type.
    fn answer_by_analogy(&self, st: &mut State, frame: &[u8], allow_silence: bool) -> String {
        let pos = st.position;
        let candidate = st
            .rec
            .hosts
            .iter()
            .filter(|h| same_mod_seq(&h.data, frame))
            .filter(|h| match h.silence {
                Silence::Answered => h
                    .answers
                    .iter()
                    .all(|a| complete(&a.data) || a.data.is_empty()),
                Silence::TimedOut => allow_silence,
                Silence::NotRecorded | Silence::Gone => false,
            })
            .min_by_key(|h| h.line.abs_diff(pos))
            .cloned();
        let seq = frame.get(6).copied().unwrap_or(0);
        if let Some(h) = candidate {
            self.deliver(st, &h, seq);
            return match h.silence {
                Silence::Answered => format!("answered as the same command at line {}", h.line),
                _ => format!("not answered, as the same command at line {}", h.line),
            };
        }
        let answer = self.made_up(st, frame);
        st.queue.push_back(answer);
        st.on_empty = OnEmpty::Timeout;
        "answered with a made-up reply".into()
    }

    /// An answer for a command nothing recorded answers: the card state
    /// the trace shows (status, ATR), parameters accepted as sent, a T=1
    /// S-request acknowledged; anything else is refused as not supported.
    fn made_up(&self, st: &State, frame: &[u8]) -> Vec<u8> {
        let t = frame.first().copied().unwrap_or(0);
        let slot = frame.get(5).copied().unwrap_or(0);
        let seq = frame.get(6).copied().unwrap_or(0);
        let data_in = frame.get(HEADER_LEN..).unwrap_or(&[]);
        let (rtype, status, error, specific, data): (u8, u8, u8, u8, Vec<u8>) = match t {
            0x65 => (0x81, st.last_icc, 0, 0, Vec::new()),
            0x62 if !st.atr.is_empty() => (0x80, 0, 0, 0, st.atr.clone()),
            0x62 => (0x80, 0x42, 0xFE, 0, Vec::new()),
            0x63 => (0x81, 0x01, 0, 0, Vec::new()),
            0x61 => (
                0x82,
                st.last_icc,
                0,
                frame.get(7).copied().unwrap_or(0),
                data_in.to_vec(),
            ),
            0x6F if s_request(data_in) => (0x80, st.last_icc, 0, 0, s_response(data_in)),
            t => {
                let r = MessageType(t)
                    .expected_response()
                    .map_or(MessageType::RDR_TO_PC_SLOT_STATUS.0, |m| m.0);
                (r, 0x40 | st.last_icc, 0x00, 0, Vec::new())
            }
        };
        let mut out = vec![rtype];
        out.extend_from_slice(&(data.len() as u32).to_le_bytes());
        out.extend_from_slice(&[slot, seq, status, error, specific]);
        out.extend_from_slice(&data);
        out
    }

    fn bulk_out_locked(&self, st: &mut State, frame: &[u8]) {
        if let Some(t) = frame.first() {
            st.sent_types.push(*t);
        }
        let Some(g) = st.group.clone() else {
            let how = self.answer_by_analogy(st, frame, false);
            let line = st.position;
            self.push_check(
                st,
                line,
                Outcome::Synthetic,
                format!("{} {how}", describe(frame)),
                None,
            );
            return;
        };
        if g.synthetic {
            st.unanchored = true;
            let how = self.answer_by_analogy(st, frame, false);
            self.push_check(
                st,
                g.line,
                Outcome::Synthetic,
                format!("{} {how}", describe(frame)),
                None,
            );
            return;
        }
        let pending: Vec<usize> = g
            .hosts
            .iter()
            .copied()
            .filter(|h| !st.consumed[*h])
            .collect();
        let exact = pending
            .iter()
            .position(|h| same_mod_seq(&st.rec.hosts[*h].data, frame));
        let chosen = match exact {
            Some(pos) => {
                for &skipped in &pending[..pos] {
                    st.consumed[skipped] = true;
                    st.unanchored = true;
                    let f = st.rec.hosts[skipped].clone();
                    let difference =
                        differences::classify_missing(&g.kind, &f.data, f.silence, &st.sent_types);
                    self.push_check(
                        st,
                        f.line,
                        Outcome::Missing,
                        format!("recorded {} not sent", describe(&f.data)),
                        difference,
                    );
                }
                Some((pending[pos], true))
            }
            None => pending
                .first()
                .filter(|h| st.rec.hosts[**h].data.first() == frame.first())
                .map(|h| (*h, false)),
        };
        let Some((h, same)) = chosen else {
            let outcome = if pending.is_empty() && g.last_in_segment {
                Outcome::BeyondExcerpt
            } else {
                Outcome::Extra
            };
            st.unanchored = true;
            let how = self.answer_by_analogy(st, frame, true);
            let difference = differences::classify_extra(&g.kind, frame);
            self.push_check(
                st,
                g.line,
                outcome,
                format!("driver sent {} {how}", describe(frame)),
                difference,
            );
            return;
        };
        st.consumed[h] = true;
        let host = st.rec.hosts[h].clone();
        if host.silence == Silence::Gone {
            // The recording host could not write it: the reader was gone.
            self.push_check(st, host.line, Outcome::Matched, describe(frame), None);
            self.gone.store(true, Ordering::SeqCst);
            return;
        }
        let rs = host.data.get(6).copied().unwrap_or(0);
        let ds = frame.get(6).copied().unwrap_or(0);
        if host.seg != st.offset_seg {
            st.offset_seg = host.seg;
            st.offset = None;
        }
        let mut seq_note = None;
        match st.offset {
            None => st.offset = Some(ds.wrapping_sub(rs)),
            Some(o) if rs.wrapping_add(o) == ds => {}
            Some(o) => {
                if !st.unanchored {
                    seq_note = Some(format!(
                        "bSeq {ds:02X}, expected {:02X} (recorded {rs:02X} plus the offset {o})",
                        rs.wrapping_add(o)
                    ));
                }
                st.offset = Some(ds.wrapping_sub(rs));
            }
        }
        st.unanchored = false;
        if same && seq_note.is_none() {
            let lines: Vec<String> = host.answers.iter().map(|a| a.line.to_string()).collect();
            let answered = if lines.is_empty() {
                String::new()
            } else {
                format!(" (answer at line {})", lines.join(", "))
            };
            self.push_check(
                st,
                host.line,
                Outcome::Matched,
                format!("{}{answered}", describe(frame)),
                None,
            );
        } else if same {
            let prev_seq = h
                .checked_sub(1)
                .and_then(|p| st.rec.hosts.get(p))
                .and_then(|p| p.data.get(6).copied());
            let difference = differences::classify_seq(rs, prev_seq);
            let detail = seq_note.unwrap_or_default();
            self.push_check(st, host.line, Outcome::Differs, detail, difference);
        } else {
            let mut detail = frame_difference(&host.data, frame);
            if host.cut {
                detail.push_str(" (the recorded line is cut in the published trace)");
            }
            let difference = differences::classify_differs(&host.data, frame);
            self.push_check(st, host.line, Outcome::Differs, detail, difference);
        }
        self.deliver(st, &host, ds);
    }
}

/// Whether `block` is a T=1 S-block request with a correct LRC.
fn s_request(block: &[u8]) -> bool {
    super::plan::t1_shaped(block) && block.get(1).is_some_and(|pcb| pcb & 0xE0 == 0xC0)
}

/// The S-block response to the S-block request `block`, same INF.
fn s_response(block: &[u8]) -> Vec<u8> {
    let mut out = block.to_vec();
    if let Some(pcb) = out.get_mut(1) {
        *pcb |= 0x20;
    }
    out.pop();
    let lrc = out.iter().fold(0u8, |a, b| a ^ b);
    out.push(lrc);
    out
}

/// Where two commands first differ.
fn frame_difference(recorded: &[u8], driver: &[u8]) -> String {
    let t = recorded.first().copied().unwrap_or(0);
    let first = recorded
        .iter()
        .zip(driver)
        .enumerate()
        .find(|(i, (a, b))| *i != 6 && a != b)
        .map(|(i, _)| i);
    let at = match first {
        Some(i) => format!(
            "{} recorded {:02X}, driver {:02X}",
            field_name(t, i),
            recorded[i],
            driver[i]
        ),
        None => format!(
            "length recorded {}, driver {}",
            recorded.len(),
            driver.len()
        ),
    };
    let malformed = if complete(recorded) {
        String::new()
    } else {
        " (the recorded frame is not a well-formed CCID message)".into()
    };
    format!(
        "{at}{malformed}: recorded {}, driver {}",
        crate::trace::hex_string(recorded),
        crate::trace::hex_string(driver)
    )
}

impl Transport for ReplayTransport {
    fn info(&self) -> &UsbInfo {
        &self.info
    }

    fn bulk_out(&self, data: &[u8], _timeout: Duration) -> Result<(), TransportError> {
        if self.gone.load(Ordering::SeqCst) {
            return Err(TransportError::NoDevice);
        }
        let mut st = self.lock();
        self.bulk_out_locked(&mut st, data);
        if self.gone.load(Ordering::SeqCst) {
            drop(st);
            self.set_gone();
            return Err(TransportError::NoDevice);
        }
        Ok(())
    }

    fn bulk_in(&self, buf: &mut [u8], timeout: Duration) -> Result<usize, TransportError> {
        if self.gone.load(Ordering::SeqCst) {
            return Err(TransportError::NoDevice);
        }
        let mut st = self.lock();
        if let Some(t) = st.queue.pop_front() {
            let Some(dst) = buf.get_mut(..t.len()) else {
                return Err(TransportError::Overflow);
            };
            dst.copy_from_slice(&t);
            if t.is_empty() {
                st.zlps_delivered += 1;
            }
            return Ok(t.len());
        }
        match st.on_empty {
            OnEmpty::NotRecorded => Err(TransportError::Io(
                "the answer is not in the recorded excerpt".into(),
            )),
            OnEmpty::Timeout => {
                drop(st);
                std::thread::sleep(timeout);
                Err(TransportError::Timeout)
            }
        }
    }

    fn interrupt_in(&self, buf: &mut [u8], timeout: Duration) -> Result<usize, TransportError> {
        let mut q = self.interrupts.lock().unwrap_or_else(|p| p.into_inner());
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if self.gone.load(Ordering::SeqCst) {
                return Err(TransportError::NoDevice);
            }
            if let Some(m) = q.pop_front() {
                let n = m.len().min(buf.len());
                buf[..n].copy_from_slice(&m[..n]);
                return Ok(n);
            }
            let now = std::time::Instant::now();
            if now >= deadline {
                return Err(TransportError::Timeout);
            }
            q = self
                .int_cond
                .wait_timeout(q, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    fn control_in(
        &self,
        setup: ControlSetup,
        buf: &mut [u8],
        _timeout: Duration,
    ) -> Result<usize, TransportError> {
        if self.gone.load(Ordering::SeqCst) {
            return Err(TransportError::NoDevice);
        }
        if setup.request_type == 0x80 && setup.request == 0 {
            // Standard GET_STATUS: the device is there.
            let n = buf.len().min(2);
            buf[..n].fill(0);
            return Ok(n);
        }
        if setup.request == REQUEST_GET_DATA_RATES {
            if let Some(rates) = self.lock().data_rates.clone() {
                let n = rates.len().min(buf.len());
                buf[..n].copy_from_slice(&rates[..n]);
                return Ok(n);
            }
        }
        Err(TransportError::Pipe)
    }

    fn control_out(
        &self,
        _setup: ControlSetup,
        _data: &[u8],
        _timeout: Duration,
    ) -> Result<usize, TransportError> {
        if self.gone.load(Ordering::SeqCst) {
            return Err(TransportError::NoDevice);
        }
        Err(TransportError::Pipe)
    }

    fn is_gone(&self) -> bool {
        self.gone.load(Ordering::SeqCst)
    }
}
