//! The in-process frontend: a [`VirtualReader`] behind the driver's
//! [`Transport`] trait, and a [`SimControl`] handle for tests.
//!
//! * `bulk_out` hands the message to the model;
//! * `bulk_in` waits (on a condition variable, bounded by the timeout)
//!   until the model's next answer is due, then returns it the way libusb
//!   would: a frame longer than the caller's buffer comes in
//!   packet-multiple pieces, and a buffer smaller than one packet
//!   overflows;
//! * `interrupt_in` delivers NotifySlotChange / HardwareError messages;
//! * `control_in` / `control_out` carry class requests and ICCD;
//! * after an unplug every call fails with `NoDevice`.
//!
//! Time is the wall clock since the transport was made: the model's
//! answers are due at `now + delay`, so its time model's delays are
//! really waited out, and with the zero-delay model nothing waits. Several
//! threads may call any method at once.
#![forbid(unsafe_code)]

use crate::card::Card;
use crate::fault::{Fault, FaultRule};
use crate::model::{
    BulkPoll, EscapeHandler, LogEntry, SecureHandler, SimError, Stats, VirtualReader,
};
use ccid::iso7816::t1::card::Fault as T1Fault;
use ccid::transport::{ControlSetup, Transport, TransportError, UsbInfo};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

struct State {
    reader: VirtualReader,
    /// The rest of a frame whose start was returned to a short buffer.
    partial: Option<Vec<u8>>,
}

struct Shared {
    state: Mutex<State>,
    cond: Condvar,
    start: Instant,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn now(&self) -> Duration {
        self.start.elapsed()
    }

    /// Runs `f` on the model and wakes every waiting reader.
    fn with<R>(&self, f: impl FnOnce(&mut VirtualReader) -> R) -> R {
        let r = f(&mut self.lock().reader);
        self.cond.notify_all();
        r
    }

    /// Waits until `until` (an instant) or a notification; returns the
    /// guard, or `None` once `deadline` has passed.
    fn wait<'a>(
        &self,
        guard: MutexGuard<'a, State>,
        until: Instant,
        deadline: Instant,
    ) -> Option<MutexGuard<'a, State>> {
        let now = Instant::now();
        if now >= deadline {
            return None;
        }
        let until = until.min(deadline);
        let g = match self
            .cond
            .wait_timeout(guard, until.saturating_duration_since(now))
        {
            Ok((g, _)) => g,
            Err(p) => p.into_inner().0,
        };
        Some(g)
    }
}

/// A virtual reader as a [`Transport`].
pub struct SimTransport {
    shared: Arc<Shared>,
    info: UsbInfo,
}

/// A handle to control a virtual reader from tests: cards, faults,
/// unplugging, the frame log.
#[derive(Clone)]
pub struct SimControl {
    shared: Arc<Shared>,
}

impl SimTransport {
    /// Wraps `reader`; returns the transport and its control handle. The
    /// start-up notification (if configured) is queued now.
    pub fn new(mut reader: VirtualReader) -> (Arc<SimTransport>, SimControl) {
        reader.start();
        let info = reader.usb_info().clone();
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                reader,
                partial: None,
            }),
            cond: Condvar::new(),
            start: Instant::now(),
        });
        let t = Arc::new(SimTransport {
            shared: shared.clone(),
            info,
        });
        (t, SimControl { shared })
    }

    /// Like [`SimTransport::new`], typed as the driver wants it.
    pub fn shared(reader: VirtualReader) -> (Arc<dyn Transport>, SimControl) {
        let (t, c) = Self::new(reader);
        (t, c)
    }

    /// Another control handle.
    pub fn control(&self) -> SimControl {
        SimControl {
            shared: self.shared.clone(),
        }
    }

    fn deliver(
        st: &mut State,
        frame: Vec<u8>,
        buf: &mut [u8],
        packet: usize,
    ) -> Result<usize, TransportError> {
        if frame.len() <= buf.len() {
            if let Some(dst) = buf.get_mut(..frame.len()) {
                dst.copy_from_slice(&frame);
            }
            return Ok(frame.len());
        }
        // libusb: the transfer completes with whole packets once the buffer
        // is full; the rest of the frame is read by the next transfer. A
        // buffer that cannot take one packet overflows.
        let n = buf.len() / packet * packet;
        if n == 0 {
            return Err(TransportError::Overflow);
        }
        let (head, rest) = frame.split_at(n);
        if let Some(dst) = buf.get_mut(..n) {
            dst.copy_from_slice(head);
        }
        st.partial = Some(rest.to_vec());
        Ok(n)
    }
}

impl Transport for SimTransport {
    fn info(&self) -> &UsbInfo {
        &self.info
    }

    fn bulk_out(&self, data: &[u8], _timeout: Duration) -> Result<(), TransportError> {
        let now = self.shared.now();
        self.shared.with(|r| r.bulk_out(data, now))
    }

    fn bulk_in(&self, buf: &mut [u8], timeout: Duration) -> Result<usize, TransportError> {
        let deadline = Instant::now() + timeout;
        let packet = usize::from(self.info.bulk_in_packet_size.max(1));
        let mut st = self.shared.lock();
        loop {
            if let Some(rest) = st.partial.take() {
                return Self::deliver(&mut st, rest, buf, packet);
            }
            let now = self.shared.now();
            let until = match st.reader.poll_bulk_in(now) {
                BulkPoll::Ready(Ok(frame)) => return Self::deliver(&mut st, frame, buf, packet),
                BulkPoll::Ready(Err(e)) => return Err(e),
                BulkPoll::Later(t) => self.shared.start + t,
                BulkPoll::Idle => deadline,
            };
            st = self
                .shared
                .wait(st, until, deadline)
                .ok_or(TransportError::Timeout)?;
        }
    }

    fn interrupt_in(&self, buf: &mut [u8], timeout: Duration) -> Result<usize, TransportError> {
        let deadline = Instant::now() + timeout;
        let mut st = self.shared.lock();
        loop {
            let now = self.shared.now();
            match st.reader.poll_interrupt(now) {
                Some(Ok(msg)) => {
                    let n = msg.len().min(buf.len());
                    if let (Some(dst), Some(src)) = (buf.get_mut(..n), msg.get(..n)) {
                        dst.copy_from_slice(src);
                    }
                    return if n < msg.len() {
                        Err(TransportError::Overflow)
                    } else {
                        Ok(n)
                    };
                }
                Some(Err(e)) => return Err(e),
                None => {}
            }
            st = self
                .shared
                .wait(st, deadline, deadline)
                .ok_or(TransportError::Timeout)?;
        }
    }

    fn control_in(
        &self,
        setup: ControlSetup,
        buf: &mut [u8],
        _timeout: Duration,
    ) -> Result<usize, TransportError> {
        let now = self.shared.now();
        let data = self.shared.with(|r| r.control_in(setup, buf.len(), now))?;
        let n = data.len().min(buf.len());
        if let (Some(dst), Some(src)) = (buf.get_mut(..n), data.get(..n)) {
            dst.copy_from_slice(src);
        }
        Ok(n)
    }

    fn control_out(
        &self,
        setup: ControlSetup,
        data: &[u8],
        _timeout: Duration,
    ) -> Result<usize, TransportError> {
        let now = self.shared.now();
        self.shared.with(|r| r.control_out(setup, data, now))
    }

    fn is_gone(&self) -> bool {
        self.shared.lock().reader.is_gone()
    }
}

impl SimControl {
    /// Runs `f` on the model (anything not covered by the methods below).
    /// `f` must not call the transport or this handle: the model is locked
    /// while it runs.
    pub fn with_reader<R>(&self, f: impl FnOnce(&mut VirtualReader) -> R) -> R {
        self.shared.with(f)
    }

    /// Puts `card` in `slot`.
    pub fn insert_card(&self, slot: u8, card: Card) -> Result<(), SimError> {
        self.shared.with(|r| r.insert_card(slot, card))
    }

    /// Takes the card out of `slot` (kept for [`SimControl::reinsert_card`]).
    pub fn remove_card(&self, slot: u8) -> Result<bool, SimError> {
        self.shared.with(|r| r.remove_card(slot))
    }

    /// Puts back the card last removed from `slot`.
    pub fn reinsert_card(&self, slot: u8) -> Result<bool, SimError> {
        self.shared.with(|r| r.reinsert_card(slot))
    }

    /// Unplugs the device: pending and later calls fail with NoDevice.
    pub fn unplug(&self) {
        self.shared.with(VirtualReader::unplug)
    }

    /// Queues a fault rule.
    pub fn inject(&self, rule: FaultRule) {
        self.shared.with(|r| r.inject(rule))
    }

    /// Queues a one-shot fault for the next command.
    pub fn inject_once(&self, fault: Fault) {
        self.shared.with(|r| r.inject_once(fault))
    }

    /// Queues a fault for the T=1 responder of the card in `slot`.
    pub fn inject_card(&self, slot: u8, fault: T1Fault) -> Result<(), SimError> {
        self.shared.with(|r| r.inject_card(slot, fault))
    }

    /// Drops every queued fault rule.
    pub fn clear_faults(&self) {
        self.shared.with(|r| r.faults_mut().clear())
    }

    /// Sets the Escape handler.
    pub fn set_escape_handler(&self, h: Option<EscapeHandler>) {
        self.shared.with(|r| r.set_escape_handler(h))
    }

    /// Sets the Secure handler.
    pub fn set_secure_handler(&self, h: Option<Box<dyn SecureHandler>>) {
        self.shared.with(|r| r.set_secure_handler(h))
    }

    /// The transfers logged so far.
    pub fn log(&self) -> Vec<LogEntry> {
        self.shared.lock().reader.log()
    }

    /// Forgets the log.
    pub fn clear_log(&self) {
        self.shared.with(VirtualReader::clear_log)
    }

    /// Counters.
    pub fn stats(&self) -> Stats {
        self.shared.lock().reader.stats()
    }

    /// Whether the device is unplugged.
    pub fn is_gone(&self) -> bool {
        self.shared.lock().reader.is_gone()
    }
}

impl crate::gadget::CardControl for SimControl {
    fn set_card_present(&self, slot: u8, present: bool) -> Result<(), String> {
        let r = if present {
            self.shared.with(|r| match r.reinsert_card(slot) {
                Ok(false) if r.card(slot).is_none() => r.insert_card(slot, Card::test_card()),
                Ok(_) => Ok(()),
                Err(e) => Err(e),
            })
        } else {
            self.remove_card(slot).map(|_| ())
        };
        r.map_err(|e| e.to_string())
    }
}
