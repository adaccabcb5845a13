//! `SimTransport`: the model behind the driver's `Transport` trait, with
//! real waiting, libusb-like reads, concurrent callers, and the driver's
//! own reader layer on top.

#[path = "support/model.rs"]
mod support;

use ccid::config::Config;
use ccid::ifd::protocol::{SCARD_PROTOCOL_T0, SCARD_PROTOCOL_T1};
use ccid::proto::descriptor::ExchangeLevel::{self, Character, ExtendedApdu, ShortApdu, Tpdu};
use ccid::proto::message::{Command, Notification, Response};
use ccid::reader::device::{Device, OpenOptions};
use ccid::reader::slot::Slot;
use ccid::transport::{ControlSetup, Transport, TransportError};
use ccid_sim::card::{AtrBuilder, Card, IsoApplet};
use ccid_sim::fault::Fault;
use ccid_sim::model::{LogKind, VirtualReader};
use ccid_sim::timing::TimeModel;
use ccid_sim::transport::SimTransport;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::*;

const T: Duration = Duration::from_secs(2);

fn sim(level: ExchangeLevel, card: Card) -> (Arc<dyn Transport>, ccid_sim::SimControl) {
    SimTransport::shared(VirtualReader::with_card(config(level), Some(card)))
}

fn read(t: &dyn Transport) -> Result<Vec<u8>, TransportError> {
    let mut buf = vec![0u8; 70_000];
    let n = t.bulk_in(&mut buf, T)?;
    buf.truncate(n);
    Ok(buf)
}

#[test]
fn round_trip_timeout_and_log() {
    let (t, ctl) = sim(ExtendedApdu, Card::test_card());
    assert_eq!(t.info().interface_class, 0x0B);
    assert_eq!(t.info().ccid_descriptor.len(), 54);
    t.bulk_out(&Command::GetSlotStatus.encode(0, 4), T).unwrap();
    let r = Response::parse(&read(&*t).unwrap()).unwrap();
    assert_eq!((r.seq, status(&r)), (4, (0x01, 0)));
    let start = Instant::now();
    let mut buf = [0u8; 64];
    assert_eq!(
        t.bulk_in(&mut buf, Duration::from_millis(50)),
        Err(TransportError::Timeout)
    );
    assert!(start.elapsed() >= Duration::from_millis(50));
    let kinds: Vec<LogKind> = ctl.log().iter().map(|e| e.kind).collect();
    assert_eq!(kinds, [LogKind::BulkOut, LogKind::BulkIn]);
    assert_eq!(ctl.stats().commands, 1);
}

#[test]
fn reads_split_like_libusb() {
    let (t, _ctl) = sim(ExtendedApdu, Card::test_card());
    t.bulk_out(&Command::IccPowerOn { power_select: 0 }.encode(0, 1), T)
        .unwrap();
    read(&*t).unwrap();
    // 10 + 250 + 2 = 262 bytes into a 128-byte buffer: 128, 128, 6.
    let cmd = Command::XfrBlock {
        bwi: 0,
        level: 0,
        data: vec![0, 0xCA, 0, 0, 250],
    };
    t.bulk_out(&cmd.encode(0, 2), T).unwrap();
    let mut buf = [0u8; 128];
    let mut got = Vec::new();
    for want in [128, 128, 6] {
        let n = t.bulk_in(&mut buf, T).unwrap();
        assert_eq!(n, want);
        got.extend_from_slice(&buf[..n]);
    }
    assert_eq!(Response::parse(&got).unwrap().data, with_sw(counting(250)));
    // A buffer smaller than one packet overflows.
    t.bulk_out(&cmd.encode(0, 3), T).unwrap();
    let mut small = [0u8; 32];
    assert_eq!(t.bulk_in(&mut small, T), Err(TransportError::Overflow));
}

#[test]
fn zero_length_packets_reach_the_caller() {
    let (t, ctl) = sim(ExtendedApdu, Card::test_card());
    t.bulk_out(&Command::IccPowerOn { power_select: 0 }.encode(0, 1), T)
        .unwrap();
    read(&*t).unwrap();
    ctl.inject_once(Fault::StrayZlp);
    t.bulk_out(&Command::GetSlotStatus.encode(0, 2), T).unwrap();
    assert_eq!(read(&*t).unwrap().len(), 0);
    assert_eq!(read(&*t).unwrap().len(), 10);
}

#[test]
fn interrupts_wake_waiters_and_unplug_ends_everything() {
    let (t, ctl) = sim(ExtendedApdu, Card::test_card());
    let mut buf = [0u8; 8];
    let n = t.interrupt_in(&mut buf, T).unwrap();
    assert_eq!(&buf[..n], [0x50, 0x03]);
    let t2 = t.clone();
    let waiter = std::thread::spawn(move || {
        let mut b = [0u8; 8];
        let n = t2.interrupt_in(&mut b, Duration::from_secs(5)).unwrap();
        b[..n].to_vec()
    });
    std::thread::sleep(Duration::from_millis(30));
    ctl.remove_card(0).unwrap();
    let msg = waiter.join().unwrap();
    assert_eq!(
        Notification::parse(&msg).unwrap().slot_state(0),
        Some((false, true))
    );

    let t3 = t.clone();
    let blocked = std::thread::spawn(move || {
        let mut b = [0u8; 64];
        t3.bulk_in(&mut b, Duration::from_secs(5))
    });
    std::thread::sleep(Duration::from_millis(30));
    let start = Instant::now();
    ctl.unplug();
    assert_eq!(blocked.join().unwrap(), Err(TransportError::NoDevice));
    assert!(start.elapsed() < Duration::from_secs(1));
    assert!(t.is_gone());
    assert_eq!(
        t.bulk_out(&Command::GetSlotStatus.encode(0, 1), T),
        Err(TransportError::NoDevice)
    );
    let s = ControlSetup {
        request_type: 0x80,
        request: 0,
        value: 0,
        index: 0,
    };
    assert_eq!(
        t.control_in(s, &mut [0u8; 2], T),
        Err(TransportError::NoDevice)
    );
}

#[test]
fn time_model_is_waited_out() {
    let cfg = config(Tpdu).with_timing(TimeModel::realistic());
    let card = Card::new(
        AtrBuilder::new().protocols(true, false).build().unwrap(),
        IsoApplet::new().with_processing_time(Duration::from_millis(40)),
    )
    .unwrap();
    let (t, _ctl) = SimTransport::shared(VirtualReader::with_card(cfg, Some(card)));
    t.bulk_out(&Command::IccPowerOn { power_select: 0 }.encode(0, 1), T)
        .unwrap();
    read(&*t).unwrap();
    let start = Instant::now();
    t.bulk_out(
        &Command::XfrBlock {
            bwi: 0,
            level: 0,
            data: select(),
        }
        .encode(0, 2),
        T,
    )
    .unwrap();
    let mut buf = [0u8; 64];
    assert_eq!(
        t.bulk_in(&mut buf, Duration::from_millis(10)),
        Err(TransportError::Timeout)
    );
    let r = Response::parse(&read(&*t).unwrap()).unwrap();
    assert_eq!(r.data, [0x90, 0x00]);
    assert!(
        start.elapsed() >= Duration::from_millis(41),
        "{:?}",
        start.elapsed()
    );
}

#[test]
fn concurrent_callers_on_different_slots() {
    let cfg = config(ExtendedApdu).with_slots(4, 4);
    let (t, ctl) = SimTransport::shared(VirtualReader::with_card(cfg, Some(Card::test_card())));
    let mailbox: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
    let threads: Vec<_> = (0..4u8)
        .map(|slot| {
            let (t, mailbox) = (t.clone(), mailbox.clone());
            std::thread::spawn(move || {
                let mut done = 0;
                for i in 0..50u8 {
                    let seq = slot * 64 + i;
                    let get = Command::XfrBlock {
                        bwi: 0,
                        level: 0,
                        data: vec![0, 0xCA, 0, 0, slot + 1],
                    };
                    let cmd = if i == 0 {
                        Command::IccPowerOn { power_select: 0 }
                    } else {
                        get
                    };
                    t.bulk_out(&cmd.encode(slot, seq), T).unwrap();
                    let mine = |f: &Vec<u8>| f.get(5) == Some(&slot) && f.get(6) == Some(&seq);
                    let frame = loop {
                        if let Some(p) = {
                            let mut m = mailbox.lock().unwrap();
                            m.iter().position(mine).map(|p| m.remove(p))
                        } {
                            break p;
                        }
                        let mut buf = vec![0u8; 1024];
                        match t.bulk_in(&mut buf, Duration::from_millis(20)) {
                            Ok(n) => {
                                buf.truncate(n);
                                if mine(&buf) {
                                    break buf;
                                }
                                mailbox.lock().unwrap().push(buf);
                            }
                            Err(TransportError::Timeout) => {}
                            Err(e) => panic!("{e}"),
                        }
                    };
                    let r = Response::parse(&frame).unwrap();
                    assert_eq!(r.error.0, 0, "slot {slot} seq {seq}");
                    if i > 0 {
                        assert_eq!(r.data, with_sw(counting(usize::from(slot) + 1)));
                    }
                    done += 1;
                }
                done
            })
        })
        .collect();
    let total: u32 = threads.into_iter().map(|h| h.join().unwrap()).sum();
    assert_eq!(total, 200);
    assert_eq!(ctl.stats().busy, 0);
    assert!(mailbox.lock().unwrap().is_empty());
}

/// The driver's reader layer over the simulator: open, power up, select
/// the protocol, transmit.
fn driver_select(level: ExchangeLevel, card: Card, protocol: u32) -> Vec<u8> {
    let (t, _ctl) = sim(level, card);
    let device = Device::open(t, "sim", 0, &OpenOptions::default()).unwrap();
    let slot = Slot::new(device.clone(), 0, 0, Config::default());
    let atr = slot.power_up().unwrap();
    assert!(!atr.is_empty());
    ccid::reader::protocol::set_protocol(&slot, protocol, 0, [0; 3]).unwrap();
    let r = slot.transmit(protocol, &select()).unwrap();
    let data = slot
        .transmit(protocol, &[0x00, 0xCA, 0x00, 0x00, 0x20])
        .unwrap();
    assert_eq!(data, with_sw(counting(32)), "{level:?} T={}", protocol - 1);
    device.shutdown();
    r
}

#[test]
fn the_driver_works_on_every_level() {
    for level in [ExtendedApdu, ShortApdu, Tpdu, Character] {
        assert_eq!(
            driver_select(level, Card::with_protocols(false, true), SCARD_PROTOCOL_T1),
            [0x90, 0x00],
            "{level:?} T=1"
        );
        assert_eq!(
            driver_select(level, Card::with_protocols(true, false), SCARD_PROTOCOL_T0),
            [0x90, 0x00],
            "{level:?} T=0"
        );
    }
    // T=1 on a card whose first protocol is T=0, with a faster TA1: the
    // driver negotiates by PPS.
    let card = Card::new(
        AtrBuilder::new().ta1(0x95).build().unwrap(),
        IsoApplet::new(),
    )
    .unwrap();
    assert_eq!(driver_select(Tpdu, card, SCARD_PROTOCOL_T1), [0x90, 0x00]);
}
