//! Command APDU cases (ISO/IEC 7816-3:2006 §12.1.2 and §12.1.3).
//!
//! A command APDU is a 4-byte header `CLA INS P1 P2` followed by a body of
//! `L` bytes. §12.1.3 decodes the body into one of seven cases from `L` and
//! its first bytes alone; any other shape is invalid. [`Apdu::parse`] does
//! exactly that, with every length checked.

#![forbid(unsafe_code)]
#![warn(clippy::indexing_slicing)]

use thiserror::Error;

/// The case of a command APDU (§12.1.2, table 13).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ApduCase {
    /// Case 1: no data, no response data expected.
    Case1,
    /// Case 2 short: `Le` in one byte (`00` means 256).
    Case2Short,
    /// Case 3 short: `Lc` in one byte, then data.
    Case3Short,
    /// Case 4 short: `Lc`, data, `Le`.
    Case4Short,
    /// Case 2 extended: `00` then `Le` in two bytes (`0000` means 65536).
    Case2Extended,
    /// Case 3 extended: `00`, `Lc` in two bytes, data.
    Case3Extended,
    /// Case 4 extended: `00`, `Lc` in two bytes, data, `Le` in two bytes.
    Case4Extended,
}

impl ApduCase {
    /// True for the three extended-length cases.
    pub fn is_extended(self) -> bool {
        matches!(
            self,
            ApduCase::Case2Extended | ApduCase::Case3Extended | ApduCase::Case4Extended
        )
    }

    /// True when the command carries data (cases 3 and 4).
    pub fn has_data(self) -> bool {
        matches!(
            self,
            ApduCase::Case3Short
                | ApduCase::Case4Short
                | ApduCase::Case3Extended
                | ApduCase::Case4Extended
        )
    }

    /// True when the command expects response data (cases 2 and 4).
    pub fn expects_data(self) -> bool {
        matches!(
            self,
            ApduCase::Case2Short
                | ApduCase::Case4Short
                | ApduCase::Case2Extended
                | ApduCase::Case4Extended
        )
    }
}

/// Why a byte string is not a command APDU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum ApduError {
    /// Fewer than the four header bytes.
    #[error("APDU of {len} bytes is shorter than its 4-byte header")]
    TooShort {
        /// Length received.
        len: usize,
    },
    /// The body matches none of the seven cases of ISO 7816-3 §12.1.3.
    #[error("APDU body of {body_len} bytes matches no case (Lc/Le inconsistent)")]
    BadLength {
        /// Length of the body after the header.
        body_len: usize,
    },
}

/// A decoded command APDU borrowing the caller's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Apdu<'a> {
    /// `CLA INS P1 P2`.
    pub header: [u8; 4],
    /// The command data field (empty for cases 1 and 2).
    pub data: &'a [u8],
    /// The expected response length `Ne` (1..=256 short, 1..=65536
    /// extended), `None` for cases 1 and 3.
    pub le: Option<u32>,
    /// The case.
    pub case: ApduCase,
}

impl<'a> Apdu<'a> {
    /// Decodes `bytes` per ISO 7816-3 §12.1.3.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, ApduError> {
        let (header, body) = match (bytes.get(..4), bytes.get(4..)) {
            (Some(h), Some(b)) => (h, b),
            _ => return Err(ApduError::TooShort { len: bytes.len() }),
        };
        let header: [u8; 4] = header
            .try_into()
            .map_err(|_| ApduError::TooShort { len: bytes.len() })?;
        const EMPTY: &[u8] = &[];
        let l = body.len();
        let bad = ApduError::BadLength { body_len: l };
        let b1 = body.first().copied();
        let short_le = |b: u8| if b == 0 { 256 } else { u32::from(b) };
        let ext_len = |hi: u8, lo: u8| u32::from(u16::from_be_bytes([hi, lo]));
        let ext_le = |hi: u8, lo: u8| match ext_len(hi, lo) {
            0 => 65536,
            n => n,
        };
        let (case, data, le) = match b1 {
            // §12.1.3: L = 0 → case 1.
            None => (ApduCase::Case1, EMPTY, None),
            // L = 1 → case 2S.
            Some(b1) if l == 1 => (ApduCase::Case2Short, EMPTY, Some(short_le(b1))),
            // B1 ≠ 0: L = 1 + B1 → case 3S; L = 2 + B1 → case 4S.
            Some(b1) if b1 != 0 => {
                let lc = usize::from(b1);
                let data = body.get(1..1 + lc).ok_or(bad)?;
                if l == 1 + lc {
                    (ApduCase::Case3Short, data, None)
                } else if l == 2 + lc {
                    let le = body.get(1 + lc).copied().ok_or(bad)?;
                    (ApduCase::Case4Short, data, Some(short_le(le)))
                } else {
                    return Err(bad);
                }
            }
            // B1 = 0 and L = 3 → case 2E.
            Some(_) if l == 3 => {
                let (hi, lo) = (body.get(1).copied(), body.get(2).copied());
                let (hi, lo) = hi.zip(lo).ok_or(bad)?;
                (ApduCase::Case2Extended, EMPTY, Some(ext_le(hi, lo)))
            }
            // B1 = 0, (B2,B3) ≠ 0: L = 3 + Lc → case 3E; L = 5 + Lc → case 4E.
            Some(_) => {
                let hi = body.get(1).copied().ok_or(bad)?;
                let lo = body.get(2).copied().ok_or(bad)?;
                let lc = ext_len(hi, lo) as usize;
                if lc == 0 {
                    return Err(bad);
                }
                let data = body.get(3..3 + lc).ok_or(bad)?;
                if l == 3 + lc {
                    (ApduCase::Case3Extended, data, None)
                } else if l == 5 + lc {
                    let hi = body.get(3 + lc).copied().ok_or(bad)?;
                    let lo = body.get(4 + lc).copied().ok_or(bad)?;
                    (ApduCase::Case4Extended, data, Some(ext_le(hi, lo)))
                } else {
                    return Err(bad);
                }
            }
        };
        Ok(Apdu {
            header,
            data,
            le,
            case,
        })
    }

    /// `CLA`.
    pub fn cla(&self) -> u8 {
        self.header[0]
    }

    /// `INS`.
    pub fn ins(&self) -> u8 {
        self.header[1]
    }

    /// `P1`.
    pub fn p1(&self) -> u8 {
        self.header[2]
    }

    /// `P2`.
    pub fn p2(&self) -> u8 {
        self.header[3]
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    // ISO 7816-3:2006 §12.1.3: L = 0 → case 1.
    #[test]
    fn case1() {
        let a = Apdu::parse(&[0x00, 0xA4, 0x04, 0x00]).unwrap();
        assert_eq!(a.case, ApduCase::Case1);
        assert!(a.data.is_empty());
        assert_eq!(a.le, None);
        assert_eq!((a.cla(), a.ins(), a.p1(), a.p2()), (0, 0xA4, 4, 0));
    }

    // §12.1.3: L = 1 → case 2S, Le = B1, 00 meaning 256.
    #[test]
    fn case2_short() {
        let a = Apdu::parse(&[0x00, 0xB0, 0, 0, 0x10]).unwrap();
        assert_eq!((a.case, a.le), (ApduCase::Case2Short, Some(16)));
        let a = Apdu::parse(&[0x00, 0xB0, 0, 0, 0x00]).unwrap();
        assert_eq!(a.le, Some(256));
        assert!(a.case.expects_data() && !a.case.has_data() && !a.case.is_extended());
    }

    // §12.1.3: B1 ≠ 0, L = 1 + B1 → case 3S; L = 2 + B1 → case 4S.
    #[test]
    fn case3_and_4_short() {
        let a = Apdu::parse(&[0x00, 0xD6, 0, 0, 2, 0xAA, 0xBB]).unwrap();
        assert_eq!(a.case, ApduCase::Case3Short);
        assert_eq!(a.data, &[0xAA, 0xBB]);
        assert_eq!(a.le, None);
        let a = Apdu::parse(&[0x00, 0xA4, 4, 0, 2, 0x3F, 0x00, 0x00]).unwrap();
        assert_eq!(a.case, ApduCase::Case4Short);
        assert_eq!(a.data, &[0x3F, 0x00]);
        assert_eq!(a.le, Some(256));
    }

    // §12.1.3: B1 = 0 and L = 3 → case 2E, Le = B2B3, 0000 meaning 65536.
    #[test]
    fn case2_extended() {
        let a = Apdu::parse(&[0x00, 0xB0, 0, 0, 0x00, 0x01, 0x00]).unwrap();
        assert_eq!((a.case, a.le), (ApduCase::Case2Extended, Some(256)));
        let a = Apdu::parse(&[0x00, 0xB0, 0, 0, 0x00, 0x00, 0x00]).unwrap();
        assert_eq!(a.le, Some(65536));
    }

    // §12.1.3: B1 = 0, B2B3 ≠ 0: L = 3 + Lc → 3E; L = 5 + Lc → 4E.
    #[test]
    fn case3_and_4_extended() {
        let mut v = vec![0x00, 0x2A, 0x9E, 0x9A, 0x00, 0x01, 0x2C];
        v.extend(std::iter::repeat(0x55).take(300));
        let a = Apdu::parse(&v).unwrap();
        assert_eq!(a.case, ApduCase::Case3Extended);
        assert_eq!(a.data.len(), 300);
        v.extend([0x00, 0x00]);
        let a = Apdu::parse(&v).unwrap();
        assert_eq!(a.case, ApduCase::Case4Extended);
        assert_eq!(a.le, Some(65536));
        assert!(a.case.is_extended() && a.case.has_data() && a.case.expects_data());
    }

    // §12.1.3: every other shape is invalid.
    #[test]
    fn invalid_shapes() {
        assert_eq!(
            Apdu::parse(&[0x00, 0xA4, 0x04]),
            Err(ApduError::TooShort { len: 3 })
        );
        // Lc = 2 but 3 data bytes and no room for a 1-byte Le.
        assert_eq!(
            Apdu::parse(&[0, 0xA4, 4, 0, 2, 1, 2, 3, 4]),
            Err(ApduError::BadLength { body_len: 5 })
        );
        // Lc = 5, only 2 bytes.
        assert!(Apdu::parse(&[0, 0xD6, 0, 0, 5, 1, 2]).is_err());
        // B1 = 0, L = 2.
        assert!(Apdu::parse(&[0, 0xB0, 0, 0, 0, 1]).is_err());
        // Extended Lc = 0 with a longer body.
        assert!(Apdu::parse(&[0, 0xB0, 0, 0, 0, 0, 0, 1]).is_err());
        // Extended Lc = 1 but a 1-byte trailer (neither 3E nor 4E).
        assert!(Apdu::parse(&[0, 0xD6, 0, 0, 0, 0, 1, 0xAA, 0x00]).is_err());
    }

    proptest! {
        // §12.1.3 decoding never panics, and what it decodes re-encodes to
        // the same bytes.
        #[test]
        fn parse_never_panics_and_reencodes(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            if let Ok(a) = Apdu::parse(&bytes) {
                let mut out = a.header.to_vec();
                let ext = a.case.is_extended();
                if a.case.has_data() {
                    if ext {
                        out.push(0);
                        out.extend((a.data.len() as u16).to_be_bytes());
                    } else {
                        out.push(a.data.len() as u8);
                    }
                    out.extend_from_slice(a.data);
                }
                if let Some(le) = a.le {
                    if ext {
                        if !a.case.has_data() {
                            out.push(0);
                        }
                        out.extend(((le % 65536) as u16).to_be_bytes());
                    } else {
                        out.push((le % 256) as u8);
                    }
                }
                prop_assert_eq!(out, bytes);
            }
        }
    }
}
