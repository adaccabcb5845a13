//! The virtual reader: a CCID device answering every `PC_to_RDR_*`
//! message like a spec-conforming reader with a given class descriptor.
//!
//! [`VirtualReader`] is sans-IO. Messages go in with
//! [`VirtualReader::bulk_out`]; answers come out of
//! [`VirtualReader::poll_bulk_in`] once the time model says they are
//! ready; card events come out of [`VirtualReader::poll_interrupt`];
//! class requests and ICCD go through [`VirtualReader::control_in`] /
//! [`VirtualReader::control_out`]. Every call takes the current time as a
//! [`Duration`] since an epoch of the caller's choosing, so tests drive the
//! clock themselves; nothing here sleeps or reads a clock.
//!
//! A command is *in flight* from the moment it is accepted until its final
//! answer has been read from bulk-IN. At most `bMaxCCIDBusySlots` commands
//! are in flight across slots; a command beyond that, or for a slot that
//! already has one, is answered at once with bError CMD_SLOT_BUSY.
#![forbid(unsafe_code)]

mod iccd;
pub(crate) mod slot;

use crate::card::Card;
use crate::fault::{Fault, FaultRule, FaultScript};
use crate::timing::TimeModel;
use ccid::dump::{InterfaceDump, ReaderDump};
use ccid::iso7816::t1::card::Fault as T1Fault;
use ccid::proto::descriptor::{CcidDescriptor, ExchangeLevel, Features};
use ccid::proto::message::{
    Command, CommandStatus, FrameError, Header, IccStatus, MessageType, Notification, Response,
    SlotError, Status,
};
use ccid::transport::{ControlSetup, TransportError, UsbInfo};
use slot::{Ctx, Slot};
use std::collections::VecDeque;
use std::fmt;
use std::path::Path;
use std::time::Duration;

pub use iccd::IccdVersion;

/// Why a virtual reader could not be built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SimError {
    /// The dump file could not be read.
    Io {
        /// The file.
        path: String,
        /// The error.
        message: String,
    },
    /// The dump did not parse.
    Dump(ccid::dump::DumpError),
    /// The dump has fewer CCID interfaces than the index asked for.
    NoInterface {
        /// The dump's name.
        source: String,
        /// The index asked for.
        index: usize,
        /// CCID interfaces in the dump.
        count: usize,
    },
    /// The interface has no CCID class descriptor.
    NoDescriptor,
    /// A slot number beyond the reader's slots.
    BadSlot(u8),
}

impl fmt::Display for SimError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SimError::Io { path, message } => write!(f, "{path}: {message}"),
            SimError::Dump(e) => write!(f, "{e}"),
            SimError::NoInterface {
                source,
                index,
                count,
            } => write!(
                f,
                "{source}: no CCID interface #{index} (the dump has {count})"
            ),
            SimError::NoDescriptor => write!(f, "the interface has no CCID class descriptor"),
            SimError::BadSlot(s) => write!(f, "no slot {s}"),
        }
    }
}

impl std::error::Error for SimError {}

impl From<ccid::dump::DumpError> for SimError {
    fn from(e: ccid::dump::DumpError) -> Self {
        SimError::Dump(e)
    }
}

/// Everything that defines a virtual reader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReaderConfig {
    /// The CCID class descriptor.
    pub descriptor: CcidDescriptor,
    /// The answer to GET_DATA_RATES (bps); empty: the request stalls.
    pub data_rates: Vec<u32>,
    /// The answer to GET_CLOCK_FREQUENCIES (kHz); empty: the request
    /// stalls.
    pub clock_frequencies: Vec<u32>,
    /// The USB facts the transport reports (`ccid_descriptor` is filled
    /// from `descriptor` when the reader is built).
    pub usb: UsbInfo,
    /// The time model.
    pub timing: TimeModel,
    /// Send a NotifySlotChange right away for the cards present at start.
    pub initial_notification: bool,
    /// Follow every answer whose length is a multiple of the bulk-IN
    /// wMaxPacketSize with a zero-length packet.
    pub zlp_after_full_packet: bool,
    /// Most log entries kept (older ones are dropped).
    pub log_limit: usize,
}

impl ReaderConfig {
    /// A reader with this descriptor and plain USB facts (VID:PID
    /// 0000:0000, one interface with bulk-IN, bulk-OUT and interrupt-IN,
    /// 64-byte bulk packets).
    pub fn new(descriptor: CcidDescriptor) -> Self {
        let usb = UsbInfo {
            configuration: 1,
            interface_class: 0x0B,
            num_endpoints: 3,
            has_interrupt: true,
            bulk_in_packet_size: 64,
            interrupt_packet_size: interrupt_packet_size(descriptor.slot_count()),
            manufacturer: Some("ccid-sim".into()),
            product: Some("Virtual CCID reader".into()),
            serial: Some("ccid-sim-0".into()),
            ccid_descriptor: descriptor.to_bytes().to_vec(),
            ..UsbInfo::default()
        };
        ReaderConfig {
            descriptor,
            data_rates: Vec::new(),
            clock_frequencies: Vec::new(),
            usb,
            timing: TimeModel::zero(),
            initial_notification: true,
            zlp_after_full_packet: false,
            log_limit: 10_000,
        }
    }

    /// The reader of one dumped interface.
    pub fn from_dump(device: &ReaderDump, iface: &InterfaceDump) -> Result<Self, SimError> {
        let d = iface.descriptor.clone().ok_or(SimError::NoDescriptor)?;
        let mut cfg = ReaderConfig::new(d);
        cfg.data_rates = iface.data_rates.clone();
        cfg.clock_frequencies = iface.clock_frequencies.clone();
        cfg.usb = usb_info(device, iface);
        Ok(cfg)
    }

    /// The reader of the `index`-th CCID interface (counted over the whole
    /// text, interfaces without a class descriptor skipped) of a dump.
    pub fn from_dump_text(text: &str, source: &str, index: usize) -> Result<Self, SimError> {
        let all = ccid::dump::parse(text, source)?;
        let ifaces = ccid::dump::ccid_interfaces(&all);
        let count = ifaces.len();
        let (dev, iface) = ifaces.into_iter().nth(index).ok_or(SimError::NoInterface {
            source: source.to_string(),
            index,
            count,
        })?;
        Self::from_dump(dev, iface)
    }

    /// [`ReaderConfig::from_dump_text`] on a file.
    pub fn from_dump_file(path: &Path, index: usize) -> Result<Self, SimError> {
        let bytes = std::fs::read(path).map_err(|e| SimError::Io {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        let name = path.file_name().map_or_else(
            || path.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        Self::from_dump_text(&String::from_utf8_lossy(&bytes), &name, index)
    }

    /// Sets the time model.
    pub fn with_timing(mut self, timing: TimeModel) -> Self {
        self.timing = timing;
        self
    }

    /// Sets the exchange level (rewrites `dwFeatures` bits 16..18).
    pub fn with_level(mut self, level: ExchangeLevel) -> Self {
        self.descriptor.dwFeatures =
            (self.descriptor.dwFeatures & !0x0007_0000) | level.feature_bits();
        self.usb.ccid_descriptor = self.descriptor.to_bytes().to_vec();
        self
    }

    /// Sets the number of slots and of busy slots.
    pub fn with_slots(mut self, slots: u8, busy: u8) -> Self {
        self.descriptor.bMaxSlotIndex = slots.saturating_sub(1);
        self.descriptor.bMaxCCIDBusySlots = busy;
        self.usb.ccid_descriptor = self.descriptor.to_bytes().to_vec();
        self.usb.interrupt_packet_size = interrupt_packet_size(self.descriptor.slot_count());
        self
    }
}

/// The smallest interrupt wMaxPacketSize (8, 16, 32, 64) that holds a
/// NotifySlotChange for `slots` slots.
pub fn interrupt_packet_size(slots: usize) -> u16 {
    let need = 1 + slots.div_ceil(4);
    [8u16, 16, 32, 64]
        .into_iter()
        .find(|s| usize::from(*s) >= need)
        .unwrap_or(64)
}

/// The USB facts of a dumped interface. The dump does not give packet
/// sizes: bulk-IN is taken as full speed (64 bytes) and the interrupt
/// endpoint as the smallest size that holds a slot-change message.
pub fn usb_info(device: &ReaderDump, iface: &InterfaceDump) -> UsbInfo {
    let slots = iface
        .descriptor
        .as_ref()
        .map_or(1, CcidDescriptor::slot_count);
    let has_interrupt = match iface.protocol {
        0 => iface.num_endpoints >= 3,
        _ => iface.num_endpoints == 1 || iface.num_endpoints >= 3,
    };
    UsbInfo {
        vendor_id: device.vendor_id,
        product_id: device.product_id,
        bcd_device: device.bcd_device,
        configuration: 1,
        interface_number: iface.number,
        interface_class: iface.class,
        interface_protocol: iface.protocol,
        num_endpoints: iface.num_endpoints,
        has_interrupt,
        bulk_in_packet_size: 64,
        interrupt_packet_size: interrupt_packet_size(slots),
        manufacturer: device.manufacturer.clone(),
        product: device.product.clone(),
        serial: Some("ccid-sim-0".into()),
        interface_name: iface.name.clone(),
        ccid_descriptor: iface
            .descriptor
            .as_ref()
            .map(|d| d.to_bytes().to_vec())
            .unwrap_or_default(),
        ..UsbInfo::default()
    }
}

/// What a PC_to_RDR_Escape gets: `Ok(abData)` or `Err(bError)`.
pub type EscapeHandler = Box<dyn FnMut(u8, &[u8]) -> Result<Vec<u8>, u8> + Send>;

/// The card as a Secure handler reaches it, through the reader.
pub trait SecureCard {
    /// True when the reader works at TPDU level with T=1: the host wrapped
    /// the APDU in an I-block whose prologue is in bTeoPrologue, and the
    /// answer must be the card's block ([`SecureCard::t1_exchange`]).
    fn t1_wrapped(&self) -> bool;
    /// Sends a command APDU; returns the response data and SW1 SW2.
    fn apdu(&mut self, apdu: &[u8]) -> Vec<u8>;
    /// Sends the I-block `prologue ‖ apdu ‖ EDC` (the card's EDC); returns
    /// the card's block, or `None` when it stays silent.
    fn t1_exchange(&mut self, prologue: [u8; 3], apdu: &[u8]) -> Option<Vec<u8>>;
}

/// The hook for PC_to_RDR_Secure (PIN entry on the reader's keypad);
/// [`crate::pinpad::PinpadScript`] is one.
pub trait SecureHandler: Send {
    /// Carries out a Secure command for `slot`: `data` is abData
    /// (`bPINOperation` first, then the CCID PIN structure). Returns the
    /// answer's abData or a bError (e.g. 0xEF cancelled, 0xF0 timeout).
    fn secure(&mut self, slot: u8, data: &[u8], card: &mut dyn SecureCard) -> Result<Vec<u8>, u8>;
}

/// A slot's card seen by a Secure handler.
struct SlotCard<'a> {
    card: &'a mut Card,
    t1_wrapped: bool,
}

impl SecureCard for SlotCard<'_> {
    fn t1_wrapped(&self) -> bool {
        self.t1_wrapped
    }

    fn apdu(&mut self, apdu: &[u8]) -> Vec<u8> {
        self.card.apdu(apdu)
    }

    fn t1_exchange(&mut self, prologue: [u8; 3], apdu: &[u8]) -> Option<Vec<u8>> {
        let mut block = prologue.to_vec();
        block.extend_from_slice(apdu);
        let edc = self.card.parsed_atr().edc();
        ccid::iso7816::t1::block::push_edc(&mut block, edc);
        self.card.t1_block(&block)
    }
}

/// Direction and endpoint of a logged transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogKind {
    /// A message written to bulk-OUT.
    BulkOut,
    /// A transfer read from bulk-IN (empty: a zero-length packet).
    BulkIn,
    /// A bulk-IN read that stalled.
    BulkInStall,
    /// A message read from interrupt-IN.
    Interrupt,
    /// A control transfer to the device.
    ControlOut(ControlSetup),
    /// A control transfer from the device.
    ControlIn(ControlSetup),
}

/// One logged transfer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    /// When (the caller's clock).
    pub at: Duration,
    /// What.
    pub kind: LogKind,
    /// The bytes.
    pub data: Vec<u8>,
}

/// Counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Messages written to bulk-OUT.
    pub commands: u64,
    /// Messages shorter than a header, dropped without an answer.
    pub ignored: u64,
    /// Commands answered 'slot busy'.
    pub busy: u64,
    /// Frames read from bulk-IN (ZLPs included).
    pub transfers: u64,
    /// Interrupt messages read.
    pub notifications: u64,
    /// Faults applied.
    pub faults: u64,
}

/// The outcome of polling bulk-IN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BulkPoll {
    /// A transfer (empty: a zero-length packet), or the endpoint's error.
    Ready(Result<Vec<u8>, TransportError>),
    /// Nothing yet; the next transfer is due at this time.
    Later(Duration),
    /// Nothing queued.
    Idle,
}

#[derive(Debug, Clone)]
enum Item {
    Frame(Vec<u8>),
    Zlp,
    Stall,
    /// A frame sent again and again (endless time extension).
    Repeat {
        frame: Vec<u8>,
        every: Duration,
    },
}

#[derive(Debug, Clone)]
struct Pending {
    ready: Duration,
    order: u64,
    item: Item,
    /// The in-flight command this item completes.
    completes: Option<u64>,
}

#[derive(Debug, Clone)]
struct InFlight {
    id: u64,
    slot: u8,
    seq: u8,
    answer_type: MessageType,
    /// No final answer is queued: only an abort ends it.
    hung: bool,
}

#[derive(Debug, Clone)]
enum Interrupt {
    /// Built when read, from the slots' current state.
    SlotChange,
    Raw(Vec<u8>),
}

/// A CCID reader model. See the module documentation.
pub struct VirtualReader {
    cfg: ReaderConfig,
    level: ExchangeLevel,
    iccd: Option<IccdVersion>,
    slots: Vec<Slot>,
    out: Vec<Pending>,
    order: u64,
    next_id: u64,
    in_flight: Vec<InFlight>,
    interrupts: VecDeque<Interrupt>,
    faults: FaultScript,
    gone: bool,
    escape: Option<EscapeHandler>,
    secure: Option<Box<dyn SecureHandler>>,
    abort_requests: Vec<Option<u8>>,
    log: VecDeque<LogEntry>,
    log_dropped: u64,
    now: Duration,
    stats: Stats,
    iccd_state: iccd::IccdState,
    started: bool,
}

impl fmt::Debug for VirtualReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VirtualReader")
            .field("level", &self.level)
            .field("iccd", &self.iccd)
            .field("slots", &self.slots.len())
            .field("gone", &self.gone)
            .finish_non_exhaustive()
    }
}

#[allow(clippy::too_many_arguments)]
fn response(
    t: MessageType,
    slot: u8,
    seq: u8,
    icc: IccStatus,
    cmd: CommandStatus,
    error: u8,
    specific: u8,
    data: Vec<u8>,
) -> Response {
    Response {
        message_type: t,
        slot,
        seq,
        status: Status::new(icc, cmd),
        error: SlotError(error),
        specific,
        data,
    }
}

impl VirtualReader {
    /// A reader with no card in any slot.
    pub fn new(mut cfg: ReaderConfig) -> Self {
        cfg.usb.ccid_descriptor = cfg.descriptor.to_bytes().to_vec();
        let n = cfg.descriptor.slot_count();
        let level = cfg.descriptor.exchange_level();
        let iccd = IccdVersion::from_protocol(cfg.usb.interface_protocol);
        let slots = (0..n)
            .map(|_| {
                let mut s = Slot {
                    clock_khz: cfg.descriptor.dwDefaultClock.max(1),
                    data_rate: cfg.descriptor.dwDataRate,
                    ..Slot::default()
                };
                s.reset_params();
                s.changed = false;
                s
            })
            .collect();
        VirtualReader {
            level,
            iccd,
            slots,
            out: Vec::new(),
            order: 0,
            next_id: 0,
            in_flight: Vec::new(),
            interrupts: VecDeque::new(),
            faults: FaultScript::default(),
            gone: false,
            escape: None,
            secure: None,
            abort_requests: vec![None; n],
            log: VecDeque::new(),
            log_dropped: 0,
            now: Duration::ZERO,
            stats: Stats::default(),
            iccd_state: iccd::IccdState::default(),
            started: false,
            cfg,
        }
    }

    /// A reader with `card` in every slot (a fresh [`Card::test_card`] in
    /// slots other than the first when `card` is given).
    pub fn with_card(cfg: ReaderConfig, card: Option<Card>) -> Self {
        let mut r = Self::new(cfg);
        if let Some(c) = card {
            let n = r.slots.len();
            let _ = r.insert_card(0, c);
            for s in 1..n {
                let _ = r.insert_card(s as u8, Card::test_card());
            }
        }
        r
    }

    /// The reader of the `index`-th CCID interface of a dump file, with
    /// `card` in slot 0 (and test cards in the other slots) when given.
    pub fn from_dump_file(path: &Path, index: usize, card: Option<Card>) -> Result<Self, SimError> {
        Ok(Self::with_card(
            ReaderConfig::from_dump_file(path, index)?,
            card,
        ))
    }

    /// The configuration.
    pub fn config(&self) -> &ReaderConfig {
        &self.cfg
    }

    /// The USB facts a transport reports.
    pub fn usb_info(&self) -> &UsbInfo {
        &self.cfg.usb
    }

    /// The exchange level in force.
    pub fn level(&self) -> ExchangeLevel {
        self.level
    }

    /// The ICCD version, for a bInterfaceProtocol 1 or 2 interface.
    pub fn iccd(&self) -> Option<IccdVersion> {
        self.iccd
    }

    /// Number of slots.
    pub fn slot_count(&self) -> usize {
        self.slots.len()
    }

    /// Counters.
    pub fn stats(&self) -> Stats {
        Stats {
            faults: self.faults.fired(),
            ..self.stats
        }
    }

    fn advance(&mut self, now: Duration) {
        self.start();
        if now > self.now {
            self.now = now;
        }
    }

    fn log_entry(&mut self, kind: LogKind, data: &[u8]) {
        if self.cfg.log_limit == 0 {
            return;
        }
        while self.log.len() >= self.cfg.log_limit {
            self.log.pop_front();
            self.log_dropped += 1;
        }
        self.log.push_back(LogEntry {
            at: self.now,
            kind,
            data: data.to_vec(),
        });
    }

    /// The transfers logged so far (oldest first).
    pub fn log(&self) -> Vec<LogEntry> {
        self.log.iter().cloned().collect()
    }

    /// Forgets the log.
    pub fn clear_log(&mut self) {
        self.log.clear();
    }

    /// Log entries dropped for [`ReaderConfig::log_limit`].
    pub fn log_dropped(&self) -> u64 {
        self.log_dropped
    }

    // ----- cards and device -------------------------------------------

    fn slot_mut(&mut self, slot: u8) -> Result<&mut Slot, SimError> {
        self.slots
            .get_mut(usize::from(slot))
            .ok_or(SimError::BadSlot(slot))
    }

    fn notify_change(&mut self) {
        // Before the first transfer, cards are the reader's initial state.
        if !self.cfg.usb.has_interrupt || !self.started {
            return;
        }
        if !self
            .interrupts
            .iter()
            .any(|i| matches!(i, Interrupt::SlotChange))
        {
            self.interrupts.push_back(Interrupt::SlotChange);
        }
    }

    /// Puts `card` in `slot` (replacing any card there) and signals it on
    /// the interrupt endpoint.
    pub fn insert_card(&mut self, slot: u8, card: Card) -> Result<(), SimError> {
        let s = self.slot_mut(slot)?;
        s.insert(card);
        self.notify_change();
        Ok(())
    }

    /// Takes the card out of `slot`; it is kept aside for
    /// [`VirtualReader::reinsert_card`]. Returns whether there was one.
    pub fn remove_card(&mut self, slot: u8) -> Result<bool, SimError> {
        let s = self.slot_mut(slot)?;
        let c = s.remove();
        let had = c.is_some();
        if had {
            s.spare = c;
        }
        self.notify_change();
        Ok(had)
    }

    /// Puts back the card last removed from `slot`; false when there is
    /// none.
    pub fn reinsert_card(&mut self, slot: u8) -> Result<bool, SimError> {
        let s = self.slot_mut(slot)?;
        match s.spare.take() {
            Some(c) => {
                s.insert(c);
                self.notify_change();
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// The card in `slot`.
    pub fn card(&self, slot: u8) -> Option<&Card> {
        self.slots.get(usize::from(slot))?.card.as_ref()
    }

    /// The card in `slot`, mutably.
    pub fn card_mut(&mut self, slot: u8) -> Option<&mut Card> {
        self.slots.get_mut(usize::from(slot))?.card.as_mut()
    }

    /// bmICCStatus of `slot`.
    pub fn icc_status(&self, slot: u8) -> Option<IccStatus> {
        self.slots.get(usize::from(slot)).map(Slot::icc)
    }

    /// The protocol and parameter structure in force on `slot`.
    pub fn parameters(&self, slot: u8) -> Option<(u8, Vec<u8>)> {
        let s = self.slots.get(usize::from(slot))?;
        Some((s.protocol, s.params.clone()))
    }

    /// The device disappears: every later call fails with NoDevice.
    pub fn unplug(&mut self) {
        self.gone = true;
        self.out.clear();
        self.interrupts.clear();
        self.in_flight.clear();
    }

    /// Whether the device is gone.
    pub fn is_gone(&self) -> bool {
        self.gone
    }

    /// Queues a fault rule.
    pub fn inject(&mut self, rule: FaultRule) {
        self.faults.push(rule);
    }

    /// Queues a one-shot fault for the next command.
    pub fn inject_once(&mut self, fault: Fault) {
        self.faults.push(FaultRule::once(fault));
    }

    /// Queues a fault for the T=1 responder of the card in `slot` now.
    pub fn inject_card(&mut self, slot: u8, fault: T1Fault) -> Result<(), SimError> {
        let s = self.slot_mut(slot)?;
        if let Some(c) = s.card.as_mut() {
            c.inject_t1(fault);
        }
        Ok(())
    }

    /// The fault rules.
    pub fn faults_mut(&mut self) -> &mut FaultScript {
        &mut self.faults
    }

    /// Sets the PC_to_RDR_Escape handler (default: 'command not
    /// supported').
    pub fn set_escape_handler(&mut self, h: Option<EscapeHandler>) {
        self.escape = h;
    }

    /// Sets the PC_to_RDR_Secure handler (default: 'command not
    /// supported').
    pub fn set_secure_handler(&mut self, h: Option<Box<dyn SecureHandler>>) {
        self.secure = h;
    }

    /// Queues a RDR_to_PC_HardwareError on the interrupt endpoint.
    pub fn hardware_error(&mut self, slot: u8, seq: u8, code: u8) {
        if self.cfg.usb.has_interrupt {
            self.interrupts.push_back(Interrupt::Raw(vec![
                MessageType::RDR_TO_PC_HARDWARE_ERROR.0,
                slot,
                seq,
                code,
            ]));
        }
    }

    /// Commands in flight (accepted, final answer not read yet).
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    fn max_busy(&self) -> usize {
        usize::from(self.cfg.descriptor.bMaxCCIDBusySlots.max(1))
    }

    fn is_busy(&self, slot: u8) -> bool {
        self.in_flight.iter().any(|f| f.slot == slot) || self.in_flight.len() >= self.max_busy()
    }

    // ----- bulk ----------------------------------------------------------

    fn push(&mut self, ready: Duration, item: Item, completes: Option<u64>) {
        self.order += 1;
        self.out.push(Pending {
            ready,
            order: self.order,
            item,
            completes,
        });
    }

    fn push_frame(&mut self, ready: Duration, frame: Vec<u8>, completes: Option<u64>, zlp: bool) {
        let mps = usize::from(self.cfg.usb.bulk_in_packet_size.max(1));
        let full = !frame.is_empty() && frame.len().is_multiple_of(mps);
        self.push(ready, Item::Frame(frame), completes);
        if full && (zlp || self.cfg.zlp_after_full_packet) {
            self.push(ready, Item::Zlp, None);
        }
    }

    /// A message written to bulk-OUT at time `now`.
    pub fn bulk_out(&mut self, frame: &[u8], now: Duration) -> Result<(), TransportError> {
        self.advance(now);
        if self.gone {
            return Err(TransportError::NoDevice);
        }
        if self.iccd.is_some() {
            return Err(TransportError::NotFound);
        }
        self.stats.commands += 1;
        self.log_entry(LogKind::BulkOut, frame);
        let Ok(header) = Header::parse(frame) else {
            // Too short to be answered: nobody is addressed.
            self.stats.ignored += 1;
            return Ok(());
        };
        let mt = MessageType(header.message_type);
        let answer_type = mt
            .expected_response()
            .unwrap_or(MessageType::RDR_TO_PC_SLOT_STATUS);
        let (slot, seq) = (header.slot, header.seq);
        let Some(icc) = self.icc_status(slot) else {
            let r = response(
                answer_type,
                slot,
                seq,
                IccStatus::Absent,
                CommandStatus::Failed,
                SlotError::BAD_SLOT.0,
                0,
                Vec::new(),
            );
            self.push_frame(self.now, r.encode(), None, false);
            return Ok(());
        };
        if mt != MessageType::PC_TO_RDR_ABORT && self.is_busy(slot) {
            self.stats.busy += 1;
            let r = response(
                answer_type,
                slot,
                seq,
                icc,
                CommandStatus::Failed,
                SlotError::CMD_SLOT_BUSY.0,
                0,
                Vec::new(),
            );
            self.push_frame(self.now, r.encode(), None, false);
            return Ok(());
        }
        let faults = self.faults.take(slot, mt);
        for f in &faults {
            match *f {
                Fault::StallOut => return Err(TransportError::Pipe),
                Fault::Unplug => {
                    self.unplug();
                    return Ok(());
                }
                Fault::CardRemoved => {
                    let _ = self.remove_card(slot);
                }
                Fault::Card(t1) => {
                    let _ = self.inject_card(slot, t1);
                }
                Fault::EndlessChaining => {
                    if let Some(s) = self.slots.get_mut(usize::from(slot)) {
                        s.endless_chain = true;
                    }
                }
                _ => {}
            }
        }
        let max_len = self.cfg.descriptor.dwMaxCCIDMessageLength as usize;
        let (rsp, delay) = match Command::decode(frame) {
            Err(FrameError::Short { .. }) => return Ok(()),
            Err(_) => (
                self.failed(answer_type, slot, seq, SlotError::BAD_LENGTH.0),
                Duration::ZERO,
            ),
            Ok(_) if frame.len() > max_len && max_len >= 10 => (
                self.failed(answer_type, slot, seq, SlotError::BAD_LENGTH.0),
                Duration::ZERO,
            ),
            Ok((_, cmd)) => self.execute(slot, seq, cmd),
        };
        self.finish(slot, seq, answer_type, rsp, delay, &faults);
        Ok(())
    }

    fn failed(&self, t: MessageType, slot: u8, seq: u8, error: u8) -> Response {
        let icc = self.icc_status(slot).unwrap_or(IccStatus::Absent);
        response(
            t,
            slot,
            seq,
            icc,
            CommandStatus::Failed,
            error,
            0,
            Vec::new(),
        )
    }

    /// Applies the answer-side faults and queues the answer.
    fn finish(
        &mut self,
        slot: u8,
        seq: u8,
        answer_type: MessageType,
        mut rsp: Response,
        mut delay: Duration,
        faults: &[Fault],
    ) {
        let icc = self.icc_status(slot).unwrap_or(IccStatus::Absent);
        let mut hang = false;
        let mut silent = false;
        let mut stall = false;
        let mut endless: Option<u8> = None;
        let mut extensions: Option<(u8, u8)> = None;
        let mut stray = false;
        let mut zlp = false;
        for f in faults {
            match *f {
                Fault::Fail(e) => {
                    rsp = response(
                        rsp.message_type,
                        slot,
                        seq,
                        icc,
                        CommandStatus::Failed,
                        e,
                        0,
                        Vec::new(),
                    );
                }
                Fault::HardwareError(code) => {
                    rsp = response(
                        rsp.message_type,
                        slot,
                        seq,
                        icc,
                        CommandStatus::Failed,
                        SlotError::HW_ERROR.0,
                        0,
                        Vec::new(),
                    );
                    self.hardware_error(slot, seq, code);
                }
                Fault::Delay(d) => delay += d,
                Fault::Hang => hang = true,
                Fault::Silence => silent = true,
                Fault::Stall => stall = true,
                Fault::EndlessTimeExtension { multiplier } => endless = Some(multiplier),
                Fault::TimeExtension { count, multiplier } => {
                    extensions = Some((count, multiplier))
                }
                Fault::StrayZlp => stray = true,
                Fault::ZlpAfterFullPacket => zlp = true,
                _ => {}
            }
        }
        let mut bytes = rsp.encode();
        for f in faults {
            match *f {
                Fault::WrongSeq(d) => {
                    if let Some(b) = bytes.get_mut(6) {
                        *b = b.wrapping_add(d);
                    }
                }
                Fault::WrongSlot(s) => {
                    if let Some(b) = bytes.get_mut(5) {
                        *b = s;
                    }
                }
                Fault::LongLength(n) => {
                    let len = ccid::proto::codec::u32_le_at(&bytes, 1).unwrap_or(0);
                    if let Some(dw) = bytes.get_mut(1..5) {
                        dw.copy_from_slice(&len.wrapping_add(n).to_le_bytes());
                    }
                }
                Fault::ShortFrame(n) => bytes.truncate(n),
                _ => {}
            }
        }
        let mut copies = Vec::new();
        let mut duplicate = false;
        for f in faults {
            match *f {
                Fault::StrayCopy { slot, seq_delta } => {
                    let mut c = bytes.clone();
                    if let (Some(b), Some(s)) = (c.get_mut(5), slot) {
                        *b = s;
                    }
                    if let Some(b) = c.get_mut(6) {
                        *b = b.wrapping_add(seq_delta);
                    }
                    copies.push(c);
                }
                Fault::Duplicate => duplicate = true,
                _ => {}
            }
        }
        if silent {
            return;
        }
        self.next_id += 1;
        let id = self.next_id;
        self.in_flight.push(InFlight {
            id,
            slot,
            seq,
            answer_type,
            hung: hang || endless.is_some(),
        });
        let ready = self.now + delay;
        if stray {
            self.push(ready, Item::Zlp, None);
        }
        let extension = |mult: u8| {
            response(
                answer_type,
                slot,
                seq,
                icc,
                CommandStatus::TimeExtension,
                mult,
                0,
                Vec::new(),
            )
            .encode()
        };
        if let Some(mult) = endless {
            let every = self.cfg.timing.wtx_interval();
            self.push(
                ready,
                Item::Repeat {
                    frame: extension(mult),
                    every,
                },
                Some(id),
            );
            return;
        }
        if hang {
            return;
        }
        if let Some((count, mult)) = extensions {
            for _ in 0..count {
                self.push_frame(ready, extension(mult), None, zlp);
            }
        }
        for c in copies {
            self.push_frame(ready, c, None, zlp);
        }
        if stall {
            self.push(ready, Item::Stall, Some(id));
        } else if duplicate {
            self.push_frame(ready, bytes.clone(), Some(id), zlp);
            self.push_frame(ready, bytes, None, zlp);
        } else {
            self.push_frame(ready, bytes, Some(id), zlp);
        }
    }

    /// Polls bulk-IN at time `now`.
    pub fn poll_bulk_in(&mut self, now: Duration) -> BulkPoll {
        self.advance(now);
        if self.gone {
            return BulkPoll::Ready(Err(TransportError::NoDevice));
        }
        if self.iccd.is_some() {
            return BulkPoll::Ready(Err(TransportError::NotFound));
        }
        let Some(i) = self
            .out
            .iter()
            .enumerate()
            .min_by_key(|(_, p)| (p.ready, p.order))
            .map(|(i, _)| i)
        else {
            return BulkPoll::Idle;
        };
        let Some(p) = self.out.get(i) else {
            return BulkPoll::Idle;
        };
        if p.ready > self.now {
            return BulkPoll::Later(p.ready);
        }
        let p = self.out.remove(i);
        let result = match p.item {
            Item::Frame(f) => Ok(f),
            Item::Zlp => Ok(Vec::new()),
            Item::Stall => Err(TransportError::Pipe),
            Item::Repeat { frame, every } => {
                let ready = self.now + every;
                self.push(
                    ready,
                    Item::Repeat {
                        frame: frame.clone(),
                        every,
                    },
                    p.completes,
                );
                self.stats.transfers += 1;
                self.log_entry(LogKind::BulkIn, &frame);
                return BulkPoll::Ready(Ok(frame));
            }
        };
        if let Some(id) = p.completes {
            self.in_flight.retain(|f| f.id != id);
        }
        self.stats.transfers += 1;
        match &result {
            Ok(f) => self.log_entry(LogKind::BulkIn, f),
            Err(_) => self.log_entry(LogKind::BulkInStall, &[]),
        }
        BulkPoll::Ready(result)
    }

    /// Writes `frame` and collects every bulk-IN transfer it causes,
    /// letting model time pass as needed (for tests that drive the model
    /// directly). Transfers of other commands still queued are included;
    /// a stalled read is skipped; an endless answer is reported once.
    pub fn exchange(&mut self, frame: &[u8]) -> Result<Vec<Vec<u8>>, TransportError> {
        self.bulk_out(frame, self.now)?;
        self.drain()
    }

    /// Collects every queued bulk-IN transfer, letting model time pass.
    pub fn drain(&mut self) -> Result<Vec<Vec<u8>>, TransportError> {
        let mut out = Vec::new();
        loop {
            if !self.out.is_empty()
                && self
                    .out
                    .iter()
                    .all(|p| matches!(p.item, Item::Repeat { .. }))
            {
                for p in &self.out {
                    if let Item::Repeat { frame, .. } = &p.item {
                        out.push(frame.clone());
                    }
                }
                return Ok(out);
            }
            match self.poll_bulk_in(self.now) {
                BulkPoll::Ready(Ok(f)) => out.push(f),
                BulkPoll::Ready(Err(TransportError::Pipe)) => {}
                BulkPoll::Ready(Err(e)) => return Err(e),
                BulkPoll::Later(t) => self.advance(t),
                BulkPoll::Idle => return Ok(out),
            }
        }
    }

    /// Sends `cmd` to `slot` with `seq` and returns the decoded final
    /// answer (the last transfer that parses), for tests.
    pub fn transact(
        &mut self,
        slot: u8,
        seq: u8,
        cmd: &Command,
    ) -> Result<Response, TransportError> {
        let frames = self.exchange(&cmd.encode(slot, seq))?;
        frames
            .iter()
            .rev()
            .find_map(|f| Response::parse(f).ok())
            .ok_or(TransportError::Timeout)
    }

    /// Polls interrupt-IN at time `now`.
    pub fn poll_interrupt(&mut self, now: Duration) -> Option<Result<Vec<u8>, TransportError>> {
        self.advance(now);
        if self.gone {
            return Some(Err(TransportError::NoDevice));
        }
        if !self.cfg.usb.has_interrupt {
            return Some(Err(TransportError::NotFound));
        }
        let msg = match self.interrupts.pop_front()? {
            Interrupt::Raw(m) => m,
            Interrupt::SlotChange => {
                let states: Vec<(bool, bool)> = self
                    .slots
                    .iter_mut()
                    .map(|s| {
                        let c = std::mem::take(&mut s.changed);
                        (s.card.is_some(), c)
                    })
                    .collect();
                Notification::encode_slot_change(&states)
            }
        };
        self.stats.notifications += 1;
        self.log_entry(LogKind::Interrupt, &msg);
        Some(Ok(msg))
    }

    /// Ends the set-up: the cards inserted so far are the initial state,
    /// announced by one NotifySlotChange when
    /// [`ReaderConfig::initial_notification`] is set. Called by the first
    /// transfer (and by [`SimTransport::new`](crate::transport::SimTransport::new));
    /// later calls do nothing.
    pub fn start(&mut self) {
        if self.started {
            return;
        }
        self.started = true;
        if self.cfg.initial_notification && self.slots.iter().any(|s| s.card.is_some()) {
            self.notify_change();
        } else {
            for s in &mut self.slots {
                s.changed = false;
            }
        }
    }

    // ----- commands ------------------------------------------------------

    fn execute(&mut self, slot: u8, seq: u8, cmd: Command) -> (Response, Duration) {
        let t = cmd
            .message_type()
            .expected_response()
            .unwrap_or(MessageType::RDR_TO_PC_SLOT_STATUS);
        let timing = self.cfg.timing;
        let quick = timing.answer(Duration::ZERO, Duration::ZERO);
        let idx = usize::from(slot);
        let level = self.level;
        let features = self.cfg.descriptor.features();
        let mechanical = self.cfg.descriptor.dwMechanical;
        let ok =
            |icc, specific, data| response(t, slot, seq, icc, CommandStatus::Ok, 0, specific, data);
        let fail = |icc, e| response(t, slot, seq, icc, CommandStatus::Failed, e, 0, Vec::new());
        // Split borrows: the slot and the reader's context.
        let ctx = Ctx {
            descriptor: &self.cfg.descriptor,
            level,
            timing: &self.cfg.timing,
            data_rates: &self.cfg.data_rates,
            clocks: &self.cfg.clock_frequencies,
        };
        let Some(s) = self.slots.get_mut(idx) else {
            return (fail(IccStatus::Absent, SlotError::BAD_SLOT.0), quick);
        };
        match cmd {
            Command::GetSlotStatus => (ok(s.icc(), clock_status(s), Vec::new()), quick),
            Command::IccPowerOn { power_select } => {
                let auto = features.intersects(Features::AUTO_VOLTAGE | Features::AUTO_ACTIVATION);
                let select = if auto && power_select != 0 && valid_voltage(power_select) {
                    // A reader choosing the voltage itself ignores the request.
                    0
                } else {
                    power_select
                };
                let (r, d) = s.power_on(&ctx, select);
                match r {
                    Ok(atr) => (ok(IccStatus::Active, 0, atr), d),
                    Err(e) => (fail(s.icc(), e), d),
                }
            }
            Command::IccPowerOff => {
                s.power_off();
                (ok(s.icc(), clock_status(s), Vec::new()), quick)
            }
            Command::GetParameters => {
                if s.card.is_none() {
                    return (fail(IccStatus::Absent, SlotError::ICC_MUTE.0), quick);
                }
                (ok(s.icc(), s.protocol, s.params.clone()), quick)
            }
            Command::ResetParameters => {
                if s.card.is_none() {
                    return (fail(IccStatus::Absent, SlotError::ICC_MUTE.0), quick);
                }
                s.reset_params();
                (ok(s.icc(), s.protocol, s.params.clone()), quick)
            }
            Command::SetParameters { protocol, data } => {
                if s.card.is_none() {
                    return (fail(IccStatus::Absent, SlotError::ICC_MUTE.0), quick);
                }
                match s.set_params(&ctx, protocol, &data) {
                    Ok(()) => (ok(s.icc(), s.protocol, s.params.clone()), quick),
                    Err(e) => (
                        response(
                            t,
                            slot,
                            seq,
                            s.icc(),
                            CommandStatus::Failed,
                            e,
                            s.protocol,
                            s.params.clone(),
                        ),
                        quick,
                    ),
                }
            }
            Command::XfrBlock {
                level: lp, data, ..
            } => {
                let (r, d) = s.xfr(&ctx, lp, &data);
                match r {
                    Ok((data, chain)) => (ok(s.icc(), chain, data), d),
                    Err(e) => (fail(s.icc(), e), d),
                }
            }
            Command::Escape { data } => {
                let icc = s.icc();
                match self.escape.as_mut() {
                    Some(h) => match h(slot, &data) {
                        Ok(d) => (ok(icc, 0, d), quick),
                        Err(e) => (fail(icc, e), quick),
                    },
                    None => (fail(icc, SlotError::CMD_NOT_SUPPORTED.0), quick),
                }
            }
            Command::Secure { data, .. } => {
                let icc = s.icc();
                let Some(h) = self.secure.as_mut() else {
                    return (fail(icc, SlotError::CMD_NOT_SUPPORTED.0), quick);
                };
                if icc != IccStatus::Active {
                    return (fail(icc, SlotError::ICC_MUTE.0), quick);
                }
                let t1_wrapped = level == ExchangeLevel::Tpdu && s.protocol == 1;
                let Some(card) = s.card.as_mut() else {
                    return (fail(icc, SlotError::ICC_MUTE.0), quick);
                };
                let mut sc = SlotCard { card, t1_wrapped };
                let r = h.secure(slot, &data, &mut sc);
                let busy = sc.card.take_busy_time();
                match r {
                    Ok(d) => (ok(icc, 0, d), timing.answer(busy, Duration::ZERO)),
                    Err(e) => (fail(icc, e), timing.answer(busy, Duration::ZERO)),
                }
            }
            Command::IccClock { clock_command } => {
                let icc = s.icc();
                match clock_command {
                    _ if icc != IccStatus::Active => (fail(icc, SlotError::ICC_MUTE.0), quick),
                    0 => {
                        s.clock_status = 0;
                        (ok(icc, 0, Vec::new()), quick)
                    }
                    1 if features.contains(Features::CLOCK_STOP) => {
                        s.clock_status =
                            match s.card.as_ref().and_then(|c| c.parsed_atr().clock_stop()) {
                                Some(ccid::iso7816::atr::ClockStop::Low) => 1,
                                Some(ccid::iso7816::atr::ClockStop::High) => 2,
                                _ => 3,
                            };
                        (ok(icc, s.clock_status, Vec::new()), quick)
                    }
                    1 => (fail(icc, SlotError::CMD_NOT_SUPPORTED.0), quick),
                    _ => (fail(icc, 7), quick),
                }
            }
            Command::T0Apdu {
                changes,
                class_get_response,
                class_envelope,
            } => {
                let icc = s.icc();
                if !matches!(
                    level,
                    ExchangeLevel::ShortApdu | ExchangeLevel::ExtendedApdu
                ) {
                    return (fail(icc, SlotError::CMD_NOT_SUPPORTED.0), quick);
                }
                if changes & !0x03 != 0 {
                    return (fail(icc, 7), quick);
                }
                let (mut g, mut e) = s.t0_classes;
                if changes & 0x01 != 0 {
                    g = class_get_response;
                }
                if changes & 0x02 != 0 {
                    e = class_envelope;
                }
                s.t0_classes = (g, e);
                (ok(icc, clock_status(s), Vec::new()), quick)
            }
            Command::Mechanical { function } => {
                let bit = match function {
                    1 => 0x01,
                    2 => 0x02,
                    3 => 0x04,
                    4 | 5 => 0x08,
                    _ => return (fail(s.icc(), 7), quick),
                };
                if mechanical & bit == 0 {
                    return (fail(s.icc(), SlotError::CMD_NOT_SUPPORTED.0), quick);
                }
                match function {
                    1 => {
                        if s.card.is_none() {
                            if let Some(c) = s.spare.take() {
                                s.insert(c);
                            }
                        }
                    }
                    2 => {
                        let c = s.remove();
                        if c.is_some() {
                            s.spare = c;
                        }
                    }
                    3 => {
                        s.remove();
                    }
                    4 => s.locked = true,
                    _ => s.locked = false,
                }
                let changed = s.changed;
                let icc = s.icc();
                let r = ok(icc, clock_status(s), Vec::new());
                if changed {
                    self.notify_change();
                }
                (r, quick)
            }
            Command::Abort => {
                let icc = s.icc();
                self.abort_slot(slot);
                if let Some(a) = self.abort_requests.get_mut(idx) {
                    *a = None;
                }
                (ok(icc, 0, Vec::new()), quick)
            }
            Command::SetDataRateAndClockFrequency { clock, rate } => {
                let icc = s.icc();
                let r = s.set_rate_and_clock(&ctx, clock, rate);
                let mut data = s.clock_khz.to_le_bytes().to_vec();
                data.extend_from_slice(&s.data_rate.to_le_bytes());
                match r {
                    Ok(()) => (ok(icc, 0, data), quick),
                    Err(e) => (
                        response(t, slot, seq, icc, CommandStatus::Failed, e, 0, data),
                        quick,
                    ),
                }
            }
            Command::Unknown { .. } => {
                let r = response(
                    MessageType::RDR_TO_PC_SLOT_STATUS,
                    slot,
                    seq,
                    s.icc(),
                    CommandStatus::Failed,
                    SlotError::CMD_NOT_SUPPORTED.0,
                    0,
                    Vec::new(),
                );
                (r, quick)
            }
        }
    }

    /// Ends the hung commands of `slot` with bError CMD_ABORTED.
    fn abort_slot(&mut self, slot: u8) {
        let hung: Vec<InFlight> = self
            .in_flight
            .iter()
            .filter(|f| f.slot == slot && f.hung)
            .cloned()
            .collect();
        for f in hung {
            self.out.retain(|p| p.completes != Some(f.id));
            let r = self.failed(f.answer_type, f.slot, f.seq, SlotError::CMD_ABORTED.0);
            if let Some(x) = self.in_flight.iter_mut().find(|x| x.id == f.id) {
                x.hung = false;
            }
            self.push_frame(self.now, r.encode(), Some(f.id), false);
        }
    }

    // ----- control pipe ----------------------------------------------------

    /// A control transfer from the device (bmRequestType bit 7 set):
    /// returns at most `len` bytes.
    pub fn control_in(
        &mut self,
        setup: ControlSetup,
        len: usize,
        now: Duration,
    ) -> Result<Vec<u8>, TransportError> {
        self.advance(now);
        if self.gone {
            return Err(TransportError::NoDevice);
        }
        let r = self.control_in_inner(setup, len);
        if let Ok(d) = &r {
            self.log_entry(LogKind::ControlIn(setup), d);
        }
        r
    }

    fn control_in_inner(
        &mut self,
        setup: ControlSetup,
        len: usize,
    ) -> Result<Vec<u8>, TransportError> {
        let list = |v: &[u32]| -> Result<Vec<u8>, TransportError> {
            if v.is_empty() {
                return Err(TransportError::Pipe);
            }
            let mut out: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
            out.truncate(len);
            Ok(out)
        };
        match (setup.request_type, setup.request) {
            // Standard GET_STATUS (device): self powered 0, no remote wakeup.
            (0x80, 0x00) => Ok(vec![0, 0].into_iter().take(len).collect()),
            (0xA1, ccid::transport::REQUEST_GET_CLOCK_FREQUENCIES) if self.iccd.is_none() => {
                list(&self.cfg.clock_frequencies)
            }
            (0xA1, ccid::transport::REQUEST_GET_DATA_RATES) if self.iccd.is_none() => {
                list(&self.cfg.data_rates)
            }
            (0xA1, req) if self.iccd.is_some() => self.iccd_in(req, setup.value, len),
            _ => Err(TransportError::Pipe),
        }
    }

    /// A control transfer to the device; returns the bytes accepted.
    pub fn control_out(
        &mut self,
        setup: ControlSetup,
        data: &[u8],
        now: Duration,
    ) -> Result<usize, TransportError> {
        self.advance(now);
        if self.gone {
            return Err(TransportError::NoDevice);
        }
        self.log_entry(LogKind::ControlOut(setup), data);
        match (setup.request_type, setup.request) {
            (0x21, ccid::transport::REQUEST_ABORT) if self.iccd.is_none() => {
                let [slot, seq] = setup.value.to_le_bytes();
                let Some(a) = self.abort_requests.get_mut(usize::from(slot)) else {
                    return Err(TransportError::Pipe);
                };
                *a = Some(seq);
                self.abort_slot(slot);
                Ok(0)
            }
            (0x21, req) if self.iccd.is_some() => self.iccd_out(req, setup.value, data),
            _ => Err(TransportError::Pipe),
        }
    }
}

/// bClockStatus for a SlotStatus answer.
fn clock_status(s: &Slot) -> u8 {
    if s.icc() == IccStatus::Active {
        s.clock_status
    } else {
        0
    }
}

fn valid_voltage(b: u8) -> bool {
    ccid::proto::message::Voltage::from_byte(b).is_some()
}
