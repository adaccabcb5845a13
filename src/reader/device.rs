//! One opened CCID interface: its transport, descriptor, effective
//! capabilities, the exchange path shared by its slots, the limit on
//! commands in flight (`bMaxCCIDBusySlots`), and card-event notifications
//! from the interrupt endpoint.

use super::exchange::{ExchangeLimits, Exchanger};
use crate::config::DriverOptions;
use crate::error::{Error, Result};
use crate::proto::descriptor::{CcidDescriptor, ExchangeLevel, Features};
use crate::proto::message::{Command, Notification, Response, SlotError};
use crate::quirks::Resolved;
use crate::transport::{
    ControlSetup, Transport, TransportError, UsbInfo, CLASS_INTERFACE_IN, REQUEST_GET_DATA_RATES,
};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Timeout of commands that do not involve the card.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(3000);

/// How long a 'slot busy' answer is retried before giving up.
const BUSY_RETRY_LIMIT: Duration = Duration::from_secs(30);

/// The reader's capabilities after reader-specific adjustments; the raw
/// descriptor is kept unchanged beside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caps {
    /// The effective descriptor values.
    pub descriptor: CcidDescriptor,
    /// Supported data rates from GET_DATA_RATES (empty: none reported).
    pub data_rates: Vec<u32>,
}

impl Caps {
    /// Exchange level.
    pub fn level(&self) -> ExchangeLevel {
        self.descriptor.exchange_level()
    }
    /// `dwFeatures`.
    pub fn features(&self) -> Features {
        self.descriptor.features()
    }
    /// Largest data field of one XfrBlock.
    pub fn max_data(&self) -> usize {
        (self.descriptor.dwMaxCCIDMessageLength as usize).saturating_sub(10)
    }
}

#[derive(Default)]
struct SlotEvents {
    pending: bool,
    stop: bool,
}

struct Events {
    state: Mutex<Vec<SlotEvents>>,
    cond: Condvar,
}

/// Outcome of waiting for a card event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventWait {
    /// A notification concerning the slot arrived.
    Changed,
    /// The wait was stopped.
    Stopped,
    /// The timeout expired.
    TimedOut,
    /// The device is gone.
    Gone,
}

/// A counting gate for commands in flight.
struct Gate {
    limit: usize,
    busy: Mutex<usize>,
    cond: Condvar,
}

impl Gate {
    fn enter(&self) -> GateGuard<'_> {
        let mut n = self.busy.lock().unwrap_or_else(|p| p.into_inner());
        while *n >= self.limit {
            n = self.cond.wait(n).unwrap_or_else(|p| p.into_inner());
        }
        *n += 1;
        GateGuard(self)
    }
}

struct GateGuard<'a>(&'a Gate);

impl Drop for GateGuard<'_> {
    fn drop(&mut self) {
        let mut n = self.0.busy.lock().unwrap_or_else(|p| p.into_inner());
        *n = n.saturating_sub(1);
        drop(n);
        self.0.cond.notify_one();
    }
}

/// An opened reader (one CCID interface), shared by its slots.
pub struct Device {
    exchanger: Exchanger,
    info: UsbInfo,
    raw: CcidDescriptor,
    caps: Caps,
    gate: Gate,
    /// Shared with the other CCID interfaces of the same composite device
    /// when they must not be used at the same time.
    composite_gate: Option<Arc<Gate>>,
    events: Arc<Events>,
    interrupt_stop: Arc<AtomicBool>,
    interrupt_thread: Mutex<Option<JoinHandle<()>>>,
    quirks: Resolved,
    /// Device name given by pcscd, for logs.
    pub name: String,
    /// Lun of slot 0.
    pub lun_base: u64,
    cap: Duration,
}

impl std::fmt::Debug for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Device")
            .field("name", &self.name)
            .field("lun", &self.lun_base)
            .finish()
    }
}

/// Options applied when a device is opened.
#[derive(Debug, Clone)]
pub struct OpenOptions {
    /// Hard cap on any single wait, in ms.
    pub timeout_cap: Duration,
    /// Start the interrupt-endpoint thread for card events.
    pub card_events: bool,
    /// `ifdDriverOptions` (quirk gates, bogus firmware).
    pub driver_options: DriverOptions,
    /// Language of on-reader prompts (`$LANG`).
    pub lang: Option<String>,
}

impl Default for OpenOptions {
    fn default() -> Self {
        OpenOptions {
            timeout_cap: Duration::from_secs(600),
            card_events: true,
            driver_options: DriverOptions::empty(),
            lang: None,
        }
    }
}

impl Device {
    /// Opens a reader over `transport`: decodes its class descriptor, asks
    /// for its data rates, checks that it answers, and starts listening for
    /// card events.
    pub fn open(
        transport: Arc<dyn Transport>,
        name: &str,
        lun_base: u64,
        opts: &OpenOptions,
    ) -> Result<Arc<Device>> {
        let info = transport.info().clone();
        let raw = CcidDescriptor::parse(&info.ccid_descriptor).map_err(|e| {
            log::error!("{name}: invalid CCID class descriptor: {e}");
            Error::NoReader(format!("invalid CCID class descriptor: {e}"))
        })?;
        let iccd = super::iccd::Version::from_protocol(info.interface_protocol);
        let slot_count = raw.slot_count();
        let exchanger = Exchanger::new(transport, slot_count, lun_base).with_iccd(iccd);
        let mut data_rates = Vec::new();
        if raw.bNumDataRatesSupported != 0 {
            data_rates = get_data_rates(&exchanger, &info, raw.bNumDataRatesSupported)
                .unwrap_or_else(|e| {
                    log::info!("{name}: GET_DATA_RATES failed: {e}");
                    Vec::new()
                });
        }
        // Reader quirks, resolved once; the raw descriptor stays as read.
        let mut quirks = crate::quirks::resolve(&info, &raw, &data_rates, opts.driver_options);
        if let Some(why) = &quirks.refused {
            log::error!("{name}: {why}");
            return Err(Error::Refused(why.clone()));
        }
        for line in crate::quirks::describe(&quirks) {
            log::info!("{name}: {line}");
        }
        warm_up(&exchanger, name, &quirks, opts.timeout_cap)?;
        for step in quirks.init_steps(opts.lang.as_deref()) {
            if !step.sleep_before.is_zero() {
                std::thread::sleep(step.sleep_before);
            }
            let limits =
                ExchangeLimits::new(step.timeout.unwrap_or(DEFAULT_TIMEOUT), opts.timeout_cap);
            let answer = exchanger
                .exchange(
                    0,
                    &Command::Escape {
                        data: step.data.clone(),
                    },
                    limits,
                )
                .and_then(|r| super::slot::check_status(&r).map(|_| r.data));
            match answer {
                Ok(a) => {
                    quirks.apply_init_success(&step, &a);
                }
                Err(Error::NoDevice) => return Err(Error::NoDevice),
                // A reader is still usable without what an init escape
                // sets up (prompts, modes): the failure is reported, the
                // reader kept.
                Err(e) if step.required => {
                    log::error!("{name}: {} ({}) failed: {e}", step.name, step.quirk)
                }
                Err(e) => log::info!("{name}: {} ({}) failed: {e}", step.name, step.quirk),
            }
        }
        let mut descriptor = quirks.descriptor.clone();
        let data_rates = quirks.data_rates.clone();
        if iccd == Some(super::iccd::Version::B)
            && matches!(
                descriptor.exchange_level(),
                ExchangeLevel::ShortApdu | ExchangeLevel::Character
            )
        {
            // ICCD version B exchanges APDUs in data blocks chained like an
            // extended-APDU reader's (a token announcing character level
            // still answers whole APDUs).
            descriptor.dwFeatures =
                (descriptor.dwFeatures & !0x0007_0000) | ExchangeLevel::ExtendedApdu.feature_bits();
        }
        if iccd.is_some() {
            let max = (super::iccd::MAX_BLOCK + 10) as u32;
            descriptor.dwMaxCCIDMessageLength = descriptor.dwMaxCCIDMessageLength.clamp(11, max);
        }
        let busy = match descriptor.bMaxCCIDBusySlots {
            0 | 1 => 1,
            n => usize::from(n).min(slot_count),
        };
        let caps = Caps {
            descriptor,
            data_rates,
        };
        let events = Arc::new(Events {
            state: Mutex::new((0..slot_count).map(|_| SlotEvents::default()).collect()),
            cond: Condvar::new(),
        });
        let composite_gate = composite_gate(&info);
        let dev = Arc::new(Device {
            exchanger,
            info,
            raw,
            caps,
            quirks,
            composite_gate,
            gate: Gate {
                limit: busy,
                busy: Mutex::new(0),
                cond: Condvar::new(),
            },
            events,
            interrupt_stop: Arc::new(AtomicBool::new(false)),
            interrupt_thread: Mutex::new(None),
            name: name.to_string(),
            lun_base,
            cap: opts.timeout_cap,
        });
        if opts.card_events && dev.info.has_interrupt {
            dev.start_interrupt_thread();
        }
        log::info!(
            "{name}: opened {:04X}:{:04X} '{}' level {}, {} slot(s), {} busy",
            dev.info.vendor_id,
            dev.info.product_id,
            dev.info.product.as_deref().unwrap_or(""),
            dev.caps.level().name(),
            slot_count,
            busy
        );
        Ok(dev)
    }

    /// USB facts.
    pub fn info(&self) -> &UsbInfo {
        &self.info
    }

    /// The descriptor as the reader reports it.
    pub fn raw_descriptor(&self) -> &CcidDescriptor {
        &self.raw
    }

    /// Effective capabilities.
    pub fn caps(&self) -> &Caps {
        &self.caps
    }

    /// The reader's quirks.
    pub fn quirks(&self) -> &Resolved {
        &self.quirks
    }

    /// Number of slots.
    pub fn slot_count(&self) -> usize {
        self.caps.descriptor.slot_count()
    }

    /// Commands the driver lets run at once on this reader.
    pub fn busy_limit(&self) -> usize {
        self.gate.limit
    }

    /// Hard cap on waits.
    pub fn timeout_cap(&self) -> Duration {
        self.cap
    }

    /// Whether the device is gone.
    pub fn is_gone(&self) -> bool {
        self.exchanger.is_gone()
    }

    /// The exchanger (for statistics in tests).
    pub fn exchanger(&self) -> &Exchanger {
        &self.exchanger
    }

    /// Marks the device removed: no more I/O, every waiter fails now.
    pub fn mark_gone(&self) {
        self.exchanger.mark_gone();
        self.interrupt_stop.store(true, Ordering::Release);
        let _st = self.events_lock();
        self.events.cond.notify_all();
    }

    /// Sends a command to `slot` within the busy-slot limit and returns the
    /// response. 'Slot busy' answers are waited out within a bound.
    pub fn exchange(&self, slot: u8, cmd: &Command, timeout: Duration) -> Result<Response> {
        let limits = ExchangeLimits::new(timeout, self.cap);
        let start = Instant::now();
        let mut backoff = Duration::from_millis(2);
        loop {
            let resp = {
                let _c = self.composite_gate.as_ref().map(|g| g.enter());
                let _g = self.gate.enter();
                self.exchanger.exchange(slot, cmd, limits)
            }
            .map_err(|e| match e {
                Error::Timeout { .. } => Error::Timeout {
                    ms: limits.timeout.as_millis() as u64,
                },
                e => e,
            })?;
            if resp.status.command() == crate::proto::message::CommandStatus::Failed
                && resp.error == SlotError::CMD_SLOT_BUSY
                && start.elapsed() < BUSY_RETRY_LIMIT
            {
                log::debug!(target: "ccid::comm", "slot {slot} busy, retrying");
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_millis(100));
                continue;
            }
            return Ok(resp);
        }
    }

    fn events_lock(&self) -> MutexGuard<'_, Vec<SlotEvents>> {
        self.events.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn start_interrupt_thread(self: &Arc<Self>) {
        let weak = Arc::downgrade(self);
        let stop = self.interrupt_stop.clone();
        let events = self.events.clone();
        let transport = self.exchanger.transport().clone();
        // Read exactly the NotifySlotChange size rounded up to whole packets:
        // a larger buffer would leave a transfer open when the message fills
        // its last packet and the reader sends no short packet after it.
        let packet = usize::from(self.info.interrupt_packet_size.max(1));
        let expected = 1 + self.slot_count().div_ceil(4);
        let size = expected.div_ceil(packet) * packet;
        let lun = self.lun_base;
        let spawned = std::thread::Builder::new()
            .name("ccid-interrupt".into())
            .spawn(move || {
                let mut buf = vec![0u8; size];
                while !stop.load(Ordering::Acquire) {
                    match transport.interrupt_in(&mut buf, Duration::from_millis(500)) {
                        Ok(0) => continue,
                        Ok(n) => {
                            let msg = buf.get(..n).unwrap_or(&[]);
                            super::trace_notification(lun, msg);
                            let mut st = events.state.lock().unwrap_or_else(|p| p.into_inner());
                            match Notification::parse(msg) {
                                Ok(note @ Notification::SlotChange { .. }) => {
                                    for (i, s) in st.iter_mut().enumerate() {
                                        if let Some((_, changed)) = note.slot_state(i) {
                                            if changed {
                                                s.pending = true;
                                            }
                                        }
                                    }
                                }
                                Ok(Notification::HardwareError { slot, code, .. }) => {
                                    log::error!("hardware error {code:#04x} on slot {slot}");
                                    if let Some(s) = st.get_mut(usize::from(slot)) {
                                        s.pending = true;
                                    }
                                }
                                Ok(Notification::Unknown(_)) | Err(_) => {
                                    log::info!("unrecognized notification ignored");
                                }
                            }
                            drop(st);
                            events.cond.notify_all();
                        }
                        Err(TransportError::Timeout) => continue,
                        Err(TransportError::NoDevice) => {
                            if let Some(dev) = weak.upgrade() {
                                dev.exchanger.mark_gone();
                            }
                            let _st = events.state.lock().unwrap_or_else(|p| p.into_inner());
                            events.cond.notify_all();
                            break;
                        }
                        Err(TransportError::NotFound) => break,
                        Err(e) => {
                            log::debug!(target: "ccid::periodic", "interrupt read failed: {e}");
                            std::thread::sleep(Duration::from_millis(100));
                        }
                    }
                }
            });
        match spawned {
            Ok(h) => {
                *self
                    .interrupt_thread
                    .lock()
                    .unwrap_or_else(|p| p.into_inner()) = Some(h)
            }
            Err(e) => log::error!("cannot start the card-event thread: {e}"),
        }
    }

    /// Whether card events come from the interrupt endpoint.
    pub fn has_card_events(&self) -> bool {
        self.interrupt_thread
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
    }

    /// Waits up to `timeout` for a card event on `slot` or a stop request.
    /// A stop requested before the wait starts ends it at once.
    pub fn wait_event(&self, slot: usize, timeout: Duration) -> EventWait {
        let deadline = Instant::now() + timeout;
        let mut st = self.events_lock();
        loop {
            if self.is_gone() {
                return EventWait::Gone;
            }
            let Some(s) = st.get_mut(slot) else {
                return EventWait::Gone;
            };
            if s.stop {
                s.stop = false;
                return EventWait::Stopped;
            }
            if s.pending {
                s.pending = false;
                return EventWait::Changed;
            }
            let now = Instant::now();
            if now >= deadline {
                return EventWait::TimedOut;
            }
            let (g, _) = self
                .events
                .cond
                .wait_timeout(st, deadline - now)
                .unwrap_or_else(|p| p.into_inner());
            st = g;
        }
    }

    /// Ends a [`Device::wait_event`] on `slot` now, or the next one if none
    /// is running.
    pub fn stop_wait(&self, slot: usize) {
        let mut st = self.events_lock();
        if let Some(s) = st.get_mut(slot) {
            s.stop = true;
        }
        drop(st);
        self.events.cond.notify_all();
    }

    /// Stops background activity; called when the last slot closes.
    pub fn shutdown(&self) {
        self.interrupt_stop.store(true, Ordering::Release);
        {
            let _st = self.events_lock();
            self.events.cond.notify_all();
        }
        let handle = self
            .interrupt_thread
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(h) = handle {
            if h.thread().id() != std::thread::current().id() {
                let _ = h.join();
            }
        }
    }
}

impl Drop for Device {
    fn drop(&mut self) {
        self.interrupt_stop.store(true, Ordering::Release);
    }
}

fn get_data_rates(ex: &Exchanger, info: &UsbInfo, n: u8) -> Result<Vec<u32>> {
    let mut buf = vec![0u8; usize::from(n) * 4];
    let setup = ControlSetup {
        request_type: CLASS_INTERFACE_IN,
        request: REQUEST_GET_DATA_RATES,
        value: 0,
        index: u16::from(info.interface_number),
    };
    let got = ex
        .transport()
        .control_in(setup, &mut buf, DEFAULT_TIMEOUT)
        .map_err(Error::Transport)?;
    let data = buf.get(..got).unwrap_or(&[]);
    super::trace_control("receive:", data);
    if got % 4 != 0 {
        return Err(Error::Protocol(format!(
            "GET_DATA_RATES returned {got} bytes"
        )));
    }
    Ok(data
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .filter(|r| *r != 0)
        .collect())
}

/// The reader answers GetSlotStatus: a stale answer left from an earlier
/// session is dropped by the bSeq check, so a few tries suffice. Slow
/// readers get the longer timeouts their quirks give.
fn warm_up(ex: &Exchanger, name: &str, quirks: &Resolved, cap: Duration) -> Result<()> {
    if let Some(d) = quirks.open_sleep {
        std::thread::sleep(d);
    }
    let first = quirks.open_timeout.unwrap_or(Duration::from_millis(1000));
    let retry = quirks.warm_up_timeout.unwrap_or(Duration::from_millis(300));
    let mut last = None;
    for (i, t) in [first, retry, retry].iter().enumerate() {
        match ex.exchange(0, &Command::GetSlotStatus, ExchangeLimits::new(*t, cap)) {
            Ok(_) => return Ok(()),
            Err(Error::NoDevice) => return Err(Error::NoDevice),
            Err(e) => {
                log::info!("{name}: GetSlotStatus try {} failed: {e}", i + 1);
                last = Some(e);
            }
        }
    }
    let e = last.unwrap_or(Error::Timeout { ms: 0 });
    log::error!("{name}: the reader does not answer: {e}");
    Err(e)
}

type CompositeKey = (u8, u8, String, u16, u16);

/// The gate shared by the CCID interfaces of one composite device whose
/// interfaces deadlock when used at the same time (the composite rows of
/// the quirk table): one command at a time across all of them.
fn composite_gate(info: &UsbInfo) -> Option<Arc<Gate>> {
    static GATES: Mutex<Vec<(CompositeKey, std::sync::Weak<Gate>)>> = Mutex::new(Vec::new());
    let entry = crate::quirks::composite_as_multislot(info.vendor_id, info.product_id)?;
    let key = (
        info.bus,
        info.address,
        info.port_path.clone(),
        info.vendor_id,
        info.product_id,
    );
    let mut gates = GATES.lock().unwrap_or_else(|p| p.into_inner());
    gates.retain(|(_, w)| w.strong_count() > 0);
    if let Some(g) = gates
        .iter()
        .find(|(k, _)| *k == key)
        .and_then(|(_, w)| w.upgrade())
    {
        return Some(g);
    }
    log::info!(
        "{}: interfaces used one at a time ({})",
        entry.id,
        entry.why
    );
    let g = Arc::new(Gate {
        limit: 1,
        busy: Mutex::new(0),
        cond: Condvar::new(),
    });
    gates.push((key, Arc::downgrade(&g)));
    Some(g)
}
