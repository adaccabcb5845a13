//! Reader quirks: the one table of reader-, firmware- and card-specific
//! workarounds, and its resolution for an opened reader.
//!
//! Every USB vendor/product ID the driver treats specially lives in
//! [`QUIRKS`] (and in [`COMPOSITE_AS_MULTISLOT`]); no other module names one.
//! A packager can read the table to see what the driver does differently
//! for a reader and why.
//!
//! # How a row matches
//!
//! A [`Quirk`] applies to a reader when every condition it sets holds:
//! `vid`/`pid` (a `pid` of `None` means every product of the vendor), the
//! firmware range `bcd`, the USB `interface`, the platform, and the raw
//! `dwMaxCCIDMessageLength`. Rows with an `atr` are card quirks and never
//! match a reader; [`card_quirks`] applies them to an ATR.
//!
//! # Firmware versions
//!
//! Firmware versions are USB `bcdDevice` values, binary-coded decimal
//! `major.minor` with two digits each: 0x0516 is firmware 5.16. As libccid
//! does, versions are compared as plain 16-bit integers, which orders valid
//! BCD values like the versions they encode (0x0515 < 0x0516 < 0x0600).
//! [`format_bcd`] prints them as `5.16`.
//!
//! # Resolution
//!
//! [`resolve`] computes, once per opened interface, the effective class
//! descriptor and data-rate table (the raw descriptor is left to the
//! caller, untouched), the merged [`QuirkFlags`] and parameters, the list of
//! applied rows with every field they changed, and whether the reader is
//! refused (bogus firmware). Later rows of the table override earlier ones
//! for the same parameter; product rows come before vendor-wide rows.
//!
//! # Behaviours that are not table rows
//!
//! * Any pinpad reader: a `bEntryValidationCondition` of 0 or above 7 is
//!   sent as 0x02 (some Cherry readers crash otherwise); this applies to
//!   every reader and lives in `crate::pinpad::sanitize_validation`.
//! * pcscd on macOS is told the driver is not thread safe, and the Windows
//!   value of `SCARD_CTL_CODE(3400)` sent by RDP clients is accepted: host
//!   behaviours, not reader ones (`reader::slot`, `reader::control`).
//! * Devices of class FF/FF/FF left unconfigured by macOS are configured by
//!   the USB transport; readers storing their class descriptor after the
//!   last endpoint are found by the transport's descriptor search.
//! * Serial readers have no USB descriptor and are not driven by this crate.
//! * The SCR331-DI contactless slot initialisation is disabled code in
//!   libccid and has no effect there; it has none here either.

#![forbid(unsafe_code)]

use crate::config::DriverOptions;
use crate::iso7816::negotiate::{NegotiateOptions, Protocol};
use crate::proto::descriptor::{CcidDescriptor, ExchangeLevel, Features};
use crate::transport::UsbInfo;
use bitflags::bitflags;
use std::ops::RangeInclusive;
use std::time::Duration;

bitflags! {
    /// Behaviours switched on by a quirk. Each names one workaround; the
    /// module that owns the behaviour tests the flag.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub struct QuirkFlags: u64 {
        /// Never send a PPS; the card keeps its default protocol and
        /// speed (O2Micro OZ776).
        const NO_PPS = 1 << 0;
        /// Character-level T=0: a read whose CCID message would be a
        /// multiple of 64 bytes is split in two (1 byte, then the rest).
        const SPLIT_64_BYTE_READS = 1 << 1;
        /// When T=1 SetParameters fails, reset the card twice and go on
        /// without the parameters (Alcor AU9540).
        const RESET_TWICE_ON_SET_PARAMETERS_FAILURE = 1 << 2;
        /// Send IccPowerOff before every power-on or reset.
        const POWER_OFF_BEFORE_POWER_ON = 1 << 3;
        /// A power-on failing with bError 0xBB (protocol error in EMV mode)
        /// sends [`EMV_TO_ISO_ESCAPE`] and retries the power-on once.
        const EMV_TO_ISO_ON_POWER_ON_ERROR = 1 << 4;
        /// Card presence is not asked with GetSlotStatus (the reader always
        /// reports a card): it is the result of the last power-on, present
        /// initially and after a successful one, absent after a failed one.
        const CACHED_PRESENCE = 1 << 5;
        /// Before each bulk-OUT write, read bulk-IN for 10 ms to swallow a
        /// stray zero-length packet.
        const ZLP_READ_BEFORE_WRITE = 1 << 6;
        /// The driver answers the `FF 9A 01 xx` vendor-information APDUs
        /// itself ([`Resolved::driver_answer`]).
        const DRIVER_ANSWERS_VENDOR_APDUS = 1 << 7;
        /// FEATURE_MCT_READER_DIRECT (SECODER) is advertised.
        const MCT_READER_DIRECT = 1 << 8;
        /// A 10 ms interrupt-IN read precedes each GetSlotStatus.
        const INTERRUPT_READ_BEFORE_STATUS = 1 << 9;
        /// This interface has no card detection: it reports the presence
        /// seen on interface 0 of the same device.
        const MIRROR_INTERFACE0_PRESENCE = 1 << 10;
        /// The reader may report Gemalto firmware features (escape `6A`,
        /// 21 bytes): they give PIN properties and TLVs, mask
        /// bEntryValidationCondition, and tell whether the modify-PIN layout
        /// bug is fixed (`bNumberMessageFix`).
        const GEMALTO_FIRMWARE_FEATURES = 1 << 11;
        /// The sFirmwareID TLV property is read with escape `02`.
        const FIRMWARE_ID_TLV = 1 << 12;
        /// PIN verify: bNumberMessage is forced to 1.
        const PIN_VERIFY_ONE_MESSAGE = 1 << 13;
        /// PIN verify and modify: bEntryValidationCondition is forced to
        /// 0x02 (validation key); the firmware rejects the other conditions.
        const PIN_VALIDATION_KEY_ONLY = 1 << 14;
        /// PIN verify: bNumberMessage is forced to 0.
        const PIN_VERIFY_NO_MESSAGE = 1 << 15;
        /// PIN verify: the two bytes of wPINMaxExtraDigit are swapped.
        const PIN_SWAP_MAX_EXTRA_DIGIT = 1 << 16;
        /// PIN verify: [`SPR532_VERIFY_ESCAPE`] is sent first, and the
        /// Secure command uses a new bSeq.
        const PIN_VERIFY_PREPARE_ESCAPE = 1 << 17;
        /// PIN modify: bNumberMessage 3 with bMsgIndex1..3 = 0 in the
        /// structure, then CCID bNumberMessage 0 in the command.
        const PIN_MODIFY_ALL_MESSAGE_INDEXES = 1 << 18;
        /// PIN modify: bNumberMessage is forced to 3 (the card gets 6B 80
        /// otherwise).
        const PIN_MODIFY_THREE_MESSAGES = 1 << 19;
        /// PIN modify: the structure is built as if bNumberMessage were 3
        /// (bMsgIndex2 and 3 always present), then the real bNumberMessage
        /// is restored in the command; skipped when the Gemalto firmware
        /// features report `bNumberMessageFix`.
        const PIN_MODIFY_GEMALTO_LAYOUT = 1 << 20;
        /// PIN modify: bNumberMessage 0 is sent as 0xFF.
        const PIN_MODIFY_NO_MESSAGE_AS_DEFAULT = 1 << 21;
    }
}

/// Escape switching GemPC433 / Cherry XX33 readers from EMV to ISO mode.
pub const EMV_TO_ISO_ESCAPE: [u8; 2] = [0x1F, 0x01];
/// Escape sent by SCM SPR532 readers before a PIN verification.
pub const SPR532_VERIFY_ESCAPE: [u8; 3] = [0x80, 0x02, 0x00];
/// Gemalto escape returning the firmware version string (sFirmwareID).
pub const GEMALTO_FIRMWARE_ID_ESCAPE: [u8; 1] = [0x02];
/// Gemalto escape GET_FIRMWARE_FEATURES.
pub const GEMALTO_FIRMWARE_FEATURES_ESCAPE: [u8; 1] = [0x6A];
/// Length of a valid GET_FIRMWARE_FEATURES answer.
pub const GEMALTO_FIRMWARE_FEATURES_LEN: usize = 21;
/// How long the driver waits for a zero-length packet before a write
/// ([`QuirkFlags::ZLP_READ_BEFORE_WRITE`]) or for an interrupt before a
/// status poll ([`QuirkFlags::INTERRUPT_READ_BEFORE_STATUS`]).
pub const SHORT_READ: Duration = Duration::from_millis(10);
/// Data rates of the secondary slots of GemCore POS Pro / SIM Pro readers.
pub const GEMCORE_SECONDARY_RATES: [u32; 4] = [10753, 21505, 43011, 125_000];

/// A change of exchange level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LevelChange {
    /// Only when the reader announces this level (`None`: any level).
    pub only_from: Option<ExchangeLevel>,
    /// The level used instead.
    pub to: ExchangeLevel,
}

/// Data rates of the secondary slots (index ≥ 1) of a multi-slot reader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotRates {
    /// The data-rate table of those slots.
    pub rates: &'static [u32],
    /// Their `dwMaxDataRate`.
    pub max_data_rate: u32,
}

/// PIN sizes and validation condition reported in the TLV properties.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TlvPin {
    /// bMinPINSize.
    pub min_pin_size: u8,
    /// bMaxPINSize.
    pub max_pin_size: u8,
    /// bEntryValidationCondition, when the reader restricts it.
    pub entry_validation: Option<u8>,
}

/// Pinpad parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PinParams {
    /// bEntryValidationCondition of FEATURE_IFD_PIN_PROPERTIES (the
    /// driver's default is 0x07).
    pub properties_validation: Option<u8>,
    /// PIN sizes for FEATURE_GET_TLV_PROPERTIES.
    pub tlv: Option<TlvPin>,
    /// Pause before a PIN verification, in ms (lets a keyboard's Enter key
    /// be released).
    pub verify_delay_ms: Option<u32>,
}

impl PinParams {
    /// No pinpad parameter.
    pub const NONE: PinParams = PinParams {
        properties_validation: None,
        tlv: None,
        verify_delay_ms: None,
    };

    fn merge(&mut self, other: &PinParams) {
        if other.properties_validation.is_some() {
            self.properties_validation = other.properties_validation;
        }
        if other.tlv.is_some() {
            self.tlv = other.tlv;
        }
        if other.verify_delay_ms.is_some() {
            self.verify_delay_ms = other.verify_delay_ms;
        }
    }
}

/// Escapes an application may send without `ifdDriverOptions` bit 0x01.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EscapeRule {
    /// Exactly these bytes.
    Exact(&'static [u8]),
    /// These bytes followed by exactly one more byte.
    PrefixAndOneByte(&'static [u8]),
    /// Any escape.
    Any,
}

impl EscapeRule {
    /// Whether `data` is allowed by this rule.
    pub fn allows(&self, data: &[u8]) -> bool {
        match self {
            EscapeRule::Exact(b) => data == *b,
            EscapeRule::PrefixAndOneByte(p) => data.len() == p.len() + 1 && data.starts_with(p),
            EscapeRule::Any => true,
        }
    }
}

/// The bytes of an escape sent when the reader is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InitPayload {
    /// Fixed bytes.
    Bytes(&'static [u8]),
    /// The pinpad prompt strings in the host's language
    /// ([`pinpad_prompts`]).
    PinpadPrompts,
}

/// What a successful init escape changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InitOutcome {
    /// Nothing.
    Nothing,
    /// The reader now works at this exchange level.
    SetLevel(ExchangeLevel),
    /// The answer is the Gemalto firmware-features structure (kept when it
    /// has [`GEMALTO_FIRMWARE_FEATURES_LEN`] bytes).
    GemaltoFirmwareFeatures,
}

/// An escape command sent when the reader is opened, after the warm-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InitEscape {
    /// Short name for logs.
    pub name: &'static str,
    /// What to send.
    pub payload: InitPayload,
    /// Sent only when these `ifdDriverOptions` bits are set.
    pub only_with: Option<DriverOptions>,
    /// Pause before sending, in ms.
    pub sleep_before_ms: u32,
    /// Timeout in ms (`None`: the reader's default timeout).
    pub timeout_ms: Option<u32>,
    /// Whether a failure fails the open.
    pub required: bool,
    /// What a success changes.
    pub on_success: InitOutcome,
}

/// A card (ATR-keyed) fix of the T=1 waiting integers sent in
/// SetParameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WaitingIntegersFix {
    /// The value the card announces (`bmWaitingIntegersT1`).
    pub from: u8,
    /// The value sent instead.
    pub to: u8,
}

/// What a quirk changes. Every field is optional; [`Effect::NONE`] changes
/// nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Effect {
    /// Behaviour flags.
    pub flags: QuirkFlags,
    /// `dwMaxIFSD` override.
    pub max_ifsd: Option<u32>,
    /// `dwMaxDataRate` override.
    pub max_data_rate: Option<u32>,
    /// Data rates above this are dropped from the table, and
    /// `dwMaxDataRate` becomes this value.
    pub data_rate_limit: Option<u32>,
    /// Exchange level override.
    pub level: Option<LevelChange>,
    /// `bPINSupport` override (0: the pinpad is not used).
    pub pin_support: Option<u8>,
    /// `dwFeatures` bits added.
    pub add_features: Features,
    /// Pause before the first command at open, in ms.
    pub open_sleep_ms: Option<u32>,
    /// Timeout of the first GetSlotStatus at open, in ms (driver default
    /// otherwise).
    pub open_timeout_ms: Option<u32>,
    /// Timeout of the warm-up GetSlotStatus retries, in ms.
    pub warm_up_timeout_ms: Option<u32>,
    /// The reader's default command timeout after open, in ms (`None`: the
    /// driver's default is restored after open).
    pub default_timeout_ms: Option<u32>,
    /// Escapes sent at open, in order.
    pub init_escapes: &'static [InitEscape],
    /// Added to the T=1 card timeout, in ms.
    pub t1_extra_timeout_ms: Option<u32>,
    /// An escape allowed without `ifdDriverOptions` bit 0x01.
    pub escape: Option<EscapeRule>,
    /// Data rates of slots ≥ 1.
    pub secondary_slots: Option<SlotRates>,
    /// Pinpad parameters.
    pub pin: PinParams,
    /// A single-block command up to this `dwMaxCCIDMessageLength` is still
    /// sent (with a warning) when the descriptor gives less.
    pub message_length_allowance: Option<u32>,
    /// Card quirk: T=1 waiting integers fix.
    pub waiting_integers: Option<WaitingIntegersFix>,
    /// Bogus firmware: the open is refused (unless `ifdDriverOptions`
    /// 0x04); the text says what is wrong.
    pub refuse: Option<&'static str>,
}

impl Effect {
    /// No effect.
    pub const NONE: Effect = Effect {
        flags: QuirkFlags::empty(),
        max_ifsd: None,
        max_data_rate: None,
        data_rate_limit: None,
        level: None,
        pin_support: None,
        add_features: Features::empty(),
        open_sleep_ms: None,
        open_timeout_ms: None,
        warm_up_timeout_ms: None,
        default_timeout_ms: None,
        init_escapes: &[],
        t1_extra_timeout_ms: None,
        escape: None,
        secondary_slots: None,
        pin: PinParams::NONE,
        message_length_allowance: None,
        waiting_integers: None,
        refuse: None,
    };
}

/// Platform restriction of a quirk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Platform {
    /// Every platform.
    Any,
    /// macOS only.
    MacOs,
}

impl Platform {
    /// Whether the quirk applies on the platform the driver was built for.
    pub fn is_current(self) -> bool {
        match self {
            Platform::Any => true,
            Platform::MacOs => cfg!(target_os = "macos"),
        }
    }
}

/// One row of the quirk table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quirk {
    /// Short stable name, used in logs.
    pub id: &'static str,
    /// idVendor (`None` only for rows keyed on something else: an ATR or a
    /// descriptor value).
    pub vid: Option<u16>,
    /// idProduct (`None`: every product of the vendor).
    pub pid: Option<u16>,
    /// Firmware (bcdDevice) range.
    pub bcd: Option<RangeInclusive<u16>>,
    /// USB interface number.
    pub interface: Option<u8>,
    /// Platform restriction.
    pub platform: Platform,
    /// Raw `dwMaxCCIDMessageLength` the reader must report.
    pub message_length: Option<u32>,
    /// Card quirk: the exact ATR.
    pub atr: Option<&'static [u8]>,
    /// What it changes.
    pub effect: Effect,
    /// Why (the reader's problem).
    pub why: &'static str,
}

impl Quirk {
    /// A row matching nothing by itself; rows set their conditions over it.
    pub const BASE: Quirk = Quirk {
        id: "",
        vid: None,
        pid: None,
        bcd: None,
        interface: None,
        platform: Platform::Any,
        message_length: None,
        atr: None,
        effect: Effect::NONE,
        why: "",
    };

    /// Whether this (non-card) row applies to the reader described by
    /// `info` and its raw descriptor.
    pub fn matches_reader(&self, info: &UsbInfo, raw: &CcidDescriptor) -> bool {
        if self.atr.is_some() || (self.vid.is_none() && self.message_length.is_none()) {
            return false;
        }
        self.vid.map_or(true, |v| v == info.vendor_id)
            && self.pid.map_or(true, |p| p == info.product_id)
            && self
                .bcd
                .as_ref()
                .map_or(true, |r| r.contains(&info.bcd_device))
            && self.interface.map_or(true, |i| i == info.interface_number)
            && self.platform.is_current()
            && self
                .message_length
                .map_or(true, |m| m == raw.dwMaxCCIDMessageLength)
    }
}

/// Firmware versions strictly below `v` (bcdDevice).
pub const fn below(v: u16) -> RangeInclusive<u16> {
    RangeInclusive::new(0, v.saturating_sub(1))
}

/// Exactly firmware `v` (bcdDevice).
pub const fn exactly(v: u16) -> RangeInclusive<u16> {
    RangeInclusive::new(v, v)
}

/// A bcdDevice printed as libccid prints firmware versions (`%X.%02X`):
/// 0x0516 is "5.16".
pub fn format_bcd(bcd: u16) -> String {
    format!("{:X}.{:02X}", bcd >> 8, bcd & 0xFF)
}

// Shared effects.

const VENDOR_GEMALTO: u16 = 0x08E6;
const VENDOR_KAPELSE: u16 = 0x2947;

const SLOW_OPEN_1S: Effect = Effect {
    open_timeout_ms: Some(30_000),
    warm_up_timeout_ms: Some(1_000),
    ..Effect::NONE
};

const SLOW_OPEN_350MS: Effect = Effect {
    open_timeout_ms: Some(12_000),
    warm_up_timeout_ms: Some(400),
    ..Effect::NONE
};

const SLOW_OPEN_350MS_KEEP: Effect = Effect {
    default_timeout_ms: Some(12_000),
    ..SLOW_OPEN_350MS
};

const O2MICRO: Effect = Effect {
    flags: QuirkFlags::NO_PPS.union(QuirkFlags::SPLIT_64_BYTE_READS),
    max_data_rate: Some(9600),
    ..Effect::NONE
};

const ZLP: Effect = Effect {
    flags: QuirkFlags::ZLP_READ_BEFORE_WRITE,
    ..Effect::NONE
};

const NO_PINPAD: Effect = Effect {
    pin_support: Some(0),
    ..Effect::NONE
};

const EXTENDED: LevelChange = LevelChange {
    only_from: None,
    to: ExchangeLevel::ExtendedApdu,
};

const FALSE_PINPAD_CHAINING: Effect = Effect {
    pin_support: Some(0),
    level: Some(EXTENDED),
    ..Effect::NONE
};

const PINPAD_PROMPTS: [InitEscape; 2] = [
    InitEscape {
        name: "load pinpad prompts",
        payload: InitPayload::PinpadPrompts,
        only_with: None,
        sleep_before_ms: 1000,
        timeout_ms: Some(3000),
        required: true,
        on_success: InitOutcome::Nothing,
    },
    InitEscape {
        name: "disable the PIN retry-counter probe",
        payload: InitPayload::Bytes(&[0xB5, 0x00]),
        only_with: Some(DriverOptions::DISABLE_PIN_RETRIES),
        sleep_before_ms: 0,
        timeout_ms: Some(3000),
        required: false,
        on_success: InitOutcome::Nothing,
    },
];

const GEMPC_PINPAD: Effect = Effect {
    flags: QuirkFlags::PIN_VERIFY_ONE_MESSAGE.union(QuirkFlags::PIN_VALIDATION_KEY_ONLY),
    init_escapes: &PINPAD_PROMPTS,
    pin: PinParams {
        properties_validation: Some(0x02),
        ..PinParams::NONE
    },
    ..Effect::NONE
};

const GEMPC_PINPAD_TLV: TlvPin = TlvPin {
    min_pin_size: 4,
    max_pin_size: 8,
    entry_validation: Some(0x02),
};

const TWIN_KEY_APDU: [InitEscape; 1] = [InitEscape {
    name: "switch to APDU mode",
    payload: InitPayload::Bytes(&[0x1F, 0x02]),
    only_with: Some(DriverOptions::GEMPC_TWIN_KEY_APDU),
    sleep_before_ms: 0,
    timeout_ms: None,
    required: false,
    on_success: InitOutcome::SetLevel(ExchangeLevel::ShortApdu),
}];

const GEMPC_TWIN_KEY: Effect = Effect {
    init_escapes: &TWIN_KEY_APDU,
    ..Effect::NONE
};

const GEMALTO_FEATURES: [InitEscape; 1] = [InitEscape {
    name: "GET_FIRMWARE_FEATURES",
    payload: InitPayload::Bytes(&GEMALTO_FIRMWARE_FEATURES_ESCAPE),
    only_with: None,
    sleep_before_ms: 0,
    timeout_ms: None,
    required: false,
    on_success: InitOutcome::GemaltoFirmwareFeatures,
}];

const EMV_MODE: Effect = Effect {
    flags: QuirkFlags::EMV_TO_ISO_ON_POWER_ON_ERROR,
    ..Effect::NONE
};

const GEMCORE_SECONDARY: SlotRates = SlotRates {
    rates: &GEMCORE_SECONDARY_RATES,
    max_data_rate: 125_000,
};

const SPR532_MODIFY: QuirkFlags = QuirkFlags::PIN_MODIFY_ALL_MESSAGE_INDEXES;

const DELL_KEYBOARD: Effect = Effect {
    flags: QuirkFlags::PIN_VERIFY_NO_MESSAGE,
    pin: PinParams {
        verify_delay_ms: Some(250),
        ..PinParams::NONE
    },
    ..Effect::NONE
};

const fn bogus(reason: &'static str) -> Effect {
    Effect {
        refuse: Some(reason),
        ..Effect::NONE
    }
}

/// The quirk table. Product rows come before the vendor-wide rows of the
/// same vendor; when two rows set the same parameter, the later wins.
pub static QUIRKS: &[Quirk] = &[
    // Descriptor corrections.
    Quirk {
        id: "mysmartpad",
        vid: Some(0x09BE),
        pid: Some(0x0002),
        effect: Effect {
            max_ifsd: Some(254),
            ..Effect::NONE
        },
        why: "MySmartPad reports a wrong dwMaxIFSD",
        ..Quirk::BASE
    },
    Quirk {
        id: "id3-cl1356d",
        vid: Some(0x0B81),
        pid: Some(0x0200),
        effect: Effect {
            open_sleep_ms: Some(1000),
            open_timeout_ms: Some(60_000),
            warm_up_timeout_ms: Some(2_000),
            default_timeout_ms: Some(60_000),
            ..Effect::NONE
        },
        why: "id3 CL1356D firmware is slow to initialise: 1 s pause and 60 s timeouts at open, \
              60 s stays the default until a protocol is set",
        ..Quirk::BASE
    },
    Quirk {
        id: "gempc-twin-zlp",
        vid: Some(VENDOR_GEMALTO),
        pid: Some(0x3437),
        bcd: Some(exactly(0x0200)),
        effect: ZLP,
        why: "GemPC Twin firmware 2.00 sends zero-length packets on USB 3 ports",
        ..Quirk::BASE
    },
    Quirk {
        id: "gempc-key-zlp",
        vid: Some(VENDOR_GEMALTO),
        pid: Some(0x3438),
        bcd: Some(exactly(0x0200)),
        effect: ZLP,
        why: "GemPC Key firmware 2.00 sends zero-length packets on USB 3 ports",
        ..Quirk::BASE
    },
    Quirk {
        id: "dell-scr-keyboard-zlp",
        vid: Some(0x413C),
        pid: Some(0x2101),
        bcd: Some(exactly(0x0200)),
        effect: ZLP,
        why: "Dell smart card keyboard firmware 2.00 sends zero-length packets on USB 3 ports",
        ..Quirk::BASE
    },
    Quirk {
        id: "o2micro-oz776",
        vid: Some(0x0B97),
        pid: Some(0x7762),
        effect: O2MICRO,
        why: "O2Micro OZ776: PPS and speeds above 9600 bps are broken, reads of a multiple of \
              64 bytes fail, class descriptor stored after the last endpoint",
        ..Quirk::BASE
    },
    Quirk {
        id: "o2micro-oz776-7772",
        vid: Some(0x0B97),
        pid: Some(0x7772),
        effect: O2MICRO,
        why: "O2Micro OZ776 (7772): PPS and speeds above 9600 bps are broken, reads of a \
              multiple of 64 bytes fail, class descriptor stored after the last endpoint",
        ..Quirk::BASE
    },
    // Slow readers at open.
    Quirk {
        id: "elatec-twn4-cdc",
        vid: Some(0x09D8),
        pid: Some(0x0427),
        effect: SLOW_OPEN_1S,
        why: "Elatec TWN4 answers the slot status only after up to 1 s when no tag is present",
        ..Quirk::BASE
    },
    Quirk {
        id: "elatec-twn4",
        vid: Some(0x09D8),
        pid: Some(0x0428),
        effect: SLOW_OPEN_1S,
        why: "Elatec TWN4 answers the slot status only after up to 1 s when no tag is present",
        ..Quirk::BASE
    },
    Quirk {
        id: "acs-acr122u",
        vid: Some(0x072F),
        pid: Some(0x2200),
        effect: SLOW_OPEN_1S,
        why: "ACS ACR122U answers the slot status only after up to 1 s when no tag is present",
        ..Quirk::BASE
    },
    Quirk {
        id: "scm-scl011",
        vid: Some(0x04E6),
        pid: Some(0x5293),
        effect: SLOW_OPEN_350MS,
        why: "SCM SCL011 needs about 350 ms to answer",
        ..Quirk::BASE
    },
    Quirk {
        id: "identiv-utrust-3700f",
        vid: Some(0x04E6),
        pid: Some(0x5790),
        effect: SLOW_OPEN_350MS_KEEP,
        why: "Identiv uTrust 3700 F needs about 350 ms to answer; the 12 s timeout is kept",
        ..Quirk::BASE
    },
    Quirk {
        id: "identiv-utrust-3701f",
        vid: Some(0x04E6),
        pid: Some(0x5791),
        effect: SLOW_OPEN_350MS_KEEP,
        why: "Identiv uTrust 3701 F needs about 350 ms to answer; the 12 s timeout is kept",
        ..Quirk::BASE
    },
    Quirk {
        id: "identiv-utrust-4701f",
        vid: Some(0x04E6),
        pid: Some(0x5724),
        effect: SLOW_OPEN_350MS_KEEP,
        why: "Identiv uTrust 4701 F needs about 350 ms to answer; the 12 s timeout is kept",
        ..Quirk::BASE
    },
    Quirk {
        id: "alcor-au9540",
        vid: Some(0x058F),
        pid: Some(0x9540),
        effect: Effect {
            flags: QuirkFlags::RESET_TWICE_ON_SET_PARAMETERS_FAILURE,
            data_rate_limit: Some(200_000),
            ..Effect::NONE
        },
        why: "Alcor Micro AU9540/AU9560: speeds above 200 kbps do not work, SetParameters \
              fails with some cards",
        ..Quirk::BASE
    },
    Quirk {
        id: "gempc-twin",
        vid: Some(VENDOR_GEMALTO),
        pid: Some(0x3437),
        effect: GEMPC_TWIN_KEY,
        why: "GemPC Twin announces TPDU but can exchange APDUs (EMV) once switched \
              (ifdDriverOptions 0x02)",
        ..Quirk::BASE
    },
    Quirk {
        id: "gempc-key",
        vid: Some(VENDOR_GEMALTO),
        pid: Some(0x3438),
        effect: GEMPC_TWIN_KEY,
        why: "GemPC Key announces TPDU but can exchange APDUs (EMV) once switched \
              (ifdDriverOptions 0x02)",
        ..Quirk::BASE
    },
    // Pinpads.
    Quirk {
        id: "gempc-pinpad",
        vid: Some(VENDOR_GEMALTO),
        pid: Some(0x3478),
        effect: GEMPC_PINPAD,
        why: "GemPC Pinpad: on-device prompts must be loaded; the firmware accepts only \
              bNumberMessage 1 and the validation key",
        ..Quirk::BASE
    },
    Quirk {
        id: "gempc-pinpad-v1",
        vid: Some(VENDOR_GEMALTO),
        pid: Some(0x3478),
        bcd: Some(exactly(0x0100)),
        effect: Effect {
            pin: PinParams {
                tlv: Some(GEMPC_PINPAD_TLV),
                ..PinParams::NONE
            },
            ..Effect::NONE
        },
        why: "GemPC Pinpad firmware 1.00 takes PINs of 4 to 8 digits",
        ..Quirk::BASE
    },
    Quirk {
        id: "covadis-vega-alpha",
        vid: Some(0x0982),
        pid: Some(0x0008),
        effect: Effect {
            flags: GEMPC_PINPAD
                .flags
                .union(QuirkFlags::PIN_MODIFY_GEMALTO_LAYOUT),
            pin: PinParams {
                properties_validation: Some(0x02),
                tlv: Some(GEMPC_PINPAD_TLV),
                verify_delay_ms: None,
            },
            ..GEMPC_PINPAD
        },
        why: "Covadis Véga-Alpha runs the GemPC Pinpad firmware: prompts to load, \
              bNumberMessage 1, validation key only, 4 to 8 digits, modify-PIN layout bug",
        ..Quirk::BASE
    },
    Quirk {
        id: "hp-usb-keyboard",
        vid: Some(0x03F0),
        pid: Some(0x1024),
        effect: NO_PINPAD,
        why: "HP USB Smart Card Keyboard: secure PIN entry also sends the PIN to the host",
        ..Quirk::BASE
    },
    Quirk {
        id: "hp-ccid-keyboard",
        vid: Some(0x03F0),
        pid: Some(0x0036),
        effect: NO_PINPAD,
        why: "HP CCID Smartcard Keyboard: secure PIN entry also sends the PIN to the host",
        ..Quirk::BASE
    },
    Quirk {
        id: "fujitsu-smart-keyboard",
        vid: Some(0x0BF8),
        pid: Some(0x1017),
        effect: NO_PINPAD,
        why: "Fujitsu smart card keyboard: secure PIN entry also sends the PIN to the host",
        ..Quirk::BASE
    },
    Quirk {
        id: "chicony-hp-skylab-keyboard",
        vid: Some(0x04F2),
        pid: Some(0x1469),
        effect: NO_PINPAD,
        why: "Chicony HP Skylab keyboard: secure PIN entry also sends the PIN to the host",
        ..Quirk::BASE
    },
    Quirk {
        id: "c3po-ltc31-v2",
        vid: Some(0x0783),
        pid: Some(0x0006),
        effect: NO_PINPAD,
        why: "C3PO LTC31 v2: the pinpad does not work",
        ..Quirk::BASE
    },
    Quirk {
        id: "hid-aviator",
        vid: Some(0x076B),
        pid: Some(0x3A21),
        effect: FALSE_PINPAD_CHAINING,
        why: "HID Aviator / OMNIKEY generic: announces a pinpad it does not have; the \
              firmware chains responses",
        ..Quirk::BASE
    },
    Quirk {
        id: "hid-omnikey-3x21",
        vid: Some(0x076B),
        pid: Some(0x3031),
        effect: FALSE_PINPAD_CHAINING,
        why: "HID OMNIKEY 3x21: announces a pinpad it does not have; the firmware chains \
              responses",
        ..Quirk::BASE
    },
    Quirk {
        id: "hid-omnikey-6121",
        vid: Some(0x076B),
        pid: Some(0x6632),
        effect: FALSE_PINPAD_CHAINING,
        why: "HID OMNIKEY 6121: announces a pinpad it does not have; the firmware chains \
              responses",
        ..Quirk::BASE
    },
    Quirk {
        id: "cherry-st-xx44",
        vid: Some(0x046A),
        pid: Some(0x00A7),
        effect: FALSE_PINPAD_CHAINING,
        why: "Cherry SmartTerminal xx44: announces a pinpad it does not have; the firmware \
              chains responses",
        ..Quirk::BASE
    },
    Quirk {
        id: "fujitsu-d323",
        vid: Some(0x0BF8),
        pid: Some(0x1024),
        effect: FALSE_PINPAD_CHAINING,
        why: "Fujitsu Smartcard Reader D323: announces a pinpad it does not have; the \
              firmware chains responses",
        ..Quirk::BASE
    },
    Quirk {
        id: "kobil-tribank",
        vid: Some(0x0D46),
        pid: Some(0x3010),
        effect: Effect {
            flags: QuirkFlags::MCT_READER_DIRECT,
            level: Some(LevelChange {
                only_from: None,
                to: ExchangeLevel::ShortApdu,
            }),
            ..Effect::NONE
        },
        why: "KOBIL TriBank: extended APDUs do not work; SECODER terminal",
        ..Quirk::BASE
    },
    Quirk {
        id: "kobil-midentity-visual",
        vid: Some(0x0D46),
        pid: Some(0x4289),
        effect: Effect {
            flags: QuirkFlags::MCT_READER_DIRECT,
            ..Effect::NONE
        },
        why: "KOBIL mIDentity visual: SECODER terminal",
        ..Quirk::BASE
    },
    Quirk {
        id: "diebold-nixdorf-pn7362au",
        vid: Some(0x2F7C),
        pid: Some(0x6007),
        effect: Effect {
            level: Some(EXTENDED),
            ..Effect::NONE
        },
        why: "Diebold Nixdorf PN7362AU: the firmware chains responses",
        ..Quirk::BASE
    },
    Quirk {
        id: "cherry-kc1000sc",
        vid: Some(0x046A),
        pid: Some(0x00A1),
        effect: Effect {
            flags: QuirkFlags::PIN_MODIFY_NO_MESSAGE_AS_DEFAULT,
            pin: PinParams {
                tlv: Some(TlvPin {
                    min_pin_size: 0,
                    max_pin_size: 32,
                    entry_validation: None,
                }),
                ..PinParams::NONE
            },
            ..Effect::NONE
        },
        why: "Cherry KC 1000 SC: PIN modify rejects bNumberMessage 0; PINs up to 32 digits",
        ..Quirk::BASE
    },
    Quirk {
        id: "cherry-kc1000sc-fw100",
        vid: Some(0x046A),
        pid: Some(0x00A1),
        bcd: Some(exactly(0x0100)),
        effect: Effect {
            level: Some(LevelChange {
                only_from: Some(ExchangeLevel::ShortApdu),
                to: ExchangeLevel::ExtendedApdu,
            }),
            ..Effect::NONE
        },
        why: "Cherry KC 1000 SC firmware 1.00 in short-APDU mode caps T=1 responses at 128 \
              bytes and chains the rest",
        ..Quirk::BASE
    },
    Quirk {
        id: "bit4id-minilector",
        vid: Some(0x25DD),
        pid: Some(0x3111),
        effect: NO_PINPAD,
        why: "Bit4id miniLector (firmware 1.11) announces a pinpad it does not have",
        ..Quirk::BASE
    },
    Quirk {
        id: "safenet-etoken-5100",
        vid: Some(0x0529),
        pid: Some(0x0620),
        bcd: Some(RangeInclusive::new(0x0012, 0x0013)),
        effect: Effect {
            add_features: Features::AUTO_IFSD,
            ..Effect::NONE
        },
        why: "SafeNet eToken 5100 firmware 0.12 and 0.13 reject the IFSD negotiation",
        ..Quirk::BASE
    },
    Quirk {
        id: "gempc433",
        vid: Some(VENDOR_GEMALTO),
        pid: Some(0x4433),
        effect: EMV_MODE,
        why: "GemPC433: power-on fails with 0xBB in EMV mode",
        ..Quirk::BASE
    },
    Quirk {
        id: "cherry-xx33",
        vid: Some(0x046A),
        pid: Some(0x0005),
        effect: EMV_MODE,
        why: "Cherry SmartBoard XX33: power-on fails with 0xBB in EMV mode",
        ..Quirk::BASE
    },
    Quirk {
        id: "dell-sk3106",
        vid: Some(0x413C),
        pid: Some(0x2100),
        effect: Effect {
            flags: DELL_KEYBOARD
                .flags
                .union(QuirkFlags::PIN_SWAP_MAX_EXTRA_DIGIT),
            ..DELL_KEYBOARD
        },
        why: "Dell SK-3106 keyboard: PIN verify needs bNumberMessage 0 and a pause for the \
              Enter key; wPINMaxExtraDigit bytes reversed",
        ..Quirk::BASE
    },
    Quirk {
        id: "dell-scr-keyboard",
        vid: Some(0x413C),
        pid: Some(0x2101),
        effect: DELL_KEYBOARD,
        why: "Dell smart card keyboard: PIN verify needs bNumberMessage 0 and a pause for \
              the Enter key",
        ..Quirk::BASE
    },
    Quirk {
        id: "scm-spr532",
        vid: Some(0x04E6),
        pid: Some(0xE003),
        effect: Effect {
            flags: SPR532_MODIFY.union(QuirkFlags::PIN_VERIFY_PREPARE_ESCAPE),
            ..Effect::NONE
        },
        why: "SCM SPR532: PIN verify needs a preparing escape; PIN modify needs every \
              bMsgIndex",
        ..Quirk::BASE
    },
    Quirk {
        id: "cherry-st2000",
        vid: Some(0x046A),
        pid: Some(0x003E),
        effect: Effect {
            flags: SPR532_MODIFY,
            pin: PinParams {
                properties_validation: Some(0x02),
                tlv: Some(TlvPin {
                    min_pin_size: 0,
                    max_pin_size: 25,
                    entry_validation: Some(0x02),
                }),
                verify_delay_ms: None,
            },
            ..Effect::NONE
        },
        why: "Cherry ST-2000: PIN modify needs every bMsgIndex; no display, validation key \
              only, PINs up to 25 digits",
        ..Quirk::BASE
    },
    Quirk {
        id: "cherry-xx44",
        vid: Some(0x046A),
        pid: Some(0x0010),
        effect: Effect {
            flags: QuirkFlags::PIN_MODIFY_THREE_MESSAGES,
            ..Effect::NONE
        },
        why: "Cherry SmartBoard XX44: with bNumberMessage below 3 a PIN modify gets 6B 80",
        ..Quirk::BASE
    },
    Quirk {
        id: "hid-omnikey-3821",
        vid: Some(0x076B),
        pid: Some(0x3821),
        effect: Effect {
            pin: PinParams {
                tlv: Some(TlvPin {
                    min_pin_size: 1,
                    max_pin_size: 31,
                    entry_validation: None,
                }),
                ..PinParams::NONE
            },
            ..Effect::NONE
        },
        why: "HID OMNIKEY 3821 takes PINs of 1 to 31 digits",
        ..Quirk::BASE
    },
    // Power, presence, protocol and escapes.
    Quirk {
        id: "microchip-sec1100",
        vid: Some(0x0424),
        pid: Some(0x1104),
        platform: Platform::MacOs,
        effect: Effect {
            flags: QuirkFlags::INTERRUPT_READ_BEFORE_STATUS,
            ..Effect::NONE
        },
        why: "Microchip SEC1100 on macOS needs its interrupt endpoint read before a status \
              poll",
        ..Quirk::BASE
    },
    Quirk {
        id: "microchip-sec1210-if1",
        vid: Some(0x0424),
        pid: Some(0x1202),
        interface: Some(1),
        effect: Effect {
            flags: QuirkFlags::MIRROR_INTERFACE0_PRESENCE
                .union(QuirkFlags::POWER_OFF_BEFORE_POWER_ON),
            ..Effect::NONE
        },
        why: "Microchip SEC1210: the second interface has no card detection and needs a \
              power-off before a power-on",
        ..Quirk::BASE
    },
    Quirk {
        id: "thales-etoken-fusion-nfc",
        vid: Some(VENDOR_GEMALTO),
        pid: Some(0x34D2),
        effect: Effect {
            t1_extra_timeout_ms: Some(300_000),
            ..Effect::NONE
        },
        why: "Thales eToken Fusion NFC: on-board key generation takes minutes",
        ..Quirk::BASE
    },
    Quirk {
        id: "kobil-idtoken",
        vid: Some(0x0D46),
        pid: Some(0x301D),
        effect: Effect {
            flags: QuirkFlags::POWER_OFF_BEFORE_POWER_ON
                .union(QuirkFlags::DRIVER_ANSWERS_VENDOR_APDUS),
            ..Effect::NONE
        },
        why: "KOBIL IDToken: the German eID card needs a power-off before a power-on; host \
              software asks the driver for vendor information (FF 9A 01 xx)",
        ..Quirk::BASE
    },
    Quirk {
        id: "gemcore-sim-pro",
        vid: Some(VENDOR_GEMALTO),
        pid: Some(0x3480),
        bcd: Some(below(0x0200)),
        effect: Effect {
            flags: QuirkFlags::CACHED_PRESENCE,
            secondary_slots: Some(GEMCORE_SECONDARY),
            ..Effect::NONE
        },
        why: "GemCore SIM Pro before firmware 2.00 always reports a card present and its \
              secondary slot is slower",
        ..Quirk::BASE
    },
    Quirk {
        id: "gemcore-pos-pro",
        vid: Some(VENDOR_GEMALTO),
        pid: Some(0x3479),
        effect: Effect {
            secondary_slots: Some(GEMCORE_SECONDARY),
            ..Effect::NONE
        },
        why: "GemCore POS Pro: the secondary slots are slower",
        ..Quirk::BASE
    },
    Quirk {
        id: "gemalto-prox-du",
        vid: Some(VENDOR_GEMALTO),
        pid: Some(0x5503),
        effect: Effect {
            escape: Some(EscapeRule::PrefixAndOneByte(&[
                0x52, 0xF8, 0x04, 0x01, 0x00,
            ])),
            ..Effect::NONE
        },
        why: "GemProx-DU: applications switch the active interface with escape \
              52 F8 04 01 00 xx",
        ..Quirk::BASE
    },
    Quirk {
        id: "hid-omnikey-5427ck",
        vid: Some(0x076B),
        pid: Some(0x5427),
        effect: Effect {
            escape: Some(EscapeRule::Any),
            ..Effect::NONE
        },
        why: "HID OMNIKEY 5427 CK: applications exchange APDUs with the reader without a \
              card in the field",
        ..Quirk::BASE
    },
    // Vendor-wide rows.
    Quirk {
        id: "gemalto",
        vid: Some(VENDOR_GEMALTO),
        effect: Effect {
            flags: QuirkFlags::GEMALTO_FIRMWARE_FEATURES
                .union(QuirkFlags::FIRMWARE_ID_TLV)
                .union(QuirkFlags::PIN_MODIFY_GEMALTO_LAYOUT),
            init_escapes: &GEMALTO_FEATURES,
            escape: Some(EscapeRule::Exact(&GEMALTO_FIRMWARE_ID_ESCAPE)),
            ..Effect::NONE
        },
        why: "Gemalto readers report firmware features and a firmware ID; the modify-PIN \
              layout bug is assumed unless the features say it is fixed",
        ..Quirk::BASE
    },
    // Rows keyed on a descriptor value.
    Quirk {
        id: "scm-message-length-263",
        message_length: Some(263),
        effect: Effect {
            message_length_allowance: Some(270),
            ..Effect::NONE
        },
        why: "SCM firmware reports dwMaxCCIDMessageLength 263 instead of 270, which would \
              forbid a full 260-byte command",
        ..Quirk::BASE
    },
    // Card quirks.
    Quirk {
        id: "openpgp-card-slow-bwt",
        atr: Some(&crate::iso7816::negotiate::OPENPGP_SLOW_BWT_ATR),
        effect: Effect {
            waiting_integers: Some(WaitingIntegersFix {
                from: 0x45,
                to: 0x75,
            }),
            ..Effect::NONE
        },
        why: "OpenPGP card: a BWT of 1.4 s is too short for on-card key generation",
        ..Quirk::BASE
    },
    // Bogus firmware: refused unless ifdDriverOptions 0x04.
    Quirk {
        id: "bogus-scm-scr331",
        vid: Some(0x04E6),
        pid: Some(0xE001),
        bcd: Some(below(0x0516)),
        effect: bogus("SCM SCR331 firmware before 5.16 has known bugs"),
        why: "SCM SCR331 firmware before 5.16 has known bugs",
        ..Quirk::BASE
    },
    Quirk {
        id: "bogus-scm-scr331-di",
        vid: Some(0x04E6),
        pid: Some(0x5111),
        bcd: Some(below(0x0620)),
        effect: bogus("SCM SCR331-DI firmware before 6.20 has known bugs"),
        why: "SCM SCR331-DI firmware before 6.20 has known bugs",
        ..Quirk::BASE
    },
    Quirk {
        id: "bogus-scm-spr532",
        vid: Some(0x04E6),
        pid: Some(0xE003),
        bcd: Some(below(0x0510)),
        effect: bogus("SCM SPR532 firmware before 5.10 has known bugs"),
        why: "SCM SPR532 firmware before 5.10 has known bugs",
        ..Quirk::BASE
    },
    Quirk {
        id: "bogus-kobil-kaan-base",
        vid: Some(0x0D46),
        pid: Some(0x3001),
        bcd: Some(below(0x0037)),
        effect: bogus("KOBIL KAAN Base firmware before 0.37 has known bugs"),
        why: "KOBIL KAAN Base firmware before 0.37 has known bugs",
        ..Quirk::BASE
    },
    Quirk {
        id: "bogus-kobil-kaan-advanced",
        vid: Some(0x0D46),
        pid: Some(0x3002),
        bcd: Some(below(0x0037)),
        effect: bogus("KOBIL KAAN Advanced firmware before 0.37 has known bugs"),
        why: "KOBIL KAAN Advanced firmware before 0.37 has known bugs",
        ..Quirk::BASE
    },
    Quirk {
        id: "bogus-activcard-v2",
        vid: Some(0x09C3),
        pid: Some(0x0008),
        bcd: Some(below(0x0203)),
        effect: bogus("ActivCard V2 firmware before 2.03 has known bugs"),
        why: "ActivCard V2 firmware before 2.03 has known bugs",
        ..Quirk::BASE
    },
    Quirk {
        id: "bogus-athena-ase-iiie",
        vid: Some(0x0DC3),
        pid: Some(0x1004),
        bcd: Some(below(0x0502)),
        effect: bogus("Athena ASE IIIe USBv2 firmware before 5.02 has known bugs"),
        why: "Athena ASE IIIe USBv2 firmware before 5.02 has known bugs",
        ..Quirk::BASE
    },
    Quirk {
        id: "bogus-athena-ase-iiie-kb",
        vid: Some(0x0DC3),
        pid: Some(0x1102),
        bcd: Some(below(0x0607)),
        effect: bogus("Athena ASE IIIe KB firmware before 6.07 has known bugs"),
        why: "Athena ASE IIIe KB firmware before 6.07 has known bugs",
        ..Quirk::BASE
    },
    Quirk {
        id: "bogus-alcor-au9520",
        vid: Some(0x058F),
        pid: Some(0x9520),
        bcd: Some(below(0x0102)),
        effect: bogus("Alcor Micro AU9520 firmware before 1.02 has known bugs"),
        why: "Alcor Micro AU9520 firmware before 1.02 has known bugs",
        ..Quirk::BASE
    },
    Quirk {
        id: "bogus-acs-acr122u",
        vid: Some(0x072F),
        pid: Some(0x2200),
        bcd: Some(below(0x0206)),
        effect: bogus("ACS ACR122U-WB-R firmware before 2.06 has known bugs"),
        why: "ACS ACR122U-WB-R firmware before 2.06 has known bugs",
        ..Quirk::BASE
    },
    Quirk {
        id: "bogus-precise-200-mc",
        vid: Some(0x08C3),
        pid: Some(0x0402),
        bcd: Some(below(0x5000)),
        effect: bogus("Precise Biometrics 200 MC firmware before 50.00 has known bugs"),
        why: "Precise Biometrics 200 MC firmware before 50.00 has known bugs",
        ..Quirk::BASE
    },
    Quirk {
        id: "bogus-precise-250-mc",
        vid: Some(0x08C3),
        pid: Some(0x0401),
        bcd: Some(below(0x5000)),
        effect: bogus("Precise Biometrics 250 MC firmware before 50.00 has known bugs"),
        why: "Precise Biometrics 250 MC firmware before 50.00 has known bugs",
        ..Quirk::BASE
    },
    Quirk {
        id: "bogus-todos-argos-mini-ii",
        vid: Some(0x0B0C),
        pid: Some(0x0050),
        bcd: Some(below(0x0101)),
        effect: bogus("Todos Argos Mini II firmware before 1.01 has known bugs"),
        why: "Todos Argos Mini II firmware before 1.01 has known bugs",
        ..Quirk::BASE
    },
    Quirk {
        id: "bogus-athena-idprotect-key-v2",
        vid: Some(0x0DC3),
        pid: Some(0x0900),
        bcd: Some(below(0x0200)),
        effect: bogus("Athena IDProtect Key v2 firmware before 2.00 has known bugs"),
        why: "Athena IDProtect Key v2 firmware before 2.00 has known bugs",
        ..Quirk::BASE
    },
    Quirk {
        id: "bogus-hp-ccid-keyboard",
        vid: Some(0x03F0),
        pid: Some(0x0036),
        bcd: Some(below(0x0124)),
        effect: bogus("HP CCID Smartcard Keyboard firmware before 1.24 has known bugs"),
        why: "HP CCID Smartcard Keyboard firmware before 1.24 has known bugs",
        ..Quirk::BASE
    },
    Quirk {
        id: "bogus-thrc",
        vid: Some(0x062D),
        pid: Some(0x0001),
        bcd: Some(below(0x0102)),
        effect: bogus("THRC Smart Card Reader firmware before 1.02 has known bugs"),
        why: "THRC Smart Card Reader firmware before 1.02 has known bugs",
        ..Quirk::BASE
    },
    Quirk {
        id: "bogus-scm-scl010",
        vid: Some(0x04E6),
        pid: Some(0x5291),
        bcd: Some(below(0x0112)),
        effect: bogus("SCM SCL010 firmware before 1.12 has known bugs"),
        why: "SCM SCL010 firmware before 1.12 has known bugs",
        ..Quirk::BASE
    },
];

/// How a composite device's CCID interfaces are grouped into one reader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompositeMultislot {
    /// Short stable name.
    pub id: &'static str,
    /// idVendor.
    pub vid: u16,
    /// idProduct (`None`: every product of the vendor).
    pub pid: Option<u16>,
    /// Highest interface number that is a CCID interface (`None`: all
    /// interfaces of the configuration).
    pub max_interface: Option<u8>,
    /// Number of CCID interfaces (`None`: all interfaces).
    pub ccid_interfaces: Option<u8>,
    /// Why.
    pub why: &'static str,
}

const TWO_INTERFACES_DEADLOCK: &str =
    "its two CCID interfaces cannot be used at the same time (the reader deadlocks)";

/// Composite readers whose CCID interfaces must not be used at the same
/// time: they are presented as the slots of one reader (libccid does this
/// only when built with `composite-as-multislot`, the default on macOS).
pub static COMPOSITE_AS_MULTISLOT: &[CompositeMultislot] = &[
    CompositeMultislot {
        id: "hid-omnikey-5422",
        vid: 0x076B,
        pid: Some(0x5422),
        max_interface: Some(1),
        ccid_interfaces: Some(2),
        why: TWO_INTERFACES_DEADLOCK,
    },
    CompositeMultislot {
        id: "alcor-link-ak9567",
        vid: 0x2CE3,
        pid: Some(0x9567),
        max_interface: Some(1),
        ccid_interfaces: Some(2),
        why: TWO_INTERFACES_DEADLOCK,
    },
    CompositeMultislot {
        id: "alcor-link-ak9572",
        vid: 0x2CE3,
        pid: Some(0x9573),
        max_interface: Some(1),
        ccid_interfaces: Some(2),
        why: TWO_INTERFACES_DEADLOCK,
    },
    CompositeMultislot {
        id: "acs-walletmate",
        vid: 0x072F,
        pid: Some(0x226B),
        max_interface: Some(1),
        ccid_interfaces: Some(2),
        why: TWO_INTERFACES_DEADLOCK,
    },
    CompositeMultislot {
        id: "acs-acr1251",
        vid: 0x072F,
        pid: Some(0x221A),
        max_interface: Some(1),
        ccid_interfaces: Some(2),
        why: TWO_INTERFACES_DEADLOCK,
    },
    CompositeMultislot {
        id: "acs-acr1252",
        vid: 0x072F,
        pid: Some(0x223B),
        max_interface: Some(1),
        ccid_interfaces: Some(2),
        why: TWO_INTERFACES_DEADLOCK,
    },
    CompositeMultislot {
        id: "acs-acr1252imp",
        vid: 0x072F,
        pid: Some(0x2259),
        max_interface: Some(1),
        ccid_interfaces: Some(2),
        why: TWO_INTERFACES_DEADLOCK,
    },
    CompositeMultislot {
        id: "acs-acr1552",
        vid: 0x072F,
        pid: Some(0x2303),
        max_interface: Some(1),
        ccid_interfaces: Some(2),
        why: TWO_INTERFACES_DEADLOCK,
    },
    CompositeMultislot {
        id: "gemalto-prox-du",
        vid: VENDOR_GEMALTO,
        pid: Some(0x5503),
        max_interface: Some(2),
        ccid_interfaces: Some(2),
        why: "interface 0 is HID; the contactless (1) and contact (2) CCID interfaces \
              cannot be used at the same time",
    },
    CompositeMultislot {
        id: "gemalto-prox-su",
        vid: VENDOR_GEMALTO,
        pid: Some(0x5504),
        max_interface: Some(2),
        ccid_interfaces: Some(2),
        why: "interface 0 is HID; the contactless (1) and contact (2) CCID interfaces \
              cannot be used at the same time",
    },
    CompositeMultislot {
        id: "acs-acr1581",
        vid: 0x072F,
        pid: Some(0x2301),
        max_interface: Some(2),
        ccid_interfaces: Some(3),
        why: "its three CCID interfaces cannot be used at the same time",
    },
    CompositeMultislot {
        id: "feitian-r502-dual",
        vid: 0x096E,
        pid: Some(0x060D),
        max_interface: Some(3),
        ccid_interfaces: Some(4),
        why: "its four CCID interfaces (contactless, contact, two SAMs) cannot be used at \
              the same time",
    },
    CompositeMultislot {
        id: "kapelse-kap-ecv",
        vid: VENDOR_KAPELSE,
        pid: Some(0x0112),
        max_interface: Some(0),
        ccid_interfaces: Some(1),
        why: "only interface 0 is CCID (1 is HID, 2 is CDC)",
    },
    CompositeMultislot {
        id: "kapelse-kap-link2",
        vid: VENDOR_KAPELSE,
        pid: Some(0x0105),
        max_interface: Some(2),
        ccid_interfaces: Some(3),
        why: "interfaces 0 to 2 are CCID (a CDC interface may follow)",
    },
    CompositeMultislot {
        id: "kapelse",
        vid: VENDOR_KAPELSE,
        pid: None,
        max_interface: None,
        ccid_interfaces: None,
        why: "every interface is a CCID one and they cannot be used at the same time",
    },
];

/// The composite-as-multislot entry of a device, product entries first.
pub fn composite_as_multislot(vid: u16, pid: u16) -> Option<&'static CompositeMultislot> {
    COMPOSITE_AS_MULTISLOT
        .iter()
        .filter(|c| c.vid == vid && c.pid.map_or(true, |p| p == pid))
        .min_by_key(|c| c.pid.is_none())
}

/// Rows that concern a device, whatever its firmware, interface or
/// descriptor (for tools listing what the driver knows about a reader).
pub fn rows_for(vid: u16, pid: u16) -> impl Iterator<Item = &'static Quirk> {
    QUIRKS
        .iter()
        .filter(move |q| q.atr.is_none() && q.vid == Some(vid) && q.pid.map_or(true, |p| p == pid))
}

/// One descriptor field changed by a quirk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The quirk that changed it.
    pub quirk: &'static str,
    /// The field.
    pub field: &'static str,
    /// Value before.
    pub from: String,
    /// Value after.
    pub to: String,
}

/// One init escape ready to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitStep {
    /// The quirk it comes from.
    pub quirk: &'static str,
    /// Short name for logs.
    pub name: &'static str,
    /// The escape bytes.
    pub data: Vec<u8>,
    /// Pause before sending.
    pub sleep_before: Duration,
    /// Timeout (`None`: the reader's default timeout).
    pub timeout: Option<Duration>,
    /// Whether a failure fails the open.
    pub required: bool,
    /// What a success changes ([`Resolved::apply_init_success`]).
    pub on_success: InitOutcome,
}

/// The quirks of one opened interface, resolved once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// idVendor.
    pub vid: u16,
    /// idProduct.
    pub pid: u16,
    /// bcdDevice.
    pub bcd_device: u16,
    /// The effective class descriptor.
    pub descriptor: CcidDescriptor,
    /// The effective data-rate table (empty: none).
    pub data_rates: Vec<u32>,
    /// Merged behaviour flags.
    pub flags: QuirkFlags,
    /// Ids of the rows applied, in table order.
    pub applied: Vec<&'static str>,
    /// Descriptor fields changed, in order.
    pub changes: Vec<Change>,
    /// Why the reader is refused (bogus firmware), if it is.
    pub refused: Option<String>,
    /// Bogus-firmware rows matched but accepted through `ifdDriverOptions`
    /// 0x04.
    pub accepted_bogus: Vec<&'static str>,
    /// Pause before the first command at open.
    pub open_sleep: Option<Duration>,
    /// Timeout of the first GetSlotStatus at open.
    pub open_timeout: Option<Duration>,
    /// Timeout of the warm-up retries.
    pub warm_up_timeout: Option<Duration>,
    /// Default command timeout after open (`None`: the driver's default).
    pub default_timeout: Option<Duration>,
    /// Added to the T=1 card timeout.
    pub t1_extra_timeout: Duration,
    /// Data rates of slots ≥ 1.
    pub secondary_slots: Option<SlotRates>,
    /// Pinpad parameters.
    pub pin: PinParams,
    /// `dwMaxCCIDMessageLength` accepted for single-block commands.
    pub message_length_allowance: Option<u32>,
    /// The Gemalto firmware-features answer, once received.
    pub gemalto_features: Option<Vec<u8>>,
    escapes: Vec<EscapeRule>,
    init: Vec<(&'static str, InitEscape)>,
}

fn level_field(d: &CcidDescriptor) -> String {
    d.exchange_level().name().to_string()
}

/// Computes the quirks of the interface described by `info`, whose raw
/// class descriptor is `raw` and whose `GET_DATA_RATES` answer is
/// `data_rates`, under `options`.
pub fn resolve(
    info: &UsbInfo,
    raw: &CcidDescriptor,
    data_rates: &[u32],
    options: DriverOptions,
) -> Resolved {
    let mut r = Resolved {
        vid: info.vendor_id,
        pid: info.product_id,
        bcd_device: info.bcd_device,
        descriptor: raw.clone(),
        data_rates: data_rates.to_vec(),
        flags: QuirkFlags::empty(),
        applied: Vec::new(),
        changes: Vec::new(),
        refused: None,
        accepted_bogus: Vec::new(),
        open_sleep: None,
        open_timeout: None,
        warm_up_timeout: None,
        default_timeout: None,
        t1_extra_timeout: Duration::ZERO,
        secondary_slots: None,
        pin: PinParams::NONE,
        message_length_allowance: None,
        gemalto_features: None,
        escapes: Vec::new(),
        init: Vec::new(),
    };
    for q in QUIRKS.iter().filter(|q| q.matches_reader(info, raw)) {
        r.apply(q, options);
    }
    r
}

fn ms(v: Option<u32>) -> Option<Duration> {
    v.map(|m| Duration::from_millis(u64::from(m)))
}

impl Resolved {
    fn change(&mut self, quirk: &'static str, field: &'static str, from: String, to: String) {
        if from != to {
            self.changes.push(Change {
                quirk,
                field,
                from,
                to,
            });
        }
    }

    fn apply(&mut self, q: &'static Quirk, options: DriverOptions) {
        let e = &q.effect;
        self.applied.push(q.id);
        if let Some(reason) = e.refuse {
            if options.contains(DriverOptions::USE_BOGUS_FIRMWARE) {
                self.accepted_bogus.push(q.id);
            } else if self.refused.is_none() {
                self.refused = Some(format!(
                    "Firmware {} of {:04X}:{:04X} is bogus: {reason}. Upgrade the reader \
                     firmware or use another reader (ifdDriverOptions 0x04 accepts it anyway)",
                    format_bcd(self.bcd_device),
                    self.vid,
                    self.pid
                ));
            }
        }
        self.flags |= e.flags;
        let d = &mut self.descriptor;
        let mut edits: Vec<(&'static str, String, String)> = Vec::new();
        if let Some(v) = e.max_ifsd {
            edits.push(("dwMaxIFSD", d.dwMaxIFSD.to_string(), v.to_string()));
            d.dwMaxIFSD = v;
        }
        if let Some(v) = e.max_data_rate {
            edits.push(("dwMaxDataRate", d.dwMaxDataRate.to_string(), v.to_string()));
            d.dwMaxDataRate = v;
        }
        if let Some(limit) = e.data_rate_limit {
            edits.push((
                "dwMaxDataRate",
                d.dwMaxDataRate.to_string(),
                limit.to_string(),
            ));
            d.dwMaxDataRate = limit;
            let before = self.data_rates.len();
            self.data_rates.retain(|r| *r <= limit);
            if self.data_rates.len() != before {
                edits.push((
                    "data rates",
                    format!("{before} rates"),
                    format!("{} rates (none above {limit})", self.data_rates.len()),
                ));
            }
        }
        if let Some(lc) = e.level {
            let current = d.exchange_level();
            if lc.only_from.map_or(true, |f| f == current) {
                let from = level_field(d);
                d.dwFeatures = (d.dwFeatures & !0x0007_0000) | lc.to.feature_bits();
                edits.push(("exchange level", from, level_field(d)));
            }
        }
        if let Some(v) = e.pin_support {
            edits.push((
                "bPINSupport",
                format!("{:#04x}", d.bPINSupport),
                format!("{v:#04x}"),
            ));
            d.bPINSupport = v;
        }
        if !e.add_features.is_empty() {
            let from = d.dwFeatures;
            d.dwFeatures |= e.add_features.bits();
            edits.push((
                "dwFeatures",
                format!("{from:#010x}"),
                format!("{:#010x}", d.dwFeatures),
            ));
        }
        for (field, from, to) in edits {
            self.change(q.id, field, from, to);
        }
        if let Some(v) = ms(e.open_sleep_ms) {
            self.open_sleep = Some(v);
        }
        if let Some(v) = ms(e.open_timeout_ms) {
            self.open_timeout = Some(v);
        }
        if let Some(v) = ms(e.warm_up_timeout_ms) {
            self.warm_up_timeout = Some(v);
        }
        if let Some(v) = ms(e.default_timeout_ms) {
            self.default_timeout = Some(v);
        }
        if let Some(v) = ms(e.t1_extra_timeout_ms) {
            self.t1_extra_timeout = v;
        }
        if let Some(s) = e.secondary_slots {
            self.secondary_slots = Some(s);
        }
        if let Some(a) = e.message_length_allowance {
            self.message_length_allowance = Some(a);
        }
        if let Some(rule) = e.escape {
            self.escapes.push(rule);
        }
        self.pin.merge(&e.pin);
        for step in e.init_escapes {
            if step.only_with.map_or(true, |o| options.contains(o)) {
                self.init.push((q.id, *step));
            }
        }
    }

    /// Whether every flag of `f` is set.
    pub fn has(&self, f: QuirkFlags) -> bool {
        self.flags.contains(f)
    }

    /// Whether the quirk `id` applies.
    pub fn applies(&self, id: &str) -> bool {
        self.applied.contains(&id)
    }

    /// Whether an application may send the escape `data`
    /// (IOCTL_SMARTCARD_VENDOR_IFD_EXCHANGE): always with `ifdDriverOptions`
    /// bit 0x01, otherwise only the reader's own exceptions.
    pub fn escape_allowed(&self, data: &[u8], options: DriverOptions) -> bool {
        options.contains(DriverOptions::CCID_EXCHANGE_AUTHORIZED)
            || self.escapes.iter().any(|r| r.allows(data))
    }

    /// The escapes this reader allows without the option.
    pub fn escape_exceptions(&self) -> &[EscapeRule] {
        &self.escapes
    }

    /// The escapes to send at open, in order, with the prompt strings in
    /// the language `lang` (a locale such as `$LANG`; English when `None`
    /// or unknown).
    pub fn init_steps(&self, lang: Option<&str>) -> Vec<InitStep> {
        self.init
            .iter()
            .map(|(quirk, e)| InitStep {
                quirk,
                name: e.name,
                data: match e.payload {
                    InitPayload::Bytes(b) => b.to_vec(),
                    InitPayload::PinpadPrompts => pinpad_prompts(lang),
                },
                sleep_before: Duration::from_millis(u64::from(e.sleep_before_ms)),
                timeout: ms(e.timeout_ms),
                required: e.required,
                on_success: e.on_success,
            })
            .collect()
    }

    /// Records what a successful init escape changes; `answer` is the
    /// reader's answer to it. Returns whether anything changed.
    pub fn apply_init_success(&mut self, step: &InitStep, answer: &[u8]) -> bool {
        match step.on_success {
            InitOutcome::Nothing => false,
            InitOutcome::SetLevel(level) => {
                let from = level_field(&self.descriptor);
                self.descriptor.dwFeatures =
                    (self.descriptor.dwFeatures & !0x0007_0000) | level.feature_bits();
                let to = level_field(&self.descriptor);
                let changed = from != to;
                self.change(step.quirk, "exchange level", from, to);
                changed
            }
            InitOutcome::GemaltoFirmwareFeatures => {
                if answer.len() == GEMALTO_FIRMWARE_FEATURES_LEN {
                    self.gemalto_features = Some(answer.to_vec());
                    true
                } else {
                    false
                }
            }
        }
    }

    /// The descriptor and data-rate table a slot works with: slots ≥ 1 of
    /// readers with slower secondary slots get their own rates.
    pub fn slot_caps(&self, slot: u8) -> (CcidDescriptor, Vec<u32>) {
        match self.secondary_slots {
            Some(s) if slot >= 1 => {
                let mut d = self.descriptor.clone();
                d.dwMaxDataRate = s.max_data_rate;
                (d, s.rates.to_vec())
            }
            _ => (self.descriptor.clone(), self.data_rates.clone()),
        }
    }

    /// The largest data field of a single-block command (`XfrBlock` of a
    /// short APDU or T=0 TPDU), with the SCM allowance, and whether that
    /// exceeds what the descriptor itself allows (log a warning then).
    pub fn max_single_command(&self, len: usize) -> (usize, bool) {
        let own = (self.descriptor.dwMaxCCIDMessageLength as usize).saturating_sub(10);
        let max = self
            .message_length_allowance
            .map_or(own, |a| own.max((a as usize).saturating_sub(10)));
        (max, len > own && len <= max)
    }

    /// Negotiation options for a card selected in `protocol` on this
    /// reader, from `base`: no PPS for readers that break on it, and the
    /// extra T=1 timeout. (`dwMaxDataRate` and the rate table come from
    /// [`Resolved::slot_caps`].)
    pub fn negotiate_options(
        &self,
        protocol: Protocol,
        base: NegotiateOptions,
    ) -> NegotiateOptions {
        let mut o = base;
        if self.has(QuirkFlags::NO_PPS) {
            o.no_pps = true;
        }
        if protocol == Protocol::T1 {
            o.extra_timeout_ms = o
                .extra_timeout_ms
                .saturating_add(self.t1_extra_timeout.as_millis() as u64);
        }
        o
    }

    /// The answer the driver gives itself to `apdu`, for readers whose host
    /// software asks the driver for vendor information
    /// ([`QuirkFlags::DRIVER_ANSWERS_VENDOR_APDUS`]).
    pub fn driver_answer(&self, apdu: &[u8]) -> Option<Vec<u8>> {
        if !self.has(QuirkFlags::DRIVER_ANSWERS_VENDOR_APDUS) {
            return None;
        }
        let item = match apdu {
            [0xFF, 0x9A, 0x01, item, 0x00] => *item,
            _ => return None,
        };
        let mut out = match item {
            0x01 => b"KOBIL systems".to_vec(),
            0x03 => b"IDToken".to_vec(),
            0x06 => format_bcd(self.bcd_device).into_bytes(),
            0x07 => VENDOR_DRIVER_VERSION.as_bytes().to_vec(),
            _ => return None,
        };
        out.extend_from_slice(&[0x90, 0x00]);
        Some(out)
    }
}

/// The driver version the KOBIL IDToken software expects (the one libccid
/// reports).
pub const VENDOR_DRIVER_VERSION: &str = "2012.2.7";

/// What card quirks change for a card.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CardEffect {
    /// Ids of the rows applied.
    pub applied: Vec<&'static str>,
    /// T=1 waiting integers fix for SetParameters.
    pub waiting_integers: Option<WaitingIntegersFix>,
}

impl CardEffect {
    /// The `bmWaitingIntegersT1` to send instead of `announced`.
    pub fn waiting_integers_t1(&self, announced: u8) -> u8 {
        match self.waiting_integers {
            Some(f) if f.from == announced => f.to,
            _ => announced,
        }
    }
}

/// The card quirks of the card whose ATR is `atr`.
pub fn card_quirks(atr: &[u8]) -> CardEffect {
    let mut c = CardEffect::default();
    for q in QUIRKS.iter().filter(|q| q.atr == Some(atr)) {
        c.applied.push(q.id);
        if let Some(f) = q.effect.waiting_integers {
            c.waiting_integers = Some(f);
        }
    }
    c
}

/// Maximum length of one pinpad prompt.
pub const PROMPT_LEN: usize = 16;

/// The prompts, in the order the pinpad stores them: enter PIN, new PIN,
/// confirm PIN, PIN accepted, wrong PIN, timeout, tries left (`*` is
/// replaced by the count), insert card, card error, PIN blocked.
const PROMPTS: [(&str, [&str; 10]); 8] = [
    (
        "en",
        [
            "Enter PIN",
            "New PIN",
            "Confirm PIN",
            "PIN accepted",
            "Wrong PIN",
            "Timed out",
            "* tries left",
            "Insert card",
            "Card error",
            "PIN locked",
        ],
    ),
    (
        "fr",
        [
            "Saisir le PIN",
            "Nouveau PIN",
            "Confirmer PIN",
            "PIN accepte",
            "PIN errone",
            "Temps ecoule",
            "* essais restant",
            "Inserer la carte",
            "Erreur de carte",
            "PIN verrouille",
        ],
    ),
    (
        "de",
        [
            "PIN eingeben",
            "Neue PIN",
            "PIN wiederholen",
            "PIN akzeptiert",
            "PIN falsch",
            "Zeitlimit",
            "* Versuche frei",
            "Karte einlegen",
            "Kartenfehler",
            "PIN gesperrt",
        ],
    ),
    (
        "es",
        [
            "Teclee su PIN",
            "PIN nuevo",
            "Repita el PIN",
            "PIN aceptado",
            "PIN erroneo",
            "Tiempo excedido",
            "* intentos mas",
            "Inserte tarjeta",
            "Fallo tarjeta",
            "PIN bloqueado",
        ],
    ),
    (
        "it",
        [
            "Digitare PIN",
            "PIN nuovo",
            "Ripetere PIN",
            "PIN accettato",
            "PIN sbagliato",
            "Tempo esaurito",
            "* tentativi",
            "Inserire carta",
            "Errore carta",
            "PIN bloccato",
        ],
    ),
    (
        "pt",
        [
            "Digite o PIN",
            "PIN novo",
            "Repita o PIN",
            "PIN aceite",
            "PIN errado",
            "Tempo esgotado",
            "* tentativas",
            "Insira o cartao",
            "Erro no cartao",
            "PIN bloqueado",
        ],
    ),
    (
        "nl",
        [
            "Voer PIN in",
            "Nieuwe PIN",
            "Herhaal PIN",
            "PIN aanvaard",
            "Onjuiste PIN",
            "Tijd verstreken",
            "* pogingen over",
            "Plaats kaart",
            "Kaartfout",
            "PIN geblokkeerd",
        ],
    ),
    (
        "tr",
        [
            "PIN girin",
            "Yeni PIN",
            "PIN tekrar",
            "PIN kabul",
            "Hatali PIN",
            "Sure doldu",
            "* hak kaldi",
            "Kart takin",
            "Kart hatasi",
            "PIN bloke",
        ],
    ),
];

/// The escape loading the pinpad prompts of GemPC Pinpad / Véga-Alpha
/// readers: `B2 A0 00 4D 4C` then ten prompts of [`PROMPT_LEN`] bytes,
/// space-padded, in the language of the locale `lang` (its first two
/// letters: fr, de, es, it, pt, nl, tr; English otherwise).
pub fn pinpad_prompts(lang: Option<&str>) -> Vec<u8> {
    let code = lang
        .and_then(|l| l.get(..2))
        .map(|c| c.to_ascii_lowercase())
        .unwrap_or_default();
    let prompts = PROMPTS
        .iter()
        .find(|(c, _)| *c == code)
        .unwrap_or(&PROMPTS[0])
        .1;
    let mut out = vec![0xB2, 0xA0, 0x00, 0x4D, 0x4C];
    for p in prompts {
        let bytes = p.as_bytes();
        let n = bytes.len().min(PROMPT_LEN);
        out.extend_from_slice(bytes.get(..n).unwrap_or(&[]));
        out.resize(out.len() + (PROMPT_LEN - n), b' ');
    }
    out
}

/// Log lines describing what the quirks did: one line per applied row
/// (`applied: <id>: <why>`), one per changed field (raw → adjusted), the
/// flags, and the refusal if any.
pub fn describe(resolved: &Resolved) -> Vec<String> {
    let mut out = Vec::new();
    for id in &resolved.applied {
        let why = QUIRKS.iter().find(|q| q.id == *id).map_or("", |q| q.why);
        out.push(format!("applied: {id}: {why}"));
        for c in resolved.changes.iter().filter(|c| c.quirk == *id) {
            out.push(format!("  {}: {} -> {}", c.field, c.from, c.to));
        }
        if resolved.accepted_bogus.contains(id) {
            out.push("  bogus firmware accepted (ifdDriverOptions 0x04)".to_string());
        }
    }
    if !resolved.flags.is_empty() {
        let names: Vec<&str> = resolved.flags.iter_names().map(|(n, _)| n).collect();
        out.push(format!("flags: {}", names.join(" | ")));
    }
    if let Some(r) = &resolved.refused {
        out.push(format!("refused: {r}"));
    }
    out
}
