//! Secure PIN entry (PC/SC v2 part 10, CCID §6.1.11): the caller's
//! `PIN_VERIFY_STRUCTURE` / `PIN_MODIFY_STRUCTURE` (pcsc-lite `reader.h`,
//! packed, multi-byte fields little-endian) parsed with every length
//! checked, and turned into the `abPINDataStructure` of `PC_to_RDR_Secure`.
//!
//! The PIN itself is typed on the reader and never passes through the host;
//! the APDU template the structures carry is still treated as sensitive:
//! it is zeroized after use and masked in frame dumps.

#![forbid(unsafe_code)]

use crate::proto::codec::Reader;
use std::time::Duration;
use thiserror::Error;
use zeroize::Zeroizing;

/// Bytes before `abData` in PIN_VERIFY_STRUCTURE.
pub const VERIFY_HEADER: usize = 19;
/// Bytes before `abData` in PIN_MODIFY_STRUCTURE.
pub const MODIFY_HEADER: usize = 24;

/// A malformed PIN structure.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PinError {
    /// Shorter than the fixed part plus a 4-byte APDU header.
    #[error("PIN structure of {len} bytes is shorter than {min}")]
    Short {
        /// Length received.
        len: usize,
        /// Minimum.
        min: usize,
    },
    /// `ulDataLength` disagrees with the structure's length.
    #[error("ulDataLength {declared} does not match the {actual} bytes of APDU")]
    DataLength {
        /// Declared.
        declared: u32,
        /// Present.
        actual: usize,
    },
    /// `bNumberMessage` is not 0..=3 or 0xFF.
    #[error("bNumberMessage {0} not allowed")]
    NumberMessage(u8),
}

/// Which PIN operation (`bPINOperation`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PinOperation {
    /// Verification.
    Verify = 0,
    /// Modification.
    Modify = 1,
}

/// A parsed PIN_VERIFY_STRUCTURE.
#[derive(Clone, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct PinVerify {
    pub timer_out: u8,
    pub timer_out2: u8,
    pub format_string: u8,
    pub pin_block_string: u8,
    pub pin_length_format: u8,
    pub pin_max_extra_digit: u16,
    pub entry_validation_condition: u8,
    pub number_message: u8,
    pub lang_id: u16,
    pub msg_index: u8,
    pub teo_prologue: [u8; 3],
    /// The APDU template (zeroized on drop).
    pub apdu: Zeroizing<Vec<u8>>,
}

/// A parsed PIN_MODIFY_STRUCTURE.
#[derive(Clone, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct PinModify {
    pub timer_out: u8,
    pub timer_out2: u8,
    pub format_string: u8,
    pub pin_block_string: u8,
    pub pin_length_format: u8,
    pub insertion_offset_old: u8,
    pub insertion_offset_new: u8,
    pub pin_max_extra_digit: u16,
    pub confirm_pin: u8,
    pub entry_validation_condition: u8,
    pub number_message: u8,
    pub lang_id: u16,
    pub msg_index: [u8; 3],
    pub teo_prologue: [u8; 3],
    /// The APDU template (zeroized on drop).
    pub apdu: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for PinVerify {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PinVerify")
            .field("apdu_len", &self.apdu.len())
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for PinModify {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PinModify")
            .field("apdu_len", &self.apdu.len())
            .finish_non_exhaustive()
    }
}

/// Reads `ulDataLength` at `at` and returns the data length when it agrees
/// with the structure's size, little-endian first; a big-endian value is
/// accepted too (callers filling the structure in host order on a
/// big-endian machine), and then the 16-bit fields are big-endian as well.
fn data_length(tx: &[u8], at: usize) -> Result<(usize, bool), PinError> {
    let b = tx.get(at..at + 4).ok_or(PinError::Short {
        len: tx.len(),
        min: at + 4,
    })?;
    let le = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    let be = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    let actual = tx.len() - (at + 4);
    if le as usize == actual {
        Ok((actual, false))
    } else if be as usize == actual {
        Ok((actual, true))
    } else {
        Err(PinError::DataLength {
            declared: le,
            actual,
        })
    }
}

fn u16_of(r: &mut Reader<'_>, big_endian: bool) -> u16 {
    let v = r.u16_le("u16").unwrap_or(0);
    if big_endian {
        v.swap_bytes()
    } else {
        v
    }
}

/// The reader's bEntryValidationCondition must be 1..=7; some readers crash
/// on anything else, so 0 or larger values become 0x02 (validation key).
pub fn sanitize_validation(cond: u8) -> u8 {
    if cond == 0 || cond > 7 {
        0x02
    } else {
        cond
    }
}

impl PinVerify {
    /// Parses the caller's structure.
    pub fn parse(tx: &[u8]) -> Result<PinVerify, PinError> {
        if tx.len() < VERIFY_HEADER + 4 {
            return Err(PinError::Short {
                len: tx.len(),
                min: VERIFY_HEADER + 4,
            });
        }
        let (_, be) = data_length(tx, 15)?;
        let mut r = Reader::new(tx);
        let byte = |r: &mut Reader<'_>| r.u8("b").unwrap_or(0);
        let v = PinVerify {
            timer_out: byte(&mut r),
            timer_out2: byte(&mut r),
            format_string: byte(&mut r),
            pin_block_string: byte(&mut r),
            pin_length_format: byte(&mut r),
            pin_max_extra_digit: u16_of(&mut r, be),
            entry_validation_condition: byte(&mut r),
            number_message: byte(&mut r),
            lang_id: u16_of(&mut r, be),
            msg_index: byte(&mut r),
            teo_prologue: r.array::<3>("bTeoPrologue").unwrap_or([0; 3]),
            apdu: {
                let _ = r.skip(4, "ulDataLength");
                Zeroizing::new(r.rest().to_vec())
            },
        };
        Ok(v)
    }

    /// `abData` of PC_to_RDR_Secure: bPINOperation then the CCID PIN
    /// verification structure (the PC/SC one without bTimerOut2 and
    /// ulDataLength).
    pub fn ccid_data(&self) -> Zeroizing<Vec<u8>> {
        let mut d = Zeroizing::new(Vec::with_capacity(15 + self.apdu.len()));
        d.push(PinOperation::Verify as u8);
        d.push(self.timer_out);
        d.push(self.format_string);
        d.push(self.pin_block_string);
        d.push(self.pin_length_format);
        d.extend_from_slice(&self.pin_max_extra_digit.to_le_bytes());
        d.push(sanitize_validation(self.entry_validation_condition));
        d.push(self.number_message);
        d.extend_from_slice(&self.lang_id.to_le_bytes());
        d.push(self.msg_index);
        d.extend_from_slice(&self.teo_prologue);
        d.extend_from_slice(&self.apdu);
        d
    }

    /// Offset of the APDU template inside [`PinVerify::ccid_data`].
    pub const APDU_OFFSET: usize = 15;

    /// How long the reader may take (the user types): max(90 s, bTimerOut + 10 s).
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(u64::from(self.timer_out).saturating_add(10).max(90))
    }
}

impl PinModify {
    /// Parses the caller's structure.
    pub fn parse(tx: &[u8]) -> Result<PinModify, PinError> {
        if tx.len() < MODIFY_HEADER + 4 {
            return Err(PinError::Short {
                len: tx.len(),
                min: MODIFY_HEADER + 4,
            });
        }
        let (_, be) = data_length(tx, 20)?;
        let mut r = Reader::new(tx);
        let byte = |r: &mut Reader<'_>| r.u8("b").unwrap_or(0);
        let m = PinModify {
            timer_out: byte(&mut r),
            timer_out2: byte(&mut r),
            format_string: byte(&mut r),
            pin_block_string: byte(&mut r),
            pin_length_format: byte(&mut r),
            insertion_offset_old: byte(&mut r),
            insertion_offset_new: byte(&mut r),
            pin_max_extra_digit: u16_of(&mut r, be),
            confirm_pin: byte(&mut r),
            entry_validation_condition: byte(&mut r),
            number_message: byte(&mut r),
            lang_id: u16_of(&mut r, be),
            msg_index: r.array::<3>("bMsgIndex").unwrap_or([0; 3]),
            teo_prologue: r.array::<3>("bTeoPrologue").unwrap_or([0; 3]),
            apdu: {
                let _ = r.skip(4, "ulDataLength");
                Zeroizing::new(r.rest().to_vec())
            },
        };
        if m.number_message > 3 && m.number_message != 0xFF {
            return Err(PinError::NumberMessage(m.number_message));
        }
        Ok(m)
    }

    /// `abData` of PC_to_RDR_Secure for a modification: bMsgIndex2 is left
    /// out when bNumberMessage is 0 and bMsgIndex3 when it is below 3, as
    /// readers expect.
    pub fn ccid_data(&self) -> Zeroizing<Vec<u8>> {
        let mut d = Zeroizing::new(Vec::with_capacity(20 + self.apdu.len()));
        d.push(PinOperation::Modify as u8);
        d.push(self.timer_out);
        d.push(self.format_string);
        d.push(self.pin_block_string);
        d.push(self.pin_length_format);
        d.push(self.insertion_offset_old);
        d.push(self.insertion_offset_new);
        d.extend_from_slice(&self.pin_max_extra_digit.to_le_bytes());
        d.push(self.confirm_pin);
        d.push(sanitize_validation(self.entry_validation_condition));
        d.push(self.number_message);
        d.extend_from_slice(&self.lang_id.to_le_bytes());
        d.push(self.msg_index[0]);
        if self.number_message != 0 {
            d.push(self.msg_index[1]);
        }
        if self.number_message >= 3 && self.number_message != 0xFF {
            d.push(self.msg_index[2]);
        }
        d.extend_from_slice(&self.teo_prologue);
        d.extend_from_slice(&self.apdu);
        d
    }

    /// Offset of the APDU template inside [`PinModify::ccid_data`].
    pub fn apdu_offset(&self) -> usize {
        self.ccid_data().len() - self.apdu.len()
    }

    /// How long the reader may take: max(90 s, bTimerOut + 10 s).
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(u64::from(self.timer_out).saturating_add(10).max(90))
    }
}

/// The status word an application gets for a reader's PIN-entry error, or
/// `None` when the error is not a PIN-entry outcome.
pub fn pin_error_sw(b_error: u8) -> Option<[u8; 2]> {
    match b_error {
        // PIN entry cancelled by the user.
        0xEF => Some([0x64, 0x01]),
        // PIN entry timed out.
        0xF0 => Some([0x64, 0x00]),
        _ => None,
    }
}

/// FEATURE_IFD_PIN_PROPERTIES: wLcdLayout, bEntryValidationCondition,
/// bTimeOut2.
pub fn pin_properties(lcd_layout: u16, entry_validation: u8) -> [u8; 4] {
    let l = lcd_layout.to_le_bytes();
    [l[0], l[1], entry_validation, 0]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verify_struct(apdu: &[u8]) -> Vec<u8> {
        let mut v = vec![
            0x1E, 0x00, 0x82, 0x47, 0x04, 0x08, 0x04, 0x02, 0x01, 0x09, 0x04, 0x00, 0, 0, 0,
        ];
        v.extend_from_slice(&(apdu.len() as u32).to_le_bytes());
        v.extend_from_slice(apdu);
        v
    }

    #[test]
    fn verify_round_trip_to_ccid() {
        let apdu = [
            0x00, 0x20, 0x00, 0x81, 0x08, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
        ];
        let v = PinVerify::parse(&verify_struct(&apdu)).unwrap();
        assert_eq!(v.timer_out, 0x1E);
        assert_eq!(v.pin_max_extra_digit, 0x0408);
        assert_eq!(v.lang_id, 0x0409);
        let d = v.ccid_data();
        assert_eq!(
            &d[..15],
            &[0, 0x1E, 0x82, 0x47, 0x04, 0x08, 0x04, 0x02, 0x01, 0x09, 0x04, 0, 0, 0, 0]
        );
        assert_eq!(&d[PinVerify::APDU_OFFSET..], &apdu);
        assert_eq!(v.timeout(), Duration::from_secs(90));
    }

    #[test]
    fn big_endian_data_length_accepted() {
        let apdu = [0x00, 0x20, 0x00, 0x81];
        let mut s = verify_struct(&apdu);
        s[15..19].copy_from_slice(&4u32.to_be_bytes());
        // 16-bit fields then read big-endian too.
        s[5] = 0x08;
        s[6] = 0x04;
        let v = PinVerify::parse(&s).unwrap();
        assert_eq!(v.pin_max_extra_digit, 0x0804);
    }

    #[test]
    fn malformed_structures_are_refused() {
        assert!(matches!(
            PinVerify::parse(&[0; 22]),
            Err(PinError::Short { .. })
        ));
        let mut s = verify_struct(&[0, 0x20, 0, 0x81]);
        s[15] = 9;
        assert!(matches!(
            PinVerify::parse(&s),
            Err(PinError::DataLength { .. })
        ));
        s[15] = 0xFF;
        s[16] = 0xFF;
        s[17] = 0xFF;
        s[18] = 0xFF;
        assert!(PinVerify::parse(&s).is_err());
        assert!(matches!(
            PinModify::parse(&[0; 27]),
            Err(PinError::Short { .. })
        ));
    }

    #[test]
    fn modify_message_indexes() {
        let mut s = vec![
            0x00, 0x00, 0x82, 0x47, 0x04, 0x00, 0x08, 0x04, 0x08, 0x03, 0x02, 0x00, 0x09, 0x04, 1,
            2, 3, 0, 0, 0,
        ];
        let apdu = [0x00, 0x24, 0x00, 0x81, 0x10];
        s.extend_from_slice(&(apdu.len() as u32).to_le_bytes());
        s.extend_from_slice(&apdu);
        let m = PinModify::parse(&s).unwrap();
        assert_eq!(m.number_message, 0);
        let d = m.ccid_data();
        // bMsgIndex1 only.
        assert_eq!(d.len(), 1 + 13 + 1 + 3 + apdu.len());
        assert_eq!(m.apdu_offset(), 18);
        s[11] = 3;
        let d3 = PinModify::parse(&s).unwrap().ccid_data();
        assert_eq!(d3.len(), d.len() + 2);
        s[11] = 4;
        assert_eq!(
            PinModify::parse(&s).unwrap_err(),
            PinError::NumberMessage(4)
        );
    }

    #[test]
    fn validation_condition_and_sw() {
        assert_eq!(sanitize_validation(0), 2);
        assert_eq!(sanitize_validation(8), 2);
        assert_eq!(sanitize_validation(3), 3);
        assert_eq!(pin_error_sw(0xEF), Some([0x64, 0x01]));
        assert_eq!(pin_error_sw(0xF0), Some([0x64, 0x00]));
        assert_eq!(pin_error_sw(0xFE), None);
        assert_eq!(pin_properties(0x0210, 7), [0x10, 0x02, 7, 0]);
    }
}

/// The 21-byte answer of Gemalto readers to GET_FIRMWARE_FEATURES (escape
/// `6A`): the pinpad's own view of its capabilities.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GemaltoFeatures {
    /// Logical LCD lines.
    pub lcd_lines: u8,
    /// Characters per LCD line.
    pub lcd_chars: u8,
    /// The validation conditions the reader accepts.
    pub entry_validation: u8,
    /// FEATURE_VERIFY_PIN_DIRECT supported.
    pub verify_pin_direct: bool,
    /// FEATURE_MODIFY_PIN_DIRECT supported.
    pub modify_pin_direct: bool,
    /// The reader handles the PIN-modify layout shifts made by
    /// bNumberMessage correctly.
    pub number_message_fix: bool,
    /// Smallest PIN.
    pub min_pin_size: u8,
    /// Largest PIN.
    pub max_pin_size: u8,
}

impl GemaltoFeatures {
    /// Decodes the answer; `None` unless it is exactly 21 bytes.
    pub fn parse(b: &[u8]) -> Option<GemaltoFeatures> {
        if b.len() != 21 {
            return None;
        }
        let at = |i: usize| b.get(i).copied().unwrap_or(0);
        Some(GemaltoFeatures {
            lcd_lines: at(0),
            lcd_chars: at(1),
            entry_validation: at(3),
            verify_pin_direct: at(4) & 0x20 != 0,
            modify_pin_direct: at(4) & 0x40 != 0,
            number_message_fix: at(8) & 0x04 != 0,
            min_pin_size: at(13),
            max_pin_size: at(14),
        })
    }
}

/// Reader-specific fixes of the PIN structures, each selected by a quirk
/// flag of the reader (see `crate::quirks`).
pub mod fixes {
    use super::{GemaltoFeatures, PinModify, PinVerify};
    use crate::quirks::QuirkFlags;

    /// Applies the verification fixes.
    pub fn verify(v: &mut PinVerify, flags: QuirkFlags, gemalto: Option<&GemaltoFeatures>) {
        if flags.contains(QuirkFlags::PIN_VERIFY_ONE_MESSAGE) {
            v.number_message = 1;
        }
        if flags.contains(QuirkFlags::PIN_VERIFY_NO_MESSAGE) {
            v.number_message = 0;
        }
        if flags.contains(QuirkFlags::PIN_VALIDATION_KEY_ONLY) {
            v.entry_validation_condition = 0x02;
        }
        if flags.contains(QuirkFlags::PIN_SWAP_MAX_EXTRA_DIGIT) {
            v.pin_max_extra_digit = v.pin_max_extra_digit.swap_bytes();
        }
        if let Some(g) = gemalto {
            if v.entry_validation_condition & !g.entry_validation != 0 {
                v.entry_validation_condition &= g.entry_validation;
            }
        }
    }

    /// Applies the modification fixes and returns the `abData` to send.
    pub fn modify(
        m: &mut PinModify,
        flags: QuirkFlags,
        gemalto: Option<&GemaltoFeatures>,
    ) -> zeroize::Zeroizing<Vec<u8>> {
        /// Offset of bNumberMessage in the CCID modification structure
        /// (after bPINOperation).
        const NUMBER_MESSAGE: usize = 11;
        let mut restore = None;
        if flags.contains(QuirkFlags::PIN_MODIFY_ALL_MESSAGE_INDEXES) {
            m.number_message = 3;
            m.msg_index = [0, 0, 0];
            restore = Some(0);
        }
        if flags.contains(QuirkFlags::PIN_MODIFY_THREE_MESSAGES) {
            m.number_message = 3;
        }
        if flags.contains(QuirkFlags::PIN_VALIDATION_KEY_ONLY) {
            m.entry_validation_condition = 0x02;
        }
        if let Some(g) = gemalto {
            if m.entry_validation_condition & !g.entry_validation != 0 {
                m.entry_validation_condition &= g.entry_validation;
            }
        }
        let layout_bug = flags.contains(QuirkFlags::PIN_MODIFY_GEMALTO_LAYOUT)
            && !gemalto.is_some_and(|g| g.number_message_fix);
        if layout_bug && m.number_message != 3 {
            // The reader expects bMsgIndex2 and 3 whatever bNumberMessage
            // says: build the structure for 3 messages, send the real count.
            restore = Some(m.number_message);
            m.number_message = 3;
        }
        if flags.contains(QuirkFlags::PIN_MODIFY_NO_MESSAGE_AS_DEFAULT) && m.number_message == 0 {
            m.number_message = 0xFF;
        }
        let mut data = m.ccid_data();
        if let (Some(n), Some(b)) = (restore, data.get_mut(NUMBER_MESSAGE)) {
            *b = n;
        }
        data
    }
}

#[cfg(test)]
mod fix_tests {
    use super::*;
    use crate::quirks::QuirkFlags;

    fn modify(number_message: u8) -> PinModify {
        let mut s = vec![
            0x1E,
            0,
            0x82,
            0x47,
            0x04,
            0,
            8,
            0x04,
            0x08,
            0x03,
            0x07,
            number_message,
            0x09,
            0x04,
            1,
            2,
            3,
            0,
            0,
            0,
        ];
        let apdu = [0x00, 0x24, 0x00, 0x81, 0x10];
        s.extend_from_slice(&(apdu.len() as u32).to_le_bytes());
        s.extend_from_slice(&apdu);
        PinModify::parse(&s).unwrap()
    }

    #[test]
    fn spr532_modify_sends_all_indexes_and_zero_messages() {
        let mut m = modify(1);
        let d = fixes::modify(&mut m, QuirkFlags::PIN_MODIFY_ALL_MESSAGE_INDEXES, None);
        assert_eq!(d[11], 0);
        assert_eq!(&d[14..17], &[0, 0, 0]);
        assert_eq!(d.len(), 1 + 13 + 3 + 3 + 5);
    }

    #[test]
    fn gemalto_layout_bug_unless_fixed() {
        let mut m = modify(1);
        let d = fixes::modify(&mut m, QuirkFlags::PIN_MODIFY_GEMALTO_LAYOUT, None);
        assert_eq!(d[11], 1);
        assert_eq!(d.len(), 1 + 13 + 3 + 3 + 5);
        let mut feat = [0u8; 21];
        feat[3] = 0x02;
        feat[8] = 0x04;
        let g = GemaltoFeatures::parse(&feat).unwrap();
        assert!(g.number_message_fix);
        let mut m = modify(1);
        let d = fixes::modify(&mut m, QuirkFlags::PIN_MODIFY_GEMALTO_LAYOUT, Some(&g));
        assert_eq!(d[11], 1);
        assert_eq!(d.len(), 1 + 13 + 2 + 3 + 5);
        // Validation condition masked to what the reader accepts.
        assert_eq!(d[10], 0x02);
    }

    #[test]
    fn verify_fixes() {
        let mut s = vec![
            0x1E, 0, 0x82, 0x47, 0x04, 0x08, 0x04, 0x07, 0x02, 0x09, 0x04, 0, 0, 0, 0,
        ];
        let apdu = [0x00, 0x20, 0x00, 0x81, 0x08];
        s.extend_from_slice(&(apdu.len() as u32).to_le_bytes());
        s.extend_from_slice(&apdu);
        let mut v = PinVerify::parse(&s).unwrap();
        fixes::verify(
            &mut v,
            QuirkFlags::PIN_VERIFY_NO_MESSAGE | QuirkFlags::PIN_SWAP_MAX_EXTRA_DIGIT,
            None,
        );
        assert_eq!(v.number_message, 0);
        assert_eq!(v.pin_max_extra_digit, 0x0804);
        let mut v = PinVerify::parse(&s).unwrap();
        fixes::verify(
            &mut v,
            QuirkFlags::PIN_VERIFY_ONE_MESSAGE | QuirkFlags::PIN_VALIDATION_KEY_ONLY,
            None,
        );
        assert_eq!((v.number_message, v.entry_validation_condition), (1, 2));
        assert!(GemaltoFeatures::parse(&[0; 20]).is_none());
    }

    #[test]
    fn cherry_kc1000_no_message_as_default() {
        let mut m = modify(0);
        let d = fixes::modify(&mut m, QuirkFlags::PIN_MODIFY_NO_MESSAGE_AS_DEFAULT, None);
        assert_eq!(d[11], 0xFF);
    }
}
