//! A scripted transport for unit tests of the reader layer: a closure
//! answers each command with the bulk-IN transfers the test wants.

use crate::proto::descriptor::CcidDescriptor;
use crate::transport::{ControlSetup, Transport, TransportError, UsbInfo};
use std::collections::VecDeque;
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

type Handler = dyn FnMut(&[u8]) -> Vec<Vec<u8>> + Send;

/// Answers each bulk-OUT frame with the transfers `handler` returns.
pub(crate) struct Scripted {
    info: UsbInfo,
    handler: Mutex<Box<Handler>>,
    queue: Mutex<VecDeque<Vec<u8>>>,
    cond: Condvar,
    pub(crate) sent: Mutex<Vec<Vec<u8>>>,
    gone: std::sync::atomic::AtomicBool,
    interrupts: Mutex<VecDeque<Vec<u8>>>,
}

impl Scripted {
    pub(crate) fn new(
        desc: CcidDescriptor,
        handler: impl FnMut(&[u8]) -> Vec<Vec<u8>> + Send + 'static,
    ) -> Self {
        let info = UsbInfo {
            vendor_id: 0x1209,
            product_id: 0x2702,
            bulk_in_packet_size: 64,
            interrupt_packet_size: 8,
            has_interrupt: false,
            ccid_descriptor: desc.to_bytes().to_vec(),
            ..UsbInfo::default()
        };
        Scripted {
            info,
            handler: Mutex::new(Box::new(handler)),
            queue: Mutex::new(VecDeque::new()),
            cond: Condvar::new(),
            sent: Mutex::new(Vec::new()),
            gone: std::sync::atomic::AtomicBool::new(false),
            interrupts: Mutex::new(VecDeque::new()),
        }
    }

    /// Sets the USB identity (VID, PID, interface number).
    pub(crate) fn set_identity(&mut self, vid: u16, pid: u16, interface: u8) {
        self.info.vendor_id = vid;
        self.info.product_id = pid;
        self.info.interface_number = interface;
    }

    /// With an interrupt endpoint.
    pub(crate) fn with_interrupt(mut self) -> Self {
        self.info.has_interrupt = true;
        self
    }

    /// Queues an interrupt-IN message.
    pub(crate) fn notify(&self, msg: &[u8]) {
        self.interrupts.lock().unwrap().push_back(msg.to_vec());
        self.cond.notify_all();
    }

    pub(crate) fn unplug(&self) {
        self.gone.store(true, std::sync::atomic::Ordering::SeqCst);
        self.cond.notify_all();
    }
}

impl Transport for Scripted {
    fn info(&self) -> &UsbInfo {
        &self.info
    }
    fn bulk_out(&self, data: &[u8], _t: Duration) -> Result<(), TransportError> {
        if self.gone.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(TransportError::NoDevice);
        }
        self.sent.lock().unwrap().push(data.to_vec());
        let answers = (self.handler.lock().unwrap())(data);
        self.queue.lock().unwrap().extend(answers);
        self.cond.notify_all();
        Ok(())
    }
    fn bulk_in(&self, buf: &mut [u8], timeout: Duration) -> Result<usize, TransportError> {
        let deadline = Instant::now() + timeout;
        let mut q = self.queue.lock().unwrap();
        loop {
            if self.gone.load(std::sync::atomic::Ordering::SeqCst) {
                return Err(TransportError::NoDevice);
            }
            if let Some(t) = q.pop_front() {
                let n = t.len().min(buf.len());
                buf[..n].copy_from_slice(&t[..n]);
                return Ok(n);
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(TransportError::Timeout);
            }
            q = self.cond.wait_timeout(q, deadline - now).unwrap().0;
        }
    }
    fn interrupt_in(&self, buf: &mut [u8], timeout: Duration) -> Result<usize, TransportError> {
        if !self.info.has_interrupt {
            return Err(TransportError::NotFound);
        }
        let deadline = Instant::now() + timeout;
        loop {
            if self.gone.load(std::sync::atomic::Ordering::SeqCst) {
                return Err(TransportError::NoDevice);
            }
            if let Some(m) = self.interrupts.lock().unwrap().pop_front() {
                let n = m.len().min(buf.len());
                buf[..n].copy_from_slice(&m[..n]);
                return Ok(n);
            }
            if Instant::now() >= deadline {
                return Err(TransportError::Timeout);
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    fn control_in(
        &self,
        _s: ControlSetup,
        _b: &mut [u8],
        _t: Duration,
    ) -> Result<usize, TransportError> {
        Err(TransportError::Pipe)
    }
    fn control_out(
        &self,
        _s: ControlSetup,
        _d: &[u8],
        _t: Duration,
    ) -> Result<usize, TransportError> {
        Err(TransportError::Pipe)
    }
    fn is_gone(&self) -> bool {
        self.gone.load(std::sync::atomic::Ordering::SeqCst)
    }
}
