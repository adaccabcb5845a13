//! The bridge driven end to end without a kernel: an in-memory USB link
//! that behaves like FunctionFS on dummy_hcd (packets, short-packet
//! termination, EOVERFLOW, EAGAIN while disabled, ESHUTDOWN on disable)
//! and a one-slot reader double behind the [`Transport`] trait.

use super::bridge::{Bridge, BridgeOptions, DataEndpoint, Endpoints, Speed};
use super::ep0::{ControlEndpoint, Event, Setup};
use super::CardControl;
use ccid::proto::message::{Response, HEADER_LEN};
use std::collections::VecDeque;
use std::io;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

#[path = "../../tests/support/one_slot_reader.rs"]
mod one_slot_reader;
use one_slot_reader::{OneSlotReader, ATR};

impl CardControl for OneSlotReader {
    fn set_card_present(&self, slot: u8, present: bool) -> Result<(), String> {
        self.set_card(slot, present)
    }
}

// --- the in-memory link -----------------------------------------------------------

#[derive(Default)]
struct LinkState {
    enabled: bool,
    /// Incremented on every disable: a waiting read fails with ESHUTDOWN.
    generation: u64,
    speed_high: bool,
    /// bulk-OUT packets from the host, not read yet.
    out_packets: VecDeque<Vec<u8>>,
    /// IN packets per endpoint (0 bulk-IN, 1 interrupt), not read by the host.
    in_packets: [VecDeque<Vec<u8>>; 2],
    events: VecDeque<Event>,
    ep0_log: Vec<String>,
}

/// A USB link behaving like FunctionFS on dummy_hcd, seen from both sides.
struct Link {
    st: Mutex<LinkState>,
    cv: Condvar,
    interrupt_mps: usize,
}

fn shutdown() -> io::Error {
    io::Error::from_raw_os_error(nix::libc::ESHUTDOWN)
}

impl Link {
    fn new() -> Arc<Link> {
        Arc::new(Link {
            st: Mutex::new(LinkState::default()),
            cv: Condvar::new(),
            interrupt_mps: 8,
        })
    }

    fn bulk_mps(&self) -> usize {
        if self.st.lock().unwrap().speed_high {
            512
        } else {
            64
        }
    }

    /// The host configures the device.
    fn enable(&self, high: bool) {
        let mut st = self.st.lock().unwrap();
        st.enabled = true;
        st.speed_high = high;
        st.events.push_back(Event::Enable);
        self.cv.notify_all();
    }

    /// The device goes away (unplug): pending I/O fails, queues are flushed.
    fn disable(&self) {
        let mut st = self.st.lock().unwrap();
        st.enabled = false;
        st.generation += 1;
        st.out_packets.clear();
        st.in_packets[0].clear();
        st.in_packets[1].clear();
        st.events.push_back(Event::Disable);
        self.cv.notify_all();
    }

    fn setup(&self, s: Setup) {
        let mut st = self.st.lock().unwrap();
        st.events.push_back(Event::Setup(s));
        self.cv.notify_all();
    }

    /// The host sends one bulk-OUT transfer (no ZLP, as libccid does).
    fn host_send(&self, data: &[u8]) {
        let mps = self.bulk_mps();
        let mut st = self.st.lock().unwrap();
        for chunk in data.chunks(mps) {
            st.out_packets.push_back(chunk.to_vec());
        }
        self.cv.notify_all();
    }

    /// The host reads one IN transfer with a large buffer: packets until a
    /// short one (a zero-length packet included).
    fn host_read(&self, ep: usize, limit: usize, timeout: Duration) -> Option<Vec<u8>> {
        let mps = if ep == 0 {
            self.bulk_mps()
        } else {
            self.interrupt_mps
        };
        let deadline = Instant::now() + timeout;
        let mut st = self.st.lock().unwrap();
        let mut out = Vec::new();
        loop {
            while let Some(p) = st.in_packets[ep].pop_front() {
                out.extend_from_slice(&p);
                if p.len() < mps || out.len() >= limit {
                    return Some(out);
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                // what the host got so far, still waiting for the end
                return if out.is_empty() { None } else { Some(out) };
            }
            st = self.cv.wait_timeout(st, left).unwrap().0;
        }
    }

    fn ep0_log(&self) -> Vec<String> {
        self.st.lock().unwrap().ep0_log.clone()
    }
}

struct OutEp(Arc<Link>);
struct InEp(Arc<Link>, usize);
struct Ep0(Arc<Link>);

impl DataEndpoint for OutEp {
    fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        let l = &self.0;
        let mps = l.bulk_mps();
        let mut st = l.st.lock().unwrap();
        if !st.enabled {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let gen = st.generation;
        let mut got = 0;
        loop {
            while let Some(p) = st.out_packets.pop_front() {
                if p.len() > buf.len() - got {
                    return Err(io::Error::from_raw_os_error(nix::libc::EOVERFLOW));
                }
                buf[got..got + p.len()].copy_from_slice(&p);
                got += p.len();
                if p.len() < mps || got == buf.len() {
                    return Ok(got);
                }
            }
            st = l.cv.wait(st).unwrap();
            if st.generation != gen {
                return Err(shutdown());
            }
        }
    }
    fn write(&self, _: &[u8]) -> io::Result<usize> {
        Err(io::Error::from_raw_os_error(nix::libc::EL2HLT))
    }
}

impl DataEndpoint for InEp {
    fn read(&self, _: &mut [u8]) -> io::Result<usize> {
        Err(io::Error::from_raw_os_error(nix::libc::EL2HLT))
    }
    fn write(&self, data: &[u8]) -> io::Result<usize> {
        let l = &self.0;
        let mps = if self.1 == 0 {
            l.bulk_mps()
        } else {
            l.interrupt_mps
        };
        let mut st = l.st.lock().unwrap();
        if !st.enabled {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        if data.is_empty() {
            st.in_packets[self.1].push_back(Vec::new());
        }
        for chunk in data.chunks(mps) {
            st.in_packets[self.1].push_back(chunk.to_vec());
        }
        l.cv.notify_all();
        Ok(data.len())
    }
}

impl ControlEndpoint for Ep0 {
    fn next_event(&self, timeout: Duration) -> io::Result<Option<Event>> {
        let mut st = self.0.st.lock().unwrap();
        if st.events.is_empty() {
            st = self.0.cv.wait_timeout(st, timeout).unwrap().0;
        }
        Ok(st.events.pop_front())
    }
    fn send(&self, data: &[u8]) -> io::Result<()> {
        self.0
            .st
            .lock()
            .unwrap()
            .ep0_log
            .push(format!("send {data:02x?}"));
        Ok(())
    }
    fn receive(&self, len: usize) -> io::Result<Vec<u8>> {
        self.0
            .st
            .lock()
            .unwrap()
            .ep0_log
            .push(format!("receive {len}"));
        Ok(vec![0; len])
    }
    fn stall(&self, is_in: bool) -> io::Result<()> {
        self.0
            .st
            .lock()
            .unwrap()
            .ep0_log
            .push(format!("stall in={is_in}"));
        Ok(())
    }
}

// --- the test rig ---------------------------------------------------------------

struct Rig {
    link: Arc<Link>,
    reader: Arc<OneSlotReader>,
    bridge: Bridge,
    seq: u8,
}

const WAIT: Duration = Duration::from_secs(5);

fn eventually(what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !cond() {
        assert!(Instant::now() < deadline, "not within {WAIT:?}: {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

impl Rig {
    fn new() -> Rig {
        let link = Link::new();
        let reader = OneSlotReader::new();
        let speed_link = link.clone();
        let bridge = Bridge::start(
            reader.clone(),
            Endpoints {
                control: Arc::new(Ep0(link.clone())),
                bulk_out: Some(Arc::new(OutEp(link.clone()))),
                bulk_in: Some(Arc::new(InEp(link.clone(), 0))),
                interrupt: Some(Arc::new(InEp(link.clone(), 1))),
            },
            BridgeOptions {
                name: "test".into(),
                verbose: false,
                speed: Box::new(move || {
                    if speed_link.st.lock().unwrap().speed_high {
                        Speed::High
                    } else {
                        Speed::Full
                    }
                }),
                on_event: None,
            },
        )
        .unwrap();
        Rig {
            link,
            reader,
            bridge,
            seq: 0,
        }
    }

    fn plug(&self, high: bool) {
        self.link.enable(high);
        let deadline = Instant::now() + WAIT;
        while self.bridge.speed().is_none() {
            assert!(Instant::now() < deadline, "the bridge never saw ENABLE");
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    fn unplug(&self) {
        self.link.disable();
        let deadline = Instant::now() + WAIT;
        while self.bridge.speed().is_some() {
            assert!(Instant::now() < deadline, "the bridge never saw DISABLE");
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Unplugs (as the gadget's teardown unbinds first) and stops the
    /// bridge; every thread must end.
    fn finish(mut self) {
        self.link.disable();
        assert_eq!(self.bridge.stop(WAIT), Vec::<String>::new());
    }

    fn command(&mut self, kind: u8, data: &[u8]) -> Vec<u8> {
        self.seq = self.seq.wrapping_add(1);
        let mut m = vec![kind];
        m.extend_from_slice(&(data.len() as u32).to_le_bytes());
        m.extend_from_slice(&[0, self.seq, 0, 0, 0]);
        m.extend_from_slice(data);
        m
    }

    /// Sends a command and reads one bulk-IN transfer.
    fn exchange(&mut self, kind: u8, data: &[u8]) -> Response {
        let m = self.command(kind, data);
        self.link.host_send(&m);
        let t = self
            .link
            .host_read(0, 70_000, WAIT)
            .expect("no bulk-IN transfer");
        let r = Response::parse(&t).expect("a transfer holding exactly one response");
        assert_eq!(r.seq, self.seq);
        r
    }
}

// --- the tests --------------------------------------------------------------------

#[test]
fn slot_status_power_on_and_echo_at_both_speeds() {
    for high in [false, true] {
        let mut rig = Rig::new();
        rig.plug(high);
        let r = rig.exchange(0x65, &[]);
        assert_eq!(r.message_type.0, 0x81);
        assert_eq!(r.status.0, 0x01); // present, inactive
        let r = rig.exchange(0x62, &[]);
        assert_eq!(r.data, ATR);
        // a 300-byte echo: several OUT packets at full speed, a long IN transfer
        let payload: Vec<u8> = (0..300u32).map(|i| i as u8).collect();
        let r = rig.exchange(0x6F, &payload);
        assert_eq!(r.data, payload);
        assert_eq!(rig.bridge.stats().commands.load(Ordering::Relaxed), 3);
        // counted after the write returned, which may be after the host read it
        eventually("3 responses counted", || {
            rig.bridge.stats().responses.load(Ordering::Relaxed) == 3
        });
        rig.finish();
    }
}

#[test]
fn whole_packet_responses_are_closed_with_a_zlp() {
    for (high, mps) in [(false, 64usize), (true, 512)] {
        let mut rig = Rig::new();
        rig.plug(high);
        rig.exchange(0x62, &[]);
        for data_len in [mps - HEADER_LEN, 2 * mps - HEADER_LEN, mps - HEADER_LEN + 1] {
            let data = vec![0x5A; data_len];
            // without the ZLP the host's transfer would swallow the next
            // response and Response::parse would fail
            let r = rig.exchange(0x6F, &data);
            assert_eq!(r.data.len(), data_len);
            let r = rig.exchange(0x65, &[]);
            assert_eq!(r.message_type.0, 0x81);
        }
        eventually("2 ZLPs counted", || {
            rig.bridge.stats().zlps.load(Ordering::Relaxed) == 2
        });
        // a command of exactly whole packets needs no ZLP from the host
        let r = rig.exchange(0x6F, &vec![0xA5; 2 * mps - HEADER_LEN]);
        assert_eq!(r.data.len(), 2 * mps - HEADER_LEN);
        rig.finish();
    }
}

#[test]
fn card_events_reach_the_interrupt_endpoint() {
    let mut rig = Rig::new();
    rig.plug(true);
    rig.reader.set_card_present(0, false).unwrap();
    let n = rig.link.host_read(1, 8, WAIT).expect("no notification");
    assert_eq!(n, [0x50, 0x02]);
    assert_eq!(rig.exchange(0x65, &[]).status.0, 0x02);
    rig.reader.set_card_present(0, true).unwrap();
    let n = rig.link.host_read(1, 8, WAIT).expect("no notification");
    assert_eq!(n, [0x50, 0x03]);
    assert_eq!(rig.exchange(0x62, &[]).data, ATR);
    eventually("2 notifications counted", || {
        rig.bridge.stats().notifications.load(Ordering::Relaxed) == 2
    });
    assert!(rig.reader.set_card_present(1, true).is_err());
    rig.finish();
}

#[test]
fn notifications_while_unplugged_are_dropped() {
    let rig = Rig::new();
    rig.reader.set_card_present(0, false).unwrap();
    let deadline = Instant::now() + WAIT;
    while rig.bridge.stats().dropped.load(Ordering::Relaxed) == 0 {
        assert!(
            Instant::now() < deadline,
            "the notification was not dropped"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    rig.plug(false);
    assert_eq!(rig.link.host_read(1, 8, Duration::from_millis(200)), None);
    rig.reader.set_card_present(0, true).unwrap();
    assert_eq!(rig.link.host_read(1, 8, WAIT), Some(vec![0x50, 0x03]));
}

#[test]
fn class_requests_go_to_the_reader_and_refusals_stall() {
    let rig = Rig::new();
    rig.plug(true);
    rig.link.setup(Setup {
        request_type: 0xA1,
        request: 0x03,
        value: 0,
        index: 0,
        length: 0x12,
    });
    rig.link.setup(Setup {
        request_type: 0xA1,
        request: 0x02,
        value: 0,
        index: 0,
        length: 4,
    });
    rig.link.setup(Setup {
        request_type: 0x21,
        request: 0x01,
        value: 0x0100,
        index: 0,
        length: 0,
    });
    let deadline = Instant::now() + WAIT;
    while rig.link.ep0_log().len() < 3 {
        assert!(Instant::now() < deadline, "SETUPs not answered");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(
        rig.link.ep0_log(),
        [
            "send [00, 2a, 00, 00, 01, 54, 00, 00, 02, a8, 00, 00]",
            "stall in=true",
            "stall in=false"
        ]
    );
    assert_eq!(rig.bridge.stats().setups.load(Ordering::Relaxed), 3);
    assert_eq!(rig.bridge.stats().stalls.load(Ordering::Relaxed), 2);
}

#[test]
fn unplug_in_the_middle_of_a_message_and_replug() {
    let mut rig = Rig::new();
    rig.plug(false);
    rig.exchange(0x62, &[]);
    // the first packet of a 310-byte command, then the device goes away
    let m = rig.command(0x6F, &[7; 300]);
    rig.link.host_send(&m[..64]);
    std::thread::sleep(Duration::from_millis(50));
    rig.unplug();
    for _ in 0..3 {
        rig.plug(false);
        // a fresh message is not mixed with the lost one
        let r = rig.exchange(0x65, &[]);
        assert_eq!(r.message_type.0, 0x81);
        let r = rig.exchange(0x6F, &[1, 2, 3]);
        assert_eq!(r.data, [1, 2, 3]);
        rig.unplug();
    }
    rig.finish();
}

#[test]
fn stop_ends_every_thread_while_unplugged_or_waiting() {
    // unplugged: every endpoint says EAGAIN
    let mut rig = Rig::new();
    let t = Instant::now();
    assert!(rig.bridge.stop(WAIT).is_empty());
    assert!(t.elapsed() < Duration::from_secs(2));
    // plugged, bulk-OUT waiting for the host: the unplug releases it
    let mut rig = Rig::new();
    rig.plug(true);
    std::thread::sleep(Duration::from_millis(20));
    rig.link.disable();
    let t = Instant::now();
    assert!(rig.bridge.stop(WAIT).is_empty());
    assert!(t.elapsed() < Duration::from_secs(2));
}
