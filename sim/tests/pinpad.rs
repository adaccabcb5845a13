//! Secure PIN entry: the driver's PC/SC structures, converted to CCID by
//! the driver, through a virtual reader with a scripted PIN pad.

#[path = "support/model.rs"]
mod support;

use ccid::config::Config;
use ccid::ifd::protocol::{SCARD_PROTOCOL_T0, SCARD_PROTOCOL_T1};
use ccid::pinpad::{PinModify, PinVerify};
use ccid::proto::descriptor::ExchangeLevel::{self, ExtendedApdu, ShortApdu, Tpdu};
use ccid::reader::device::{Device, OpenOptions};
use ccid::reader::slot::Slot;
use ccid_sim::card::{Card, IsoApplet};
use ccid_sim::model::VirtualReader;
use ccid_sim::pinpad::{PinEntry, PinpadScript};
use ccid_sim::transport::SimTransport;
use std::sync::Arc;
use std::time::Duration;
use support::*;

/// PIN_VERIFY_STRUCTURE: ASCII PIN, left justified, in an 8-byte block
/// of FF, 4 to 8 digits.
fn verify_structure() -> Vec<u8> {
    let apdu = [
        0x00, 0x20, 0x00, 0x81, 0x08, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
    ];
    let mut s = vec![
        30, 0, 0x82, 0x08, 0x00, 0x08, 0x04, 0x02, 0x01, 0x09, 0x04, 0x00, 0, 0, 0,
    ];
    s.extend_from_slice(&(apdu.len() as u32).to_le_bytes());
    s.extend_from_slice(&apdu);
    s
}

/// PIN_MODIFY_STRUCTURE: old PIN in the first 8-byte block, new PIN in
/// the second, with confirmation.
fn modify_structure() -> Vec<u8> {
    let mut apdu = vec![0x00, 0x24, 0x00, 0x81, 0x10];
    apdu.extend_from_slice(&[0xFF; 16]);
    let mut s = vec![
        30, 0, 0x82, 0x08, 0x00, 0x00, 0x08, 0x08, 0x04, 0x03, 0x02, 0x03, 0x09, 0x04, 0, 1, 2, 0,
        0, 0,
    ];
    s.extend_from_slice(&(apdu.len() as u32).to_le_bytes());
    s.extend_from_slice(&apdu);
    s
}

struct Setup {
    slot: Slot,
    device: Arc<Device>,
    pad: PinpadScript,
    protocol: u32,
}

fn setup(level: ExchangeLevel, t1: bool) -> Setup {
    let mut cfg = config(level);
    cfg.descriptor.bPINSupport = 0x03;
    let card = Card::new(
        ccid_sim::card::AtrBuilder::new()
            .protocols(!t1, t1)
            .build()
            .unwrap(),
        IsoApplet::new().with_pin(b"123456", 3),
    )
    .unwrap();
    let mut reader = VirtualReader::with_card(cfg, Some(card));
    let pad = PinpadScript::new();
    reader.set_secure_handler(Some(Box::new(pad.clone())));
    let (t, _ctl) = SimTransport::shared(reader);
    let device = Device::open(t, "pinpad", 0, &OpenOptions::default()).unwrap();
    let slot = Slot::new(device.clone(), 0, 0, Config::default());
    slot.power_up().unwrap();
    let protocol = if t1 {
        SCARD_PROTOCOL_T1
    } else {
        SCARD_PROTOCOL_T0
    };
    ccid::reader::protocol::set_protocol(&slot, protocol, 0, [0; 3]).unwrap();
    assert_eq!(slot.transmit(protocol, &select()).unwrap(), [0x90, 0x00]);
    Setup {
        slot,
        device,
        pad,
        protocol,
    }
}

fn verify(s: &Setup) -> Vec<u8> {
    let v = PinVerify::parse(&verify_structure()).unwrap();
    let data = v.ccid_data();
    s.slot.secure(&data, 15, Duration::from_secs(5)).unwrap()
}

fn modify(s: &Setup) -> Vec<u8> {
    let m = PinModify::parse(&modify_structure()).unwrap();
    s.slot
        .secure(&m.ccid_data(), m.apdu_offset(), Duration::from_secs(5))
        .unwrap()
}

#[test]
fn verify_and_modify_at_every_level() {
    for (level, t1) in [
        (ExtendedApdu, true),
        (ShortApdu, false),
        (Tpdu, false),
        (Tpdu, true),
    ] {
        let s = setup(level, t1);
        s.pad.push(PinEntry::Digits("123456".into()));
        assert_eq!(verify(&s), [0x90, 0x00], "{level:?} T=1 {t1}");
        assert_eq!(s.pad.sent()[0][5..], *b"123456\xFF\xFF");
        s.pad.push(PinEntry::Digits("1111".into()));
        assert_eq!(verify(&s), [0x63, 0xC2], "{level:?} T=1 {t1}");
        for d in ["123456", "9876", "9876"] {
            s.pad.push(PinEntry::Digits(d.into()));
        }
        assert_eq!(modify(&s), [0x90, 0x00], "{level:?} T=1 {t1}");
        s.pad.push(PinEntry::Digits("9876".into()));
        assert_eq!(verify(&s), [0x90, 0x00]);
        // Cancel and timeout come back as the status words applications
        // know.
        s.pad.push(PinEntry::Cancel);
        assert_eq!(verify(&s), [0x64, 0x01]);
        assert_eq!(verify(&s), [0x64, 0x00], "an empty script times out");
        // The card still answers after the PIN entries.
        let r = s.slot.transmit(s.protocol, &[0, 0xCA, 0, 0, 3]).unwrap();
        assert_eq!(r, [0, 1, 2, 0x90, 0x00]);
        assert_eq!(s.pad.remaining(), 0);
        s.device.shutdown();
    }
}

#[test]
fn confirmation_mismatch_and_no_pad() {
    let s = setup(ExtendedApdu, true);
    for d in ["123456", "9876", "9875"] {
        s.pad.push(PinEntry::Digits(d.into()));
    }
    let m = PinModify::parse(&modify_structure()).unwrap();
    let e = s
        .slot
        .secure(&m.ccid_data(), m.apdu_offset(), Duration::from_secs(5))
        .unwrap_err();
    assert!(e.to_string().contains("0xc0"), "{e}");
    s.device.shutdown();

    // A reader without a script refuses Secure.
    let (t, _ctl) = SimTransport::shared(VirtualReader::with_card(
        config(ExtendedApdu),
        Some(Card::test_card()),
    ));
    let device = Device::open(t, "no-pad", 0, &OpenOptions::default()).unwrap();
    let slot = Slot::new(device.clone(), 0, 0, Config::default());
    slot.power_up().unwrap();
    let v = PinVerify::parse(&verify_structure()).unwrap();
    let e = slot
        .secure(&v.ccid_data(), 15, Duration::from_secs(5))
        .unwrap_err();
    assert_eq!(e, ccid::Error::CommandNotSupported);
    device.shutdown();
}
