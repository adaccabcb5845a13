//! Every scripted fault produces the documented frame (or its absence).

#[path = "support/model.rs"]
mod support;

use ccid::iso7816::atr::Edc;
use ccid::iso7816::t1::block::{decode, encode, Block, SKind};
use ccid::iso7816::t1::card::Fault as T1Fault;
use ccid::proto::descriptor::ExchangeLevel::{ExtendedApdu, Tpdu};
use ccid::proto::message::{Command, FrameError, MessageType, Notification, Response};
use ccid::transport::{ControlSetup, TransportError};
use ccid_sim::card::Card;
use ccid_sim::fault::{Fault, FaultRule};
use ccid_sim::model::{BulkPoll, VirtualReader};
use std::time::Duration;
use support::*;

const Z: Duration = Duration::ZERO;

fn powered(level: ccid::proto::descriptor::ExchangeLevel, card: Card) -> VirtualReader {
    let mut h = Host::at(level, card);
    h.power_on();
    while h.r.poll_interrupt(Z).is_some() {}
    h.r
}

fn xfr(data: &[u8]) -> Command {
    Command::XfrBlock {
        bwi: 0,
        level: 0,
        data: data.to_vec(),
    }
}

fn one(r: &mut VirtualReader, cmd: &Command, seq: u8) -> Vec<Vec<u8>> {
    r.exchange(&cmd.encode(0, seq)).unwrap()
}

#[test]
fn stall_silence_hang_and_stall_out() {
    let mut r = powered(ExtendedApdu, Card::test_card());
    r.inject_once(Fault::Stall);
    r.bulk_out(&xfr(&select()).encode(0, 1), Z).unwrap();
    assert_eq!(
        r.poll_bulk_in(Z),
        BulkPoll::Ready(Err(TransportError::Pipe))
    );
    assert_eq!(r.poll_bulk_in(Z), BulkPoll::Idle);
    assert_eq!(r.in_flight(), 0);

    r.inject_once(Fault::StallOut);
    assert_eq!(
        r.bulk_out(&xfr(&select()).encode(0, 2), Z),
        Err(TransportError::Pipe)
    );
    assert_eq!((r.in_flight(), r.poll_bulk_in(Z)), (0, BulkPoll::Idle));

    r.inject_once(Fault::Silence);
    assert!(one(&mut r, &xfr(&select()), 3).is_empty());
    assert_eq!(r.in_flight(), 0, "the slot is free after a lost answer");
    assert_eq!(one(&mut r, &xfr(&select()), 4).len(), 1);

    r.inject_once(Fault::Hang);
    assert!(one(&mut r, &xfr(&select()), 5).is_empty());
    assert_eq!(r.in_flight(), 1, "a hung command keeps the slot busy");
    let busy = Response::parse(&one(&mut r, &Command::GetSlotStatus, 6)[0]).unwrap();
    assert_eq!(status(&busy), (0x40, 0xE0));
}

#[test]
fn header_corruptions() {
    let mut r = powered(ExtendedApdu, Card::test_card());
    r.inject_once(Fault::WrongSeq(1));
    let f = one(&mut r, &Command::GetSlotStatus, 10);
    assert_eq!(Response::parse(&f[0]).unwrap().seq, 11);

    r.inject_once(Fault::WrongSlot(7));
    let f = one(&mut r, &Command::GetSlotStatus, 11);
    assert_eq!(Response::parse(&f[0]).unwrap().slot, 7);

    r.inject_once(Fault::ShortFrame(7));
    let f = one(&mut r, &Command::GetSlotStatus, 12);
    assert_eq!(f[0].len(), 7);
    assert!(matches!(
        Response::parse(&f[0]),
        Err(FrameError::Short { len: 7 })
    ));

    r.inject_once(Fault::LongLength(5));
    let f = one(&mut r, &xfr(&select()), 13);
    assert_eq!(f[0].len(), 12);
    assert_eq!(f[0][1], 7);
    assert!(matches!(
        Response::parse(&f[0]),
        Err(FrameError::LengthMismatch {
            declared: 7,
            actual: 2
        })
    ));
}

#[test]
fn time_extensions_finite_and_endless() {
    let mut r = powered(ExtendedApdu, Card::test_card());
    r.inject_once(Fault::TimeExtension {
        count: 2,
        multiplier: 3,
    });
    let f = one(&mut r, &xfr(&select()), 1);
    assert_eq!(f.len(), 3);
    for te in &f[..2] {
        let t = Response::parse(te).unwrap();
        assert_eq!(
            (t.message_type, t.seq, status(&t)),
            (MessageType::RDR_TO_PC_DATA_BLOCK, 1, (0x80, 3))
        );
        assert!(t.data.is_empty());
    }
    assert_eq!(Response::parse(&f[2]).unwrap().data, [0x90, 0x00]);

    r.inject_once(Fault::EndlessTimeExtension { multiplier: 1 });
    r.bulk_out(&xfr(&select()).encode(0, 2), Z).unwrap();
    for _ in 0..20 {
        let BulkPoll::Ready(Ok(f)) = r.poll_bulk_in(Z) else {
            panic!("a frame each time")
        };
        assert_eq!(status(&Response::parse(&f).unwrap()), (0x80, 1));
    }
    assert_eq!(r.in_flight(), 1);
    let abort = ControlSetup {
        request_type: 0x21,
        request: 0x01,
        value: 0x0300,
        index: 0,
    };
    r.control_out(abort, &[], Z).unwrap();
    let end = Response::parse(&r.drain().unwrap()[0]).unwrap();
    assert_eq!((end.seq, status(&end)), (2, (0x40, 0xFF)));
    assert_eq!(r.in_flight(), 0);
}

#[test]
fn endless_response_chaining() {
    let mut r = powered(ExtendedApdu, Card::test_card());
    r.inject_once(Fault::EndlessChaining);
    let first = Response::parse(&one(&mut r, &xfr(&select()), 1)[0]).unwrap();
    assert_eq!(first.specific, 0x01);
    for seq in 2..40u8 {
        let more = Command::XfrBlock {
            bwi: 0,
            level: 0x10,
            data: vec![],
        };
        let next = Response::parse(&one(&mut r, &more, seq)[0]).unwrap();
        assert_eq!((next.specific, status(&next)), (0x03, (0, 0)));
        assert!(!next.data.is_empty());
    }
}

#[test]
fn slot_errors_and_hardware_error_notification() {
    let mut r = powered(ExtendedApdu, Card::test_card());
    for (fault, err) in [
        (Fault::PARITY, 0xFD),
        (Fault::MUTE, 0xFE),
        (Fault::HW_ERROR, 0xFB),
        (Fault::Fail(0x82), 0x82),
    ] {
        r.inject_once(fault);
        let f = Response::parse(&one(&mut r, &xfr(&select()), 1)[0]).unwrap();
        assert_eq!((status(&f), f.data.len()), ((0x40, err), 0));
    }
    r.inject_once(Fault::HardwareError(1));
    let f = Response::parse(&one(&mut r, &xfr(&select()), 9)[0]).unwrap();
    assert_eq!(status(&f), (0x40, 0xFB));
    let n = r.poll_interrupt(Z).unwrap().unwrap();
    assert_eq!(n, [0x51, 0, 9, 1]);
    assert_eq!(
        Notification::parse(&n).unwrap(),
        Notification::HardwareError {
            slot: 0,
            seq: 9,
            code: 1
        }
    );
}

#[test]
fn zero_length_packets() {
    let mut r = powered(ExtendedApdu, Card::test_card());
    r.inject_once(Fault::StrayZlp);
    let f = one(&mut r, &Command::GetSlotStatus, 1);
    assert_eq!((f.len(), f[0].len(), f[1].len()), (2, 0, 10));
    // 10 + 52 + 2 = 64 bytes: one full packet.
    let get52 = xfr(&[0, 0xCA, 0, 0, 52]);
    assert_eq!(one(&mut r, &get52, 2).len(), 1, "no ZLP unless configured");
    r.inject(FaultRule::always(Fault::ZlpAfterFullPacket));
    let f = one(&mut r, &get52, 3);
    assert_eq!((f.len(), f[0].len(), f[1].len()), (2, 64, 0));
    assert_eq!(
        one(&mut r, &xfr(&[0, 0xCA, 0, 0, 51]), 4).len(),
        1,
        "63 bytes: no ZLP"
    );
    // The same as a reader setting.
    let mut cfg = config(ExtendedApdu);
    cfg.zlp_after_full_packet = true;
    let mut r = VirtualReader::with_card(cfg, Some(Card::test_card()));
    r.transact(0, 1, &Command::IccPowerOn { power_select: 0 })
        .unwrap();
    assert_eq!(one(&mut r, &get52, 2).len(), 2);
}

#[test]
fn card_removed_mid_command_and_unplug() {
    let mut r = powered(ExtendedApdu, Card::test_card());
    r.inject_once(Fault::CardRemoved);
    let f = Response::parse(&one(&mut r, &xfr(&select()), 1)[0]).unwrap();
    assert_eq!(status(&f), (0x42, 0xFE));
    let n = Notification::parse(&r.poll_interrupt(Z).unwrap().unwrap()).unwrap();
    assert_eq!(n.slot_state(0), Some((false, true)));
    assert!(r.reinsert_card(0).unwrap());

    r.inject_once(Fault::Unplug);
    assert_eq!(r.bulk_out(&Command::GetSlotStatus.encode(0, 2), Z), Ok(()));
    assert!(r.is_gone());
    assert_eq!(
        r.poll_bulk_in(Z),
        BulkPoll::Ready(Err(TransportError::NoDevice))
    );
    assert_eq!(
        r.bulk_out(&Command::GetSlotStatus.encode(0, 3), Z),
        Err(TransportError::NoDevice)
    );
    assert_eq!(r.poll_interrupt(Z), Some(Err(TransportError::NoDevice)));
    let s = ControlSetup {
        request_type: 0xA1,
        request: 0x03,
        value: 0,
        index: 0,
    };
    assert_eq!(r.control_in(s, 8, Z), Err(TransportError::NoDevice));
}

#[test]
fn delay_and_rule_filters() {
    let mut r = powered(ExtendedApdu, Card::test_card());
    r.inject_once(Fault::Delay(Duration::from_millis(10)));
    r.bulk_out(&Command::GetSlotStatus.encode(0, 1), Z).unwrap();
    assert_eq!(
        r.poll_bulk_in(Z),
        BulkPoll::Later(Duration::from_millis(10))
    );
    assert!(matches!(
        r.poll_bulk_in(Duration::from_millis(10)),
        BulkPoll::Ready(Ok(_))
    ));

    // Only XfrBlock, only twice.
    r.inject(
        FaultRule::once(Fault::PARITY)
            .on(MessageType::PC_TO_RDR_XFR_BLOCK)
            .times(2),
    );
    assert_eq!(
        status(&r.transact(0, 2, &Command::GetSlotStatus).unwrap()),
        (0, 0)
    );
    assert_eq!(status(&r.transact(0, 3, &xfr(&select())).unwrap()).1, 0xFD);
    assert_eq!(status(&r.transact(0, 4, &xfr(&select())).unwrap()).1, 0xFD);
    assert_eq!(status(&r.transact(0, 5, &xfr(&select())).unwrap()).1, 0);
    // Only slot 1 of a two-slot reader.
    let mut r = VirtualReader::with_card(
        config(ExtendedApdu).with_slots(2, 2),
        Some(Card::test_card()),
    );
    r.inject(FaultRule::always(Fault::MUTE).on_slot(1));
    assert_eq!(
        status(&r.transact(0, 1, &Command::GetSlotStatus).unwrap()).1,
        0
    );
    assert_eq!(
        status(&r.transact(1, 2, &Command::GetSlotStatus).unwrap()).1,
        0xFE
    );
    assert_eq!(
        status(&r.transact(1, 3, &Command::GetSlotStatus).unwrap()).1,
        0xFE
    );
    assert_eq!(r.stats().faults, 2);
}

#[test]
fn card_side_t1_faults() {
    let mut r = powered(Tpdu, Card::with_protocols(false, true));
    let i0 = encode(
        0,
        &Block::I {
            ns: 0,
            more: false,
            inf: select(),
        },
        Edc::Lrc,
    );
    r.inject(FaultRule::once(Fault::Card(T1Fault::WrongNs)));
    let f = Response::parse(&one(&mut r, &xfr(&i0), 1)[0]).unwrap();
    let (_, b) = decode(&f.data, Edc::Lrc).unwrap();
    assert_eq!(
        b,
        Block::I {
            ns: 1,
            more: false,
            inf: vec![0x90, 0x00]
        }
    );

    r.inject(FaultRule::once(Fault::Card(T1Fault::Abort)));
    let i1 = encode(
        0,
        &Block::I {
            ns: 1,
            more: false,
            inf: select(),
        },
        Edc::Lrc,
    );
    let f = Response::parse(&one(&mut r, &xfr(&i1), 2)[0]).unwrap();
    let (_, b) = decode(&f.data, Edc::Lrc).unwrap();
    assert_eq!(b, Block::s(SKind::Abort, false, &[]));

    r.inject(FaultRule::once(Fault::Card(T1Fault::Wtx(2))));
    let resynch = encode(0, &Block::s(SKind::Resynch, false, &[]), Edc::Lrc);
    let f = Response::parse(&one(&mut r, &xfr(&resynch), 3)[0]).unwrap();
    let (_, b) = decode(&f.data, Edc::Lrc).unwrap();
    assert_eq!(b, Block::s(SKind::Wtx, false, &[2]));
}
