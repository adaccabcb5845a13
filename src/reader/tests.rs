//! Unit tests of the exchange path and slot operations against scripted
//! devices: stale and misaddressed frames, zero-length packets, malformed
//! frames, time extensions, removal.

use super::device::{Device, OpenOptions};
use super::exchange::{ExchangeLimits, Exchanger};
use super::testing::Scripted;
use crate::error::Error;
use crate::proto::descriptor::CcidDescriptor;
use crate::proto::message::{Command, Header, MessageType, Response, SlotError, Status};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn answer(cmd: &[u8], msg: MessageType, status: u8, error: u8, data: &[u8]) -> Vec<u8> {
    let h = Header::parse(cmd).unwrap();
    Response {
        message_type: msg,
        slot: h.slot,
        seq: h.seq,
        status: Status(status),
        error: SlotError(error),
        specific: 0,
        data: data.to_vec(),
    }
    .encode()
}

fn limits(ms: u64) -> ExchangeLimits {
    ExchangeLimits::new(Duration::from_millis(ms), Duration::from_secs(5))
}

fn with_seq(mut f: Vec<u8>, seq: u8) -> Vec<u8> {
    f[6] = seq;
    f
}

#[test]
fn stale_zlp_and_foreign_frames_never_become_the_answer() {
    let t = Arc::new(Scripted::new(CcidDescriptor::example(), |cmd| {
        let good = answer(cmd, MessageType::RDR_TO_PC_SLOT_STATUS, 0, 0, &[]);
        let stale = with_seq(
            good.clone(),
            Header::parse(cmd).unwrap().seq.wrapping_sub(1),
        );
        let mut other_slot = good.clone();
        other_slot[5] = 7;
        vec![vec![], stale, other_slot, vec![], good]
    }));
    let ex = Exchanger::new(t.clone(), 1, 0);
    let r = ex
        .exchange(0, &Command::GetSlotStatus, limits(1000))
        .unwrap();
    assert_eq!(r.message_type, MessageType::RDR_TO_PC_SLOT_STATUS);
    assert_eq!(r.seq, 0);
    assert_eq!(ex.dropped_frames(), 4);
}

#[test]
fn only_wrong_bseq_fails_with_a_communication_error_at_the_timeout() {
    let t = Arc::new(Scripted::new(CcidDescriptor::example(), |cmd| {
        let good = answer(cmd, MessageType::RDR_TO_PC_SLOT_STATUS, 0, 0, &[]);
        vec![with_seq(good, 0x55)]
    }));
    let ex = Exchanger::new(t, 1, 0);
    let start = Instant::now();
    let e = ex
        .exchange(0, &Command::GetSlotStatus, limits(200))
        .unwrap_err();
    assert!(matches!(e, Error::Unexpected { what: "bSeq", .. }), "{e:?}");
    assert_eq!(e.code(), crate::ifd::IfdCode::CommunicationError);
    assert!(start.elapsed() < Duration::from_millis(1200));
}

#[test]
fn silence_is_a_timeout_within_the_bound() {
    let t = Arc::new(Scripted::new(CcidDescriptor::example(), |_| vec![]));
    let ex = Exchanger::new(t, 1, 0);
    let start = Instant::now();
    let e = ex
        .exchange(0, &Command::GetSlotStatus, limits(150))
        .unwrap_err();
    assert!(matches!(e, Error::Timeout { .. }), "{e:?}");
    assert!(start.elapsed() >= Duration::from_millis(150));
    assert!(start.elapsed() < Duration::from_millis(1150));
}

#[test]
fn short_frame_and_bad_length_are_errors_not_data() {
    let t = Arc::new(Scripted::new(CcidDescriptor::example(), |_| {
        vec![vec![0x81, 0, 0]]
    }));
    let ex = Exchanger::new(t, 1, 0);
    let e = ex
        .exchange(0, &Command::GetSlotStatus, limits(1000))
        .unwrap_err();
    assert!(matches!(e, Error::Frame(_)), "{e:?}");

    let t = Arc::new(Scripted::new(CcidDescriptor::example(), |cmd| {
        let mut f = answer(cmd, MessageType::RDR_TO_PC_DATA_BLOCK, 0, 0, &[1, 2, 3]);
        f[1] = 200; // dwLength larger than the frame
        vec![f]
    }));
    let ex = Exchanger::new(t, 1, 0);
    let e = ex
        .exchange(
            0,
            &Command::XfrBlock {
                bwi: 0,
                level: 0,
                data: vec![0; 4],
            },
            limits(1000),
        )
        .unwrap_err();
    assert!(matches!(e, Error::Frame(_)), "{e:?}");
    assert_eq!(e.code(), crate::ifd::IfdCode::CommunicationError);
}

#[test]
fn wrong_message_type_is_rejected() {
    let t = Arc::new(Scripted::new(CcidDescriptor::example(), |cmd| {
        vec![answer(cmd, MessageType::RDR_TO_PC_ESCAPE, 0, 0, &[])]
    }));
    let ex = Exchanger::new(t, 1, 0);
    let e = ex
        .exchange(0, &Command::GetSlotStatus, limits(1000))
        .unwrap_err();
    assert!(
        matches!(
            e,
            Error::Unexpected {
                what: "bMessageType",
                ..
            }
        ),
        "{e:?}"
    );
}

#[test]
fn endless_time_extension_stops_at_the_cap() {
    let t = Arc::new(Scripted::new(CcidDescriptor::example(), |cmd| {
        (0..1000)
            .map(|_| answer(cmd, MessageType::RDR_TO_PC_DATA_BLOCK, 0x80, 1, &[]))
            .collect()
    }));
    let ex = Exchanger::new(t, 1, 0);
    let start = Instant::now();
    let lim = ExchangeLimits::new(Duration::from_millis(50), Duration::from_millis(300));
    let e = ex.exchange(
        0,
        &Command::XfrBlock {
            bwi: 0,
            level: 0,
            data: vec![1],
        },
        lim,
    );
    // The frames run out or the cap is hit: either way an error within the cap + slack.
    assert!(e.is_err());
    assert!(start.elapsed() < Duration::from_millis(1300));
}

#[test]
fn time_extension_then_answer() {
    let t = Arc::new(Scripted::new(CcidDescriptor::example(), |cmd| {
        vec![
            answer(cmd, MessageType::RDR_TO_PC_DATA_BLOCK, 0x80, 2, &[]),
            answer(cmd, MessageType::RDR_TO_PC_DATA_BLOCK, 0, 0, &[0x90, 0]),
        ]
    }));
    let ex = Exchanger::new(t, 1, 0);
    let r = ex
        .exchange(
            0,
            &Command::XfrBlock {
                bwi: 0,
                level: 0,
                data: vec![1],
            },
            limits(500),
        )
        .unwrap();
    assert_eq!(r.data, vec![0x90, 0]);
}

#[test]
fn unplug_fails_every_call_at_once() {
    let t = Arc::new(Scripted::new(CcidDescriptor::example(), |_| vec![]));
    let ex = Arc::new(Exchanger::new(t.clone(), 1, 0));
    let ex2 = ex.clone();
    let h = std::thread::spawn(move || {
        let start = Instant::now();
        let r = ex2.exchange(0, &Command::GetSlotStatus, limits(30_000));
        (r, start.elapsed())
    });
    std::thread::sleep(Duration::from_millis(100));
    t.unplug();
    let (r, took) = h.join().unwrap();
    assert_eq!(r.unwrap_err(), Error::NoDevice);
    assert!(took < Duration::from_secs(1), "{took:?}");
    let start = Instant::now();
    assert_eq!(
        ex.exchange(0, &Command::GetSlotStatus, limits(30_000))
            .unwrap_err(),
        Error::NoDevice
    );
    assert!(start.elapsed() < Duration::from_millis(10));
}

#[test]
fn concurrent_slots_get_their_own_answers() {
    // Answers are delivered in reverse order of the commands' slots.
    let mut desc = CcidDescriptor::example();
    desc.bMaxSlotIndex = 7;
    desc.bMaxCCIDBusySlots = 8;
    let pending: Arc<std::sync::Mutex<Vec<Vec<u8>>>> = Arc::default();
    let p2 = pending.clone();
    let t = Arc::new(Scripted::new(desc, move |cmd| {
        let h = Header::parse(cmd).unwrap();
        let mut p = p2.lock().unwrap();
        p.push(answer(
            cmd,
            MessageType::RDR_TO_PC_DATA_BLOCK,
            0,
            0,
            &[h.slot, h.seq],
        ));
        if p.len() == 8 {
            let mut all = std::mem::take(&mut *p);
            all.reverse();
            all
        } else {
            vec![]
        }
    }));
    let ex = Arc::new(Exchanger::new(t, 8, 0));
    let handles: Vec<_> = (0..8u8)
        .map(|s| {
            let ex = ex.clone();
            std::thread::spawn(move || {
                let r = ex
                    .exchange(
                        s,
                        &Command::XfrBlock {
                            bwi: 0,
                            level: 0,
                            data: vec![s],
                        },
                        limits(3000),
                    )
                    .unwrap();
                assert_eq!(r.slot, s);
                assert_eq!(r.data[0], s);
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
}

#[test]
fn device_open_power_and_transmit_short_apdu() {
    let mut desc = CcidDescriptor::example();
    desc.dwFeatures = 0x0002_04BA; // short APDU level
    let t = Arc::new(Scripted::new(desc, |cmd| {
        let (_, c) = Command::decode(cmd).unwrap();
        vec![match c {
            Command::GetSlotStatus => answer(cmd, MessageType::RDR_TO_PC_SLOT_STATUS, 1, 0, &[]),
            Command::IccPowerOn { .. } => {
                answer(cmd, MessageType::RDR_TO_PC_DATA_BLOCK, 0, 0, &[0x3B, 0x00])
            }
            Command::XfrBlock { data, .. } => {
                let mut d = data;
                d.extend_from_slice(&[0x90, 0x00]);
                answer(cmd, MessageType::RDR_TO_PC_DATA_BLOCK, 0, 0, &d)
            }
            _ => answer(cmd, MessageType::RDR_TO_PC_SLOT_STATUS, 0x40, 0, &[]),
        }]
    }));
    let dev = Device::open(t.clone(), "test", 0, &OpenOptions::default()).unwrap();
    let slot = super::slot::Slot::new(dev, 0, 0, crate::config::Config::default());
    assert_eq!(slot.presence().unwrap(), super::slot::Presence::Present);
    assert_eq!(slot.power_up().unwrap(), vec![0x3B, 0x00]);
    let r = slot.transmit(2, &[0, 0xA4, 0, 0]).unwrap();
    assert_eq!(r, vec![0, 0xA4, 0, 0, 0x90, 0]);
    // The card went inactive after we powered it: it was swapped.
    assert_eq!(slot.presence().unwrap(), super::slot::Presence::Absent);
    let too_long = vec![0u8; 300];
    assert!(matches!(slot.transmit(2, &too_long), Err(Error::IccAbsent)));
}

#[test]
fn pin_bytes_are_masked_in_frame_dumps() {
    use super::exchange::sensitive_range;
    let verify = Command::XfrBlock {
        bwi: 0,
        level: 0,
        data: vec![0x00, 0x20, 0x00, 0x81, 0x04, b'1', b'2', b'3', b'4'],
    }
    .encode(0, 1);
    assert_eq!(sensitive_range(&verify), Some(15..19));
    let t1 = Command::XfrBlock {
        bwi: 0,
        level: 0,
        data: vec![
            0x00, 0x00, 0x09, 0x00, 0x24, 0x00, 0x81, 0x04, b'9', b'9', b'9', b'9', 0x55,
        ],
    }
    .encode(0, 1);
    assert_eq!(sensitive_range(&t1), Some(18..23));
    let select = Command::XfrBlock {
        bwi: 0,
        level: 0,
        data: vec![0x00, 0xA4, 0x04, 0x00, 0x01, 0xA0],
    }
    .encode(0, 1);
    assert_eq!(sensitive_range(&select), None);
    let secure = Command::Secure {
        bwi: 0,
        level: 0,
        data: vec![0; 30],
    }
    .encode(0, 1);
    assert_eq!(sensitive_range(&secure), Some(30..40));
}

#[test]
fn card_events_wake_the_poller_and_stop_ends_it_at_once() {
    use super::device::EventWait;
    let mut desc = CcidDescriptor::example();
    desc.bMaxSlotIndex = 5;
    desc.bMaxCCIDBusySlots = 6;
    let t = Arc::new(
        Scripted::new(desc, |cmd| {
            vec![answer(cmd, MessageType::RDR_TO_PC_SLOT_STATUS, 0, 0, &[])]
        })
        .with_interrupt(),
    );
    let dev = Device::open(t.clone(), "events", 0, &OpenOptions::default()).unwrap();
    assert!(dev.has_card_events());
    // Nothing happened: the wait times out.
    let start = Instant::now();
    assert_eq!(
        dev.wait_event(0, Duration::from_millis(100)),
        EventWait::TimedOut
    );
    assert!(start.elapsed() >= Duration::from_millis(100));
    // A stop requested before the wait ends the next wait at once.
    dev.stop_wait(1);
    let start = Instant::now();
    assert_eq!(
        dev.wait_event(1, Duration::from_secs(10)),
        EventWait::Stopped
    );
    assert!(start.elapsed() < Duration::from_millis(50));
    // A stop during the wait.
    let d2 = dev.clone();
    let h = std::thread::spawn(move || d2.wait_event(2, Duration::from_secs(10)));
    std::thread::sleep(Duration::from_millis(50));
    let start = Instant::now();
    dev.stop_wait(2);
    assert_eq!(h.join().unwrap(), EventWait::Stopped);
    assert!(start.elapsed() < Duration::from_millis(100));
    // Slot 5 changed (second byte, bits 2-3): only slot 5 wakes.
    let d3 = dev.clone();
    let h5 = std::thread::spawn(move || d3.wait_event(5, Duration::from_secs(10)));
    std::thread::sleep(Duration::from_millis(20));
    let start = Instant::now();
    t.notify(&[0x50, 0x00, 0b0000_1100]);
    assert_eq!(h5.join().unwrap(), EventWait::Changed);
    assert!(start.elapsed() < Duration::from_millis(200));
    assert_eq!(
        dev.wait_event(4, Duration::from_millis(50)),
        EventWait::TimedOut
    );
    // Unplugged: the waiter learns at once.
    let d4 = dev.clone();
    let h0 = std::thread::spawn(move || d4.wait_event(0, Duration::from_secs(10)));
    std::thread::sleep(Duration::from_millis(20));
    t.unplug();
    assert_eq!(h0.join().unwrap(), EventWait::Gone);
    dev.shutdown();
}

#[test]
fn failed_slot_status_answers_any_command() {
    let t = Arc::new(Scripted::new(CcidDescriptor::example(), |cmd| {
        vec![answer(
            cmd,
            MessageType::RDR_TO_PC_SLOT_STATUS,
            0x40,
            0,
            &[],
        )]
    }));
    let ex = Exchanger::new(t, 1, 0);
    let r = ex
        .exchange(0, &Command::Escape { data: vec![0x6A] }, limits(500))
        .unwrap();
    assert_eq!(
        r.status.command(),
        crate::proto::message::CommandStatus::Failed
    );
    assert!(super::slot::check_status(&r).is_err());
}

#[test]
fn interfaces_of_a_deadlocking_composite_device_take_turns() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    // ACS ACR1252 (072F:223B): two CCID interfaces that must not be used
    // at the same time.
    static IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);
    static MAX: AtomicUsize = AtomicUsize::new(0);
    let make = |iface: u8| {
        let mut t = Scripted::new(CcidDescriptor::example(), |cmd| {
            let now = IN_FLIGHT.fetch_add(1, Ordering::SeqCst) + 1;
            MAX.fetch_max(now, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(5));
            IN_FLIGHT.fetch_sub(1, Ordering::SeqCst);
            vec![answer(cmd, MessageType::RDR_TO_PC_SLOT_STATUS, 0, 0, &[])]
        });
        t.set_identity(0x072F, 0x223B, iface);
        Arc::new(t)
    };
    let d0 = Device::open(make(0), "if0", 0, &OpenOptions::default()).unwrap();
    let d1 = Device::open(make(1), "if1", 0x10000, &OpenOptions::default()).unwrap();
    MAX.store(0, Ordering::SeqCst);
    let hs: Vec<_> = [d0, d1]
        .into_iter()
        .map(|d| {
            std::thread::spawn(move || {
                for _ in 0..20 {
                    d.exchange(0, &Command::GetSlotStatus, Duration::from_secs(1))
                        .unwrap();
                }
            })
        })
        .collect();
    for h in hs {
        h.join().unwrap();
    }
    assert_eq!(MAX.load(Ordering::SeqCst), 1);
}

#[test]
fn sequence_numbers_are_unique_among_commands_in_flight() {
    // 8 slots, each waiting a long time for its answer while others cycle
    // through many commands: no two pending commands ever share a bSeq.
    let mut desc = CcidDescriptor::example();
    desc.bMaxSlotIndex = 7;
    desc.bMaxCCIDBusySlots = 8;
    let seen: Arc<std::sync::Mutex<Vec<(u8, u8)>>> = Arc::default();
    let s2 = seen.clone();
    let t = Arc::new(Scripted::new(desc, move |cmd| {
        let h = Header::parse(cmd).unwrap();
        s2.lock().unwrap().push((h.slot, h.seq));
        if h.slot == 0 {
            vec![] // slot 0 never answers: its bSeq stays in flight
        } else {
            vec![answer(cmd, MessageType::RDR_TO_PC_SLOT_STATUS, 0, 0, &[])]
        }
    }));
    let ex = Arc::new(Exchanger::new(t, 8, 0));
    let ex0 = ex.clone();
    let pending =
        std::thread::spawn(move || ex0.exchange(0, &Command::GetSlotStatus, limits(1500)));
    std::thread::sleep(Duration::from_millis(50));
    for _ in 0..600 {
        ex.exchange(1, &Command::GetSlotStatus, limits(500))
            .unwrap();
    }
    assert!(pending.join().unwrap().is_err());
    let seen = seen.lock().unwrap();
    let slot0_seq = seen.iter().find(|(s, _)| *s == 0).unwrap().1;
    assert!(seen
        .iter()
        .filter(|(s, _)| *s == 1)
        .all(|(_, q)| *q != slot0_seq));
}
