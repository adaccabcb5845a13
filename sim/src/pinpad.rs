//! A scripted PIN pad for PC_to_RDR_Secure: the "user" types PINs from a
//! queue (or cancels, or lets the entry time out), and the reader inserts
//! them into the APDU template of the CCID PIN structure (CCID Rev 1.1
//! §6.1.11: bmFormatString, bmPINBlockString, bmPINLengthFormat) before
//! sending it to the card.
//!
//! Without a script a reader answers Secure with 'command not supported'.
#![forbid(unsafe_code)]

use crate::model::{SecureCard, SecureHandler};
use ccid::proto::message::SlotError;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

/// What the user does at the next prompt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PinEntry {
    /// Types these digits (`0`-`9`) and validates.
    Digits(String),
    /// Presses cancel: bError 0xEF.
    Cancel,
    /// Does nothing: bError 0xF0.
    Timeout,
}

/// bError when the new PIN and its confirmation differ (a value of the
/// vendor range 0x81..=0xC0).
pub const CONFIRMATION_MISMATCH: u8 = 0xC0;

/// bError when the PIN structure cannot hold the PIN: the offset of
/// bmFormatString in the message.
pub const BAD_STRUCTURE: u8 = 12;

/// A queue of [`PinEntry`]s shared with the test that fills it.
#[derive(Debug, Clone, Default)]
pub struct PinpadScript {
    entries: Arc<Mutex<VecDeque<PinEntry>>>,
    sent: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl PinpadScript {
    /// An empty script (every prompt times out).
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an entry.
    pub fn push(&self, e: PinEntry) {
        self.entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push_back(e);
    }

    /// Adds a typed PIN.
    pub fn enter(self, digits: &str) -> Self {
        self.push(PinEntry::Digits(digits.to_string()));
        self
    }

    /// Entries not used yet.
    pub fn remaining(&self) -> usize {
        self.entries.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// The APDUs (PINs inserted) sent to the card so far.
    pub fn sent(&self) -> Vec<Vec<u8>> {
        self.sent.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn next(&self) -> PinEntry {
        self.entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop_front()
            .unwrap_or(PinEntry::Timeout)
    }

    /// The next entry's digits, checked against wPINMaxExtraDigit (min in
    /// the high byte, max in the low byte; 0 means no limit).
    fn digits(&self, min_max: u16) -> Result<Vec<u8>, u8> {
        match self.next() {
            PinEntry::Cancel => Err(SlotError::PIN_CANCELLED.0),
            PinEntry::Timeout => Err(SlotError::PIN_TIMEOUT.0),
            PinEntry::Digits(s) => {
                let d: Vec<u8> = s
                    .bytes()
                    .filter(u8::is_ascii_digit)
                    .map(|b| b - b'0')
                    .collect();
                let (min, max) = (usize::from(min_max >> 8), usize::from(min_max & 0xFF));
                if d.len() < min || (max != 0 && d.len() > max) {
                    // The pad does not accept the validation key.
                    return Err(SlotError::PIN_TIMEOUT.0);
                }
                Ok(d)
            }
        }
    }
}

/// Writes `value` in `bits` bits at bit `at` (bit 0: the MSB of byte 0).
fn put_bits(buf: &mut [u8], at: usize, bits: usize, value: u32) -> Result<(), u8> {
    for i in 0..bits {
        let bit = (value >> (bits - 1 - i)) & 1;
        let pos = at + i;
        let byte = buf.get_mut(pos / 8).ok_or(BAD_STRUCTURE)?;
        let mask = 0x80u8 >> (pos % 8);
        if bit != 0 {
            *byte |= mask;
        } else {
            *byte &= !mask;
        }
    }
    Ok(())
}

/// The formats of one PIN block.
#[derive(Debug, Clone, Copy)]
struct Format {
    format_string: u8,
    block_string: u8,
    length_format: u8,
}

impl Format {
    /// Inserts `digits` in `apdu`, the block starting `offset` bytes into
    /// the command data.
    fn insert(&self, apdu: &mut [u8], offset: usize, digits: &[u8]) -> Result<(), u8> {
        let base = (5 + offset) * 8;
        let unit = if self.format_string & 0x80 != 0 { 8 } else { 1 };
        let pos = base + usize::from((self.format_string >> 3) & 0x0F) * unit;
        let kind = self.format_string & 0x03;
        let width = if kind == 1 { 4 } else { 8 };
        let block_bits = usize::from(self.block_string & 0x0F) * 8;
        let pin_bits = digits.len() * width;
        let start = if self.format_string & 0x04 != 0 && block_bits > 0 {
            (pos + block_bits)
                .checked_sub(pin_bits)
                .ok_or(BAD_STRUCTURE)?
        } else {
            pos
        };
        if block_bits > 0 && pin_bits > block_bits {
            return Err(BAD_STRUCTURE);
        }
        for (i, d) in digits.iter().enumerate() {
            let v = match kind {
                2 => u32::from(b'0' + d),
                _ => u32::from(*d),
            };
            put_bits(apdu, start + i * width, width, v)?;
        }
        let len_bits = usize::from(self.block_string >> 4);
        if len_bits > 0 {
            let lunit = if self.length_format & 0x10 != 0 { 8 } else { 1 };
            let lpos = base + usize::from(self.length_format & 0x0F) * lunit;
            put_bits(apdu, lpos, len_bits, digits.len() as u32)?;
        }
        Ok(())
    }
}

/// Finds the APDU template at the end of `s` after `fixed` bytes, a
/// variable number (0..=3) of message indexes and the 3-byte bTeoPrologue:
/// the layout whose template is exactly `5 + Lc` bytes long.
fn locate(s: &[u8], fixed: usize, indexes: &[usize]) -> Option<(usize, [u8; 3])> {
    indexes.iter().find_map(|n| {
        let teo = fixed + n;
        let at = teo + 3;
        let apdu = s.get(at..)?;
        let lc = usize::from(*apdu.get(4)?);
        (apdu.len() == 5 + lc).then(|| {
            let mut p = [0u8; 3];
            if let Some(src) = s.get(teo..at) {
                p.copy_from_slice(src);
            }
            (at, p)
        })
    })
}

impl PinpadScript {
    fn send(
        &self,
        card: &mut dyn SecureCard,
        prologue: [u8; 3],
        apdu: Vec<u8>,
    ) -> Result<Vec<u8>, u8> {
        self.sent
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(apdu.clone());
        if card.t1_wrapped() {
            card.t1_exchange(prologue, &apdu)
                .ok_or(SlotError::ICC_MUTE.0)
        } else {
            Ok(card.apdu(&apdu))
        }
    }
}

impl SecureHandler for PinpadScript {
    fn secure(&mut self, _slot: u8, data: &[u8], card: &mut dyn SecureCard) -> Result<Vec<u8>, u8> {
        let (Some(&op), Some(s)) = (data.first(), data.get(1..)) else {
            return Err(SlotError::BAD_LENGTH.0);
        };
        let byte = |i: usize| s.get(i).copied().unwrap_or(0);
        let word = |i: usize| u16::from_le_bytes([byte(i), byte(i + 1)]);
        match op {
            0 => {
                let fmt = Format {
                    format_string: byte(1),
                    block_string: byte(2),
                    length_format: byte(3),
                };
                let (at, prologue) = locate(s, 11, &[0]).ok_or(SlotError::BAD_LENGTH.0)?;
                let mut apdu = s.get(at..).unwrap_or_default().to_vec();
                let pin = self.digits(word(4))?;
                fmt.insert(&mut apdu, 0, &pin)?;
                self.send(card, prologue, apdu)
            }
            1 => {
                let fmt = Format {
                    format_string: byte(1),
                    block_string: byte(2),
                    length_format: byte(3),
                };
                let (old_off, new_off) = (usize::from(byte(4)), usize::from(byte(5)));
                let confirm = byte(8);
                let (at, prologue) = locate(s, 13, &[1, 2, 3, 0]).ok_or(SlotError::BAD_LENGTH.0)?;
                let mut apdu = s.get(at..).unwrap_or_default().to_vec();
                if confirm & 0x02 != 0 {
                    let old = self.digits(word(6))?;
                    fmt.insert(&mut apdu, old_off, &old)?;
                }
                let new = self.digits(word(6))?;
                if confirm & 0x01 != 0 && self.digits(word(6))? != new {
                    return Err(CONFIRMATION_MISMATCH);
                }
                fmt.insert(&mut apdu, new_off, &new)?;
                self.send(card, prologue, apdu)
            }
            // bPINOperation 2..4 (transfer, wait, cancel) are not modelled.
            _ => Err(SlotError::CMD_NOT_SUPPORTED.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        // ASCII, byte units, left justified, 8-byte block of FF.
        let f = Format {
            format_string: 0x82,
            block_string: 0x08,
            length_format: 0,
        };
        let mut a = vec![
            0, 0x20, 0, 0x81, 8, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
        ];
        f.insert(&mut a, 0, &[1, 2, 3, 4]).unwrap();
        assert_eq!(&a[5..], b"1234\xFF\xFF\xFF\xFF");
        // ISO 9564 format 2: control nibble 2, length nibble, BCD digits.
        let f = Format {
            format_string: 0x89,
            block_string: 0x47,
            length_format: 0x04,
        };
        let mut a = vec![
            0, 0x20, 0, 0x80, 8, 0x20, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
        ];
        f.insert(&mut a, 0, &[1, 2, 3, 4, 5]).unwrap();
        assert_eq!(&a[5..], [0x25, 0x12, 0x34, 0x5F, 0xFF, 0xFF, 0xFF, 0xFF]);
        // Right justified binary digits in a 4-byte block.
        let f = Format {
            format_string: 0x84,
            block_string: 0x04,
            length_format: 0,
        };
        let mut a = vec![0, 0x20, 0, 0x81, 4, 0, 0, 0, 0];
        f.insert(&mut a, 0, &[7, 8]).unwrap();
        assert_eq!(&a[5..], [0, 0, 7, 8]);
        // A PIN longer than its block.
        assert_eq!(f.insert(&mut a, 0, &[1, 2, 3, 4, 5]), Err(BAD_STRUCTURE));
        // Past the end of the template.
        let f = Format {
            format_string: 0xF2,
            block_string: 0,
            length_format: 0,
        };
        assert_eq!(f.insert(&mut a, 0, &[1]), Err(BAD_STRUCTURE));
    }

    #[test]
    fn locating_the_template() {
        let mut s = vec![0u8; 13];
        s.extend_from_slice(&[9, 9]); // two message indexes
        s.extend_from_slice(&[1, 2, 3]);
        s.extend_from_slice(&[0, 0x24, 0, 0x81, 2, 0xAA, 0xBB]);
        assert_eq!(locate(&s, 13, &[1, 2, 3, 0]), Some((18, [1, 2, 3])));
        assert_eq!(locate(&s, 13, &[3]), None);
        assert_eq!(locate(&[], 13, &[1]), None);
    }
}
