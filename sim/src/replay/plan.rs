//! From a parsed trace to what a replay needs: per reader, the recorded
//! host frames with the reader frames that answer them, and the ordered
//! list of driver operations that should reproduce the host frames.
//!
//! Answers are tied to commands by `bSeq` where they carry one: a reader
//! frame belongs to the latest earlier command with the same `bSlot` and
//! `bSeq` that has no final answer yet, even when the logging host read it
//! one command late (after a zero-length packet, for instance). Zero-length
//! packets and frames without a matching command stay where they were
//! read. Transfers the logging host read in pieces because its read buffer
//! was shorter than the message are joined first: a driver reading whole
//! transfers receives them whole.
//!
//! Operations come from the IFD handler calls a pcscd log shows
//! (`IFDHPowerICC() action: PowerUp`, …): the frames that follow a call
//! belong to it. Where the log has no such line (excerpts, other hosts),
//! each command frame implies one operation from its message type.

use crate::trace::{Call, Event, EventKind, Trace, Transfer};
use ccid::proto::message::{CommandStatus, Status, HEADER_LEN};
use std::collections::{BTreeMap, HashMap};

/// What the reader did after a recorded command when no answer is tied to
/// it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Silence {
    /// At least one answer is recorded.
    Answered,
    /// The reader did not answer (a read timed out, or the host moved on).
    TimedOut,
    /// The excerpt ends before the answer.
    NotRecorded,
    /// The command could not be written: the device was gone.
    Gone,
}

/// A recorded reader frame.
#[derive(Debug, Clone)]
pub(crate) struct Answer {
    pub line: usize,
    pub data: Vec<u8>,
    /// The published line was cut.
    pub cut: bool,
    /// Joined from several reads of the logging host.
    pub joined: bool,
}

impl Answer {
    /// A complete CCID message that is not a time-extension request.
    pub fn is_final(&self) -> bool {
        complete(&self.data)
            && self
                .data
                .get(7)
                .is_some_and(|s| Status(*s).command() != CommandStatus::TimeExtension)
    }
}

/// A recorded command frame with its answers.
#[derive(Debug, Clone)]
pub(crate) struct HostFrame {
    pub line: usize,
    pub seg: usize,
    pub data: Vec<u8>,
    pub cut: bool,
    pub answers: Vec<Answer>,
    pub silence: Silence,
}

/// Everything recorded for one reader.
#[derive(Debug, Clone, Default)]
pub(crate) struct Recorded {
    pub hosts: Vec<HostFrame>,
    /// Reader frames with no command before them in their excerpt.
    pub orphans: Vec<Answer>,
}

/// A driver operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Op {
    PowerUp,
    PowerDown,
    Presence,
    Transmit {
        apdu: Option<Vec<u8>>,
        protocol: Option<u8>,
    },
    Control {
        code: u32,
        tx: Vec<u8>,
    },
    SetProtocol {
        protocol: u8,
    },
    Escape {
        data: Vec<u8>,
    },
    Secure {
        data: Vec<u8>,
    },
    DeviceRemoved,
    Close,
    /// A command no driver operation sends.
    Unsupported {
        message_type: u8,
    },
}

impl Op {
    /// A short name for reports.
    pub fn name(&self) -> String {
        match self {
            Op::PowerUp => "power up".into(),
            Op::PowerDown => "power down".into(),
            Op::Presence => "presence".into(),
            Op::Transmit { .. } => "transmit".into(),
            Op::Control { code, .. } => format!("control {code:#010X}"),
            Op::SetProtocol { protocol } => format!("set protocol T={protocol}"),
            Op::Escape { .. } => "escape".into(),
            Op::Secure { .. } => "secure".into(),
            Op::DeviceRemoved => "device removed".into(),
            Op::Close => "close".into(),
            Op::Unsupported { message_type } => format!("command {message_type:02X}"),
        }
    }
}

/// What a step does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StepKind {
    /// Open the reader (Device::open).
    Open,
    /// One driver operation.
    Op(Op),
    /// An interrupt-IN message arrives.
    Notify(Vec<u8>),
    /// The reader is unplugged.
    Removed,
}

/// What the logging host reported as the result of an operation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Expect {
    pub atr: Option<Vec<u8>>,
    pub response: Option<Vec<u8>>,
    pub present: Option<bool>,
    pub control_rx: Option<Vec<u8>>,
}

/// One step of the replay.
#[derive(Debug, Clone)]
pub(crate) struct Step {
    pub line: usize,
    pub seg: usize,
    pub device: u32,
    pub slot: u8,
    pub kind: StepKind,
    /// Indices into the reader's recorded host frames.
    pub hosts: Vec<usize>,
    pub expect: Expect,
    /// Implied by a frame rather than named by a log line.
    pub inferred: bool,
}

/// The replay plan of a trace.
#[derive(Debug, Clone, Default)]
pub(crate) struct Plan {
    pub devices: BTreeMap<u32, Recorded>,
    pub steps: Vec<Step>,
    pub segments: usize,
    /// The first VID:PID the trace names.
    pub vid_pid: Option<(u16, u16)>,
    /// The first pcscd device name in the trace.
    pub device_name: Option<String>,
    /// Class-descriptor fields printed by the host.
    pub descriptor_fields: Vec<(String, String)>,
    /// The protocol (0/1) the host used first, if it says.
    pub first_protocol: Option<u8>,
}

/// Whether `data` is one complete CCID message.
pub(crate) fn complete(data: &[u8]) -> bool {
    data.len() >= HEADER_LEN
        && ccid::proto::codec::u32_le_at(data, 1)
            .is_some_and(|l| data.len() == HEADER_LEN + l as usize)
}

/// Whether `data` is a T=1 block (NAD PCB LEN INF LRC) whose LRC is right.
/// (CRC epilogues are not recognised: two bytes after INF are too common
/// in APDUs to tell anything.)
pub(crate) fn t1_shaped(data: &[u8]) -> bool {
    let Some(len) = data.get(2) else {
        return false;
    };
    data.len() == 3 + usize::from(*len) + 1 && data.iter().fold(0u8, |a, b| a ^ b) == 0
}

/// The INF field of a T=1 I-block.
pub(crate) fn t1_inf(block: &[u8]) -> Option<&[u8]> {
    let pcb = *block.get(1)?;
    if pcb & 0x80 != 0 {
        return None;
    }
    let n = usize::from(*block.get(2)?);
    block.get(3..3 + n)
}

/// Whether `data` is a PPS request (PPSS = FF, PCK makes the XOR zero).
pub(crate) fn pps_shaped(data: &[u8]) -> bool {
    let Some((&ppss, rest)) = data.split_first() else {
        return false;
    };
    let Some(&pps0) = rest.first() else {
        return false;
    };
    let expected = 3
        + usize::from(pps0 & 0x10 != 0)
        + usize::from(pps0 & 0x20 != 0)
        + usize::from(pps0 & 0x40 != 0);
    ppss == 0xFF && data.len() == expected && data.iter().fold(0u8, |a, b| a ^ b) == 0
}

/// The data field of a command frame.
fn frame_data(data: &[u8]) -> Vec<u8> {
    data.get(HEADER_LEN..).unwrap_or(&[]).to_vec()
}

/// An entry of one reader's recorded sequence.
enum Item {
    Host(usize),
    /// Line, transfer, joined from several reads.
    In(usize, Transfer, bool),
    Timeout,
    NoDevice,
    Activity,
}

/// Builds the plan of `trace`.
pub(crate) fn build(trace: &Trace) -> Plan {
    let events = &trace.events;
    let mut plan = Plan::default();
    // Pass 1: per reader, the recorded sequence; segment numbers.
    let mut items: BTreeMap<u32, Vec<(usize, Item)>> = BTreeMap::new();
    let keys = reader_keys(events);
    let mut seg = 0usize;
    for (i, e) in events.iter().enumerate() {
        let key = keys[i];
        match &e.kind {
            EventKind::Gap => seg += 1,
            EventKind::BulkOut(t) => {
                let rec = plan.devices.entry(key).or_default();
                rec.hosts.push(HostFrame {
                    line: e.line,
                    seg,
                    data: t.data.clone(),
                    cut: t.cut,
                    answers: Vec::new(),
                    silence: Silence::NotRecorded,
                });
                let h = rec.hosts.len() - 1;
                items.entry(key).or_default().push((seg, Item::Host(h)));
            }
            EventKind::BulkIn(t) => {
                plan.devices.entry(key).or_default();
                items
                    .entry(key)
                    .or_default()
                    .push((seg, Item::In(e.line, t.clone(), false)));
            }
            EventKind::ReadTimeout => items.entry(key).or_default().push((seg, Item::Timeout)),
            EventKind::NoDevice => items.entry(key).or_default().push((seg, Item::NoDevice)),
            EventKind::Call { call, .. } if !matches!(call, Call::GetCapabilities { .. }) => {
                items.entry(key).or_default().push((seg, Item::Activity))
            }
            EventKind::VidPid { vendor, product } => {
                plan.vid_pid.get_or_insert((*vendor, *product));
            }
            EventKind::DeviceName(n) => {
                plan.device_name.get_or_insert_with(|| n.clone());
            }
            EventKind::DescriptorField { name, value } => {
                plan.descriptor_fields.push((name.clone(), value.clone()))
            }
            EventKind::Protocol(p) => {
                plan.first_protocol.get_or_insert(*p);
            }
            _ => {}
        }
    }
    plan.segments = seg + 1;
    // Pass 2: answers.
    for (key, seq) in items {
        if let Some(rec) = plan.devices.get_mut(&key) {
            assign_answers(rec, seq);
        }
    }
    // Pass 3: steps.
    plan_steps(events, &keys, &mut plan);
    plan
}

/// The reader each event concerns: frames name it; calls name a Lun,
/// mapped through the reader number the driver printed when it opened it;
/// other events belong to the reader last seen.
fn reader_keys(events: &[Event]) -> Vec<u32> {
    let mut lun_map: HashMap<u32, u32> = HashMap::new();
    let mut keys = Vec::with_capacity(events.len());
    let mut last = 0u32;
    for (i, e) in events.iter().enumerate() {
        let key = match &e.kind {
            EventKind::BulkOut(t) | EventKind::BulkIn(t) => t.reader.unwrap_or(0),
            EventKind::Interrupt {
                reader: Some(r), ..
            } => *r,
            EventKind::Call { call, lun: Some(l) } => {
                if let Call::CreateChannel { .. } = call {
                    // The driver prints its reader number right after.
                    for later in events.iter().skip(i + 1).take(40) {
                        match &later.kind {
                            EventKind::ReaderIndex { index } => {
                                lun_map.insert(*l, *index);
                                break;
                            }
                            EventKind::Call { .. } | EventKind::BulkOut(_) => break,
                            _ => {}
                        }
                    }
                }
                lun_map.get(l).copied().unwrap_or(l >> 16)
            }
            _ => last,
        };
        last = key;
        keys.push(key);
    }
    keys
}

/// Ties reader frames to the commands they answer.
fn assign_answers(rec: &mut Recorded, seq: Vec<(usize, Item)>) {
    let mut by_seg: BTreeMap<usize, Vec<Item>> = BTreeMap::new();
    for (s, it) in seq {
        by_seg.entry(s).or_default().push(it);
    }
    for (_, list) in by_seg {
        // Join transfers read in pieces.
        let mut joined: Vec<Item> = Vec::new();
        for it in list {
            if let Item::In(_, t, _) = &it {
                if let Some(Item::In(_, prev, was_joined)) = joined.last_mut() {
                    if short_of_declared(&prev.data) && !complete(&t.data) && !t.data.is_empty() {
                        prev.data.extend_from_slice(&t.data);
                        prev.cut |= t.cut;
                        *was_joined = true;
                        continue;
                    }
                }
            }
            joined.push(it);
        }
        let mut hosts_seen: Vec<usize> = Vec::new();
        let mut explicit_timeout: Vec<usize> = Vec::new();
        let mut not_written: Vec<usize> = Vec::new();
        let mut last_was_host = false;
        let mut activity_after: Vec<bool> = Vec::new();
        for it in joined {
            let is_host = matches!(it, Item::Host(_));
            match it {
                Item::Host(h) => {
                    for a in activity_after.iter_mut() {
                        *a = true;
                    }
                    hosts_seen.push(h);
                    activity_after.push(false);
                }
                Item::NoDevice => {
                    if let (true, Some(h)) = (last_was_host, hosts_seen.last()) {
                        not_written.push(*h);
                    }
                }
                Item::Activity => {
                    for a in activity_after.iter_mut() {
                        *a = true;
                    }
                }
                Item::Timeout => {
                    if let Some(h) = hosts_seen.last() {
                        explicit_timeout.push(*h);
                    }
                }
                Item::In(line, t, was_joined) => {
                    for a in activity_after.iter_mut() {
                        *a = true;
                    }
                    let answer = Answer {
                        line,
                        cut: t.cut,
                        joined: was_joined,
                        data: t.data,
                    };
                    let target = by_seq(rec, &hosts_seen, &answer).or(hosts_seen.last().copied());
                    match target {
                        Some(h) => rec.hosts[h].answers.push(answer),
                        None => rec.orphans.push(answer),
                    }
                }
            }
            last_was_host = is_host;
        }
        for (k, h) in hosts_seen.iter().enumerate() {
            let host = &mut rec.hosts[*h];
            host.silence = if not_written.contains(h) {
                Silence::Gone
            } else if !host.answers.is_empty() {
                Silence::Answered
            } else if explicit_timeout.contains(h) || activity_after[k] {
                Silence::TimedOut
            } else {
                Silence::NotRecorded
            };
        }
    }
}

/// A frame whose header declares more data than it holds.
fn short_of_declared(data: &[u8]) -> bool {
    data.len() >= HEADER_LEN
        && ccid::proto::codec::u32_le_at(data, 1)
            .is_some_and(|l| data.len() < HEADER_LEN + l as usize)
}

/// The latest command (among the last 16) with the answer's bSlot and
/// bSeq and no final answer yet.
fn by_seq(rec: &Recorded, hosts: &[usize], a: &Answer) -> Option<usize> {
    let (slot, seq) = (a.data.get(5)?, a.data.get(6)?);
    hosts.iter().rev().take(16).copied().find(|h| {
        let c = &rec.hosts[*h];
        c.data.get(5) == Some(slot)
            && c.data.get(6) == Some(seq)
            && !c.answers.iter().any(Answer::is_final)
    })
}

/// Which message types a call's frames may have.
fn compatible(op: &StepKind, message_type: u8) -> bool {
    match op {
        StepKind::Open => true,
        StepKind::Op(op) => match op {
            Op::PowerUp => matches!(message_type, 0x62 | 0x63),
            Op::PowerDown | Op::Close => message_type == 0x63,
            Op::Presence => message_type == 0x65,
            Op::Transmit { .. } => message_type == 0x6F,
            Op::Control { .. } => matches!(message_type, 0x6B | 0x69 | 0x6F),
            Op::SetProtocol { .. } => matches!(message_type, 0x61 | 0x6F | 0x6B | 0x6C | 0x6D),
            _ => false,
        },
        _ => false,
    }
}

struct Planner<'p> {
    plan: &'p mut Plan,
    call_group: HashMap<u32, usize>,
    inferred_group: HashMap<u32, usize>,
    host_counter: HashMap<u32, usize>,
    pending_apdu: Option<Vec<u8>>,
    protocol: Option<u8>,
    /// A device was opened without a call line naming it.
    pending_open: bool,
    /// A create-channel call is waiting for its first frame.
    open_named: bool,
}

impl Planner<'_> {
    fn push(&mut self, step: Step) -> usize {
        self.plan.steps.push(step);
        self.plan.steps.len() - 1
    }

    fn new_step(&self, line: usize, seg: usize, device: u32, slot: u8, kind: StepKind) -> Step {
        Step {
            line,
            seg,
            device,
            slot,
            kind,
            hosts: Vec::new(),
            expect: Expect::default(),
            inferred: false,
        }
    }

    /// The latest step in `seg` matching `pred`.
    fn latest(&mut self, seg: usize, pred: impl Fn(&Step) -> bool) -> Option<&mut Step> {
        self.plan
            .steps
            .iter_mut()
            .rev()
            .take_while(|s| s.seg == seg)
            .find(|s| pred(s))
    }

    fn frame(&mut self, line: usize, seg: usize, key: u32, t: &Transfer) {
        let counter = self.host_counter.entry(key).or_default();
        let h = *counter;
        *counter += 1;
        let message_type = t.data.first().copied().unwrap_or(0);
        if self.pending_open {
            self.pending_open = false;
            let s = self.new_step(line, seg, key, 0, StepKind::Open);
            let idx = self.push(s);
            self.call_group.insert(key, idx);
            self.inferred_group.remove(&key);
        }
        self.open_named = false;
        if let Some(&g) = self.call_group.get(&key) {
            let step = &self.plan.steps[g];
            if step.seg == seg && compatible(&step.kind, message_type) {
                self.plan.steps[g].hosts.push(h);
                return;
            }
        }
        if let Some(&g) = self.inferred_group.get(&key) {
            if self.plan.steps[g].seg == seg && self.continues(key, g, h) {
                self.plan.steps[g].hosts.push(h);
                return;
            }
        }
        let slot = t.data.get(5).copied().unwrap_or(0);
        let data = frame_data(&t.data);
        let op = match message_type {
            0x62 => Op::PowerUp,
            0x63 => Op::PowerDown,
            0x65 => Op::Presence,
            0x6F if pps_shaped(&data) => Op::SetProtocol {
                protocol: data.get(1).map_or(0, |p| p & 0x0F),
            },
            0x6F => Op::Transmit {
                apdu: self.pending_apdu.take(),
                protocol: self.protocol,
            },
            0x61 => Op::SetProtocol {
                protocol: t.data.get(7).copied().unwrap_or(0),
            },
            0x6B => Op::Escape { data },
            0x69 => Op::Secure { data },
            other => Op::Unsupported {
                message_type: other,
            },
        };
        let mut s = self.new_step(line, seg, key, slot, StepKind::Op(op));
        s.inferred = true;
        s.hosts.push(h);
        let idx = self.push(s);
        self.inferred_group.insert(key, idx);
    }

    /// Whether host frame `h` continues the frame-implied step `g`.
    fn continues(&self, key: u32, g: usize, h: usize) -> bool {
        let step = &self.plan.steps[g];
        let Some(rec) = self.plan.devices.get(&key) else {
            return false;
        };
        let Some(frame) = rec.hosts.get(h) else {
            return false;
        };
        let Some(&last_idx) = step.hosts.last() else {
            return false;
        };
        let last = &rec.hosts[last_idx];
        let t = frame.data.first().copied().unwrap_or(0);
        match &step.kind {
            StepKind::Op(Op::PowerUp) => {
                // Another voltage after a failed power-on.
                t == 0x62
                    && last
                        .answers
                        .iter()
                        .filter(|a| a.is_final())
                        .any(|a| a.data.get(7).is_some_and(|s| s & 0x40 != 0))
            }
            StepKind::Op(Op::SetProtocol { .. }) => t == 0x61,
            StepKind::Op(Op::Transmit { .. }) => {
                let first = frame_data(&rec.hosts[step.hosts[0]].data);
                let this = frame_data(&frame.data);
                let prev = frame_data(&last.data);
                t == 0x6F
                    && t1_shaped(&first)
                    && t1_shaped(&this)
                    && (this.get(1).is_some_and(|pcb| pcb & 0x80 != 0)
                        || prev.get(1).is_some_and(|pcb| pcb & 0xA0 == 0x20))
            }
            _ => false,
        }
    }

    fn call(&mut self, line: usize, seg: usize, key: u32, call: &Call, lun: Option<u32>) {
        let slot = lun.map_or(0, |l| (l & 0xFF) as u8);
        let kind = match call {
            Call::CreateChannel { .. } => {
                self.pending_open = false;
                self.open_named = true;
                StepKind::Open
            }
            Call::PowerUp | Call::Reset => StepKind::Op(Op::PowerUp),
            Call::PowerDown => StepKind::Op(Op::PowerDown),
            Call::Presence => StepKind::Op(Op::Presence),
            Call::Transmit => StepKind::Op(Op::Transmit {
                apdu: self.pending_apdu.take(),
                protocol: self.protocol,
            }),
            Call::Control { code } => StepKind::Op(Op::Control {
                code: *code,
                tx: Vec::new(),
            }),
            Call::SetProtocol { protocol } => {
                self.protocol = Some(*protocol);
                StepKind::Op(Op::SetProtocol {
                    protocol: *protocol,
                })
            }
            Call::SetCapabilities { tag: 0xFB4 } => StepKind::Op(Op::DeviceRemoved),
            Call::CloseChannel => StepKind::Op(Op::Close),
            Call::CreateChannelFailed => {
                self.call_group.remove(&key);
                return;
            }
            Call::SetCapabilities { .. } | Call::GetCapabilities { .. } => return,
        };
        let s = self.new_step(line, seg, key, slot, kind);
        let idx = self.push(s);
        self.call_group.insert(key, idx);
        self.inferred_group.remove(&key);
    }
}

fn plan_steps(events: &[Event], keys: &[u32], plan: &mut Plan) {
    let mut p = Planner {
        plan,
        call_group: HashMap::new(),
        inferred_group: HashMap::new(),
        host_counter: HashMap::new(),
        pending_apdu: None,
        protocol: None,
        pending_open: false,
        open_named: false,
    };
    let mut seg = 0usize;
    for (i, e) in events.iter().enumerate() {
        let key = keys[i];
        match &e.kind {
            EventKind::Gap => {
                seg += 1;
                p.call_group.clear();
                p.inferred_group.clear();
                p.pending_apdu = None;
                p.pending_open = false;
            }
            EventKind::BulkOut(t) => p.frame(e.line, seg, key, t),
            EventKind::Call { call, lun } => p.call(e.line, seg, key, call, *lun),
            EventKind::DeviceOpened if !p.open_named => p.pending_open = true,
            EventKind::Interrupt { data, .. } => {
                let s = p.new_step(e.line, seg, key, 0, StepKind::Notify(data.clone()));
                p.push(s);
            }
            EventKind::NoDevice => {
                let s = p.new_step(e.line, seg, key, 0, StepKind::Removed);
                p.push(s);
            }
            EventKind::DeviceRemoved => {
                let named_later = events.iter().skip(i + 1).take(20).any(|l| {
                    matches!(
                        l.kind,
                        EventKind::Call {
                            call: Call::SetCapabilities { tag: 0xFB4 },
                            ..
                        }
                    )
                });
                if !named_later {
                    let s = p.new_step(e.line, seg, key, 0, StepKind::Removed);
                    p.push(s);
                }
            }
            EventKind::Apdu(a) => p.pending_apdu = Some(a.clone()),
            EventKind::Protocol(pr) => p.protocol = Some(*pr),
            EventKind::Atr(a) => {
                if let Some(s) = p.latest(seg, |s| {
                    s.kind == StepKind::Op(Op::PowerUp) && s.expect.atr.is_none()
                }) {
                    s.expect.atr = Some(a.clone());
                }
            }
            EventKind::Response(r) => {
                if let Some(s) = p.latest(seg, |s| {
                    matches!(s.kind, StepKind::Op(Op::Transmit { .. }))
                        && s.expect.response.is_none()
                }) {
                    s.expect.response = Some(r.clone());
                }
            }
            EventKind::PresenceResult { present } => {
                if let Some(s) = p.latest(seg, |s| {
                    s.kind == StepKind::Op(Op::Presence) && s.expect.present.is_none()
                }) {
                    s.expect.present = Some(*present);
                }
            }
            EventKind::ControlTx(tx) => {
                if let Some(s) =
                    p.latest(seg, |s| matches!(s.kind, StepKind::Op(Op::Control { .. })))
                {
                    if let StepKind::Op(Op::Control { tx: t, .. }) = &mut s.kind {
                        *t = tx.clone();
                    }
                }
            }
            EventKind::ControlRx(rx) => {
                if let Some(s) = p.latest(seg, |s| {
                    matches!(s.kind, StepKind::Op(Op::Control { .. }))
                        && s.expect.control_rx.is_none()
                }) {
                    s.expect.control_rx = Some(rx.clone());
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::parse_str;

    #[test]
    fn late_answers_go_to_their_command() {
        // The logging host read a zero-length packet for seq 28, then each
        // answer one command late, and one answer in two pieces.
        let text = "\
00000001 ifdhandler.c:1:IFDHTransmitToICC() x (lun: 0)
00000001 -> 000000 6F 05 00 00 00 00 28 00 00 00 00 C0 00 00 02 
00000001 <- 000000 
00000001 ifdhandler.c:1:IFDHTransmitToICC() x (lun: 0)
00000001 -> 000000 6F 05 00 00 00 00 29 00 00 00 00 C0 00 00 02 
00000001 <- 000000 80 02 00 00 00 00 28 00 00 00 
00000001 <- 000000 61 02 
00000001 ifdhandler.c:1:IFDHICCPresence() x (lun: 0)
00000001 -> 000000 65 00 00 00 00 00 2A 00 00 00 
00000001 <- 000000 80 02 00 00 00 00 29 00 00 00 90 00 
00000001 <- 000000 81 00 00 00 00 00 2A 00 00 00 
";
        let t = parse_str("late.log", text).unwrap();
        let plan = build(&t);
        let rec = &plan.devices[&0];
        assert_eq!(rec.hosts.len(), 3);
        assert_eq!(rec.hosts[0].answers.len(), 2);
        assert!(rec.hosts[0].answers[0].data.is_empty());
        assert_eq!(rec.hosts[0].answers[1].data.len(), 12);
        assert!(rec.hosts[0].answers[1].joined);
        assert_eq!(rec.hosts[1].answers[0].data[10..], [0x90, 0]);
        assert_eq!(rec.hosts[2].answers[0].data[0], 0x81);
        assert_eq!(plan.steps.len(), 3);
        assert_eq!(plan.steps[2].kind, StepKind::Op(Op::Presence));
    }

    #[test]
    fn silence_and_inferred_steps() {
        let text = "\
00000001 -> 000000 65 00 00 00 00 00 01 00 00 00 
00000001 ccid_usb.c:1:ReadUSB() read failed (1/7): -7 LIBUSB_ERROR_TIMEOUT
00000001 -> 000000 62 00 00 00 00 00 02 01 00 00 
00000001 <- 000000 80 00 00 00 00 00 02 40 FE 00 
00000001 -> 000000 62 00 00 00 00 00 03 03 00 00 
00000001 <- 000000 80 01 00 00 00 00 03 00 00 00 3B 
00000001 -> 000000 6F 04 00 00 00 00 04 00 00 00 FF 10 11 FE 
00000001 -> 000000 63 00 00 00 00 00 05 00 00 00 
";
        let plan = build(&parse_str("s.log", text).unwrap());
        let rec = &plan.devices[&0];
        assert_eq!(rec.hosts[0].silence, Silence::TimedOut);
        assert_eq!(rec.hosts[1].silence, Silence::Answered);
        assert_eq!(rec.hosts[3].silence, Silence::TimedOut);
        assert_eq!(rec.hosts[4].silence, Silence::NotRecorded);
        let kinds: Vec<_> = plan
            .steps
            .iter()
            .map(|s| (s.kind.clone(), s.hosts.len()))
            .collect();
        assert_eq!(
            kinds,
            vec![
                (StepKind::Op(Op::Presence), 1),
                (StepKind::Op(Op::PowerUp), 2),
                (StepKind::Op(Op::SetProtocol { protocol: 0 }), 1),
                (StepKind::Op(Op::PowerDown), 1),
            ]
        );
    }

    #[test]
    fn shapes() {
        assert!(t1_shaped(&[
            0x00, 0x40, 0x05, 0x00, 0xCA, 0x00, 0x7A, 0x00, 0xF5
        ]));
        assert!(!t1_shaped(&[0x00, 0xA4, 0x04, 0x00, 0x02, 0x3F, 0x00]));
        assert_eq!(
            t1_inf(&[0x00, 0x40, 0x02, 0x90, 0x00, 0xD2]),
            Some(&[0x90, 0][..])
        );
        assert!(pps_shaped(&[0xFF, 0x10, 0x13, 0xFC]));
        assert!(!pps_shaped(&[0xFF, 0x10, 0x13, 0xFD]));
    }
}
