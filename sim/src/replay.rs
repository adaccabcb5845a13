//! Replaying recorded traces through the driver core.
//!
//! A trace ([`crate::trace`]) is turned into per-reader recorded exchanges
//! and a list of driver operations (open, power up, presence, transmit,
//! control, …, from the IFD handler calls a pcscd log shows or from the
//! command frames themselves). Each reader is a [`ReplayTransport`] under a
//! real [`Device`] and its [`Slot`]s: every command the driver writes is
//! compared with the recorded one (`bSeq` mapped by the offset between the
//! recording's numbering and the driver's, set at the first command of
//! each excerpt), and answered with the reader frames recorded for it.
//!
//! The report counts recorded commands the driver reproduced
//! (`frames matched: M/N`) and lists every divergence with its reason; a
//! divergence that is a deliberate difference from libccid carries the id
//! of its entry in `docs/replay-differences.md`. Results the recording
//! host printed (ATR, response APDU, presence, control output) are
//! compared too, for information.

#![forbid(unsafe_code)]

mod descriptor;
pub mod differences;
mod plan;
mod transport;

pub use descriptor::{parse_dump, Choice, Dump};
pub use differences::Difference;
pub use transport::{FrameCheck, Outcome, ReplayTransport};

use crate::trace::{self, Format, ParseError, Trace};
use ccid::config::Config;
use ccid::ifd::protocol::{SCARD_PROTOCOL_T0, SCARD_PROTOCOL_T1};
use ccid::proto::descriptor::ExchangeLevel;
use ccid::reader::device::{Device, OpenOptions};
use ccid::reader::slot::{Presence, Slot};
use ccid::reader::{control, protocol};
use ccid::transport::UsbInfo;
use plan::{Op, Plan, Step, StepKind};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use transport::Group;

/// Options of a replay.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// A descriptor dump (libccid `parse` format) for the reader.
    pub descriptor: Option<PathBuf>,
    /// The folder holding `readers/*.txt` and `traces/INDEX.md`; by default
    /// the parent of the trace's folder when it has a `readers` folder.
    pub data_dir: Option<PathBuf>,
}

/// Why a replay could not run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplayError {
    /// The trace does not parse.
    Parse(ParseError),
    /// The descriptor could not be read.
    Descriptor(String),
}

impl std::fmt::Display for ReplayError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReplayError::Parse(e) => write!(f, "{e}"),
            ReplayError::Descriptor(e) => write!(f, "descriptor: {e}"),
        }
    }
}

impl std::error::Error for ReplayError {}

/// A result the recording host printed, compared with the driver's.
#[derive(Debug, Clone)]
pub struct ResultCheck {
    /// Trace line of the operation.
    pub line: usize,
    /// What was compared.
    pub what: String,
    /// Whether the driver's result equals the recorded one.
    pub equal: bool,
    /// Both values when they differ.
    pub detail: String,
    /// The documented difference that explains a mismatch.
    pub difference: Option<&'static Difference>,
}

/// One executed step, for verbose reports.
#[derive(Debug, Clone)]
pub struct StepRecord {
    /// Trace line.
    pub line: usize,
    /// Reader key.
    pub reader: u32,
    /// What ran.
    pub what: String,
    /// The driver's result.
    pub result: String,
}

/// The outcome of a replay.
#[derive(Debug, Clone)]
pub struct Report {
    /// The trace's name.
    pub trace: String,
    /// Its format.
    pub format: Format,
    /// Number of excerpts.
    pub segments: usize,
    /// Number of readers in the trace.
    pub readers: usize,
    /// How the descriptor was chosen.
    pub descriptor: String,
    /// Changes made to it so that it agrees with the frames.
    pub adjustments: Vec<String>,
    /// Every frame comparison, in trace order per reader.
    pub frames: Vec<FrameCheck>,
    /// Result comparisons.
    pub results: Vec<ResultCheck>,
    /// Executed steps.
    pub steps: Vec<StepRecord>,
    /// Zero-length packets handed to the driver.
    pub zlps: usize,
    /// Frames the driver dropped (zero-length, stale, misaddressed).
    pub dropped_by_driver: u64,
    /// Recorded answers that were cut in the published trace.
    pub cut_answers: usize,
    /// Recorded answers joined from reads the logging host split.
    pub joined_answers: usize,
}

impl Report {
    /// Recorded commands (bulk-OUT frames) in the trace.
    pub fn total(&self) -> usize {
        self.frames
            .iter()
            .filter(|c| {
                matches!(
                    c.outcome,
                    Outcome::Matched | Outcome::Differs | Outcome::Missing
                )
            })
            .count()
    }

    /// Recorded commands the driver sent identically.
    pub fn matched(&self) -> usize {
        self.frames
            .iter()
            .filter(|c| c.outcome == Outcome::Matched)
            .count()
    }

    /// Every divergence.
    pub fn divergences(&self) -> impl Iterator<Item = &FrameCheck> {
        self.frames.iter().filter(|c| c.outcome.is_divergence())
    }

    /// Divergences no documented difference explains.
    pub fn undocumented(&self) -> usize {
        self.divergences()
            .filter(|c| c.difference.is_none())
            .count()
    }

    /// Whether every recorded command matched or each divergence is a
    /// documented difference.
    pub fn passed(&self) -> bool {
        self.undocumented() == 0
    }

    /// Frames sent to reach the state an excerpt starts in (not compared).
    pub fn synthetic(&self) -> usize {
        self.frames
            .iter()
            .filter(|c| c.outcome == Outcome::Synthetic)
            .count()
    }

    /// The report as text; `verbose` adds every comparison and step.
    pub fn render(&self, verbose: bool) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "{}: {} format, {} segment(s), {} reader(s)",
            self.trace,
            self.format.name(),
            self.segments,
            self.readers
        );
        let _ = writeln!(s, "descriptor: {}", self.descriptor);
        for a in &self.adjustments {
            let _ = writeln!(s, "  adjusted: {a}");
        }
        let _ = writeln!(s, "frames matched: {}/{}", self.matched(), self.total());
        let div: Vec<&FrameCheck> = self.divergences().collect();
        let _ = writeln!(
            s,
            "divergences: {} ({} documented, {} undocumented)",
            div.len(),
            div.len() - self.undocumented(),
            self.undocumented()
        );
        for c in self
            .frames
            .iter()
            .filter(|c| verbose || c.outcome.is_divergence())
        {
            let id = c
                .difference
                .map(|d| format!("[{}] ", d.id))
                .unwrap_or_default();
            let _ = writeln!(
                s,
                "  line {} reader {}: {}{}: {}",
                c.line,
                c.reader,
                id,
                c.outcome.name(),
                c.detail
            );
        }
        let differing = self.results.iter().filter(|r| !r.equal).count();
        let _ = writeln!(
            s,
            "results compared: {}, differ: {}",
            self.results.len(),
            differing
        );
        for r in self.results.iter().filter(|r| verbose || !r.equal) {
            let id = r
                .difference
                .map(|d| format!("[{}] ", d.id))
                .unwrap_or_default();
            let _ = writeln!(
                s,
                "  line {}: {}{} {}: {}",
                r.line,
                id,
                r.what,
                if r.equal { "equal" } else { "differs" },
                r.detail
            );
        }
        if self.zlps > 0 {
            let _ = writeln!(
                s,
                "[{}] {} zero-length packet(s) handed to the driver",
                differences::ZLP_SKIPPED.id,
                self.zlps
            );
        }
        let _ = writeln!(
            s,
            "driver dropped {} frame(s) (zero-length, stale or misaddressed); {} synthetic frame(s) not compared; {} recorded answer(s) cut in the published trace; {} joined from split reads",
            self.dropped_by_driver,
            self.synthetic(),
            self.cut_answers,
            self.joined_answers
        );
        if verbose {
            let _ = writeln!(s, "steps:");
            for st in &self.steps {
                let _ = writeln!(
                    s,
                    "  line {} reader {}: {} -> {}",
                    st.line, st.reader, st.what, st.result
                );
            }
        }
        s
    }
}

/// Parses and replays a trace file.
pub fn replay_file(path: &Path, opts: &Options) -> Result<Report, ReplayError> {
    let trace = trace::parse_file(path).map_err(ReplayError::Parse)?;
    replay(&trace, Some(path), opts)
}

/// Replays a parsed trace; `path` locates the shared data beside it.
pub fn replay(trace: &Trace, path: Option<&Path>, opts: &Options) -> Result<Report, ReplayError> {
    let plan = plan::build(trace);
    let choice = descriptor::choose(
        &plan,
        path,
        opts.descriptor.as_deref(),
        opts.data_dir.as_deref(),
    )
    .map_err(ReplayError::Descriptor)?;
    let mut run = Run::new(trace, &plan, &choice);
    for (i, step) in plan.steps.iter().enumerate() {
        let last_in_segment = !plan.steps[i + 1..]
            .iter()
            .any(|s| s.device == step.device && s.seg == step.seg);
        run.step(step, last_in_segment);
    }
    Ok(run.finish(trace, &plan, &choice))
}

/// ATR of made-up power-on answers when the trace shows none: a card
/// speaking T=0 (`3B 00`) or T=1 (`3B 80 01 81`).
const ATR_T0: [u8; 2] = [0x3B, 0x00];
const ATR_T1: [u8; 4] = [0x3B, 0x80, 0x01, 0x81];

/// The ATR found in the trace, for made-up power-on answers; else one
/// for the protocol the trace uses.
fn atr_hint(trace: &Trace, plan: &Plan) -> Vec<u8> {
    let found = recorded_atr(trace, plan);
    if !found.is_empty() {
        return found;
    }
    let t1 = plan.first_protocol == Some(1)
        || plan.devices.values().any(|r| {
            r.hosts.iter().any(|h| {
                h.data.first() == Some(&0x6F) && plan::t1_shaped(h.data.get(10..).unwrap_or(&[]))
            })
        });
    if t1 {
        ATR_T1.to_vec()
    } else {
        ATR_T0.to_vec()
    }
}

fn recorded_atr(trace: &Trace, plan: &Plan) -> Vec<u8> {
    for e in &trace.events {
        if let trace::EventKind::Atr(a) = &e.kind {
            if !a.is_empty() {
                return a.clone();
            }
        }
    }
    for rec in plan.devices.values() {
        for h in rec.hosts.iter().filter(|h| h.data.first() == Some(&0x62)) {
            if let Some(a) = h.answers.iter().find(|a| a.is_final() && a.data.len() > 10) {
                return a.data[10..].to_vec();
            }
        }
        for a in &rec.orphans {
            if a.is_final() && a.data.first() == Some(&0x80) && a.data.len() > 10 {
                return a.data[10..].to_vec();
            }
        }
    }
    Vec::new()
}

/// GET_DATA_RATES data recorded in the trace.
fn data_rates(trace: &Trace) -> Option<Vec<u8>> {
    let mut after_request = false;
    for e in &trace.events {
        match &e.kind {
            trace::EventKind::ControlRequest { request } => after_request = *request == 0x03,
            trace::EventKind::ControlIn(d) if after_request => return Some(d.clone()),
            _ => {}
        }
    }
    None
}

/// One replayed reader.
struct Session {
    key: u32,
    transport: Arc<ReplayTransport>,
    device: Option<Arc<Device>>,
    slots: BTreeMap<u8, Arc<Slot>>,
    protocol_set: BTreeSet<u8>,
    opened_once: bool,
}

struct Run {
    sessions: BTreeMap<u32, Session>,
    /// The recorded commands of each reader.
    commands: BTreeMap<u32, Vec<Vec<u8>>>,
    level: ExchangeLevel,
    results: Vec<ResultCheck>,
    steps: Vec<StepRecord>,
    dropped: u64,
}

fn scard_protocol(p: u8) -> u32 {
    if p == 1 {
        SCARD_PROTOCOL_T1
    } else {
        SCARD_PROTOCOL_T0
    }
}

impl Run {
    fn new(trace: &Trace, plan: &Plan, choice: &Choice) -> Run {
        let atr = atr_hint(trace, plan);
        let rates = data_rates(trace);
        let mut sessions = BTreeMap::new();
        let mut keys: BTreeSet<u32> = plan.devices.keys().copied().collect();
        keys.extend(plan.steps.iter().map(|s| s.device));
        for key in keys {
            let info = UsbInfo {
                vendor_id: choice.vid_pid.0,
                product_id: choice.vid_pid.1,
                bus: 1,
                address: (key.wrapping_add(2) & 0xFF) as u8,
                configuration: 1,
                interface_class: 0x0B,
                num_endpoints: 3,
                has_interrupt: true,
                bulk_in_packet_size: 64,
                interrupt_packet_size: 8,
                product: Some(format!("replay of {}", trace.name)),
                ccid_descriptor: choice.descriptor.to_bytes().to_vec(),
                ..UsbInfo::default()
            };
            let rec = plan.devices.get(&key).cloned().unwrap_or_default();
            let transport = Arc::new(ReplayTransport::new(
                key,
                info,
                rec,
                atr.clone(),
                rates.clone(),
            ));
            sessions.insert(
                key,
                Session {
                    key,
                    transport,
                    device: None,
                    slots: BTreeMap::new(),
                    protocol_set: BTreeSet::new(),
                    opened_once: false,
                },
            );
        }
        let commands = plan
            .devices
            .iter()
            .map(|(k, r)| (*k, r.hosts.iter().map(|h| h.data.clone()).collect()))
            .collect();
        Run {
            sessions,
            commands,
            level: choice.descriptor.exchange_level(),
            results: Vec::new(),
            steps: Vec::new(),
            dropped: 0,
        }
    }

    fn record(&mut self, step: &Step, what: String, result: String) {
        self.steps.push(StepRecord {
            line: step.line,
            reader: step.device,
            what,
            result,
        });
    }

    fn step(&mut self, step: &Step, last_in_segment: bool) {
        match &step.kind {
            StepKind::Notify(data) => {
                if let Some(s) = self.sessions.get(&step.device) {
                    s.transport.notify(data.clone());
                }
                self.record(
                    step,
                    format!("notification {}", trace::hex_string(data)),
                    "queued".into(),
                );
            }
            StepKind::Removed => {
                if let Some(s) = self.sessions.get(&step.device) {
                    s.transport.set_gone();
                }
                self.record(step, "reader unplugged".into(), "transport gone".into());
            }
            StepKind::Open => {
                let r = self.open(step, false, last_in_segment);
                self.record(step, "open".into(), r);
            }
            StepKind::Op(op) => {
                let r = self.op(step, op, last_in_segment);
                self.record(step, op.name(), r);
            }
        }
    }

    /// Opens the reader of `step` (synthetically when the trace does not
    /// show the open).
    fn open(&mut self, step: &Step, synthetic: bool, last_in_segment: bool) -> String {
        let Some(s) = self.sessions.get_mut(&step.device) else {
            return "no such reader".into();
        };
        if let Some(old) = s.device.take() {
            self.dropped += old.exchanger().dropped_frames();
            old.shutdown();
        }
        s.slots.clear();
        s.protocol_set.clear();
        if !synthetic && s.opened_once {
            s.transport.replug();
        }
        s.opened_once = true;
        s.transport.begin(Group {
            kind: StepKind::Open,
            hosts: if synthetic {
                Vec::new()
            } else {
                step.hosts.clone()
            },
            line: step.line,
            synthetic,
            last_in_segment,
        });
        let opts = OpenOptions {
            timeout_cap: Duration::from_secs(600),
            card_events: true,
            // The recording shows the reader in use: its firmware version
            // (unknown here) must not make the driver refuse it.
            driver_options: ccid::config::DriverOptions::USE_BOGUS_FIRMWARE,
            ..OpenOptions::default()
        };
        let name = format!("replay:{}", s.key);
        let result = Device::open(s.transport.clone(), &name, u64::from(s.key) << 16, &opts);
        let err = result.as_ref().err().map(ToString::to_string);
        s.transport.end(err.as_deref());
        match result {
            Ok(d) => {
                s.device = Some(d);
                "opened".into()
            }
            Err(e) => format!("open failed: {e}"),
        }
    }

    fn slot(&mut self, device: u32, index: u8) -> Option<Arc<Slot>> {
        let s = self.sessions.get_mut(&device)?;
        let dev = s.device.clone()?;
        if usize::from(index) >= dev.slot_count() {
            return None;
        }
        let key = s.key;
        Some(
            s.slots
                .entry(index)
                .or_insert_with(|| {
                    Arc::new(Slot::new(
                        dev,
                        index,
                        (u64::from(key) << 16) | u64::from(index),
                        Config::default(),
                    ))
                })
                .clone(),
        )
    }

    /// Runs `f` as a step whose frames are put-in-state commands.
    fn synthetic<T>(&mut self, step: &Step, f: impl FnOnce() -> T) -> T {
        let t = self.sessions[&step.device].transport.clone();
        t.begin(Group {
            kind: step.kind.clone(),
            hosts: Vec::new(),
            line: step.line,
            synthetic: true,
            last_in_segment: false,
        });
        let r = f();
        t.end(None);
        r
    }

    fn op(&mut self, step: &Step, op: &Op, last_in_segment: bool) -> String {
        let Some(session) = self.sessions.get(&step.device) else {
            return "no such reader".into();
        };
        let transport = session.transport.clone();
        if session.device.is_none() && !matches!(op, Op::Close | Op::DeviceRemoved) {
            let r = self.open(step, true, false);
            if !r.starts_with("opened") {
                transport.begin(group(step, last_in_segment));
                transport.end(Some(&r));
                return r;
            }
        }
        let Some(slot) = self.slot(step.device, step.slot) else {
            transport.begin(group(step, last_in_segment));
            transport.end(Some("the reader is not open"));
            return "reader not open".into();
        };
        // The state the trace assumes.
        let needs_card = matches!(
            op,
            Op::Transmit { .. } | Op::SetProtocol { .. } | Op::Secure { .. }
        );
        if needs_card && slot.atr().is_empty() {
            let _ = self.synthetic(step, || slot.power_up());
        }
        let protocol = match op {
            Op::Transmit { protocol, .. } => Some(protocol.unwrap_or_else(|| {
                self.first_data(step)
                    .map_or(0, |d| u8::from(plan::t1_shaped(&d)))
            })),
            _ => None,
        };
        if protocol == Some(1)
            && matches!(self.level, ExchangeLevel::Tpdu | ExchangeLevel::Character)
            && !self.sessions[&step.device]
                .protocol_set
                .contains(&step.slot)
        {
            let _ = self.synthetic(step, || {
                protocol::set_protocol(&slot, SCARD_PROTOCOL_T1, 0, [0; 3])
            });
            if let Some(s) = self.sessions.get_mut(&step.device) {
                s.protocol_set.insert(step.slot);
            }
        }
        let apdu = match op {
            Op::Transmit { apdu: Some(a), .. } => Some(a.clone()),
            Op::Transmit { apdu: None, .. } => self.first_data(step).map(|d| {
                if plan::t1_shaped(&d) {
                    plan::t1_inf(&d).map(<[u8]>::to_vec).unwrap_or(d)
                } else {
                    d
                }
            }),
            _ => None,
        };
        transport.begin(group(step, last_in_segment));
        let outcome: Result<String, String> = match op {
            Op::PowerUp => slot.power_up().map(|atr| {
                self.compare(step, "ATR", step.expect.atr.as_ref(), &atr);
                format!("ATR {}", trace::hex_string(&atr))
            }),
            Op::PowerDown => slot.power_down().map(|_| "powered down".into()),
            Op::Presence => slot.presence().map(|p| {
                let present = p == Presence::Present;
                if let Some(e) = step.expect.present {
                    self.results.push(ResultCheck {
                        line: step.line,
                        what: "presence".into(),
                        equal: e == present,
                        detail: format!("recorded present={e}, driver present={present}"),
                        difference: None,
                    });
                }
                format!("present={present}")
            }),
            Op::Transmit { .. } => match apdu {
                None => Err(ccid::Error::InvalidArgument("the APDU is not in the trace")),
                Some(apdu) => {
                    let p = protocol.unwrap_or(0);
                    let r = slot.transmit(scard_protocol(p), &apdu);
                    let got = r.clone().unwrap_or_default();
                    self.compare(step, "response", step.expect.response.as_ref(), &got);
                    r.map(|resp| format!("response {}", trace::hex_string(&resp)))
                }
            },
            Op::Control { code, tx } => control::control(&slot, *code, tx, 65548).map(|out| {
                self.compare(
                    step,
                    "control output",
                    step.expect.control_rx.as_ref(),
                    &out,
                );
                format!("output {}", trace::hex_string(&out))
            }),
            Op::SetProtocol { protocol: p } => {
                let r = protocol::set_protocol(&slot, scard_protocol(*p), 0, [0; 3]);
                if r.is_ok() {
                    if let Some(s) = self.sessions.get_mut(&step.device) {
                        s.protocol_set.insert(step.slot);
                    }
                }
                r.map(|_| format!("T={p} selected"))
            }
            Op::Escape { data } => slot
                .escape(data, Duration::from_secs(30))
                .map(|out| format!("escape answer {}", trace::hex_string(&out))),
            Op::Secure { data } => slot
                .secure(data, secure_apdu_offset(data), Duration::from_secs(30))
                .map(|out| format!("secure answer {}", trace::hex_string(&out))),
            Op::DeviceRemoved => {
                transport.set_gone();
                ccid::reader::device_removed(&slot);
                Ok(format!("removal handled, gone={}", slot.device.is_gone()))
            }
            Op::Close => {
                let dev = slot.device.clone();
                // As the registry closes a channel: power down unless the
                // reader is gone, whatever the result.
                let down = if dev.is_gone() {
                    "reader gone".to_string()
                } else {
                    match slot.power_down() {
                        Ok(()) => "powered down".to_string(),
                        Err(e) => format!("power down failed: {e}"),
                    }
                };
                Ok(format!("closed ({down})"))
            }
            Op::Unsupported { message_type } => Err(ccid::Error::NotSupported(format!(
                "no driver operation sends {:?}",
                ccid::proto::message::MessageType(*message_type)
            ))),
        }
        .map_err(|e| e.to_string());
        transport.end(outcome.as_ref().err().map(String::as_str));
        if *op == Op::Close {
            if let Some(s) = self.sessions.get_mut(&step.device) {
                s.slots.remove(&step.slot);
                if s.slots.is_empty() {
                    if let Some(d) = s.device.take() {
                        self.dropped += d.exchanger().dropped_frames();
                        d.shutdown();
                    }
                }
            }
        }
        match outcome {
            Ok(r) => r,
            Err(e) => format!("error: {e}"),
        }
    }

    /// The data field of the first recorded command of a step.
    fn first_data(&self, step: &Step) -> Option<Vec<u8>> {
        let h = *step.hosts.first()?;
        let frame = self.commands.get(&step.device)?.get(h)?;
        Some(frame.get(10..).unwrap_or(&[]).to_vec())
    }

    /// Compares a result the recording host printed with the driver's.
    fn compare(&mut self, step: &Step, what: &str, recorded: Option<&Vec<u8>>, driver: &[u8]) {
        let Some(recorded) = recorded else {
            return;
        };
        let equal = recorded.as_slice() == driver;
        let mut difference = None;
        if !equal {
            if let Some(&h) = step.hosts.last() {
                let t = &self.sessions[&step.device].transport;
                let answer = t
                    .final_answer(h)
                    .map(|a| a.get(10..).unwrap_or(&[]).to_vec());
                if answer.as_deref() == Some(driver) {
                    difference = Some(if t.had_time_extension(h) {
                        &differences::TIME_EXTENSION_WAITED
                    } else {
                        &differences::ANSWER_BY_BSEQ
                    });
                }
            }
        }
        self.results.push(ResultCheck {
            line: step.line,
            what: what.into(),
            equal,
            detail: format!(
                "recorded [{}], driver [{}]",
                trace::hex_string(recorded),
                trace::hex_string(driver)
            ),
            difference,
        });
    }

    fn finish(mut self, trace: &Trace, plan: &Plan, choice: &Choice) -> Report {
        let mut frames = Vec::new();
        let mut zlps = 0;
        let mut cut = 0;
        let mut joined = 0;
        for s in self.sessions.values_mut() {
            s.transport.finish();
            if let Some(d) = s.device.take() {
                self.dropped += d.exchanger().dropped_frames();
                d.shutdown();
            }
            s.slots.clear();
            frames.extend(s.transport.checks());
            let (z, c, j) = s.transport.counters();
            zlps += z;
            cut += c;
            joined += j;
        }
        frames.sort_by_key(|c| (c.reader, c.line));
        Report {
            trace: trace.name.clone(),
            format: trace.format,
            segments: plan.segments,
            readers: plan.devices.len(),
            descriptor: choice.source.clone(),
            adjustments: choice.adjustments.clone(),
            frames,
            results: self.results,
            steps: self.steps,
            zlps,
            dropped_by_driver: self.dropped,
            cut_answers: cut,
            joined_answers: joined,
        }
    }
}

/// Where the APDU starts in the data of a recorded PC_to_RDR_Secure:
/// after the verification structure, or after the modification structure
/// whose bMsgIndex2/3 are present according to bNumberMessage.
fn secure_apdu_offset(data: &[u8]) -> usize {
    match data.first() {
        Some(1) => {
            let messages = data.get(11).copied().unwrap_or(0);
            18 + usize::from(messages != 0) + usize::from(messages >= 3 && messages != 0xFF)
        }
        _ => ccid::pinpad::PinVerify::APDU_OFFSET,
    }
}

fn group(step: &Step, last_in_segment: bool) -> Group {
    Group {
        kind: step.kind.clone(),
        hosts: step.hosts.clone(),
        line: step.line,
        synthetic: false,
        last_in_segment,
    }
}

/// `ccid-sim replay FILE [--descriptor DUMP] [--data-dir DIR] [--verbose]`:
/// prints the report; returns the exit status (0 when every divergence is
/// documented, 1 otherwise, 2 for bad usage or input).
pub fn cli(args: &[String]) -> i32 {
    let usage = "usage: ccid-sim replay FILE [--descriptor DUMP] [--data-dir DIR] [--verbose]";
    let mut file = None;
    let mut opts = Options::default();
    let mut verbose = false;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--verbose" | "-v" => verbose = true,
            "--descriptor" => match it.next() {
                Some(p) => opts.descriptor = Some(PathBuf::from(p)),
                None => {
                    eprintln!("{usage}");
                    return 2;
                }
            },
            "--data-dir" => match it.next() {
                Some(p) => opts.data_dir = Some(PathBuf::from(p)),
                None => {
                    eprintln!("{usage}");
                    return 2;
                }
            },
            "-h" | "--help" => {
                println!("{usage}");
                println!("documented differences:");
                for d in differences::ALL {
                    println!("  {}: {}", d.id, d.summary);
                }
                return 0;
            }
            f if file.is_none() && !f.starts_with('-') => file = Some(PathBuf::from(f)),
            other => {
                eprintln!("unexpected argument '{other}'\n{usage}");
                return 2;
            }
        }
    }
    let Some(file) = file else {
        eprintln!("{usage}");
        return 2;
    };
    match replay_file(&file, &opts) {
        Ok(report) => {
            print!("{}", report.render(verbose));
            i32::from(!report.passed())
        }
        Err(e) => {
            eprintln!("{e}");
            2
        }
    }
}
