//! IFDHControl: PC/SC v2 part 10 features, the reader's own properties and
//! the gated escape path.

use super::device::Device;
use super::slot::Slot;
use crate::error::{Error, Result};
use crate::pinpad::{self, PinModify, PinVerify};
use crate::proto::descriptor::{ExchangeLevel, PinSupport};
use crate::quirks::QuirkFlags;
use std::time::Duration;

/// `SCARD_CTL_CODE(code)` on Linux and macOS pcsc-lite.
pub const fn scard_ctl_code(code: u32) -> u32 {
    0x4200_0000 + code
}

/// PC/SC part 10 feature tags.
#[allow(missing_docs)]
pub mod feature {
    pub const VERIFY_PIN_DIRECT: u8 = 0x06;
    pub const MODIFY_PIN_DIRECT: u8 = 0x07;
    pub const MCT_READER_DIRECT: u8 = 0x08;
    pub const IFD_PIN_PROPERTIES: u8 = 0x0A;
    pub const GET_TLV_PROPERTIES: u8 = 0x12;
    pub const CCID_ESC_COMMAND: u8 = 0x13;
}

/// The IOCTL of a part 10 feature.
pub const fn feature_ioctl(tag: u8) -> u32 {
    scard_ctl_code(0x0033_0000 + tag as u32)
}

/// CM_IOCTL_GET_FEATURE_REQUEST.
pub const CM_IOCTL_GET_FEATURE_REQUEST: u32 = scard_ctl_code(3400);
/// The Windows value of SCARD_CTL_CODE(3400), sent by RDP clients.
pub const CM_IOCTL_GET_FEATURE_REQUEST_WINDOWS: u32 = 0x0031_3520;
/// IOCTL_SMARTCARD_VENDOR_IFD_EXCHANGE: raw PC_to_RDR_Escape.
pub const IOCTL_SMARTCARD_VENDOR_IFD_EXCHANGE: u32 = scard_ctl_code(1);
/// The reader's USB path.
pub const IOCTL_GET_USB_PATH: u32 = scard_ctl_code(3601);

/// Timeout of an application's Escape command.
const ESCAPE_TIMEOUT: Duration = Duration::from_secs(30);

/// Part 10 TLV property tags.
#[allow(missing_docs)]
pub mod property {
    pub const W_LCD_LAYOUT: u8 = 0x01;
    pub const B_ENTRY_VALIDATION_CONDITION: u8 = 0x02;
    pub const B_TIME_OUT2: u8 = 0x03;
    pub const W_LCD_MAX_CHARACTERS: u8 = 0x04;
    pub const W_LCD_MAX_LINES: u8 = 0x05;
    pub const B_MIN_PIN_SIZE: u8 = 0x06;
    pub const B_MAX_PIN_SIZE: u8 = 0x07;
    pub const S_FIRMWARE_ID: u8 = 0x08;
    pub const B_PPDU_SUPPORT: u8 = 0x09;
    pub const DW_MAX_APDU_DATA_SIZE: u8 = 0x0A;
    pub const W_ID_VENDOR: u8 = 0x0B;
    pub const W_ID_PRODUCT: u8 = 0x0C;
}

/// The features this slot advertises, as (tag, ioctl) pairs.
pub fn features(slot: &Slot) -> Vec<(u8, u32)> {
    let mut v = Vec::new();
    let pin = slot.device.caps().descriptor.pin_support();
    if pin.contains(PinSupport::VERIFY) {
        v.push((
            feature::VERIFY_PIN_DIRECT,
            feature_ioctl(feature::VERIFY_PIN_DIRECT),
        ));
    }
    if pin.contains(PinSupport::MODIFY) {
        v.push((
            feature::MODIFY_PIN_DIRECT,
            feature_ioctl(feature::MODIFY_PIN_DIRECT),
        ));
    }
    if !pin.is_empty() {
        v.push((
            feature::IFD_PIN_PROPERTIES,
            feature_ioctl(feature::IFD_PIN_PROPERTIES),
        ));
    }
    v.push((
        feature::GET_TLV_PROPERTIES,
        feature_ioctl(feature::GET_TLV_PROPERTIES),
    ));
    if slot.device.quirks().has(QuirkFlags::MCT_READER_DIRECT) {
        v.push((
            feature::MCT_READER_DIRECT,
            feature_ioctl(feature::MCT_READER_DIRECT),
        ));
    }
    if slot.escape_allowed() {
        v.push((
            feature::CCID_ESC_COMMAND,
            IOCTL_SMARTCARD_VENDOR_IFD_EXCHANGE,
        ));
    }
    v
}

/// The TLV properties of the reader (FEATURE_GET_TLV_PROPERTIES).
pub fn tlv_properties(slot: &Slot) -> Vec<u8> {
    let dev: &Device = &slot.device;
    // Gemalto readers tell their firmware version through an escape.
    let firmware_id = if dev.quirks().has(QuirkFlags::FIRMWARE_ID_TLV) {
        slot.escape(&crate::quirks::GEMALTO_FIRMWARE_ID_ESCAPE, ESCAPE_TIMEOUT)
            .map_err(|e| log::info!("firmware id escape failed: {e}"))
            .ok()
            .map(|mut v| {
                v.truncate(255);
                v
            })
    } else {
        None
    };
    let d = &dev.caps().descriptor;
    let mut out = Vec::new();
    let mut put = |tag: u8, value: &[u8]| {
        out.push(tag);
        out.push(value.len() as u8);
        out.extend_from_slice(value);
    };
    put(property::W_LCD_LAYOUT, &d.wLcdLayout.to_le_bytes());
    if d.wLcdLayout != 0 {
        put(
            property::W_LCD_MAX_CHARACTERS,
            &(d.wLcdLayout & 0xFF).to_le_bytes(),
        );
        put(
            property::W_LCD_MAX_LINES,
            &(d.wLcdLayout >> 8).to_le_bytes(),
        );
    }
    put(property::B_TIME_OUT2, &[0]);
    if let Some(fw) = firmware_id.as_deref() {
        put(property::S_FIRMWARE_ID, fw);
    }
    if let Some(t) = dev.quirks().pin.tlv {
        put(property::B_MIN_PIN_SIZE, &[t.min_pin_size]);
        put(property::B_MAX_PIN_SIZE, &[t.max_pin_size]);
        if let Some(c) = t.entry_validation {
            put(property::B_ENTRY_VALIDATION_CONDITION, &[c]);
        }
    }
    put(property::B_PPDU_SUPPORT, &[u8::from(slot.escape_allowed())]);
    put(property::W_ID_VENDOR, &dev.info().vendor_id.to_le_bytes());
    put(property::W_ID_PRODUCT, &dev.info().product_id.to_le_bytes());
    let level = dev.caps().level();
    let max_apdu: u32 = if level == ExchangeLevel::ExtendedApdu || level == ExchangeLevel::Tpdu {
        0x10000
    } else {
        0
    };
    put(property::DW_MAX_APDU_DATA_SIZE, &max_apdu.to_le_bytes());
    out
}

/// Handles one control code; returns the bytes for the caller's buffer.
/// `rx_capacity` is checked before anything is produced.
pub fn control(slot: &Slot, code: u32, tx: &[u8], rx_capacity: usize) -> Result<Vec<u8>> {
    let out = match code {
        CM_IOCTL_GET_FEATURE_REQUEST | CM_IOCTL_GET_FEATURE_REQUEST_WINDOWS => {
            let mut out = Vec::new();
            for (tag, ioctl) in features(slot) {
                out.push(tag);
                out.push(4);
                out.extend_from_slice(&ioctl.to_be_bytes());
            }
            out
        }
        c if c == feature_ioctl(feature::GET_TLV_PROPERTIES) => tlv_properties(slot),
        c if c == feature_ioctl(feature::IFD_PIN_PROPERTIES) => {
            let d = &slot.device.caps().descriptor;
            if d.bPINSupport == 0 {
                return Err(Error::NotSupported("the reader has no pinpad".into()));
            }
            let validation = slot
                .device
                .quirks()
                .pin
                .properties_validation
                .unwrap_or(0x07);
            pinpad::pin_properties(d.wLcdLayout, validation).to_vec()
        }
        c if c == feature_ioctl(feature::VERIFY_PIN_DIRECT) => {
            if !slot
                .device
                .caps()
                .descriptor
                .pin_support()
                .contains(PinSupport::VERIFY)
            {
                return Err(Error::NotSupported("the reader cannot verify PINs".into()));
            }
            if rx_capacity < 2 {
                return Err(Error::InsufficientBuffer {
                    need: 2,
                    have: rx_capacity,
                });
            }
            let mut v = PinVerify::parse(tx).map_err(|e| {
                log::info!("VERIFY_PIN_DIRECT: {e}");
                Error::NotSupported(e.to_string())
            })?;
            let q = slot.device.quirks();
            let gemalto = q
                .gemalto_features
                .as_deref()
                .and_then(pinpad::GemaltoFeatures::parse);
            pinpad::fixes::verify(&mut v, q.flags, gemalto.as_ref());
            if let Some(ms) = q.pin.verify_delay_ms {
                // The reader still sees the Enter key of the previous entry.
                std::thread::sleep(std::time::Duration::from_millis(u64::from(ms)));
            }
            if q.has(QuirkFlags::PIN_VERIFY_PREPARE_ESCAPE) {
                slot.escape(&crate::quirks::SPR532_VERIFY_ESCAPE, ESCAPE_TIMEOUT)?;
            }
            slot.secure(&v.ccid_data(), PinVerify::APDU_OFFSET, v.timeout())?
        }
        c if c == feature_ioctl(feature::MODIFY_PIN_DIRECT) => {
            if !slot
                .device
                .caps()
                .descriptor
                .pin_support()
                .contains(PinSupport::MODIFY)
            {
                return Err(Error::NotSupported("the reader cannot modify PINs".into()));
            }
            if rx_capacity < 2 {
                return Err(Error::InsufficientBuffer {
                    need: 2,
                    have: rx_capacity,
                });
            }
            let mut m = PinModify::parse(tx).map_err(|e| {
                log::info!("MODIFY_PIN_DIRECT: {e}");
                Error::NotSupported(e.to_string())
            })?;
            let q = slot.device.quirks();
            let gemalto = q
                .gemalto_features
                .as_deref()
                .and_then(pinpad::GemaltoFeatures::parse);
            let data = pinpad::fixes::modify(&mut m, q.flags, gemalto.as_ref());
            let offset = data.len() - m.apdu.len();
            slot.secure(&data, offset, m.timeout())?
        }
        c if c == feature_ioctl(feature::MCT_READER_DIRECT) => {
            if !slot.device.quirks().has(QuirkFlags::MCT_READER_DIRECT) {
                return Err(Error::NotSupported("not a SECODER reader".into()));
            }
            // Only the SECODER commands: CLA 20, INS 70..=74, P1 = P2 = 0,
            // Lind = 0.
            match tx {
                [0x20, 0x70..=0x74, 0x00, 0x00, 0x00, ..] => {}
                _ => return Err(Error::NotSupported("MCT command refused".into())),
            }
            let answer = slot.escape(tx, ESCAPE_TIMEOUT)?;
            if answer.len() > rx_capacity {
                return Err(Error::InsufficientBuffer {
                    need: answer.len(),
                    have: rx_capacity,
                });
            }
            answer
        }
        IOCTL_SMARTCARD_VENDOR_IFD_EXCHANGE => {
            if !slot.escape_permitted(tx) {
                log::info!("Escape refused: ifdDriverOptions bit 0x01 is not set");
                return Err(Error::NotSupported(
                    "escape commands are not enabled".into(),
                ));
            }
            let answer = slot.escape(tx, ESCAPE_TIMEOUT)?;
            if answer.len() > rx_capacity {
                return Err(Error::InsufficientBuffer {
                    need: answer.len(),
                    have: rx_capacity,
                });
            }
            answer
        }
        IOCTL_GET_USB_PATH => {
            let info = slot.device.info();
            if info.port_path.is_empty() {
                return Err(Error::NotSupported("USB path unknown".into()));
            }
            let mut s = format!(
                "{}:{}.{}",
                info.port_path, info.configuration, info.interface_number
            )
            .into_bytes();
            s.push(0);
            s
        }
        other => {
            log::info!("control code {other:#010x} not supported");
            return Err(Error::NotSupported(format!("control code {other:#x}")));
        }
    };
    if out.len() > rx_capacity {
        return Err(Error::InsufficientBuffer {
            need: out.len(),
            have: rx_capacity,
        });
    }
    Ok(out)
}
