//! The reader quirk table: one test per workaround, on descriptors taken
//! from the readers' real dumps (fixtures below, cross-checked against
//! `../shared/ccid-data/readers` when that directory is present), plus
//! consistency checks of the table itself.

use ccid::config::DriverOptions;
use ccid::iso7816::negotiate::{NegotiateOptions, Protocol};
use ccid::proto::descriptor::{CcidDescriptor, ExchangeLevel, Features};
use ccid::quirks::{
    self, card_quirks, composite_as_multislot, describe, format_bcd, pinpad_prompts, resolve,
    EscapeRule, InitOutcome, QuirkFlags, Resolved, COMPOSITE_AS_MULTISLOT, GEMCORE_SECONDARY_RATES,
    QUIRKS,
};
use ccid::transport::UsbInfo;
use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Duration;

/// The descriptor fields of one reader, copied from its dump.
#[derive(Clone)]
struct Fixture {
    /// Dump file in ccid-data/readers (`None`: no dump exists; the values
    /// are those of a typical reader).
    dump: Option<&'static str>,
    vid: u16,
    pid: u16,
    bcd: u16,
    interface: u8,
    max_slot: u8,
    max_data_rate: u32,
    max_ifsd: u32,
    features: u32,
    message_length: u32,
    pin_support: u8,
    /// Data rates listed by the dump (empty when it lists none).
    rates: &'static [u32],
}

#[allow(clippy::too_many_arguments)]
const fn fx(
    dump: &'static str,
    vid: u16,
    pid: u16,
    bcd: u16,
    interface: u8,
    max_slot: u8,
    max_data_rate: u32,
    max_ifsd: u32,
    features: u32,
    message_length: u32,
    pin_support: u8,
) -> Fixture {
    Fixture {
        dump: Some(dump),
        vid,
        pid,
        bcd,
        interface,
        max_slot,
        max_data_rate,
        max_ifsd,
        features,
        message_length,
        pin_support,
        rates: &[],
    }
}

/// A reader without a dump: typical values.
const fn synthetic(vid: u16, pid: u16, bcd: u16, pin_support: u8, features: u32) -> Fixture {
    Fixture {
        dump: None,
        vid,
        pid,
        bcd,
        interface: 0,
        max_slot: 0,
        max_data_rate: 412_903,
        max_ifsd: 254,
        features,
        message_length: 271,
        pin_support,
        rates: &[],
    }
}

const AU9540_RATES: &[u32] = &[
    1807, 1989, 2409, 2487, 3315, 3613, 3978, 4818, 4973, 6631, 7227, 7957, 9635, 9946, 13262,
    14453, 15914, 19271, 19892, 21680, 23871, 26523, 28906, 29839, 31828, 36133, 38542, 39785,
    43359, 48177, 49731, 53047, 57813, 59677, 63656, 66308, 72266, 77083, 79570, 86719, 96354,
    99462, 106093, 115625, 119355, 132616, 144531, 154167, 159140, 198925, 212186, 231250, 318280,
];

#[rustfmt::skip]
fn fixtures() -> Vec<Fixture> {
    vec![
        fx("MySmartPad.txt", 0x09BE, 0x0002, 0x0200, 1, 0, 129_032, 0, 0x0001_0230, 271, 0x00),
        fx("id3_CL1356T.txt", 0x0B81, 0x0200, 0x0112, 0, 0, 847_000, 254, 0x0004_0042, 271, 0x00),
        fx("GemPCTwin.txt", 0x08E6, 0x3437, 0x0100, 0, 0, 344_086, 254, 0x0001_0230, 271, 0x00),
        fx("Gemalto_K50.txt", 0x08E6, 0x3437, 0x0200, 0, 0, 825_806, 254, 0x0001_0230, 271, 0x00),
        fx("GemPCKey.txt", 0x08E6, 0x3438, 0x0100, 0, 0, 344_086, 254, 0x0001_0230, 271, 0x00),
        fx("DellSCRK.txt", 0x413C, 0x2101, 0x0200, 1, 0, 825_806, 254, 0x0001_0230, 271, 0x03),
        fx("Oz776S.txt", 0x0B97, 0x7762, 0x0110, 0, 0, 307_200, 254, 0x0000_0030, 271, 0x00),
        fx("Oz776_7772.txt", 0x0B97, 0x7772, 0x0110, 0, 0, 307_200, 254, 0x0000_0030, 271, 0x00),
        fx("Elatec_TWN4_SmartCard_NFC.txt", 0x09D8, 0x0427, 0x0200, 0, 5, 625_000, 254, 0x0001_0032, 64, 0x00),
        fx("Elatec_TWN4_MULTITECH.txt", 0x09D8, 0x0428, 0x0200, 0, 0, 625_000, 254, 0x0004_04B2, 64, 0x00),
        fx("ACR122U_PICC.txt", 0x072F, 0x2200, 0x0207, 0, 0, 250_000, 256, 0x0002_0040, 271, 0x00),
        fx("SCM_SCL011.txt", 0x04E6, 0x5293, 0x0112, 0, 0, 344_105, 252, 0x0004_04BE, 262, 0x00),
        fx("Identiv_uTrust_3700_F_CL_Reader.txt", 0x04E6, 0x5790, 0x0102, 0, 0, 412_903, 1024, 0x0004_04BE, 1034, 0x00),
        fx("Identiv_uTrust_3701_F_CL_Reader.txt", 0x04E6, 0x5791, 0x0102, 0, 0, 412_903, 1024, 0x0004_04BE, 1034, 0x00),
        fx("Identiv_Identiv_uTrust_4701_F_Dual_Interface_Reader.txt", 0x04E6, 0x5724, 0x0104, 0, 0, 412_903, 254, 0x0001_04BA, 271, 0x00),
        Fixture { rates: AU9540_RATES, ..fx("AU9540.txt", 0x058F, 0x9540, 0x0120, 0, 0, 318_280, 254, 0x0004_04BE, 272, 0x00) },
        fx("GemPCPinpadv2.txt", 0x08E6, 0x3478, 0x0211, 0, 0, 500_000, 254, 0x0001_0230, 271, 0x03),
        fx("FujitsuTechnologySolutions_SmartCase_KB_SCR_eSIG.txt", 0x0BF8, 0x1017, 0x0121, 1, 0, 307_200, 252, 0x0001_00BA, 271, 0x03),
        fx("Chicony_HP_Skylab_USB_Smartcard_Keyboard.txt", 0x04F2, 0x1469, 0x0211, 1, 0, 412_903, 254, 0x0001_04BA, 271, 0x03),
        fx("LTC31v2.txt", 0x0783, 0x0006, 0x0250, 0, 0, 230_400, 254, 0x0001_00BA, 271, 0x03),
        fx("HID_Aviator.txt", 0x076B, 0x3A21, 0x0103, 0, 0, 412_903, 254, 0x0002_07B8, 271, 0x03),
        fx("HID_Global_OMNIKEY_6121_Smart_Card_Reader.txt", 0x076B, 0x6632, 0x0105, 0, 0, 412_903, 254, 0x0004_07B8, 271, 0x00),
        fx("Cherry_SmartTerminal_XX44.txt", 0x046A, 0x00A7, 0x0103, 0, 0, 412_903, 254, 0x0002_07B8, 271, 0x03),
        fx("Fujitsu_Smartcard_Reader_D323.txt", 0x0BF8, 0x1024, 0x0103, 0, 0, 412_903, 254, 0x0004_07B8, 271, 0x03),
        fx("Kobil_EMV_CAP.txt", 0x0D46, 0x3010, 0x0040, 0, 0, 344_086, 254, 0x0004_06BA, 536, 0x03),
        fx("Diebold_Nixdorf_PN7362au_CCID.txt", 0x2F7C, 0x6007, 0x0101, 0, 0, 848_000, 254, 0x0002_04BE, 271, 0x00),
        fx("Cherry_KC_1000_SC.txt", 0x046A, 0x00A1, 0x0102, 2, 0, 412_903, 254, 0x0004_07BA, 271, 0x03),
        fx("bit4id_minilector.txt", 0x25DD, 0x3111, 0x0111, 0, 0, 250_000, 247, 0x0001_00B6, 271, 0x03),
        fx("SafeNet_Token_JC.txt", 0x0529, 0x0620, 0x0100, 0, 0, 10752, 252, 0x0001_023C, 271, 0x00),
        fx("GemPC433_SL.txt", 0x08E6, 0x4433, 0x0001, 0, 0, 344_086, 254, 0x0002_0472, 271, 0x00),
        fx("CherryXX33.txt", 0x046A, 0x0005, 0x0100, 1, 0, 344_086, 254, 0x0002_0472, 271, 0x01),
        fx("DellSK-3106.txt", 0x413C, 0x2100, 0x0101, 1, 0, 129_032, 254, 0x0001_0230, 271, 0x01),
        fx("SPR532.txt", 0x04E6, 0xE003, 0x0510, 0, 0, 344_105, 254, 0x0001_00BA, 270, 0x03),
        fx("CherrySmartTerminalST2XXX.txt", 0x046A, 0x003E, 0x0601, 0, 0, 344_105, 254, 0x0001_00BA, 270, 0x03),
        fx("CherryXX44.txt", 0x046A, 0x0010, 0x0104, 1, 0, 412_903, 254, 0x0002_07B2, 271, 0x03),
        fx("Microchip_SEC1110.txt", 0x0424, 0x1104, 0x0222, 0, 0, 826_000, 254, 0x0001_00B2, 271, 0x00),
        fx("SafeNet_eToken_Fusion.txt", 0x08E6, 0x34D2, 0x0001, 1, 0, 825_806, 254, 0x0004_0472, 275, 0x00),
        fx("Kobil_IDToken.txt", 0x0D46, 0x301D, 0x0100, 4, 0, 847_500, 254, 0x0004_047E, 273, 0x00),
        fx("GemCorePOSPro.txt", 0x08E6, 0x3479, 0x0100, 0, 4, 500_000, 254, 0x0001_0230, 271, 0x00),
        fx("GemProxDU.txt", 0x08E6, 0x5503, 0x0100, 1, 0, 10752, 254, 0x0004_0672, 512, 0x00),
        fx("HID_OMNIKEY_5427_CK.txt", 0x076B, 0x5427, 0x0100, 0, 0, 825_807, 254, 0x0004_04BA, 520, 0x00),
        fx("CardMan3821.txt", 0x076B, 0x3821, 0x0600, 0, 0, 412_903, 254, 0x0002_07B2, 271, 0x03),
        fx("SCR331.txt", 0x04E6, 0xE001, 0x0525, 0, 0, 344_105, 252, 0x0001_00BA, 271, 0x00),
        fx("SCR331-DI.txt", 0x04E6, 0x5111, 0x0632, 0, 1, 344_105, 252, 0x0001_00BA, 263, 0x00),
        fx("ActivCardV2.txt", 0x09C3, 0x0008, 0x0202, 0, 0, 115_200, 252, 0x0001_00BA, 263, 0x00),
        fx("SCL010.txt", 0x04E6, 0x5291, 0x0102, 0, 0, 848_000, 254, 0x0001_007E, 271, 0x00),
        fx("SCM_SCL010.txt", 0x04E6, 0x5291, 0x0112, 0, 0, 344_105, 252, 0x0004_04BE, 262, 0x00),
        fx("AxaltoV3.txt", 0x04E6, 0x511C, 0x0518, 0, 0, 307_200, 252, 0x0001_00BA, 263, 0x00),
        fx("Precise_250_MC.txt", 0x08C3, 0x0401, 0x5000, 0, 0, 241_936, 254, 0x0004_04BA, 65550, 0x00),
        fx("Precise_200_MC.txt", 0x08C3, 0x0402, 0x5257, 0, 0, 241_936, 254, 0x0004_04BA, 65550, 0x00),
    ]
}

fn extra_fixtures() -> Vec<Fixture> {
    vec![
        synthetic(0x03F0, 0x1024, 0x0100, 0x03, 0x0001_00BA),
        synthetic(0x03F0, 0x0036, 0x0124, 0x03, 0x0001_00BA),
        synthetic(0x0982, 0x0008, 0x0100, 0x03, 0x0001_0230),
        synthetic(0x076B, 0x3031, 0x0100, 0x03, 0x0002_07B8),
        synthetic(0x0D46, 0x4289, 0x0100, 0x03, 0x0004_06BA),
        synthetic(0x08E6, 0x3480, 0x0100, 0x00, 0x0001_0230),
        synthetic(0x0424, 0x1202, 0x0100, 0x00, 0x0001_00B2),
    ]
}

/// The fixture of `vid:pid`, first one listed.
fn fixture(vid: u16, pid: u16) -> Fixture {
    fixtures()
        .into_iter()
        .chain(extra_fixtures())
        .find(|f| f.vid == vid && f.pid == pid)
        .unwrap_or_else(|| panic!("no fixture for {vid:04X}:{pid:04X}"))
}

fn dump_fixture(name: &str) -> Fixture {
    fixtures()
        .into_iter()
        .find(|f| f.dump == Some(name))
        .unwrap_or_else(|| panic!("no fixture for {name}"))
}

impl Fixture {
    fn bcd(mut self, bcd: u16) -> Fixture {
        self.bcd = bcd;
        self
    }

    fn info(&self) -> UsbInfo {
        UsbInfo {
            vendor_id: self.vid,
            product_id: self.pid,
            bcd_device: self.bcd,
            interface_number: self.interface,
            ..UsbInfo::default()
        }
    }

    fn descriptor(&self) -> CcidDescriptor {
        let mut d = CcidDescriptor::example();
        d.bMaxSlotIndex = self.max_slot;
        d.dwMaxDataRate = self.max_data_rate;
        d.bNumDataRatesSupported = u8::try_from(self.rates.len()).unwrap();
        d.dwMaxIFSD = self.max_ifsd;
        d.dwFeatures = self.features;
        d.dwMaxCCIDMessageLength = self.message_length;
        d.bPINSupport = self.pin_support;
        d
    }

    fn resolve_with(&self, options: DriverOptions) -> Resolved {
        resolve(&self.info(), &self.descriptor(), self.rates, options)
    }

    fn resolve(&self) -> Resolved {
        self.resolve_with(DriverOptions::empty())
    }
}

fn readers_dir() -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/ccid-data/readers");
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!("SKIP: {} not found", dir.display());
        None
    }
}

/// The fixtures say what the dumps say.
#[test]
fn fixtures_match_the_real_dumps() {
    let Some(dir) = readers_dir() else { return };
    let mut checked = 0;
    for f in fixtures() {
        let name = f.dump.unwrap();
        let text =
            std::fs::read_to_string(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        let lines: Vec<&str> = text.lines().map(str::trim).collect();
        let mut expected = vec![
            format!("idVendor: 0x{:04X}", f.vid),
            format!("idProduct: 0x{:04X}", f.pid),
            format!("bcdDevice: {} (firmware release?)", format_bcd(f.bcd)),
            format!("bInterfaceNumber: {}", f.interface),
            format!("bMaxSlotIndex: 0x{:02X}", f.max_slot),
            format!("dwMaxDataRate: {} bps", f.max_data_rate),
            format!("dwMaxIFSD: {}", f.max_ifsd),
            format!("dwFeatures: 0x{:08X}", f.features),
            format!("dwMaxCCIDMessageLength: {} bytes", f.message_length),
            format!("bPINSupport: 0x{:02X}", f.pin_support),
        ];
        expected.extend(f.rates.iter().map(|r| format!("Support {r} bps")));
        for e in &expected {
            assert!(lines.contains(&e.as_str()), "{name}: no line '{e}'");
        }
        checked += 1;
    }
    assert_eq!(checked, fixtures().len());
}

// ---- Table consistency ----

#[test]
fn table_ids_unique_and_explained() {
    let mut ids = HashSet::new();
    for q in QUIRKS {
        assert!(ids.insert(q.id), "duplicate id {}", q.id);
        assert!(!q.why.trim().is_empty(), "{}: empty why", q.id);
        assert!(
            !q.id.is_empty()
                && q.id
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'),
            "{}: ids are lowercase words joined by '-'",
            q.id
        );
        assert_ne!(
            q.effect,
            quirks::Effect::NONE,
            "{}: row changes nothing",
            q.id
        );
    }
    let mut ids = HashSet::new();
    for c in COMPOSITE_AS_MULTISLOT {
        assert!(ids.insert(c.id), "duplicate composite id {}", c.id);
        assert!(!c.why.trim().is_empty(), "{}: empty why", c.id);
    }
}

#[test]
fn table_rows_are_distinct() {
    let mut keys = HashSet::new();
    for q in QUIRKS {
        let key = (
            q.vid,
            q.pid,
            q.bcd.clone().map(|r| r.into_inner()),
            q.interface,
            q.platform,
            q.message_length,
            q.atr,
        );
        assert!(keys.insert(format!("{key:?}")), "{}: duplicate row", q.id);
    }
}

#[test]
fn table_rows_are_keyed() {
    for q in QUIRKS {
        assert!(
            q.vid.is_some() || q.atr.is_some() || q.message_length.is_some(),
            "{}: a row must name a vendor, an ATR or a descriptor value",
            q.id
        );
        assert!(
            q.pid.is_some() || q.bcd.is_none(),
            "{}: firmware ranges are per product",
            q.id
        );
        if let Some(r) = &q.bcd {
            assert!(r.start() <= r.end(), "{}: empty firmware range", q.id);
        }
        if q.effect.refuse.is_some() {
            assert!(q.bcd.is_some(), "{}: refusals are per firmware", q.id);
            let only_refuse = quirks::Effect {
                refuse: q.effect.refuse,
                ..quirks::Effect::NONE
            };
            assert_eq!(
                q.effect, only_refuse,
                "{}: a refusal does nothing else",
                q.id
            );
        }
        if q.atr.is_some() {
            assert!(q.vid.is_none(), "{}: card rows match any reader", q.id);
        }
    }
}

/// Product rows come before the vendor-wide row of their vendor, so their
/// parameters are not overridden by it.
#[test]
fn vendor_rows_come_last() {
    for (i, q) in QUIRKS.iter().enumerate() {
        if q.vid.is_some() && q.pid.is_none() {
            for later in &QUIRKS[i + 1..] {
                assert!(
                    later.vid != q.vid || later.effect.refuse.is_some(),
                    "{} comes after the vendor row {}",
                    later.id,
                    q.id
                );
            }
        }
    }
}

#[test]
fn no_quirk_for_an_ordinary_reader() {
    let f = synthetic(0x1234, 0x5678, 0x0100, 0x03, 0x0004_04BA);
    let r = f.resolve();
    assert!(r.applied.is_empty());
    assert!(r.flags.is_empty());
    assert!(r.changes.is_empty());
    assert_eq!(r.descriptor, f.descriptor());
    assert!(r.refused.is_none());
    assert!(r.init_steps(None).is_empty());
    assert!(describe(&r).is_empty());
}

// ---- One test per workaround ----

#[test]
fn row01_mysmartpad_ifsd() {
    let f = fixture(0x09BE, 0x0002);
    assert_eq!(f.descriptor().dwMaxIFSD, 0);
    let r = f.resolve();
    assert_eq!(r.applied, ["mysmartpad"]);
    assert_eq!(r.descriptor.dwMaxIFSD, 254);
    assert_eq!(r.changes.len(), 1);
    assert_eq!(r.changes[0].field, "dwMaxIFSD");
    assert_eq!(
        (r.changes[0].from.as_str(), r.changes[0].to.as_str()),
        ("0", "254")
    );
    let right = Fixture { max_ifsd: 254, ..f };
    assert!(
        right.resolve().changes.is_empty(),
        "nothing to log when already right"
    );
}

#[test]
fn row02_id3_cl1356d_slow_start() {
    let r = fixture(0x0B81, 0x0200).resolve();
    assert_eq!(r.open_sleep, Some(Duration::from_secs(1)));
    assert_eq!(r.open_timeout, Some(Duration::from_secs(60)));
    assert_eq!(r.warm_up_timeout, Some(Duration::from_secs(2)));
    assert_eq!(r.default_timeout, Some(Duration::from_secs(60)));
}

#[test]
fn row03_zlp_only_firmware_200() {
    let twin1 = dump_fixture("GemPCTwin.txt").resolve();
    assert!(!twin1.has(QuirkFlags::ZLP_READ_BEFORE_WRITE));
    let k50 = dump_fixture("Gemalto_K50.txt").resolve();
    assert!(k50.has(QuirkFlags::ZLP_READ_BEFORE_WRITE));
    assert!(k50.applies("gempc-twin-zlp"));
    assert!(!fixture(0x08E6, 0x3438)
        .resolve()
        .has(QuirkFlags::ZLP_READ_BEFORE_WRITE));
    assert!(fixture(0x08E6, 0x3438)
        .bcd(0x0200)
        .resolve()
        .has(QuirkFlags::ZLP_READ_BEFORE_WRITE));
    let dell = fixture(0x413C, 0x2101);
    assert!(dell.resolve().has(QuirkFlags::ZLP_READ_BEFORE_WRITE));
    assert!(!dell
        .bcd(0x0201)
        .resolve()
        .has(QuirkFlags::ZLP_READ_BEFORE_WRITE));
}

#[test]
fn row04_o2micro_no_pps_9600() {
    for pid in [0x7762, 0x7772] {
        let f = fixture(0x0B97, pid);
        let r = f.resolve();
        assert!(r.has(QuirkFlags::NO_PPS | QuirkFlags::SPLIT_64_BYTE_READS));
        assert_eq!(f.descriptor().dwMaxDataRate, 307_200);
        assert_eq!(r.descriptor.dwMaxDataRate, 9600);
        let c = &r.changes[0];
        assert_eq!(
            (c.field, c.from.as_str(), c.to.as_str()),
            ("dwMaxDataRate", "307200", "9600")
        );
        assert!(r.refused.is_none(), "firmware 1.10 is not refused");
        let o = r.negotiate_options(Protocol::T1, NegotiateOptions::default());
        assert!(o.no_pps);
        assert_eq!(o.extra_timeout_ms, 0);
    }
}

#[test]
fn row05_slow_status_one_second() {
    for (vid, pid) in [(0x09D8, 0x0427), (0x09D8, 0x0428), (0x072F, 0x2200)] {
        let r = fixture(vid, pid).resolve();
        assert_eq!(r.open_timeout, Some(Duration::from_secs(30)));
        assert_eq!(r.warm_up_timeout, Some(Duration::from_secs(1)));
        assert_eq!(r.default_timeout, None, "restored after open");
        assert!(r.refused.is_none());
    }
}

#[test]
fn row06_slow_answer_350ms() {
    let scl011 = fixture(0x04E6, 0x5293).resolve();
    assert_eq!(scl011.open_timeout, Some(Duration::from_secs(12)));
    assert_eq!(scl011.warm_up_timeout, Some(Duration::from_millis(400)));
    assert_eq!(scl011.default_timeout, None);
    for pid in [0x5790, 0x5791, 0x5724] {
        let r = fixture(0x04E6, pid).resolve();
        assert_eq!(r.open_timeout, Some(Duration::from_secs(12)));
        assert_eq!(r.warm_up_timeout, Some(Duration::from_millis(400)));
        assert_eq!(r.default_timeout, Some(Duration::from_secs(12)));
    }
}

#[test]
fn row07_au9540_rates_and_resets() {
    let f = fixture(0x058F, 0x9540);
    let r = f.resolve();
    assert_eq!(f.rates.len(), 53);
    assert_eq!(r.data_rates.len(), 50);
    assert!(r.data_rates.iter().all(|x| *x <= 200_000));
    assert_eq!(r.data_rates.last(), Some(&198_925));
    assert!(!r.data_rates.contains(&212_186));
    assert_eq!(r.descriptor.dwMaxDataRate, 200_000);
    assert!(r.has(QuirkFlags::RESET_TWICE_ON_SET_PARAMETERS_FAILURE));
    let text = describe(&r).join("\n");
    assert!(text.contains("dwMaxDataRate: 318280 -> 200000"), "{text}");
    assert!(text.contains("data rates: 53 rates -> 50 rates"), "{text}");
}

#[test]
fn row08_gempc_twin_key_apdu_mode() {
    for name in ["GemPCTwin.txt", "GemPCKey.txt"] {
        let f = dump_fixture(name);
        let plain = f.resolve();
        assert!(plain
            .init_steps(None)
            .iter()
            .all(|s| s.data != [0x1F, 0x02]));
        let mut r = f.resolve_with(DriverOptions::GEMPC_TWIN_KEY_APDU);
        let steps = r.init_steps(None);
        let switch = steps.iter().find(|s| s.data == [0x1F, 0x02]).unwrap();
        assert!(!switch.required);
        assert_eq!(
            switch.on_success,
            InitOutcome::SetLevel(ExchangeLevel::ShortApdu)
        );
        assert_eq!(r.descriptor.exchange_level(), ExchangeLevel::Tpdu);
        assert!(r.apply_init_success(switch, &[]));
        assert_eq!(r.descriptor.exchange_level(), ExchangeLevel::ShortApdu);
        assert!(describe(&r)
            .iter()
            .any(|l| l.contains("exchange level: tpdu -> short-apdu")));
    }
}

#[test]
fn row09_gempc_pinpad_prompts_at_open() {
    let f = fixture(0x08E6, 0x3478);
    let r = f.resolve();
    let steps = r.init_steps(Some("fr_FR.UTF-8"));
    assert_eq!(steps.len(), 2, "prompts, then the Gemalto features");
    let prompts = &steps[0];
    assert!(prompts.required, "a failure fails the open");
    assert_eq!(prompts.sleep_before, Duration::from_secs(1));
    assert_eq!(prompts.timeout, Some(Duration::from_secs(3)));
    assert_eq!(prompts.data, pinpad_prompts(Some("fr")));
    assert_eq!(steps[1].data, [0x6A]);
    assert!(!steps[1].required);

    let r = f.resolve_with(DriverOptions::DISABLE_PIN_RETRIES);
    let steps = r.init_steps(None);
    assert_eq!(steps.len(), 3);
    assert_eq!(steps[1].data, [0xB5, 0x00]);
    assert!(!steps[1].required);

    let vega = fixture(0x0982, 0x0008).resolve();
    let steps = vega.init_steps(None);
    assert_eq!(steps.len(), 1, "Véga-Alpha is not a Gemalto USB device");
    assert!(steps[0].required);
}

#[test]
fn pinpad_prompt_escape_layout() {
    for lang in [
        None,
        Some("en_US"),
        Some("fr"),
        Some("DE_de"),
        Some("es"),
        Some("it"),
        Some("pt_BR"),
        Some("nl"),
        Some("tr"),
        Some("x"),
    ] {
        let p = pinpad_prompts(lang);
        assert_eq!(p.len(), 5 + 10 * 16, "{lang:?}");
        assert_eq!(p[..5], [0xB2, 0xA0, 0x00, 0x4D, 0x4C]);
        assert!(p[5..].iter().all(|b| b.is_ascii_graphic() || *b == b' '));
        for prompt in p[5..].chunks(16) {
            assert_ne!(prompt[0], b' ', "{lang:?}: empty prompt");
        }
    }
    assert_eq!(pinpad_prompts(None), pinpad_prompts(Some("ja_JP")));
    assert_ne!(pinpad_prompts(Some("fr_FR")), pinpad_prompts(None));
    assert_eq!(pinpad_prompts(Some("de_DE")), pinpad_prompts(Some("de")));
}

#[test]
fn row10_gempc_pinpad_pin_fixes() {
    let v2 = fixture(0x08E6, 0x3478).resolve();
    assert!(v2.has(QuirkFlags::PIN_VERIFY_ONE_MESSAGE | QuirkFlags::PIN_VALIDATION_KEY_ONLY));
    assert_eq!(v2.pin.properties_validation, Some(0x02));
    assert_eq!(v2.pin.tlv, None, "firmware 2.11 reports no PIN sizes");
    let v1 = fixture(0x08E6, 0x3478).bcd(0x0100).resolve();
    let tlv = v1.pin.tlv.unwrap();
    assert_eq!(
        (tlv.min_pin_size, tlv.max_pin_size, tlv.entry_validation),
        (4, 8, Some(0x02))
    );
    let vega = fixture(0x0982, 0x0008).resolve();
    assert!(vega.has(
        QuirkFlags::PIN_VERIFY_ONE_MESSAGE
            | QuirkFlags::PIN_VALIDATION_KEY_ONLY
            | QuirkFlags::PIN_MODIFY_GEMALTO_LAYOUT
    ));
    assert!(!vega.has(QuirkFlags::GEMALTO_FIRMWARE_FEATURES));
    assert_eq!(vega.pin.tlv, Some(tlv));
    assert_eq!(vega.pin.properties_validation, Some(0x02));
}

#[test]
fn row11_insecure_keyboards_lose_their_pinpad() {
    for (vid, pid) in [
        (0x03F0, 0x1024),
        (0x03F0, 0x0036),
        (0x0BF8, 0x1017),
        (0x04F2, 0x1469),
    ] {
        let f = fixture(vid, pid);
        assert_eq!(f.descriptor().bPINSupport, 0x03);
        let r = f.resolve();
        assert_eq!(r.descriptor.bPINSupport, 0, "{vid:04X}:{pid:04X}");
        assert!(r
            .changes
            .iter()
            .any(|c| c.field == "bPINSupport" && c.to == "0x00"));
    }
}

#[test]
fn row12_ltc31_v2_pinpad_off() {
    let r = fixture(0x0783, 0x0006).resolve();
    assert_eq!(r.descriptor.bPINSupport, 0);
    assert_eq!(r.applied, ["c3po-ltc31-v2"]);
}

#[test]
fn row13_false_pinpad_and_chaining() {
    for (vid, pid) in [
        (0x076B, 0x3A21),
        (0x076B, 0x3031),
        (0x076B, 0x6632),
        (0x046A, 0x00A7),
        (0x0BF8, 0x1024),
    ] {
        let r = fixture(vid, pid).resolve();
        assert_eq!(r.descriptor.bPINSupport, 0, "{vid:04X}:{pid:04X}");
        assert_eq!(r.descriptor.exchange_level(), ExchangeLevel::ExtendedApdu);
    }
    let aviator = fixture(0x076B, 0x3A21);
    assert_eq!(
        aviator.descriptor().exchange_level(),
        ExchangeLevel::ShortApdu
    );
    let r = aviator.resolve();
    // Only the level bits change.
    assert_eq!(r.descriptor.dwFeatures, 0x0004_07B8);
}

#[test]
fn row14_kobil_tribank_short_apdu_and_mct() {
    let f = fixture(0x0D46, 0x3010);
    assert_eq!(f.descriptor().exchange_level(), ExchangeLevel::ExtendedApdu);
    let r = f.resolve();
    assert_eq!(r.descriptor.exchange_level(), ExchangeLevel::ShortApdu);
    assert!(r.has(QuirkFlags::MCT_READER_DIRECT));
    assert_eq!(r.descriptor.bPINSupport, 0x03, "the pinpad stays");
}

#[test]
fn row15_kobil_midentity_visual_mct() {
    let r = fixture(0x0D46, 0x4289).resolve();
    assert!(r.has(QuirkFlags::MCT_READER_DIRECT));
    assert!(r.changes.is_empty());
}

#[test]
fn row16_diebold_nixdorf_chaining() {
    let f = fixture(0x2F7C, 0x6007);
    assert_eq!(f.descriptor().exchange_level(), ExchangeLevel::ShortApdu);
    assert_eq!(
        f.resolve().descriptor.exchange_level(),
        ExchangeLevel::ExtendedApdu
    );
}

#[test]
fn row17_cherry_kc1000sc() {
    let f = fixture(0x046A, 0x00A1);
    let r = f.resolve();
    assert!(r.has(QuirkFlags::PIN_MODIFY_NO_MESSAGE_AS_DEFAULT));
    let tlv = r.pin.tlv.unwrap();
    assert_eq!(
        (tlv.min_pin_size, tlv.max_pin_size, tlv.entry_validation),
        (0, 32, None)
    );
    assert!(!r.applies("cherry-kc1000sc-fw100"), "firmware 1.02");
    // Firmware 1.00 in short-APDU mode chains: extended level.
    let short = Fixture {
        features: 0x0002_07BA,
        ..f.clone()
    }
    .bcd(0x0100);
    assert_eq!(
        short.resolve().descriptor.exchange_level(),
        ExchangeLevel::ExtendedApdu
    );
    // Firmware 1.00 at TPDU level is left alone.
    let tpdu = Fixture {
        features: 0x0001_07BA,
        ..f
    }
    .bcd(0x0100);
    let r = tpdu.resolve();
    assert!(r.applies("cherry-kc1000sc-fw100"));
    assert_eq!(r.descriptor.exchange_level(), ExchangeLevel::Tpdu);
}

#[test]
fn row18_bit4id_minilector_pinpad_off() {
    let f = fixture(0x25DD, 0x3111);
    assert_eq!(f.descriptor().bPINSupport, 0x03);
    assert_eq!(f.resolve().descriptor.bPINSupport, 0);
}

#[test]
fn row19_etoken_5100_auto_ifsd() {
    let f = fixture(0x0529, 0x0620);
    for (bcd, expected) in [
        (0x0011, false),
        (0x0012, true),
        (0x0013, true),
        (0x0014, false),
        (0x0100, false),
    ] {
        let r = f.clone().bcd(bcd).resolve();
        assert_eq!(
            r.descriptor.features().contains(Features::AUTO_IFSD),
            expected,
            "firmware {}",
            format_bcd(bcd)
        );
        if expected {
            assert_eq!(
                r.descriptor.dwFeatures,
                f.features | Features::AUTO_IFSD.bits()
            );
        }
    }
}

#[test]
fn row20_gemalto_vendor() {
    let mut r = fixture(0x08E6, 0x3437).resolve();
    assert!(r.has(
        QuirkFlags::GEMALTO_FIRMWARE_FEATURES
            | QuirkFlags::FIRMWARE_ID_TLV
            | QuirkFlags::PIN_MODIFY_GEMALTO_LAYOUT
    ));
    assert!(r.escape_allowed(&[0x02], DriverOptions::empty()));
    assert!(!r.escape_allowed(&[0x02, 0x00], DriverOptions::empty()));
    assert!(!r.escape_allowed(&[0x6A], DriverOptions::empty()));
    let steps = r.init_steps(None);
    assert_eq!(steps.len(), 1);
    assert_eq!(steps[0].data, [0x6A]);
    assert!(!steps[0].required);
    assert!(!r.apply_init_success(&steps[0], &[0; 5]));
    assert_eq!(r.gemalto_features, None);
    assert!(r.apply_init_success(&steps[0], &[7; 21]));
    assert_eq!(r.gemalto_features.as_deref(), Some(&[7u8; 21][..]));
    // Every product of the vendor, even one the table does not list.
    let other = synthetic(0x08E6, 0x9999, 0x0100, 0, 0x0004_04BA).resolve();
    assert_eq!(other.applied, ["gemalto"]);
}

#[test]
fn row21_emv_mode_power_on() {
    for (vid, pid) in [(0x08E6, 0x4433), (0x046A, 0x0005)] {
        assert!(fixture(vid, pid)
            .resolve()
            .has(QuirkFlags::EMV_TO_ISO_ON_POWER_ON_ERROR));
    }
    assert_eq!(quirks::EMV_TO_ISO_ESCAPE, [0x1F, 0x01]);
}

#[test]
fn row22_dell_keyboards_verify() {
    for pid in [0x2100, 0x2101] {
        let r = fixture(0x413C, pid).resolve();
        assert!(r.has(QuirkFlags::PIN_VERIFY_NO_MESSAGE));
        assert_eq!(r.pin.verify_delay_ms, Some(250));
    }
}

#[test]
fn row23_dell_sk3106_extra_digit_swap() {
    assert!(fixture(0x413C, 0x2100)
        .resolve()
        .has(QuirkFlags::PIN_SWAP_MAX_EXTRA_DIGIT));
    assert!(!fixture(0x413C, 0x2101)
        .resolve()
        .has(QuirkFlags::PIN_SWAP_MAX_EXTRA_DIGIT));
}

#[test]
fn row24_spr532() {
    let r = fixture(0x04E6, 0xE003).resolve();
    assert!(
        r.has(QuirkFlags::PIN_VERIFY_PREPARE_ESCAPE | QuirkFlags::PIN_MODIFY_ALL_MESSAGE_INDEXES)
    );
    assert!(r.refused.is_none(), "firmware 5.10 is the first good one");
    assert_eq!(quirks::SPR532_VERIFY_ESCAPE, [0x80, 0x02, 0x00]);
}

#[test]
fn row25_cherry_st2000() {
    let r = fixture(0x046A, 0x003E).resolve();
    assert!(r.has(QuirkFlags::PIN_MODIFY_ALL_MESSAGE_INDEXES));
    assert!(!r.has(QuirkFlags::PIN_VERIFY_PREPARE_ESCAPE));
    assert_eq!(r.pin.properties_validation, Some(0x02));
    let tlv = r.pin.tlv.unwrap();
    assert_eq!(
        (tlv.min_pin_size, tlv.max_pin_size, tlv.entry_validation),
        (0, 25, Some(0x02))
    );
}

#[test]
fn row26_cherry_xx44_modify() {
    let r = fixture(0x046A, 0x0010).resolve();
    assert!(r.has(QuirkFlags::PIN_MODIFY_THREE_MESSAGES));
    assert_eq!(r.descriptor.bPINSupport, 0x03);
}

#[test]
fn row28_message_length_263_allowance() {
    for name in ["SCR331-DI.txt", "AxaltoV3.txt", "ActivCardV2.txt"] {
        let r = dump_fixture(name).resolve();
        assert!(r.applies("scm-message-length-263"), "{name}");
        assert_eq!(
            r.descriptor.dwMaxCCIDMessageLength, 263,
            "the descriptor is kept"
        );
        assert_eq!(r.max_single_command(253), (260, false));
        assert_eq!(r.max_single_command(260), (260, true));
        assert_eq!(r.max_single_command(261), (260, false));
    }
    let spr = fixture(0x04E6, 0xE003).resolve();
    assert!(!spr.applies("scm-message-length-263"));
    assert_eq!(spr.max_single_command(260), (260, false));
    assert_eq!(spr.max_single_command(261), (260, false));
}

#[test]
fn row29_sec1100_interrupt_read_on_macos() {
    let r = fixture(0x0424, 0x1104).resolve();
    assert_eq!(
        r.has(QuirkFlags::INTERRUPT_READ_BEFORE_STATUS),
        cfg!(target_os = "macos")
    );
}

#[test]
fn row30_thales_fusion_nfc_timeout() {
    let r = fixture(0x08E6, 0x34D2).resolve();
    assert_eq!(r.t1_extra_timeout, Duration::from_secs(300));
    let base = NegotiateOptions::default();
    let t1 = r.negotiate_options(Protocol::T1, base.clone());
    assert_eq!(t1.extra_timeout_ms, base.extra_timeout_ms + 300_000);
    assert!(!t1.no_pps);
    assert_eq!(r.negotiate_options(Protocol::T0, base.clone()), base);
    assert_eq!(
        fixture(0x08E6, 0x3437).resolve().t1_extra_timeout,
        Duration::ZERO
    );
}

#[test]
fn row31_openpgp_card_bwt() {
    let atr = ccid::iso7816::negotiate::OPENPGP_SLOW_BWT_ATR;
    let c = card_quirks(&atr);
    assert_eq!(c.applied, ["openpgp-card-slow-bwt"]);
    assert_eq!(c.waiting_integers_t1(0x45), 0x75);
    assert_eq!(c.waiting_integers_t1(0x55), 0x55);
    let mut other = atr;
    other[10] ^= 1;
    let none = card_quirks(&other);
    assert!(none.applied.is_empty());
    assert_eq!(none.waiting_integers_t1(0x45), 0x45);
    assert!(card_quirks(&atr[..19]).applied.is_empty());
    // A card row never applies to a reader.
    for f in fixtures() {
        assert!(!f.resolve().applies("openpgp-card-slow-bwt"));
    }
}

#[test]
fn row32_kobil_idtoken() {
    let r = fixture(0x0D46, 0x301D).resolve();
    assert!(r.has(QuirkFlags::POWER_OFF_BEFORE_POWER_ON | QuirkFlags::DRIVER_ANSWERS_VENDOR_APDUS));
    let answer = |item: u8| r.driver_answer(&[0xFF, 0x9A, 0x01, item, 0x00]);
    assert_eq!(answer(0x01).unwrap(), b"KOBIL systems\x90\x00");
    assert_eq!(answer(0x03).unwrap(), b"IDToken\x90\x00");
    assert_eq!(answer(0x06).unwrap(), b"1.00\x90\x00");
    assert_eq!(answer(0x07).unwrap(), b"2012.2.7\x90\x00");
    assert_eq!(answer(0x02), None);
    assert_eq!(r.driver_answer(&[0xFF, 0x9A, 0x01, 0x01]), None);
    assert_eq!(r.driver_answer(&[0xFF, 0x9A, 0x01, 0x01, 0x00, 0x00]), None);
    assert_eq!(r.driver_answer(&[0x00, 0xA4, 0x04, 0x00, 0x00]), None);
    let other = fixture(0x0D46, 0x3010).resolve();
    assert_eq!(other.driver_answer(&[0xFF, 0x9A, 0x01, 0x01, 0x00]), None);
}

#[test]
fn row33_gemcore_sim_pro() {
    let f = Fixture {
        max_slot: 1,
        ..fixture(0x08E6, 0x3480)
    };
    let r = f.resolve();
    assert!(r.has(QuirkFlags::CACHED_PRESENCE));
    let (d0, rates0) = r.slot_caps(0);
    assert_eq!(d0, r.descriptor);
    assert_eq!(rates0, r.data_rates);
    let (d1, rates1) = r.slot_caps(1);
    assert_eq!(d1.dwMaxDataRate, 125_000);
    assert_eq!(rates1, GEMCORE_SECONDARY_RATES);
    let v2 = f.bcd(0x0200).resolve();
    assert!(!v2.has(QuirkFlags::CACHED_PRESENCE));
    assert_eq!(v2.slot_caps(1).0.dwMaxDataRate, 412_903);
}

#[test]
fn row34_gemcore_pos_pro_secondary_slots() {
    let f = fixture(0x08E6, 0x3479);
    assert_eq!(f.descriptor().slot_count(), 5);
    let r = f.resolve();
    assert_eq!(r.slot_caps(0).0.dwMaxDataRate, 500_000);
    for slot in 1..5 {
        let (d, rates) = r.slot_caps(slot);
        assert_eq!(d.dwMaxDataRate, 125_000);
        assert_eq!(rates, [10753, 21505, 43011, 125_000]);
    }
    assert!(!r.has(QuirkFlags::CACHED_PRESENCE));
}

#[test]
fn row35_gemprox_du_interface_switch() {
    let r = fixture(0x08E6, 0x5503).resolve();
    let none = DriverOptions::empty();
    assert!(r.escape_allowed(&[0x52, 0xF8, 0x04, 0x01, 0x00, 0x01], none));
    assert!(r.escape_allowed(&[0x52, 0xF8, 0x04, 0x01, 0x00, 0x02], none));
    assert!(!r.escape_allowed(&[0x52, 0xF8, 0x04, 0x01, 0x00], none));
    assert!(!r.escape_allowed(&[0x52, 0xF8, 0x04, 0x01, 0x00, 0x01, 0x00], none));
    assert!(!r.escape_allowed(&[0x52, 0xF8, 0x04, 0x02, 0x00, 0x01], none));
    assert!(r.escape_allowed(&[0x02], none), "Gemalto firmware ID");
    assert!(r
        .escape_exceptions()
        .contains(&EscapeRule::Exact(&quirks::GEMALTO_FIRMWARE_ID_ESCAPE)));
    // The switch is the GemProx-DU's only.
    let twin = fixture(0x08E6, 0x3437).resolve();
    assert!(!twin.escape_allowed(&[0x52, 0xF8, 0x04, 0x01, 0x00, 0x01], none));
}

#[test]
fn row36_omnikey_5427ck_any_escape() {
    let r = fixture(0x076B, 0x5427).resolve();
    assert!(r.escape_allowed(&[0xDE, 0xAD], DriverOptions::empty()));
    assert!(r.escape_allowed(&[], DriverOptions::empty()));
}

#[test]
fn escape_gate_option_and_default() {
    let plain = synthetic(0x1234, 0x5678, 0x0100, 0, 0x0004_04BA).resolve();
    assert!(!plain.escape_allowed(&[0x02], DriverOptions::empty()));
    assert!(plain.escape_allowed(&[0x02], DriverOptions::CCID_EXCHANGE_AUTHORIZED));
    assert!(plain.escape_allowed(&[0x12, 0x34], DriverOptions::CCID_EXCHANGE_AUTHORIZED));
    assert!(!plain.escape_allowed(&[0x12], DriverOptions::USE_BOGUS_FIRMWARE));
}

#[test]
fn row37_omnikey_3821_pin_sizes() {
    let tlv = fixture(0x076B, 0x3821).resolve().pin.tlv.unwrap();
    assert_eq!(
        (tlv.min_pin_size, tlv.max_pin_size, tlv.entry_validation),
        (1, 31, None)
    );
}

#[test]
fn row38_composite_as_multislot() {
    let c = composite_as_multislot(0x076B, 0x5422).unwrap();
    assert_eq!((c.max_interface, c.ccid_interfaces), (Some(1), Some(2)));
    let du = composite_as_multislot(0x08E6, 0x5503).unwrap();
    assert_eq!((du.max_interface, du.ccid_interfaces), (Some(2), Some(2)));
    assert_eq!(
        composite_as_multislot(0x096E, 0x060D)
            .unwrap()
            .ccid_interfaces,
        Some(4)
    );
    assert_eq!(
        composite_as_multislot(0x072F, 0x2301)
            .unwrap()
            .ccid_interfaces,
        Some(3)
    );
    // A Kapelse product entry wins over the vendor-wide one.
    assert_eq!(
        composite_as_multislot(0x2947, 0x0112).unwrap().id,
        "kapelse-kap-ecv"
    );
    assert_eq!(
        composite_as_multislot(0x2947, 0x0105)
            .unwrap()
            .ccid_interfaces,
        Some(3)
    );
    let any = composite_as_multislot(0x2947, 0x4242).unwrap();
    assert_eq!((any.id, any.ccid_interfaces), ("kapelse", None));
    assert!(composite_as_multislot(0x08E6, 0x3437).is_none());
}

#[test]
fn row40_sec1210_second_interface() {
    let f = fixture(0x0424, 0x1202);
    assert!(
        f.resolve().flags.is_empty(),
        "interface 0 has card detection"
    );
    let if1 = Fixture { interface: 1, ..f }.resolve();
    assert!(if1.has(QuirkFlags::MIRROR_INTERFACE0_PRESENCE | QuirkFlags::POWER_OFF_BEFORE_POWER_ON));
}

/// Every blacklist row: the firmware just below the threshold is refused,
/// the threshold itself is accepted, and option 0x04 accepts both.
#[test]
fn row42_bogus_firmware_blacklist() {
    let rows: Vec<_> = QUIRKS
        .iter()
        .filter(|q| q.effect.refuse.is_some())
        .collect();
    assert_eq!(rows.len(), 17);
    for q in rows {
        let first_good = q.bcd.as_ref().unwrap().end() + 1;
        let f = synthetic(q.vid.unwrap(), q.pid.unwrap(), first_good, 0, 0x0001_00BA);
        let good = f.clone().resolve();
        assert!(good.refused.is_none(), "{}", q.id);
        assert!(!good.applies(q.id));
        let bad = f.clone().bcd(first_good - 1).resolve();
        let msg = bad
            .refused
            .as_deref()
            .unwrap_or_else(|| panic!("{} not refused", q.id));
        assert!(msg.contains(&format_bcd(first_good - 1)), "{msg}");
        assert!(msg.contains("is bogus"), "{msg}");
        let forced = f
            .bcd(first_good - 1)
            .resolve_with(DriverOptions::USE_BOGUS_FIRMWARE);
        assert!(forced.refused.is_none());
        assert_eq!(forced.accepted_bogus, [q.id]);
    }
}

#[test]
fn row42_scr331_threshold() {
    let f = fixture(0x04E6, 0xE001);
    assert!(f.resolve().refused.is_none(), "the dump's 5.25");
    let r = f.clone().bcd(0x0515).resolve();
    assert_eq!(
        r.refused.as_deref(),
        Some(
            "Firmware 5.15 of 04E6:E001 is bogus: SCM SCR331 firmware before 5.16 has known \
             bugs. Upgrade the reader firmware or use another reader (ifdDriverOptions 0x04 \
             accepts it anyway)"
        )
    );
    assert!(f.clone().bcd(0x0516).resolve().refused.is_none());
    let forced = f
        .bcd(0x0515)
        .resolve_with(DriverOptions::USE_BOGUS_FIRMWARE);
    assert!(forced.refused.is_none());
    assert!(describe(&forced)
        .iter()
        .any(|l| l.contains("bogus firmware accepted")));
}

/// Among the real dumps, only those with a blacklisted firmware are refused.
#[test]
fn row42_real_dumps() {
    let Some(dir) = readers_dir() else { return };
    let mut refused = Vec::new();
    let mut entries: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let field = |name: &str| {
            text.lines()
                .map(str::trim)
                .find_map(|l| l.strip_prefix(name))
                .map(|v| v.split_whitespace().next().unwrap_or("").to_string())
        };
        let (Some(vid), Some(pid), Some(bcd)) = (
            field("idVendor: 0x"),
            field("idProduct: 0x"),
            field("bcdDevice: "),
        ) else {
            continue;
        };
        let bcd_hex = bcd.replace('.', "");
        let info = UsbInfo {
            vendor_id: u16::from_str_radix(&vid, 16).unwrap(),
            product_id: u16::from_str_radix(&pid, 16).unwrap(),
            bcd_device: u16::from_str_radix(&bcd_hex, 16).unwrap(),
            ..UsbInfo::default()
        };
        let r = resolve(
            &info,
            &CcidDescriptor::example(),
            &[],
            DriverOptions::empty(),
        );
        if r.refused.is_some() {
            refused.push(path.file_name().unwrap().to_string_lossy().into_owned());
        }
    }
    assert_eq!(refused, ["ActivCardV2.txt", "SCL010.txt"]);
}

#[test]
fn describe_lists_raw_and_adjusted_values() {
    let r = fixture(0x0B97, 0x7762).resolve();
    let lines = describe(&r);
    assert_eq!(
        lines[0],
        format!(
            "applied: o2micro-oz776: {}",
            QUIRKS.iter().find(|q| q.id == "o2micro-oz776").unwrap().why
        )
    );
    assert_eq!(lines[1], "  dwMaxDataRate: 307200 -> 9600");
    assert_eq!(lines[2], "flags: NO_PPS | SPLIT_64_BYTE_READS");
    let refused = fixture(0x04E6, 0xE001).bcd(0x0500).resolve();
    assert!(describe(&refused)
        .last()
        .unwrap()
        .starts_with("refused: Firmware 5.00"));
}

#[test]
fn rows_for_lists_every_firmware() {
    let ids: Vec<_> = quirks::rows_for(0x04E6, 0xE003).map(|q| q.id).collect();
    assert_eq!(ids, ["scm-spr532", "bogus-scm-spr532"]);
    let ids: Vec<_> = quirks::rows_for(0x08E6, 0x3478).map(|q| q.id).collect();
    assert_eq!(ids, ["gempc-pinpad", "gempc-pinpad-v1", "gemalto"]);
}

#[test]
fn bcd_formatting() {
    assert_eq!(format_bcd(0x0516), "5.16");
    assert_eq!(format_bcd(0x0012), "0.12");
    assert_eq!(format_bcd(0x5257), "52.57");
    assert_eq!(format_bcd(0xF0F0), "F0.F0");
    assert_eq!(quirks::below(0x0516), 0..=0x0515);
    assert_eq!(quirks::exactly(0x0200), 0x0200..=0x0200);
}
