//! The bridge between a virtual reader and the endpoints of a USB function.
//!
//! The reader is a [`Transport`] seen from the driver's side; the bridge
//! plays the driver's part towards it and the device's part towards the
//! host:
//!
//! * bulk-OUT: packets from the host are assembled into whole CCID messages
//!   (a message ends after `10 + dwLength` bytes or at a short packet) and
//!   handed to [`Transport::bulk_out`];
//! * bulk-IN: every message from [`Transport::bulk_in`] is written to the
//!   bulk-IN endpoint, followed by a zero-length packet when its length is a
//!   multiple of the negotiated wMaxPacketSize (FunctionFS never sets
//!   `req->zero`, and the host's transfer would otherwise stay open);
//! * interrupt-IN: every notification from [`Transport::interrupt_in`] is
//!   written on a thread of its own, because an IN write may wait for the
//!   host (dummy_hcd shares one FIFO request between the IN endpoints);
//! * ep0: ENABLE/DISABLE track whether the host configured the device and
//!   at which speed; SETUP requests go to the reader's control transfers.
//!
//! Endpoint files are opened non-blocking, which in FunctionFS only means
//! "fail with EAGAIN instead of waiting while the endpoint is disabled":
//! once enabled, reads and writes wait for the host. No thread therefore
//! blocks in the kernel while the function is disabled, and every thread
//! notices [`Bridge::stop`] within [`POLL`].
#![forbid(unsafe_code)]

use super::ep0::{answer_setup, ControlEndpoint, Event, SetupOutcome};
use ccid::proto::message::{Header, HEADER_LEN, MAX_MESSAGE_LEN};
use ccid::transport::{Transport, TransportError};
use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How often a waiting thread looks at the stop flag.
pub const POLL: Duration = Duration::from_millis(100);

/// A data endpoint: a FunctionFS `epN` file, or a test double.
pub trait DataEndpoint: Send + Sync {
    /// One `read()`: a request of `buf.len()` bytes, completed by a full
    /// buffer or a short packet.
    fn read(&self, buf: &mut [u8]) -> io::Result<usize>;
    /// One `write()`: the whole buffer as one transfer (empty: a
    /// zero-length packet).
    fn write(&self, data: &[u8]) -> io::Result<usize>;
}

impl DataEndpoint for std::fs::File {
    fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        Read::read(&mut &*self, buf)
    }
    fn write(&self, data: &[u8]) -> io::Result<usize> {
        Write::write(&mut &*self, data)
    }
}

/// Bus speed of the current configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Speed {
    /// 12 Mbit/s: 64-byte bulk packets.
    Full,
    /// 480 Mbit/s: 512-byte bulk packets.
    High,
}

impl Speed {
    /// wMaxPacketSize of the bulk endpoints at this speed.
    pub fn bulk_packet_size(self) -> usize {
        match self {
            Speed::Full => usize::from(super::descriptors::BULK_MPS_FULL),
            Speed::High => usize::from(super::descriptors::BULK_MPS_HIGH),
        }
    }

    /// Reads `/sys/class/udc/<udc>/current_speed` ("high-speed",
    /// "full-speed", ...). Anything unreadable counts as high speed, the
    /// speed dummy_hcd offers by default.
    pub fn from_sysfs_text(text: &str) -> Speed {
        match text.trim() {
            "full-speed" | "low-speed" => Speed::Full,
            _ => Speed::High,
        }
    }
}

/// Whether a message of `len` bytes must be followed by a zero-length
/// packet on an endpoint with packets of `packet` bytes.
pub fn needs_zlp(len: usize, packet: usize) -> bool {
    packet > 0 && len > 0 && len.is_multiple_of(packet)
}

/// Assembles bulk-OUT packets into CCID messages.
///
/// The first read of a message asks for exactly one packet (a larger
/// request would wait for more data, and a smaller one fails with EOVERFLOW
/// when a full packet arrives); once the header is known, the rest is asked
/// for in one request rounded up to whole packets.
#[derive(Debug, Clone)]
pub struct OutAssembler {
    packet: usize,
    buf: Vec<u8>,
}

impl OutAssembler {
    /// An assembler for packets of `packet` bytes.
    pub fn new(packet: usize) -> OutAssembler {
        OutAssembler {
            packet: packet.max(1),
            buf: Vec::new(),
        }
    }

    /// Bytes of the current message so far.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }

    /// The total length the header announces, capped at the largest
    /// message a CCID reader can receive.
    fn expected_total(&self) -> Option<usize> {
        let h = Header::parse(&self.buf).ok()?;
        Some(
            HEADER_LEN
                .saturating_add(h.length as usize)
                .min(MAX_MESSAGE_LEN),
        )
    }

    /// The size of the next read.
    pub fn next_read_len(&self) -> usize {
        match self.expected_total() {
            Some(total) if total > self.buf.len() => {
                (total - self.buf.len()).div_ceil(self.packet) * self.packet
            }
            _ => self.packet,
        }
    }

    /// Adds the bytes of one completed read (`requested` bytes were asked
    /// for). Returns a message when one is complete: its announced length
    /// is reached, or the transfer ended with a short packet (then the
    /// message is passed on as it is, and the reader judges its length).
    pub fn push(&mut self, data: &[u8], requested: usize) -> Option<Vec<u8>> {
        self.buf.extend_from_slice(data);
        let short = data.len() < requested || data.is_empty();
        let complete = match self.expected_total() {
            Some(total) => self.buf.len() >= total,
            None => false,
        };
        if complete || short {
            if self.buf.is_empty() {
                return None; // a zero-length packet between messages
            }
            return Some(std::mem::take(&mut self.buf));
        }
        None
    }

    /// Drops a partial message (the host went away mid-transfer).
    pub fn reset(&mut self) {
        self.buf.clear();
    }
}

/// Counters shown by the `stats` control word and at exit.
#[derive(Debug, Default)]
pub struct Stats {
    /// Messages passed from bulk-OUT to the reader.
    pub commands: AtomicU64,
    /// Messages written to bulk-IN.
    pub responses: AtomicU64,
    /// Zero-length packets written after a response.
    pub zlps: AtomicU64,
    /// Notifications written to interrupt-IN.
    pub notifications: AtomicU64,
    /// SETUP requests answered or stalled.
    pub setups: AtomicU64,
    /// SETUP requests stalled.
    pub stalls: AtomicU64,
    /// Responses and notifications dropped because the host was not there.
    pub dropped: AtomicU64,
    /// ENABLE events (host configured the device).
    pub enables: AtomicU64,
}

impl Stats {
    /// One line, `name value` pairs.
    pub fn render(&self) -> String {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        format!(
            "commands {} responses {} zlp {} notifications {} setups {} stalls {} dropped {} enables {}",
            g(&self.commands),
            g(&self.responses),
            g(&self.zlps),
            g(&self.notifications),
            g(&self.setups),
            g(&self.stalls),
            g(&self.dropped),
            g(&self.enables)
        )
    }
}

/// The link state ep0 events establish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Link {
    /// Speed of the current configuration; `None` while disabled.
    speed: Option<Speed>,
}

/// A callback seeing every ep0 event.
pub type EventHook = Box<dyn Fn(&Event) + Send + Sync>;

/// State shared by a bridge's threads.
pub struct Shared {
    name: String,
    link: Mutex<Link>,
    changed: Condvar,
    stop: AtomicBool,
    verbose: AtomicBool,
    /// Counters.
    pub stats: Stats,
    /// Called with every event (after the bridge handled it), for the
    /// owner's bookkeeping (e.g. measuring bind → ENABLE).
    on_event: Option<EventHook>,
}

impl Shared {
    fn log(&self, text: &str) {
        eprintln!("[ccid-sim gadget {}] {text}", self.name);
    }

    fn trace(&self, text: impl FnOnce() -> String) {
        if self.verbose.load(Ordering::Relaxed) {
            self.log(&text());
        }
    }

    fn stopping(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    fn speed(&self) -> Option<Speed> {
        self.link.lock().map(|l| l.speed).unwrap_or(None)
    }

    fn set_speed(&self, speed: Option<Speed>) {
        if let Ok(mut l) = self.link.lock() {
            l.speed = speed;
        }
        self.changed.notify_all();
    }

    /// Waits until the host configured the device (or the bridge stops,
    /// or `POLL` passed); returns the speed when enabled.
    fn wait_enabled(&self) -> Option<Speed> {
        let Ok(guard) = self.link.lock() else {
            return None;
        };
        if guard.speed.is_some() {
            return guard.speed;
        }
        match self.changed.wait_timeout(guard, POLL) {
            Ok((g, _)) => g.speed,
            Err(_) => None,
        }
    }
}

/// The endpoints of one function.
pub struct Endpoints {
    /// ep0.
    pub control: Arc<dyn ControlEndpoint>,
    /// Bulk-OUT, when the function has one.
    pub bulk_out: Option<Arc<dyn DataEndpoint>>,
    /// Bulk-IN, when the function has one.
    pub bulk_in: Option<Arc<dyn DataEndpoint>>,
    /// Interrupt-IN, when the function has one.
    pub interrupt: Option<Arc<dyn DataEndpoint>>,
}

/// Settings of a bridge.
pub struct BridgeOptions {
    /// Name used in log lines.
    pub name: String,
    /// Log every message.
    pub verbose: bool,
    /// Tells the speed of the configuration, asked at every ENABLE.
    pub speed: Box<dyn Fn() -> Speed + Send + Sync>,
    /// Called with every ep0 event.
    pub on_event: Option<EventHook>,
}

/// A running bridge: up to four threads, stopped by [`Bridge::stop`].
pub struct Bridge {
    shared: Arc<Shared>,
    threads: Vec<(String, JoinHandle<()>)>,
}

/// Whether an I/O error means "the host is not there (any more)": the
/// endpoint is disabled (EAGAIN on a non-blocking file), or was disabled
/// while the request was pending (ESHUTDOWN), or the request was cancelled.
fn host_absent(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
    ) || matches!(
        e.raw_os_error(),
        Some(nix::libc::ESHUTDOWN) | Some(nix::libc::ECONNRESET) | Some(nix::libc::ENODEV)
    )
}

impl Bridge {
    /// Starts the threads.
    pub fn start(
        transport: Arc<dyn Transport>,
        endpoints: Endpoints,
        options: BridgeOptions,
    ) -> io::Result<Bridge> {
        let shared = Arc::new(Shared {
            name: options.name.clone(),
            link: Mutex::new(Link { speed: None }),
            changed: Condvar::new(),
            stop: AtomicBool::new(false),
            verbose: AtomicBool::new(options.verbose),
            stats: Stats::default(),
            on_event: options.on_event,
        });
        let mut bridge = Bridge {
            shared: shared.clone(),
            threads: Vec::new(),
        };
        let speed = options.speed;
        {
            let (s, t, ep0) = (shared.clone(), transport.clone(), endpoints.control);
            bridge.spawn("ep0", move || control_loop(&s, &*t, &*ep0, &*speed))?;
        }
        if let Some(ep) = endpoints.bulk_out {
            let (s, t) = (shared.clone(), transport.clone());
            bridge.spawn("bulk-out", move || bulk_out_loop(&s, &*t, &*ep))?;
        }
        if let Some(ep) = endpoints.bulk_in {
            let (s, t) = (shared.clone(), transport.clone());
            bridge.spawn("bulk-in", move || bulk_in_loop(&s, &*t, &*ep))?;
        }
        if let Some(ep) = endpoints.interrupt {
            let (s, t) = (shared.clone(), transport);
            bridge.spawn("interrupt", move || interrupt_loop(&s, &*t, &*ep))?;
        }
        Ok(bridge)
    }

    fn spawn(&mut self, what: &str, f: impl FnOnce() + Send + 'static) -> io::Result<()> {
        let name = format!("{}-{what}", self.shared.name);
        let handle = std::thread::Builder::new().name(name.clone()).spawn(f);
        match handle {
            Ok(h) => {
                self.threads.push((name, h));
                Ok(())
            }
            Err(e) => {
                self.stop(Duration::from_secs(1));
                Err(e)
            }
        }
    }

    /// The counters.
    pub fn stats(&self) -> &Stats {
        &self.shared.stats
    }

    /// Whether the host has configured the device (ENABLE seen, no
    /// DISABLE since), and at which speed.
    pub fn speed(&self) -> Option<Speed> {
        self.shared.speed()
    }

    /// Turns per-message logging on or off.
    pub fn set_verbose(&self, on: bool) {
        self.shared.verbose.store(on, Ordering::Relaxed);
    }

    /// Asks every thread to end, and waits up to `limit` for them. Threads
    /// waiting for the host end when the function is disabled or unbound
    /// (their I/O fails with ESHUTDOWN): unbind first. Returns the names of
    /// the threads still running after `limit` (they are left detached).
    pub fn stop(&mut self, limit: Duration) -> Vec<String> {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.shared.changed.notify_all();
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline && self.threads.iter().any(|(_, h)| !h.is_finished()) {
            std::thread::sleep(Duration::from_millis(10));
        }
        let mut stuck = Vec::new();
        for (name, h) in self.threads.drain(..) {
            if h.is_finished() {
                if h.join().is_err() {
                    stuck.push(format!("{name} (panicked)"));
                }
            } else {
                stuck.push(name);
            }
        }
        stuck
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        if !self.threads.is_empty() {
            self.stop(Duration::from_secs(1));
        }
    }
}

fn control_loop(
    s: &Shared,
    transport: &dyn Transport,
    ep0: &dyn ControlEndpoint,
    speed: &(dyn Fn() -> Speed + Send + Sync),
) {
    while !s.stopping() {
        let ev = match ep0.next_event(POLL) {
            Ok(Some(ev)) => ev,
            Ok(None) => continue,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                // EIDRM: a SETUP was superseded before it was read
                if e.raw_os_error() != Some(nix::libc::EIDRM) {
                    s.log(&format!("ep0: {e}"));
                    std::thread::sleep(POLL);
                }
                continue;
            }
        };
        match ev {
            Event::Enable => {
                let sp = speed();
                s.stats.enables.fetch_add(1, Ordering::Relaxed);
                s.log(&format!(
                    "ENABLE: configured by the host at {} speed ({}-byte bulk packets)",
                    if sp == Speed::High { "high" } else { "full" },
                    sp.bulk_packet_size()
                ));
                s.set_speed(Some(sp));
            }
            Event::Disable => {
                s.log("DISABLE");
                s.set_speed(None);
            }
            Event::Unbind => {
                s.log("UNBIND");
                s.set_speed(None);
            }
            Event::Bind => s.log("BIND"),
            Event::Suspend | Event::Resume => s.trace(|| format!("{ev:?}")),
            Event::Unknown(n) => s.log(&format!("unknown ep0 event type {n}")),
            Event::Setup(setup) => {
                s.stats.setups.fetch_add(1, Ordering::Relaxed);
                match answer_setup(&setup, transport, ep0) {
                    Ok(SetupOutcome::Stalled(why)) => {
                        s.stats.stalls.fetch_add(1, Ordering::Relaxed);
                        s.log(&format!("SETUP {setup:02x?}: stalled, {why}"));
                    }
                    Ok(outcome) => s.trace(|| format!("SETUP {setup:02x?}: {outcome:?}")),
                    Err(e) => s.log(&format!("SETUP {setup:02x?}: ep0 error {e}")),
                }
            }
        }
        if let Some(f) = &s.on_event {
            f(&ev);
        }
    }
}

fn bulk_out_loop(s: &Shared, transport: &dyn Transport, ep: &dyn DataEndpoint) {
    let mut asm: Option<OutAssembler> = None;
    let mut buf = Vec::new();
    while !s.stopping() {
        let Some(speed) = s.wait_enabled() else {
            asm = None;
            continue;
        };
        let a = asm.get_or_insert_with(|| OutAssembler::new(speed.bulk_packet_size()));
        let want = a.next_read_len();
        buf.resize(want, 0);
        match ep.read(&mut buf) {
            Ok(n) => {
                let n = n.min(want);
                if let Some(msg) = a.push(buf.get(..n).unwrap_or(&[]), want) {
                    s.stats.commands.fetch_add(1, Ordering::Relaxed);
                    s.trace(|| format!("-> {}", hex(&msg)));
                    if let Err(e) = transport.bulk_out(&msg, Duration::from_secs(5)) {
                        s.log(&format!(
                            "the reader refused a {}-byte message: {e}",
                            msg.len()
                        ));
                    }
                }
            }
            Err(e) if host_absent(&e) => {
                if a.pending() > 0 {
                    s.log(&format!(
                        "bulk-OUT: {} bytes of a message lost ({e})",
                        a.pending()
                    ));
                }
                asm = None;
                // the endpoint is disabled but ep0 may not have said so yet
                if e.kind() == io::ErrorKind::WouldBlock {
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
            Err(e) => {
                s.log(&format!("bulk-OUT read: {e}"));
                asm = None;
                std::thread::sleep(POLL);
            }
        }
    }
}

/// Writes one IN message, waiting for the host; false when it was dropped.
fn write_in(s: &Shared, ep: &dyn DataEndpoint, data: &[u8], what: &str) -> bool {
    if s.speed().is_none() {
        s.stats.dropped.fetch_add(1, Ordering::Relaxed);
        s.trace(|| format!("{what} dropped, the host is not there: {}", hex(data)));
        return false;
    }
    match ep.write(data) {
        Ok(n) if n == data.len() => true,
        Ok(n) => {
            s.log(&format!("{what}: {n} of {} bytes written", data.len()));
            false
        }
        Err(e) => {
            s.stats.dropped.fetch_add(1, Ordering::Relaxed);
            if host_absent(&e) {
                s.trace(|| format!("{what} dropped ({e})"));
            } else {
                s.log(&format!("{what}: write failed: {e}"));
            }
            false
        }
    }
}

fn bulk_in_loop(s: &Shared, transport: &dyn Transport, ep: &dyn DataEndpoint) {
    let mut buf = vec![0u8; MAX_MESSAGE_LEN];
    while !s.stopping() {
        match transport.bulk_in(&mut buf, POLL) {
            Ok(n) => {
                let msg = buf.get(..n).unwrap_or(&[]);
                s.trace(|| format!("<- {}", hex(msg)));
                if write_in(s, ep, msg, "bulk-IN") {
                    s.stats.responses.fetch_add(1, Ordering::Relaxed);
                    let packet = s.speed().map(Speed::bulk_packet_size).unwrap_or(0);
                    if needs_zlp(n, packet) && write_in(s, ep, &[], "bulk-IN ZLP") {
                        s.stats.zlps.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            Err(TransportError::Timeout) | Err(TransportError::Cancelled) => {}
            Err(e) => {
                s.log(&format!("the reader's bulk-IN failed: {e}"));
                std::thread::sleep(POLL);
            }
        }
    }
}

fn interrupt_loop(s: &Shared, transport: &dyn Transport, ep: &dyn DataEndpoint) {
    let mut buf = [0u8; 64];
    while !s.stopping() {
        match transport.interrupt_in(&mut buf, POLL) {
            Ok(n) => {
                let msg = buf.get(..n).unwrap_or(&[]);
                s.trace(|| format!("<= {}", hex(msg)));
                if write_in(s, ep, msg, "interrupt-IN") {
                    s.stats.notifications.fetch_add(1, Ordering::Relaxed);
                }
            }
            Err(TransportError::Timeout) | Err(TransportError::Cancelled) => {}
            Err(TransportError::NotFound) => {
                s.log("the reader has no interrupt endpoint: interrupt-IN stays silent");
                return;
            }
            Err(e) => {
                s.log(&format!("the reader's interrupt-IN failed: {e}"));
                std::thread::sleep(POLL);
            }
        }
    }
}

fn hex(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len() * 3);
    for (i, b) in data.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        out.push_str(&format!("{b:02X}"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(kind: u8, len: u32) -> Vec<u8> {
        let mut h = vec![kind];
        h.extend_from_slice(&len.to_le_bytes());
        h.extend_from_slice(&[0, 1, 0, 0, 0]);
        h
    }

    #[test]
    fn zlp_only_after_whole_packets() {
        assert!(needs_zlp(64, 64));
        assert!(needs_zlp(512, 512));
        assert!(needs_zlp(1024, 512));
        assert!(!needs_zlp(0, 64));
        assert!(!needs_zlp(10, 64));
        assert!(!needs_zlp(513, 512));
        assert!(!needs_zlp(64, 0));
    }

    #[test]
    fn speed_from_sysfs() {
        assert_eq!(Speed::from_sysfs_text("high-speed\n"), Speed::High);
        assert_eq!(Speed::from_sysfs_text("full-speed\n"), Speed::Full);
        assert_eq!(Speed::from_sysfs_text("UNKNOWN"), Speed::High);
        assert_eq!(Speed::Full.bulk_packet_size(), 64);
        assert_eq!(Speed::High.bulk_packet_size(), 512);
    }

    #[test]
    fn short_message_in_one_packet() {
        let mut a = OutAssembler::new(512);
        assert_eq!(a.next_read_len(), 512);
        // SetParameters T=1: 17 bytes, the packet that killed a reader
        // reading the 10-byte header first (EOVERFLOW)
        let mut m = header(0x61, 7);
        m.extend_from_slice(&[0x11, 0x10, 0, 0x45, 0, 0xFE, 0]);
        assert_eq!(a.push(&m, 512), Some(m.clone()));
        assert_eq!(a.pending(), 0);
        assert_eq!(a.next_read_len(), 512);
    }

    #[test]
    fn long_message_rest_is_read_in_whole_packets() {
        // 300 data bytes at full speed: 310 bytes = 4 full packets + 54
        let mut m = header(0x6F, 300);
        m.extend((0..300).map(|i| i as u8));
        let mut a = OutAssembler::new(64);
        assert_eq!(a.next_read_len(), 64);
        assert_eq!(a.push(&m[..64], 64), None);
        // 246 bytes missing: asked for as 4 packets
        assert_eq!(a.next_read_len(), 256);
        assert_eq!(a.push(&m[64..], 256), Some(m.clone()));
    }

    #[test]
    fn message_of_exactly_whole_packets_needs_no_zlp_from_the_host() {
        // a 512-byte XfrBlock at high speed: one full packet, complete
        let mut m = header(0x6F, 502);
        m.resize(512, 0xAA);
        let mut a = OutAssembler::new(512);
        assert_eq!(a.push(&m, 512), Some(m.clone()));
        // 1024 bytes: two full packets; the second request is exactly 512
        let mut m = header(0x6F, 1014);
        m.resize(1024, 0x55);
        let mut a = OutAssembler::new(512);
        assert_eq!(a.push(&m[..512], 512), None);
        assert_eq!(a.next_read_len(), 512);
        assert_eq!(a.push(&m[512..], 512), Some(m.clone()));
    }

    #[test]
    fn short_packet_ends_a_message_that_claims_more() {
        let mut m = header(0x6F, 100);
        m.extend_from_slice(&[1, 2, 3]);
        let mut a = OutAssembler::new(64);
        assert_eq!(a.push(&m, 64), Some(m.clone()));
        // a runt shorter than a header is passed on as well
        let mut a = OutAssembler::new(64);
        assert_eq!(a.push(&[0x65, 0, 0], 64), Some(vec![0x65, 0, 0]));
        // a zero-length packet between messages is ignored
        let mut a = OutAssembler::new(64);
        assert_eq!(a.push(&[], 64), None);
    }

    #[test]
    fn absurd_length_is_capped() {
        let mut a = OutAssembler::new(512);
        let m = header(0x6F, u32::MAX);
        let mut p = m.clone();
        p.resize(512, 0);
        assert_eq!(a.push(&p, 512), None);
        let rest = a.next_read_len();
        assert_eq!(rest % 512, 0);
        assert!(rest <= MAX_MESSAGE_LEN + 512);
        a.reset();
        assert_eq!(a.pending(), 0);
    }

    #[test]
    fn hex_format() {
        assert_eq!(hex(&[0x50, 0x03]), "50 03");
        assert_eq!(hex(&[]), "");
    }
}
