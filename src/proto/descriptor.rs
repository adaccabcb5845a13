//! The CCID class descriptor (CCID Rev 1.1 §5.1, 54 bytes, type 0x21) and
//! the bits of `dwFeatures` and `bPINSupport`.

use super::codec::{DecodeError, Reader};
use bitflags::bitflags;

/// Length of a CCID class descriptor.
pub const CCID_DESCRIPTOR_LEN: usize = 54;

bitflags! {
    /// `dwFeatures` (CCID Rev 1.1 §5.1, offset 40). The exchange level lives
    /// in bits 16..=18 and is read through [`CcidDescriptor::exchange_level`].
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub struct Features: u32 {
        /// Automatic parameter configuration based on ATR data.
        const AUTO_CONF_ATR = 0x0000_0002;
        /// Automatic activation of ICC on inserting.
        const AUTO_ACTIVATION = 0x0000_0004;
        /// Automatic ICC voltage selection.
        const AUTO_VOLTAGE = 0x0000_0008;
        /// Automatic ICC clock frequency change.
        const AUTO_CLOCK = 0x0000_0010;
        /// Automatic baud rate change.
        const AUTO_BAUD = 0x0000_0020;
        /// Automatic parameters negotiation made by the CCID (proprietary).
        const AUTO_PPS_PROP = 0x0000_0040;
        /// Automatic PPS made by the CCID according to the active parameters.
        const AUTO_PPS_CUR = 0x0000_0080;
        /// CCID can set ICC in clock stop mode.
        const CLOCK_STOP = 0x0000_0100;
        /// NAD value other than 00 accepted (T=1).
        const NAD_OTHER_THAN_0 = 0x0000_0200;
        /// Automatic IFSD exchange as first exchange (T=1).
        const AUTO_IFSD = 0x0000_0400;
        /// ICCD token.
        const ICCD_TOKEN = 0x0000_0800;
        /// TPDU level exchange.
        const LEVEL_TPDU = 0x0001_0000;
        /// Short APDU level exchange.
        const LEVEL_SHORT_APDU = 0x0002_0000;
        /// Short and extended APDU level exchange.
        const LEVEL_EXTENDED_APDU = 0x0004_0000;
        /// USB wake up signaling supported.
        const USB_WAKE_UP = 0x0010_0000;
        // Unknown bits are kept.
        const _ = !0;
    }
}

bitflags! {
    /// `bPINSupport` (offset 52).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub struct PinSupport: u8 {
        /// PIN verification supported.
        const VERIFY = 0x01;
        /// PIN modification supported.
        const MODIFY = 0x02;
        const _ = !0;
    }
}

bitflags! {
    /// `dwProtocols` (offset 6).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub struct Protocols: u32 {
        /// T=0.
        const T0 = 0x0000_0001;
        /// T=1.
        const T1 = 0x0000_0002;
        const _ = !0;
    }
}

/// How the reader exchanges data with the card (`dwFeatures` bits 16..=18).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExchangeLevel {
    /// Character level: the host drives the card protocol byte by byte.
    Character,
    /// TPDU level: the host builds T=0 TPDUs / T=1 blocks.
    Tpdu,
    /// Short APDU level.
    ShortApdu,
    /// Short and extended APDU level.
    ExtendedApdu,
}

impl ExchangeLevel {
    /// Decodes the level from `dwFeatures`. A reader setting several level
    /// bits gets the highest one, as the reference does by masking in order.
    pub fn from_features(features: u32) -> Self {
        match features & 0x0007_0000 {
            0 => ExchangeLevel::Character,
            f if f & 0x0004_0000 != 0 => ExchangeLevel::ExtendedApdu,
            f if f & 0x0002_0000 != 0 => ExchangeLevel::ShortApdu,
            _ => ExchangeLevel::Tpdu,
        }
    }

    /// The `dwFeatures` bits for this level.
    pub fn feature_bits(self) -> u32 {
        match self {
            ExchangeLevel::Character => 0,
            ExchangeLevel::Tpdu => 0x0001_0000,
            ExchangeLevel::ShortApdu => 0x0002_0000,
            ExchangeLevel::ExtendedApdu => 0x0004_0000,
        }
    }

    /// A short name for logs and JSON.
    pub fn name(self) -> &'static str {
        match self {
            ExchangeLevel::Character => "character",
            ExchangeLevel::Tpdu => "tpdu",
            ExchangeLevel::ShortApdu => "short-apdu",
            ExchangeLevel::ExtendedApdu => "extended-apdu",
        }
    }
}

/// A decoded CCID class descriptor. Field names follow the specification.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(non_snake_case, missing_docs)]
pub struct CcidDescriptor {
    pub bLength: u8,
    pub bDescriptorType: u8,
    pub bcdCCID: u16,
    pub bMaxSlotIndex: u8,
    pub bVoltageSupport: u8,
    pub dwProtocols: u32,
    /// kHz.
    pub dwDefaultClock: u32,
    /// kHz.
    pub dwMaximumClock: u32,
    pub bNumClockSupported: u8,
    /// bps.
    pub dwDataRate: u32,
    /// bps.
    pub dwMaxDataRate: u32,
    pub bNumDataRatesSupported: u8,
    pub dwMaxIFSD: u32,
    pub dwSynchProtocols: u32,
    pub dwMechanical: u32,
    pub dwFeatures: u32,
    pub dwMaxCCIDMessageLength: u32,
    pub bClassGetResponse: u8,
    pub bClassEnvelope: u8,
    pub wLcdLayout: u16,
    pub bPINSupport: u8,
    pub bMaxCCIDBusySlots: u8,
}

impl CcidDescriptor {
    /// Decodes a 54-byte class descriptor. The type byte is accepted as 0x21
    /// (CCID) or 0xFF (some proprietary-class readers).
    pub fn parse(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        let d = CcidDescriptor {
            bLength: r.u8("bLength")?,
            bDescriptorType: r.u8("bDescriptorType")?,
            bcdCCID: r.u16_le("bcdCCID")?,
            bMaxSlotIndex: r.u8("bMaxSlotIndex")?,
            bVoltageSupport: r.u8("bVoltageSupport")?,
            dwProtocols: r.u32_le("dwProtocols")?,
            dwDefaultClock: r.u32_le("dwDefaultClock")?,
            dwMaximumClock: r.u32_le("dwMaximumClock")?,
            bNumClockSupported: r.u8("bNumClockSupported")?,
            dwDataRate: r.u32_le("dwDataRate")?,
            dwMaxDataRate: r.u32_le("dwMaxDataRate")?,
            bNumDataRatesSupported: r.u8("bNumDataRatesSupported")?,
            dwMaxIFSD: r.u32_le("dwMaxIFSD")?,
            dwSynchProtocols: r.u32_le("dwSynchProtocols")?,
            dwMechanical: r.u32_le("dwMechanical")?,
            dwFeatures: r.u32_le("dwFeatures")?,
            dwMaxCCIDMessageLength: r.u32_le("dwMaxCCIDMessageLength")?,
            bClassGetResponse: r.u8("bClassGetResponse")?,
            bClassEnvelope: r.u8("bClassEnvelope")?,
            wLcdLayout: r.u16_le("wLcdLayout")?,
            bPINSupport: r.u8("bPINSupport")?,
            bMaxCCIDBusySlots: r.u8("bMaxCCIDBusySlots")?,
        };
        if usize::from(d.bLength) != CCID_DESCRIPTOR_LEN {
            return Err(DecodeError::Invalid {
                what: "bLength",
                value: d.bLength.into(),
            });
        }
        r.finish("CCID class descriptor")?;
        Ok(d)
    }

    /// Encodes the descriptor back to its 54 bytes.
    pub fn to_bytes(&self) -> [u8; CCID_DESCRIPTOR_LEN] {
        let mut v = Vec::with_capacity(CCID_DESCRIPTOR_LEN);
        v.push(self.bLength);
        v.push(self.bDescriptorType);
        v.extend_from_slice(&self.bcdCCID.to_le_bytes());
        v.push(self.bMaxSlotIndex);
        v.push(self.bVoltageSupport);
        for dw in [self.dwProtocols, self.dwDefaultClock, self.dwMaximumClock] {
            v.extend_from_slice(&dw.to_le_bytes());
        }
        v.push(self.bNumClockSupported);
        for dw in [self.dwDataRate, self.dwMaxDataRate] {
            v.extend_from_slice(&dw.to_le_bytes());
        }
        v.push(self.bNumDataRatesSupported);
        for dw in [
            self.dwMaxIFSD,
            self.dwSynchProtocols,
            self.dwMechanical,
            self.dwFeatures,
            self.dwMaxCCIDMessageLength,
        ] {
            v.extend_from_slice(&dw.to_le_bytes());
        }
        v.push(self.bClassGetResponse);
        v.push(self.bClassEnvelope);
        v.extend_from_slice(&self.wLcdLayout.to_le_bytes());
        v.push(self.bPINSupport);
        v.push(self.bMaxCCIDBusySlots);
        let mut out = [0u8; CCID_DESCRIPTOR_LEN];
        out.copy_from_slice(&v);
        out
    }

    /// `dwFeatures` as flags.
    pub fn features(&self) -> Features {
        Features::from_bits_retain(self.dwFeatures)
    }

    /// The exchange level.
    pub fn exchange_level(&self) -> ExchangeLevel {
        ExchangeLevel::from_features(self.dwFeatures)
    }

    /// `bPINSupport` as flags.
    pub fn pin_support(&self) -> PinSupport {
        PinSupport::from_bits_retain(self.bPINSupport)
    }

    /// `dwProtocols` as flags.
    pub fn protocols(&self) -> Protocols {
        Protocols::from_bits_retain(self.dwProtocols)
    }

    /// Number of slots (`bMaxSlotIndex + 1`).
    pub fn slot_count(&self) -> usize {
        usize::from(self.bMaxSlotIndex) + 1
    }

    /// A descriptor with typical values, for tests and virtual readers.
    pub fn example() -> Self {
        CcidDescriptor {
            bLength: 54,
            bDescriptorType: 0x21,
            bcdCCID: 0x0110,
            bMaxSlotIndex: 0,
            bVoltageSupport: 0x07,
            dwProtocols: 0x03,
            dwDefaultClock: 4000,
            dwMaximumClock: 4000,
            bNumClockSupported: 0,
            dwDataRate: 10752,
            dwMaxDataRate: 412_903,
            bNumDataRatesSupported: 0,
            dwMaxIFSD: 254,
            dwSynchProtocols: 0,
            dwMechanical: 0,
            dwFeatures: 0x0004_04BA,
            dwMaxCCIDMessageLength: 271,
            bClassGetResponse: 0xFF,
            bClassEnvelope: 0xFF,
            wLcdLayout: 0,
            bPINSupport: 0,
            bMaxCCIDBusySlots: 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The descriptor of the FunctionFS reader in gadget-testbed.md §3.
    #[rustfmt::skip]
    const FFS: [u8; 54] = [
        0x36, 0x21, 0x10, 0x01, 0x00, 0x07, 0x03, 0x00, 0x00, 0x00,
        0xa0, 0x0f, 0x00, 0x00, 0xa0, 0x0f, 0x00, 0x00, 0x00,
        0x00, 0x2a, 0x00, 0x00, 0xe7, 0x4c, 0x06, 0x00, 0x00,
        0xfe, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0xba, 0x04, 0x04, 0x00, 0x0f, 0x01, 0x00, 0x00, 0xff, 0xff, 0x00, 0x00, 0x00, 0x01,
    ];

    #[test]
    fn parses_and_round_trips() {
        let d = CcidDescriptor::parse(&FFS).unwrap();
        assert_eq!(d.bcdCCID, 0x0110);
        assert_eq!(d.dwDefaultClock, 4000);
        assert_eq!(d.dwDataRate, 10752);
        assert_eq!(d.dwMaxDataRate, 412_903);
        assert_eq!(d.dwMaxIFSD, 254);
        assert_eq!(d.dwFeatures, 0x000404BA);
        assert_eq!(d.dwMaxCCIDMessageLength, 271);
        assert_eq!(d.exchange_level(), ExchangeLevel::ExtendedApdu);
        assert_eq!(d.bMaxCCIDBusySlots, 1);
        assert_eq!(d.to_bytes(), FFS);
    }

    #[test]
    fn rejects_wrong_length() {
        assert!(CcidDescriptor::parse(&FFS[..53]).is_err());
        let mut long = FFS.to_vec();
        long.push(0);
        assert!(CcidDescriptor::parse(&long).is_err());
        let mut bad = FFS;
        bad[0] = 0x35;
        assert!(CcidDescriptor::parse(&bad).is_err());
    }

    #[test]
    fn exchange_levels() {
        assert_eq!(
            ExchangeLevel::from_features(0x0001_0230),
            ExchangeLevel::Tpdu
        );
        assert_eq!(
            ExchangeLevel::from_features(0x0002_0000),
            ExchangeLevel::ShortApdu
        );
        assert_eq!(
            ExchangeLevel::from_features(0x0000_00BA),
            ExchangeLevel::Character
        );
        assert_eq!(
            ExchangeLevel::from_features(0x0006_0000),
            ExchangeLevel::ExtendedApdu
        );
    }
}
