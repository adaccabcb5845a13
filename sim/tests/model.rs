//! The reader model answers like a spec-conforming reader, message by
//! message, at every exchange level (raw CCID frames through
//! `ccid::proto::message`).

#[path = "support/model.rs"]
mod support;

use ccid::iso7816::atr::Edc;
use ccid::iso7816::t0::{T0CharEngine, T0Options, T0Step};
use ccid::iso7816::t1::block::{decode, encode, Block, RCode};
use ccid::iso7816::t1::card::Fault as T1Fault;
use ccid::proto::descriptor::ExchangeLevel::{self, Character, ExtendedApdu, ShortApdu, Tpdu};
use ccid::proto::message::{Command, IccStatus, MessageType, Notification, Response};
use ccid::transport::{ControlSetup, TransportError};
use ccid_sim::card::{AtrBuilder, Card, IsoApplet};
use ccid_sim::model::{BulkPoll, ReaderConfig, SecureCard, SecureHandler, VirtualReader};
use ccid_sim::timing::TimeModel;
use std::time::Duration;
use support::*;

fn t1_card() -> Card {
    Card::with_protocols(false, true)
}

fn t0_card() -> Card {
    Card::with_protocols(true, false)
}

#[test]
fn power_on_without_card_is_absent_and_mute() {
    let mut h = Host::new(VirtualReader::new(config(ExtendedApdu)));
    let r = h.power_on();
    assert_eq!(status(&r), (0x42, 0xFE));
    assert!(r.data.is_empty());
    assert_eq!(status(&h.cmd(Command::GetSlotStatus)), (0x02, 0x00));
    assert_eq!(status(&h.xfr(0, &select())), (0x42, 0xFE));
}

#[test]
fn slot_status_follows_power() {
    let mut h = Host::at(ExtendedApdu, Card::test_card());
    assert_eq!(status(&h.cmd(Command::GetSlotStatus)), (0x01, 0));
    let on = h.power_on();
    assert_eq!(status(&on), (0x00, 0));
    assert_eq!(on.data, h.r.card(0).unwrap().atr());
    assert_eq!(status(&h.cmd(Command::GetSlotStatus)), (0x00, 0));
    assert_eq!(status(&h.cmd(Command::IccPowerOff)), (0x01, 0));
    assert_eq!(status(&h.xfr(0, &select())), (0x41, 0xFE));
}

#[test]
fn voltages_are_checked_against_the_descriptor_and_the_card() {
    let mut cfg = config(ExtendedApdu);
    cfg.descriptor.bVoltageSupport = 0x03; // 5 V and 3 V
    let card = Card::test_card().with_voltages(0x02); // a 3 V card
    let mut h = Host::new(VirtualReader::with_card(cfg, Some(card)));
    // 1.8 V is not offered by the reader: bError 7 (bPowerSelect).
    assert_eq!(
        status(&h.cmd(Command::IccPowerOn { power_select: 3 })),
        (0x41, 7)
    );
    // An undefined bPowerSelect.
    assert_eq!(
        status(&h.cmd(Command::IccPowerOn { power_select: 9 })),
        (0x41, 7)
    );
    // 5 V: the card stays mute.
    assert_eq!(
        status(&h.cmd(Command::IccPowerOn { power_select: 1 })),
        (0x41, 0xFE)
    );
    // 3 V works; so does automatic selection.
    assert_eq!(
        status(&h.cmd(Command::IccPowerOn { power_select: 2 })),
        (0x00, 0)
    );
    assert_eq!(
        status(&h.cmd(Command::IccPowerOn { power_select: 0 })),
        (0x00, 0)
    );
    // A reader selecting the voltage itself ignores the request.
    let mut cfg = config(ExtendedApdu);
    cfg.descriptor.dwFeatures |= 0x08;
    let mut h = Host::new(VirtualReader::with_card(
        cfg,
        Some(Card::test_card().with_voltages(0x04)),
    ));
    assert_eq!(
        status(&h.cmd(Command::IccPowerOn { power_select: 1 })),
        (0x00, 0)
    );
    // A mute card.
    let mut h = Host::at(ExtendedApdu, Card::test_card().mute());
    assert_eq!(status(&h.power_on()), (0x41, 0xFE));
}

#[test]
fn parameters_get_set_reset_and_validation() {
    let mut h = Host::at(Tpdu, t1_card());
    h.power_on();
    let p = h.cmd(Command::GetParameters);
    assert_eq!(p.specific, 1, "bProtocolNum");
    assert_eq!(p.data, [0x11, 0x10, 0x00, 0x4D, 0x00, 254, 0x00]);
    // Wrong structure length: dwLength.
    let r = h.set_params(1, &[0x11, 0x10, 0, 0x4D, 0, 254]);
    assert_eq!(status(&r), (0x40, 1));
    assert_eq!(
        r.data, p.data,
        "a failed SetParameters returns the structure in force"
    );
    // Unknown protocol: bProtocolNum.
    assert_eq!(status(&h.set_params(2, &[0; 7])), (0x40, 7));
    // RFU Fi: the first protocol data byte.
    assert_eq!(
        status(&h.set_params(1, &[0x71, 0x10, 0, 0x4D, 0, 254, 0])).1,
        10
    );
    // Faster than dwMaxDataRate (372/64 at 4 MHz = 688 kbps).
    assert_eq!(
        status(&h.set_params(1, &[0x17, 0x10, 0, 0x4D, 0, 254, 0])).1,
        10
    );
    // bmTCCKST1 and bIFSC.
    assert_eq!(
        status(&h.set_params(1, &[0x11, 0x00, 0, 0x4D, 0, 254, 0])).1,
        11
    );
    assert_eq!(
        status(&h.set_params(1, &[0x11, 0x10, 0, 0x4D, 0, 0, 0])).1,
        15
    );
    // The card offers no T=0.
    assert_eq!(status(&h.set_params(0, &[0x11, 0, 0, 10, 0])).1, 0xF6);
    // Valid: applied and echoed.
    let ok = h.set_params(1, &[0x11, 0x11, 2, 0x45, 0, 128, 0]);
    assert_eq!(status(&ok), (0, 0));
    assert_eq!(ok.data, [0x11, 0x11, 2, 0x45, 0, 128, 0]);
    assert_eq!(h.r.parameters(0).unwrap().1, ok.data);
    let reset = h.cmd(Command::ResetParameters);
    assert_eq!(reset.data, p.data);
    // A reader without T=0 refuses T=0 structures.
    let mut cfg = config(Tpdu);
    cfg.descriptor.dwProtocols = 2;
    let mut h = Host::new(VirtualReader::with_card(cfg, Some(Card::test_card())));
    h.power_on();
    assert_eq!(status(&h.set_params(0, &[0x11, 0, 0, 10, 0])).1, 7);
    // No card.
    let mut h = Host::new(VirtualReader::new(config(Tpdu)));
    assert_eq!(status(&h.cmd(Command::GetParameters)), (0x42, 0xFE));
}

#[test]
fn extended_apdu_chaining_both_ways() {
    let mut h = Host::at(ExtendedApdu, Card::test_card());
    h.power_on();
    assert_eq!(h.xfr(0, &select()).data, [0x90, 0x00]);
    // 500 bytes of GET DATA with dwMaxCCIDMessageLength 271: 261 + 241.
    let first = h.xfr(0, &[0x00, 0xCA, 0x00, 0x00, 0x00, 0x01, 0xF4]);
    assert_eq!((first.specific, first.data.len()), (0x01, 261));
    let second = h.xfr(0x10, &[]);
    assert_eq!((second.specific, second.data.len()), (0x02, 241));
    let mut all = first.data;
    all.extend(second.data);
    assert_eq!(all, with_sw(counting(500)));
    // A 0x10 with nothing left, a 0x0002 without a beginning: bError 8.
    assert_eq!(status(&h.xfr(0x10, &[])), (0x40, 8));
    assert_eq!(status(&h.xfr(0x02, &[1, 2])), (0x40, 8));
    // Command chaining: an extended ECHO of 600 bytes in three pieces.
    let data: Vec<u8> = (0..600u32).map(|i| (i * 7) as u8).collect();
    let mut apdu = vec![0x80, 0xEE, 0x00, 0x00, 0x00, 0x02, 0x58];
    apdu.extend_from_slice(&data);
    apdu.extend_from_slice(&[0x00, 0x00]);
    let parts: Vec<&[u8]> = apdu.chunks(261).collect();
    assert_eq!(parts.len(), 3);
    let a = h.xfr(0x01, parts[0]);
    assert_eq!((a.specific, a.data.len(), status(&a)), (0x10, 0, (0, 0)));
    let b = h.xfr(0x03, parts[1]);
    assert_eq!((b.specific, b.data.len()), (0x10, 0));
    let mut got = Vec::new();
    let mut chain = Vec::new();
    let mut r = h.xfr(0x02, parts[2]);
    loop {
        got.extend_from_slice(&r.data);
        chain.push(r.specific);
        if r.specific != 0x01 && r.specific != 0x03 {
            break;
        }
        r = h.xfr(0x10, &[]);
    }
    assert_eq!(chain, [0x01, 0x03, 0x02], "602 bytes: 261 + 261 + 80");
    assert_eq!(got, with_sw(data));
    // A message longer than dwMaxCCIDMessageLength: bError 1 (dwLength).
    assert_eq!(status(&h.xfr(0, &[0u8; 262])), (0x40, 1));
    // An unknown wLevelParameter.
    assert_eq!(status(&h.xfr(0x0004, &select())), (0x40, 8));
}

#[test]
fn short_apdu_level_limits() {
    let mut cfg = config(ShortApdu);
    cfg.descriptor.dwMaxCCIDMessageLength = 300;
    let mut h = Host::new(VirtualReader::with_card(cfg, Some(Card::test_card())));
    h.power_on();
    assert_eq!(h.xfr(0, &select()).data, [0x90, 0x00]);
    let mut long = vec![0x80, 0xEE, 0, 0, 0xFF];
    long.extend_from_slice(&[0x33; 255]);
    long.push(0);
    assert_eq!(long.len(), 261);
    assert_eq!(h.xfr(0, &long).data.len(), 257);
    long.push(0);
    assert_eq!(
        status(&h.xfr(0, &long)),
        (0x40, 1),
        "262 bytes is no short APDU"
    );
    assert_eq!(
        status(&h.xfr(1, &select())),
        (0x40, 8),
        "no chaining at short level"
    );
    // A response that does not fit one message.
    let mut cfg = config(ShortApdu);
    cfg.descriptor.dwMaxCCIDMessageLength = 64;
    let mut h = Host::new(VirtualReader::with_card(cfg, Some(Card::test_card())));
    h.power_on();
    assert_eq!(status(&h.xfr(0, &[0, 0xCA, 0, 0, 100])), (0x40, 0xFC));
}

#[test]
fn tpdu_t0_procedure_bytes_run_in_the_reader() {
    let mut h = Host::at(Tpdu, t0_card());
    h.power_on();
    assert_eq!(h.cmd(Command::GetParameters).specific, 0);
    // Case 3, case 2.
    assert_eq!(h.xfr(0, &select()).data, [0x90, 0x00]);
    assert_eq!(h.xfr(0, &[0, 0xCA, 0, 0, 5]).data, with_sw(counting(5)));
    assert_eq!(h.xfr(0, &[0, 0xCA, 0, 0, 0]).data, with_sw(counting(256)));
    // Case 4: the reader returns 61 xx, GET RESPONSE fetches the data.
    assert_eq!(h.xfr(0, &[0x80, 0xEE, 0, 0, 2, 9, 8]).data, [0x61, 0x02]);
    assert_eq!(h.xfr(0, &[0x00, 0xC0, 0, 0, 2]).data, [9, 8, 0x90, 0x00]);
    // Case 4 sent with its Le: the Le is not for the card.
    let mut s = select();
    s.push(0x00);
    assert_eq!(h.xfr(0, &s).data, [0x90, 0x00]);
    // Wrong Le: 6C xx.
    assert_eq!(h.xfr(0, &[0, 0xB0, 0x03, 0xFE, 4]).data, [0x6C, 0x02]);
    // Case 1 as four bytes.
    assert_eq!(h.xfr(0, &[0, 0x12, 0, 0]).data, [0x6D, 0x00]);
    // P3 and the data disagree.
    assert_eq!(status(&h.xfr(0, &[0, 0xA4, 4, 0, 8, 1, 2])).1, 1);
}

#[test]
fn t0_cards_with_nulls_and_single_byte_acknowledgements() {
    use ccid::iso7816::t0::card::T0CardConfig;
    let cfg = T0CardConfig {
        nulls: 2,
        single_byte_acks: true,
        xor01_acks: true,
        ..T0CardConfig::default()
    };
    for level in [Tpdu, Character] {
        let mut h = Host::at(level, t0_card().with_t0_config(cfg));
        h.power_on();
        let run = |h: &mut Host, apdu: &[u8]| {
            if level == Tpdu {
                h.xfr(0, apdu).data
            } else {
                char_t0(h, apdu)
            }
        };
        assert_eq!(run(&mut h, &select()), [0x90, 0x00], "{level:?}");
        assert_eq!(
            run(&mut h, &[0, 0xCA, 0, 0, 7]),
            with_sw(counting(7)),
            "{level:?}"
        );
    }
}

#[test]
fn tpdu_pps_then_matching_parameters() {
    let atr = AtrBuilder::new().ta1(0x95).build().unwrap();
    let mut h = Host::at(Tpdu, Card::new(atr.clone(), IsoApplet::new()).unwrap());
    assert_eq!(h.power_on().data, atr);
    let pps = [0xFF, 0x10, 0x95, 0xFF ^ 0x10 ^ 0x95];
    assert_eq!(h.xfr(0, &pps).data, pps);
    assert_eq!(status(&h.set_params(0, &[0x95, 0, 0, 10, 0])), (0, 0));
    assert_eq!(h.xfr(0, &select()).data, [0x90, 0x00]);
    // Without the PPS the card still runs at Fd/Dd: a reader set to 95
    // cannot talk to it.
    h.power_on();
    assert_eq!(status(&h.set_params(0, &[0x95, 0, 0, 10, 0])), (0, 0));
    assert_eq!(status(&h.xfr(0, &select())), (0x40, 0xFE));
    // T=1 on a T=0-first card needs a PPS too.
    h.power_on();
    assert_eq!(
        status(&h.set_params(1, &[0x11, 0x10, 0, 0x4D, 0, 254, 0])),
        (0, 0)
    );
    let i0 = encode(
        0,
        &Block::I {
            ns: 0,
            more: false,
            inf: select(),
        },
        Edc::Lrc,
    );
    assert_eq!(status(&h.xfr(0, &i0)), (0x40, 0xFE));
    h.power_on();
    let pps = [0xFF, 0x01, 0xFF ^ 0x01];
    assert_eq!(h.xfr(0, &pps).data, pps);
    h.set_params(1, &[0x11, 0x10, 0, 0x4D, 0, 254, 0]);
    let r = h.xfr(0, &i0);
    assert_eq!(decode(&r.data, Edc::Lrc).unwrap().1.inf(), [0x90, 0x00]);
    // A reader doing the PPS itself (AUTO_PPS_CUR) needs no PPS from the host.
    let mut cfg = config(Tpdu);
    cfg.descriptor.dwFeatures |= 0x80;
    let mut h = Host::new(VirtualReader::with_card(
        cfg,
        Some(Card::new(atr, IsoApplet::new()).unwrap()),
    ));
    h.power_on();
    assert_eq!(
        h.set_params(1, &[0x95, 0x10, 0, 0x4D, 0, 254, 0]).data[0],
        0x95
    );
    let r = h.xfr(0, &i0);
    assert_eq!(decode(&r.data, Edc::Lrc).unwrap().1.inf(), [0x90, 0x00]);
}

#[test]
fn tpdu_t1_blocks_go_to_the_card() {
    let mut h = Host::at(Tpdu, t1_card());
    h.power_on();
    let i0 = encode(
        0,
        &Block::I {
            ns: 0,
            more: false,
            inf: select(),
        },
        Edc::Lrc,
    );
    let r = h.xfr(0, &i0);
    let (_, b) = decode(&r.data, Edc::Lrc).unwrap();
    assert_eq!(
        b,
        Block::I {
            ns: 0,
            more: false,
            inf: vec![0x90, 0x00]
        }
    );
    // Card-side faults: a damaged EDC, then silence (mute after BWT).
    h.r.inject_card(0, T1Fault::CorruptEdc).unwrap();
    let i1 = encode(
        0,
        &Block::I {
            ns: 1,
            more: false,
            inf: vec![0, 0xCA, 0, 0, 1],
        },
        Edc::Lrc,
    );
    let r = h.xfr(0, &i1);
    assert!(decode(&r.data, Edc::Lrc).is_err());
    let nak = encode(
        0,
        &Block::R {
            nr: 0,
            code: RCode::Edc,
        },
        Edc::Lrc,
    );
    let r = h.xfr(0, &nak);
    assert_eq!(decode(&r.data, Edc::Lrc).unwrap().1.inf(), [0, 0x90, 0x00]);
    h.r.inject_card(0, T1Fault::Lose).unwrap();
    let i0 = encode(
        0,
        &Block::I {
            ns: 0,
            more: false,
            inf: select(),
        },
        Edc::Lrc,
    );
    assert_eq!(status(&h.xfr(0, &i0)), (0x40, 0xFE));
    // A CRC card.
    let atr = AtrBuilder::new()
        .protocols(false, true)
        .edc(Edc::Crc)
        .build()
        .unwrap();
    let mut h = Host::at(Tpdu, Card::new(atr, IsoApplet::new()).unwrap());
    h.power_on();
    assert_eq!(h.cmd(Command::GetParameters).data[1], 0x11);
    let i0 = encode(
        0,
        &Block::I {
            ns: 0,
            more: false,
            inf: select(),
        },
        Edc::Crc,
    );
    assert_eq!(
        decode(&h.xfr(0, &i0).data, Edc::Crc).unwrap().1.inf(),
        [0x90, 0x00]
    );
}

/// Runs one APDU through the character-level T=0 engine.
fn char_t0(h: &mut Host, apdu: &[u8]) -> Vec<u8> {
    let (mut e, mut step) = T0CharEngine::start(apdu, T0Options::default()).unwrap();
    loop {
        match step {
            T0Step::Send { bytes, expect } => {
                let r = h.xfr(expect as u16, &bytes);
                assert_eq!(status(&r), (0, 0), "{apdu:02X?}");
                assert_eq!(r.data.len(), expect);
                step = e.on_bytes(&r.data).unwrap();
            }
            T0Step::Done { response } => return response,
        }
    }
}

#[test]
fn character_level_t0_and_t1() {
    let mut h = Host::at(Character, t0_card());
    h.power_on();
    assert_eq!(char_t0(&mut h, &select()), [0x90, 0x00]);
    assert_eq!(char_t0(&mut h, &[0, 0xCA, 0, 0, 16]), with_sw(counting(16)));
    assert_eq!(
        char_t0(&mut h, &[0x80, 0xEE, 0, 0, 3, 1, 2, 3, 0]),
        [1, 2, 3, 0x90, 0x00]
    );
    // Asking for more characters than the card sends: mute.
    assert_eq!(status(&h.xfr(3, &[0, 0x12, 0, 0, 0])), (0x40, 0xFE));
    // wLevelParameter larger than a message can carry.
    assert_eq!(status(&h.xfr(300, &[])).1, 8);

    let mut h = Host::at(Character, t1_card());
    h.power_on();
    let i0 = encode(
        0,
        &Block::I {
            ns: 0,
            more: false,
            inf: vec![0, 0xCA, 0, 0, 4],
        },
        Edc::Lrc,
    );
    let head = h.xfr(3, &i0);
    assert_eq!(head.data.len(), 3);
    let tail = h.xfr(u16::from(head.data[2]) + 1, &[]);
    let mut all = head.data;
    all.extend(tail.data);
    assert_eq!(
        decode(&all, Edc::Lrc).unwrap().1.inf(),
        with_sw(counting(4))
    );
}

#[test]
fn escape_and_secure_hooks() {
    let mut h = Host::at(ExtendedApdu, Card::test_card());
    let r = h.cmd(Command::Escape { data: vec![1, 2] });
    assert_eq!(
        (r.message_type, status(&r)),
        (MessageType::RDR_TO_PC_ESCAPE, (0x41, 0))
    );
    h.r.set_escape_handler(Some(Box::new(|_slot, d: &[u8]| {
        if d.first() == Some(&0xFF) {
            Err(0x82)
        } else {
            Ok(d.iter().rev().copied().collect())
        }
    })));
    assert_eq!(h.cmd(Command::Escape { data: vec![1, 2] }).data, [2, 1]);
    assert_eq!(
        status(&h.cmd(Command::Escape { data: vec![0xFF] })),
        (0x41, 0x82)
    );

    let secure = Command::Secure {
        bwi: 0,
        level: 0,
        data: vec![0, 0x1E],
    };
    assert_eq!(status(&h.cmd(secure.clone())), (0x41, 0));
    struct Pinpad;
    impl SecureHandler for Pinpad {
        fn secure(
            &mut self,
            _slot: u8,
            data: &[u8],
            card: &mut dyn SecureCard,
        ) -> Result<Vec<u8>, u8> {
            match data.first() {
                Some(0) => {
                    let mut verify = vec![0x00, 0x20, 0x00, 0x81, 6];
                    verify.extend_from_slice(b"123456");
                    Ok(card.apdu(&verify))
                }
                _ => Err(0xEF),
            }
        }
    }
    h.r.set_secure_handler(Some(Box::new(Pinpad)));
    assert_eq!(
        status(&h.cmd(secure.clone())),
        (0x41, 0xFE),
        "card not powered"
    );
    h.power_on();
    assert_eq!(h.cmd(secure).data, [0x90, 0x00]);
    assert_eq!(
        status(&h.cmd(Command::Secure {
            bwi: 0,
            level: 0,
            data: vec![1]
        })),
        (0x40, 0xEF)
    );
}

#[test]
fn clock_t0apdu_mechanical_rates_unknown_and_bad_slot() {
    let mut cfg = config(ExtendedApdu);
    cfg.data_rates = vec![10752, 21505, 43010];
    cfg.clock_frequencies = vec![4000, 8000];
    cfg.descriptor.dwMechanical = 0x03;
    let mut h = Host::new(VirtualReader::with_card(cfg, Some(Card::test_card())));
    h.r.start();
    h.power_on();
    // IccClock: no CLOCK_STOP feature.
    assert_eq!(
        status(&h.cmd(Command::IccClock { clock_command: 1 })),
        (0x40, 0)
    );
    assert_eq!(
        status(&h.cmd(Command::IccClock { clock_command: 0 })),
        (0x00, 0)
    );
    assert_eq!(
        status(&h.cmd(Command::IccClock { clock_command: 2 })),
        (0x40, 7)
    );
    // T0APDU at APDU level.
    let t0 = Command::T0Apdu {
        changes: 3,
        class_get_response: 0,
        class_envelope: 0,
    };
    assert_eq!(status(&h.cmd(t0)), (0, 0));
    let bad = Command::T0Apdu {
        changes: 4,
        class_get_response: 0,
        class_envelope: 0,
    };
    assert_eq!(status(&h.cmd(bad)).1, 7);
    // SetDataRateAndClockFrequency against the lists.
    let r = h.cmd(Command::SetDataRateAndClockFrequency {
        clock: 8000,
        rate: 21505,
    });
    assert_eq!((status(&r), r.data.len()), ((0, 0), 8));
    assert_eq!(r.data, [0x40, 0x1F, 0, 0, 0x01, 0x54, 0, 0]);
    let r = h.cmd(Command::SetDataRateAndClockFrequency {
        clock: 5000,
        rate: 21505,
    });
    assert_eq!(status(&r), (0x40, 10));
    assert_eq!(
        r.data,
        [0x40, 0x1F, 0, 0, 0x01, 0x54, 0, 0],
        "the values in force"
    );
    let r = h.cmd(Command::SetDataRateAndClockFrequency {
        clock: 4000,
        rate: 9600,
    });
    assert_eq!(status(&r), (0x40, 14));
    // Mechanical: eject (supported), capture (not), bad function.
    assert_eq!(
        status(&h.cmd(Command::Mechanical { function: 3 })),
        (0x40, 0)
    );
    assert_eq!(
        status(&h.cmd(Command::Mechanical { function: 9 })),
        (0x40, 7)
    );
    while h.r.poll_interrupt(Duration::ZERO).is_some() {}
    assert_eq!(
        status(&h.cmd(Command::Mechanical { function: 2 })),
        (0x02, 0)
    );
    let n = h.r.poll_interrupt(Duration::ZERO).unwrap().unwrap();
    assert_eq!(
        Notification::parse(&n).unwrap().slot_state(0),
        Some((false, true))
    );
    assert_eq!(
        status(&h.cmd(Command::Mechanical { function: 1 })),
        (0x01, 0)
    );
    // An unknown message type: a SlotStatus with 'command not supported'.
    let r = h.cmd(Command::Unknown {
        message_type: 0x99,
        specific: [0; 3],
        data: vec![],
    });
    assert_eq!(
        (r.message_type, status(&r)),
        (MessageType::RDR_TO_PC_SLOT_STATUS, (0x41, 0))
    );
    // A slot that does not exist.
    let r = h.send(3, Command::GetSlotStatus);
    assert_eq!(status(&r), (0x42, 5));
    // dwLength larger than the bytes sent.
    let mut f = Command::XfrBlock {
        bwi: 0,
        level: 0,
        data: select(),
    }
    .encode(0, 77);
    f.truncate(f.len() - 2);
    let frames = h.r.exchange(&f).unwrap();
    let r = Response::parse(&frames[0]).unwrap();
    assert_eq!((r.seq, status(&r)), (77, (0x41, 1)));
    // Shorter than a header: no answer at all.
    assert!(h.r.exchange(&[0x65, 0, 0]).unwrap().is_empty());
}

#[test]
fn clock_stop_with_the_feature() {
    let mut cfg = config(ExtendedApdu);
    cfg.descriptor.dwFeatures |= 0x100;
    let mut h = Host::new(VirtualReader::with_card(cfg, Some(Card::test_card())));
    h.power_on();
    let r = h.cmd(Command::IccClock { clock_command: 1 });
    assert_eq!((status(&r), r.specific), ((0, 0), 3));
    assert_eq!(h.cmd(Command::GetSlotStatus).specific, 3);
    assert_eq!(status(&h.xfr(0, &select())), (0x40, 0xFE));
    h.cmd(Command::IccClock { clock_command: 0 });
    assert_eq!(h.xfr(0, &select()).data, [0x90, 0x00]);
    // At TPDU level T0APDU is not supported.
    let mut h = Host::at(Tpdu, Card::test_card());
    let t0 = Command::T0Apdu {
        changes: 1,
        class_get_response: 0xA0,
        class_envelope: 0,
    };
    assert_eq!(status(&h.cmd(t0)).1, 0);
}

fn multi(slots: u8, busy: u8) -> VirtualReader {
    let cfg = config(ExtendedApdu).with_slots(slots, busy);
    let mut r = VirtualReader::with_card(cfg, Some(Card::test_card()));
    r.start();
    r
}

fn answers(r: &mut VirtualReader) -> Vec<Response> {
    r.drain()
        .unwrap()
        .iter()
        .map(|f| Response::parse(f).unwrap())
        .collect()
}

#[test]
fn busy_slots_across_and_within_slots() {
    let mut r = multi(3, 1);
    let status_cmd = Command::GetSlotStatus;
    r.bulk_out(&status_cmd.encode(0, 1), Duration::ZERO)
        .unwrap();
    r.bulk_out(&status_cmd.encode(1, 2), Duration::ZERO)
        .unwrap();
    r.bulk_out(&status_cmd.encode(0, 3), Duration::ZERO)
        .unwrap();
    assert_eq!(r.in_flight(), 1);
    let a = answers(&mut r);
    let by_seq = |s: u8| a.iter().find(|x| x.seq == s).unwrap();
    assert_eq!(status(by_seq(1)), (0x01, 0));
    assert_eq!(status(by_seq(2)), (0x41, 0xE0));
    assert_eq!(status(by_seq(3)), (0x41, 0xE0));
    assert_eq!(r.in_flight(), 0);
    assert_eq!(r.stats().busy, 2);

    let mut r = multi(3, 2);
    r.bulk_out(&status_cmd.encode(0, 1), Duration::ZERO)
        .unwrap();
    r.bulk_out(&status_cmd.encode(1, 2), Duration::ZERO)
        .unwrap();
    r.bulk_out(&status_cmd.encode(2, 3), Duration::ZERO)
        .unwrap();
    r.bulk_out(&status_cmd.encode(1, 4), Duration::ZERO)
        .unwrap();
    let a = answers(&mut r);
    let errs: Vec<(u8, u8)> = [1u8, 2, 3, 4]
        .iter()
        .map(|s| (*s, a.iter().find(|x| x.seq == *s).unwrap().error.0))
        .collect();
    assert_eq!(errs, [(1, 0), (2, 0), (3, 0xE0), (4, 0xE0)]);
    // After the answers are read, every slot is free again.
    for s in 0..3u8 {
        let x = r.transact(s, 10 + s, &Command::GetSlotStatus).unwrap();
        assert_eq!(x.error.0, 0);
    }
}

#[test]
fn slot_change_notifications_cover_every_slot() {
    let mut r = multi(6, 1);
    let first = r.poll_interrupt(Duration::ZERO).unwrap().unwrap();
    assert_eq!(first.len(), 3, "1 + ceil(6 / 4) bytes");
    let n = Notification::parse(&first).unwrap();
    for s in 0..6 {
        assert_eq!(n.slot_state(s), Some((true, true)));
    }
    assert!(r.poll_interrupt(Duration::ZERO).is_none());
    r.remove_card(5).unwrap();
    r.remove_card(2).unwrap();
    let m = r.poll_interrupt(Duration::ZERO).unwrap().unwrap();
    let n = Notification::parse(&m).unwrap();
    assert_eq!(n.slot_state(5), Some((false, true)));
    assert_eq!(n.slot_state(2), Some((false, true)));
    assert_eq!(n.slot_state(1), Some((true, false)));
    assert!(
        r.poll_interrupt(Duration::ZERO).is_none(),
        "changes coalesce"
    );
    assert!(r.reinsert_card(5).unwrap());
    let n = Notification::parse(&r.poll_interrupt(Duration::ZERO).unwrap().unwrap()).unwrap();
    assert_eq!(n.slot_state(5), Some((true, true)));
    assert_eq!(r.icc_status(5), Some(IccStatus::Inactive));
    // Without the start-up notification, only later changes are sent.
    let mut cfg = config(ExtendedApdu);
    cfg.initial_notification = false;
    let mut r = VirtualReader::with_card(cfg, Some(Card::test_card()));
    assert_eq!(r.poll_interrupt(Duration::ZERO), None);
    r.remove_card(0).unwrap();
    let m = r.poll_interrupt(Duration::ZERO).unwrap().unwrap();
    assert_eq!(m, [0x50, 0x02]);
    // Without an interrupt endpoint.
    let mut cfg = config(ExtendedApdu);
    cfg.usb.has_interrupt = false;
    let mut r = VirtualReader::with_card(cfg, Some(Card::test_card()));
    r.start();
    assert_eq!(
        r.poll_interrupt(Duration::ZERO),
        Some(Err(TransportError::NotFound))
    );
}

fn setup(request_type: u8, request: u8, value: u16) -> ControlSetup {
    ControlSetup {
        request_type,
        request,
        value,
        index: 0,
    }
}

#[test]
fn class_requests() {
    let mut cfg = config(Tpdu);
    cfg.data_rates = vec![9600, 19200];
    let mut r = VirtualReader::new(cfg);
    let rates = r
        .control_in(setup(0xA1, 0x03, 0), 64, Duration::ZERO)
        .unwrap();
    assert_eq!(rates, [0x80, 0x25, 0, 0, 0x00, 0x4B, 0, 0]);
    assert_eq!(
        r.control_in(setup(0xA1, 0x03, 0), 4, Duration::ZERO)
            .unwrap()
            .len(),
        4
    );
    assert_eq!(
        r.control_in(setup(0xA1, 0x02, 0), 64, Duration::ZERO),
        Err(TransportError::Pipe)
    );
    assert_eq!(
        r.control_in(setup(0x80, 0x00, 0), 2, Duration::ZERO)
            .unwrap(),
        [0, 0]
    );
    assert_eq!(
        r.control_in(setup(0xA1, 0x7F, 0), 2, Duration::ZERO),
        Err(TransportError::Pipe)
    );
    assert_eq!(
        r.control_out(setup(0x21, 0x01, 0x0500), &[], Duration::ZERO),
        Ok(0)
    );
    assert_eq!(
        r.control_out(setup(0x21, 0x01, 0x0507), &[], Duration::ZERO),
        Err(TransportError::Pipe)
    );
}

#[test]
fn abort_ends_a_hung_command() {
    use ccid_sim::fault::Fault;
    let mut r = multi(2, 2);
    r.inject_once(Fault::Hang);
    let xfr = Command::XfrBlock {
        bwi: 0,
        level: 0,
        data: select(),
    };
    r.bulk_out(
        &Command::IccPowerOn { power_select: 0 }.encode(0, 1),
        Duration::ZERO,
    )
    .unwrap();
    assert!(r.drain().unwrap().is_empty(), "hung");
    r.bulk_out(&xfr.encode(0, 2), Duration::ZERO).unwrap();
    assert_eq!(
        Response::parse(&r.drain().unwrap()[0]).unwrap().error.0,
        0xE0
    );
    r.control_out(setup(0x21, 0x01, 0x0300), &[], Duration::ZERO)
        .unwrap();
    r.bulk_out(&Command::Abort.encode(0, 3), Duration::ZERO)
        .unwrap();
    let a = answers(&mut r);
    assert_eq!(a.len(), 2);
    assert_eq!(
        (a[0].seq, a[0].message_type, a[0].error.0),
        (1, MessageType::RDR_TO_PC_DATA_BLOCK, 0xFF)
    );
    // The power-on was carried out, only its answer never came.
    assert_eq!(
        (a[1].seq, a[1].message_type, status(&a[1])),
        (3, MessageType::RDR_TO_PC_SLOT_STATUS, (0x00, 0))
    );
    assert_eq!(r.in_flight(), 0);
}

#[test]
fn iccd_version_a_and_b() {
    let mut cfg = config(ShortApdu);
    cfg.usb.interface_protocol = 1;
    cfg.usb.num_endpoints = 0;
    cfg.usb.has_interrupt = false;
    let mut r = VirtualReader::with_card(cfg, Some(t0_card()));
    let z = Duration::ZERO;
    assert_eq!(
        r.bulk_out(&Command::GetSlotStatus.encode(0, 0), z),
        Err(TransportError::NotFound)
    );
    let atr = r.control_in(setup(0xA1, 0x62, 0), 33, z).unwrap();
    assert_eq!(atr, r.card(0).unwrap().atr());
    assert_eq!(r.control_in(setup(0xA1, 0xA0, 0), 1, z).unwrap(), [0x00]);
    // Case 2: header, data, SW.
    r.control_out(setup(0x21, 0x65, 0), &[0, 0xCA, 0, 0, 4], z)
        .unwrap();
    assert_eq!(r.control_in(setup(0xA1, 0xA0, 0), 1, z).unwrap(), [0x10]);
    assert_eq!(
        r.control_in(setup(0xA1, 0x6F, 0), 4, z).unwrap(),
        counting(4)
    );
    assert_eq!(r.control_in(setup(0xA1, 0xA0, 0), 1, z).unwrap(), [0x20]);
    assert_eq!(
        r.control_in(setup(0xA1, 0x6F, 0), 2, z).unwrap(),
        [0x90, 0x00]
    );
    // Case 1: straight to SW.
    r.control_out(setup(0x21, 0x65, 0), &[0, 0x12, 0, 0], z)
        .unwrap();
    assert_eq!(r.control_in(setup(0xA1, 0xA0, 0), 1, z).unwrap(), [0x20]);
    assert_eq!(
        r.control_in(setup(0xA1, 0x6F, 0), 2, z).unwrap(),
        [0x6D, 0x00]
    );
    r.remove_card(0).unwrap();
    assert_eq!(r.control_in(setup(0xA1, 0xA0, 0), 1, z).unwrap(), [0x80]);

    let mut cfg = config(ShortApdu);
    cfg.usb.interface_protocol = 2;
    cfg.usb.num_endpoints = 1;
    cfg.descriptor.dwMaxCCIDMessageLength = 138;
    let mut r = VirtualReader::with_card(cfg, Some(t1_card()));
    r.control_out(setup(0x21, 0x62, 1), &[], z).unwrap();
    let atr = r.control_in(setup(0xA1, 0x6F, 0), 34, z).unwrap();
    assert_eq!(atr[0], 0x00);
    assert_eq!(&atr[1..], r.card(0).unwrap().atr());
    assert_eq!(r.control_in(setup(0xA1, 0x81, 0), 3, z).unwrap()[1] & 3, 0);
    // 200 bytes through 128-byte blocks: 01 then 02.
    r.control_out(setup(0x21, 0x65, 0), &[0, 0xCA, 0, 0, 200], z)
        .unwrap();
    let a = r.control_in(setup(0xA1, 0x6F, 0), 4097, z).unwrap();
    assert_eq!((a[0], a.len()), (0x01, 129));
    r.control_out(setup(0x21, 0x65, 0x1000), &[], z).unwrap();
    let b = r.control_in(setup(0xA1, 0x6F, 0), 4097, z).unwrap();
    assert_eq!((b[0], b.len()), (0x02, 75));
    let mut all = a[1..].to_vec();
    all.extend_from_slice(&b[1..]);
    assert_eq!(all, with_sw(counting(200)));
    // Command chaining with wValue = level << 8.
    r.control_out(setup(0x21, 0x65, 0x0100), &select()[..6], z)
        .unwrap();
    assert_eq!(r.control_in(setup(0xA1, 0x6F, 0), 4097, z).unwrap(), [0x10]);
    r.control_out(setup(0x21, 0x65, 0x0200), &select()[6..], z)
        .unwrap();
    assert_eq!(
        r.control_in(setup(0xA1, 0x6F, 0), 4097, z).unwrap(),
        [0x00, 0x90, 0x00]
    );
    // Power off: the next exchange fails with an error block.
    r.control_out(setup(0x21, 0x63, 0), &[], z).unwrap();
    r.control_out(setup(0x21, 0x65, 0), &select(), z).unwrap();
    let e = r.control_in(setup(0xA1, 0x6F, 0), 4097, z).unwrap();
    assert_eq!((e[0], e[2]), (0x40, 0xFE));
}

#[test]
fn iccd_b_polls_while_the_card_works() {
    let mut cfg = config(ShortApdu).with_timing(TimeModel::realistic());
    cfg.usb.interface_protocol = 2;
    let card = Card::new(
        AtrBuilder::new().build().unwrap(),
        IsoApplet::new().with_processing_time(Duration::from_millis(50)),
    )
    .unwrap();
    let mut r = VirtualReader::with_card(cfg, Some(card));
    let t0 = Duration::from_secs(1);
    r.control_out(setup(0x21, 0x62, 1), &[], t0).unwrap();
    let t1 = t0 + Duration::from_secs(1);
    assert_eq!(r.control_in(setup(0xA1, 0x6F, 0), 64, t1).unwrap()[0], 0x00);
    r.control_out(setup(0x21, 0x65, 0), &select(), t1).unwrap();
    let poll = r.control_in(setup(0xA1, 0x6F, 0), 64, t1).unwrap();
    assert_eq!(poll[0], 0x80);
    let wait = u64::from(u16::from_le_bytes([poll[1], poll[2]])) * 10;
    // 50 ms in the card, 1 ms USB, 23 characters at 9600 bps.
    assert!((70..=90).contains(&wait), "{wait} ms");
    let later = t1 + Duration::from_millis(wait);
    assert_eq!(
        r.control_in(setup(0xA1, 0x6F, 0), 64, later).unwrap(),
        [0x00, 0x90, 0x00]
    );
}

#[test]
fn time_model_delays_answers() {
    let cfg = config(Tpdu).with_timing(TimeModel::realistic());
    let card = Card::new(
        AtrBuilder::new().protocols(true, false).build().unwrap(),
        IsoApplet::new().with_processing_time(Duration::from_millis(5)),
    )
    .unwrap();
    let mut r = VirtualReader::with_card(cfg, Some(card));
    let t = Duration::from_secs(10);
    r.bulk_out(&Command::IccPowerOn { power_select: 0 }.encode(0, 1), t)
        .unwrap();
    let BulkPoll::Later(ready) = r.poll_bulk_in(t) else {
        panic!("ATR at once")
    };
    let atr_time = ready - t;
    // USB 1 ms, activation 5 ms, and the ATR characters at 9600 bps.
    let atr_len = r.card(0).unwrap().atr().len() as u64;
    assert_eq!(
        atr_time,
        Duration::from_millis(6) + Duration::from_nanos(atr_len * 12 * 93_000)
    );
    assert!(matches!(r.poll_bulk_in(ready), BulkPoll::Ready(Ok(_))));
    r.bulk_out(
        &Command::XfrBlock {
            bwi: 0,
            level: 0,
            data: select(),
        }
        .encode(0, 2),
        ready,
    )
    .unwrap();
    let BulkPoll::Later(done) = r.poll_bulk_in(ready) else {
        panic!("APDU at once")
    };
    // 5 ms in the card, 1 ms USB, 13 + 1 + 2 characters on the line.
    assert_eq!(
        done - ready,
        Duration::from_millis(6) + Duration::from_nanos(16 * 12 * 93_000)
    );
    assert_eq!(r.in_flight(), 1);
    // The zero model answers at once.
    let mut h = Host::at(Tpdu, Card::test_card());
    h.r.bulk_out(&Command::GetSlotStatus.encode(0, 1), Duration::ZERO)
        .unwrap();
    assert!(matches!(
        h.r.poll_bulk_in(Duration::ZERO),
        BulkPoll::Ready(Ok(_))
    ));
}

#[test]
fn dump_built_reader_matches_its_descriptor() {
    let dir =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/ccid-data/readers");
    let path = dir.join("Access_IS_ATR220_0x0184.txt");
    if !path.exists() {
        println!("skipped: {} is absent", path.display());
        return;
    }
    for i in 0..5 {
        let r = VirtualReader::from_dump_file(&path, i, Some(Card::test_card())).unwrap();
        assert_eq!(r.usb_info().interface_number, i as u8);
        assert_eq!(r.usb_info().vendor_id, 0x0DB5);
        assert_eq!(r.level(), ExchangeLevel::ExtendedApdu);
    }
    let e = ReaderConfig::from_dump_file(&path, 5).unwrap_err();
    assert!(
        e.to_string()
            .contains("no CCID interface #5 (the dump has 5)"),
        "{e}"
    );
    assert!(ReaderConfig::from_dump_file(&dir.join("nope.txt"), 0).is_err());
}

#[test]
fn random_messages_never_panic() {
    let mut seed = 0x1234_5678_9ABC_DEF0u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let types = [
        0x62u8, 0x63, 0x65, 0x6F, 0x6C, 0x6D, 0x61, 0x6B, 0x6E, 0x6A, 0x69, 0x71, 0x72, 0x73, 0x99,
    ];
    for level in [Character, Tpdu, ShortApdu, ExtendedApdu] {
        for card in [t0_card(), t1_card(), Card::test_card()] {
            let mut cfg = config(level).with_slots(2, 2);
            cfg.descriptor.dwFeatures |= 0x100;
            cfg.descriptor.dwMechanical = 0x0F;
            let mut r = VirtualReader::with_card(cfg, Some(card));
            for i in 0..400u32 {
                let n = next();
                let t = types[(n % types.len() as u64) as usize];
                let len = ((n >> 8) % 40) as usize;
                let mut data: Vec<u8> = (0..len).map(|_| next() as u8).collect();
                if i % 7 == 0 {
                    data = select();
                }
                let mut f = vec![t];
                let declared = if n & 0x1_0000 != 0 {
                    len as u32 + 1
                } else {
                    len as u32
                };
                f.extend_from_slice(&declared.to_le_bytes());
                f.extend_from_slice(&[
                    (n >> 20) as u8 % 3,
                    i as u8,
                    (n >> 24) as u8 % 4,
                    (n >> 28) as u8,
                    (n >> 32) as u8 % 0x12,
                ]);
                f.extend_from_slice(&data);
                if n & 0x2_0000 != 0 {
                    f.truncate((n >> 40) as usize % (f.len() + 1));
                }
                let _ = r.bulk_out(&f, Duration::ZERO);
                // Without faults every answer is a well-formed frame for
                // an existing slot, or says the slot does not exist.
                for a in r.drain().unwrap() {
                    let rsp = Response::parse(&a).unwrap();
                    assert!(rsp.slot < 2 || rsp.error.0 == 5, "{rsp:?}");
                }
                assert!(r.in_flight() <= 2);
                let setup = ControlSetup {
                    request_type: if n & 0x4_0000 != 0 { 0xA1 } else { 0x21 },
                    request: (n >> 44) as u8 % 4,
                    value: (n >> 48) as u16,
                    index: 0,
                };
                let _ = r.control_in(setup, (n >> 52) as usize % 64, Duration::ZERO);
                let _ = r.poll_interrupt(Duration::ZERO);
                if i % 50 == 0 {
                    let _ = r.remove_card((n % 2) as u8);
                    let _ = r.reinsert_card((n % 2) as u8);
                }
            }
        }
    }
}
