//! Answer-to-Reset decoding (ISO/IEC 7816-3:2006 §8.2 and §8.3).
//!
//! An ATR is `TS T0 {TAi TBi TCi TDi}… T1…TK [TCK]`:
//! * TS gives the convention (§8.1): `3B` direct, `3F` inverse;
//! * T0 and each TDi announce which of the next level's TA/TB/TC/TD follow
//!   (bits 5..8), TDi's low nibble names the protocol T those bytes concern,
//!   and T0's low nibble is the number K of historical bytes (§8.2.2-§8.2.3);
//! * TCK is present iff some TDi indicates a protocol other than T=0
//!   (§8.2.5); the exclusive-or of T0 through TCK is then zero.
//!
//! [`Atr::parse`] classifies every malformed ATR with an [`AtrError`] and
//! never panics. A wrong TCK is not an error: it is reported by
//! [`Atr::tck_ok`] and the card can still be used.

#![forbid(unsafe_code)]
#![warn(clippy::indexing_slicing)]

use super::params;
use thiserror::Error;

/// The longest ATR a card may send (§8.2.1): 33 bytes, TS included.
pub const MAX_ATR_LEN: usize = 33;

/// The most interface-byte levels accepted. 33 bytes already bound the
/// chain (each level needs a TDi byte), this makes the bound explicit.
pub const MAX_LEVELS: usize = 16;

/// Default IFSC (§11.4.2).
pub const DEFAULT_IFSC: u8 = 32;
/// Default CWI (§11.4.3).
pub const DEFAULT_CWI: u8 = 13;
/// Default BWI (§11.4.3).
pub const DEFAULT_BWI: u8 = 4;
/// Default WI (§10.2).
pub const DEFAULT_WI: u8 = 10;

/// The transmission convention given by TS (§8.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Convention {
    /// TS = `3B`.
    Direct,
    /// TS = `3F`.
    Inverse,
}

/// The error-detection code of T=1 blocks (§11.4.4, TCi bit 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Edc {
    /// One-byte longitudinal redundancy check (default).
    Lrc,
    /// Two-byte cyclic redundancy check.
    Crc,
}

impl Edc {
    /// Length of the epilogue field in bytes.
    pub fn len(self) -> usize {
        match self {
            Edc::Lrc => 1,
            Edc::Crc => 2,
        }
    }

    /// Always false; an EDC field is never empty.
    pub fn is_empty(self) -> bool {
        false
    }
}

/// Clock stop indicator X from the T=15 global TAi (§8.3, table 11).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClockStop {
    /// Clock stop not supported.
    NotSupported,
    /// Clock stop supported, state L preferred.
    Low,
    /// Clock stop supported, state H preferred.
    High,
    /// Clock stop supported, no preference.
    NoPreference,
}

/// TA2: the specific mode byte (§8.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SpecificMode {
    /// The protocol T the card is fixed to (bits 1..4).
    pub protocol: u8,
    /// Bit 8 clear: the card can change to negotiable mode (by a warm reset).
    pub can_change: bool,
    /// Bit 5 set: Fi/Di are implicit, not those of TA1.
    pub implicit: bool,
}

/// One level of interface bytes: TAi, TBi, TCi, TDi for i = 1, 2, ….
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct InterfaceBytes {
    /// TAi.
    pub ta: Option<u8>,
    /// TBi.
    pub tb: Option<u8>,
    /// TCi.
    pub tc: Option<u8>,
    /// TDi.
    pub td: Option<u8>,
}

impl InterfaceBytes {
    /// The protocol indicated by TDi, if present.
    pub fn protocol(&self) -> Option<u8> {
        self.td.map(|td| td & 0x0F)
    }

    /// The presence bits (Y) announcing these bytes, as in T0 / TDi−1
    /// bits 5..8.
    fn y(&self) -> u8 {
        (u8::from(self.ta.is_some()))
            | (u8::from(self.tb.is_some()) << 1)
            | (u8::from(self.tc.is_some()) << 2)
            | (u8::from(self.td.is_some()) << 3)
    }
}

/// Why an ATR could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum AtrError {
    /// No bytes at all.
    #[error("empty ATR")]
    Empty,
    /// TS is neither `3B` nor `3F` (§8.1).
    #[error("invalid TS {0:#04x}")]
    InvalidTs(u8),
    /// More than 33 bytes (§8.2.1).
    #[error("ATR of {0} bytes exceeds 33")]
    TooLong(usize),
    /// The bytes end before a byte announced by T0/TDi or the historical
    /// count.
    #[error("ATR truncated: {what} missing at offset {offset}")]
    Truncated {
        /// The byte that is missing.
        what: &'static str,
        /// Its offset.
        offset: usize,
    },
    /// TCK is required (§8.2.5: a protocol other than T=0 is indicated)
    /// but the ATR ends right after the historical bytes.
    #[error("TCK missing although a protocol other than T=0 is indicated")]
    MissingTck,
    /// Bytes follow the last byte the structure announces.
    #[error("{0} unexpected bytes after the ATR")]
    TrailingBytes(usize),
    /// More interface-byte levels than [`MAX_LEVELS`].
    #[error("more than {MAX_LEVELS} levels of interface bytes")]
    TooManyLevels,
}

/// A decoded Answer-to-Reset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Atr {
    raw: Vec<u8>,
    convention: Convention,
    t0: u8,
    levels: Vec<InterfaceBytes>,
    historical: Vec<u8>,
    tck: Option<u8>,
    tck_ok: Option<bool>,
}

impl Atr {
    /// Decodes `bytes` (§8.2). See the module documentation.
    pub fn parse(bytes: &[u8]) -> Result<Atr, AtrError> {
        if bytes.is_empty() {
            return Err(AtrError::Empty);
        }
        if bytes.len() > MAX_ATR_LEN {
            return Err(AtrError::TooLong(bytes.len()));
        }
        let mut pos = 0usize;
        let mut next = |what: &'static str| -> Result<u8, AtrError> {
            let b = bytes
                .get(pos)
                .copied()
                .ok_or(AtrError::Truncated { what, offset: pos })?;
            pos += 1;
            Ok(b)
        };
        let convention = match next("TS")? {
            0x3B => Convention::Direct,
            0x3F => Convention::Inverse,
            ts => return Err(AtrError::InvalidTs(ts)),
        };
        let t0 = next("T0")?;
        let mut y = t0 >> 4;
        let mut levels = Vec::new();
        loop {
            if levels.len() >= MAX_LEVELS {
                return Err(AtrError::TooManyLevels);
            }
            let mut l = InterfaceBytes::default();
            if y & 1 != 0 {
                l.ta = Some(next("TA")?);
            }
            if y & 2 != 0 {
                l.tb = Some(next("TB")?);
            }
            if y & 4 != 0 {
                l.tc = Some(next("TC")?);
            }
            if y & 8 != 0 {
                l.td = Some(next("TD")?);
            }
            let td = l.td;
            levels.push(l);
            match td {
                Some(td) => y = td >> 4,
                None => break,
            }
        }
        // T0 announcing no TA1..TD1: level 1 is absent. (A level announced
        // by a TDi is kept even when empty, so that the ATR can be rebuilt.)
        if levels.len() == 1 && levels.first().is_some_and(|l| l.y() == 0) {
            levels.clear();
        }
        let k = usize::from(t0 & 0x0F);
        let mut historical = Vec::with_capacity(k);
        for _ in 0..k {
            historical.push(next("historical byte")?);
        }
        // §8.2.5: TCK present iff a TDi indicates T ≠ 0.
        let tck_expected = levels.iter().any(|l| l.protocol().is_some_and(|t| t != 0));
        let (tck, tck_ok) = if tck_expected {
            let tck = next("TCK").map_err(|_| AtrError::MissingTck)?;
            // XOR of T0 … TCK is zero.
            let x = bytes
                .get(1..pos)
                .unwrap_or_default()
                .iter()
                .fold(0u8, |a, b| a ^ b);
            (Some(tck), Some(x == 0))
        } else {
            (None, None)
        };
        if pos < bytes.len() {
            return Err(AtrError::TrailingBytes(bytes.len() - pos));
        }
        Ok(Atr {
            raw: bytes.to_vec(),
            convention,
            t0,
            levels,
            historical,
            tck,
            tck_ok,
        })
    }

    /// Builds ATR bytes from their parts: T0's and each TDi's presence bits
    /// are computed from `levels`, each TDi keeps its protocol nibble, and
    /// TCK is appended when §8.2.5 requires it. A level other than the last
    /// must have a TDi; the last level's TDi is dropped.
    pub fn build(
        convention: Convention,
        levels: &[InterfaceBytes],
        historical: &[u8],
    ) -> Result<Vec<u8>, AtrError> {
        if historical.len() > 15 {
            return Err(AtrError::TooLong(historical.len()));
        }
        if levels.len() > MAX_LEVELS {
            return Err(AtrError::TooManyLevels);
        }
        let mut out = vec![match convention {
            Convention::Direct => 0x3B,
            Convention::Inverse => 0x3F,
        }];
        let first_y = levels.first().map_or(0, |l| {
            let mut l = *l;
            l.td = l.td.filter(|_| levels.len() > 1);
            l.y()
        });
        out.push((first_y << 4) | historical.len() as u8);
        let mut tck_needed = false;
        for (i, l) in levels.iter().enumerate() {
            out.extend(l.ta);
            out.extend(l.tb);
            out.extend(l.tc);
            if let Some(next) = levels.get(i + 1) {
                let t = l.protocol().ok_or(AtrError::Truncated {
                    what: "TD",
                    offset: out.len(),
                })?;
                tck_needed |= t != 0;
                let mut n = *next;
                n.td = n.td.filter(|_| i + 2 < levels.len());
                out.push((n.y() << 4) | t);
            }
        }
        out.extend_from_slice(historical);
        if tck_needed {
            let x = out
                .get(1..)
                .unwrap_or_default()
                .iter()
                .fold(0, |a, b| a ^ b);
            out.push(x);
        }
        if out.len() > MAX_ATR_LEN {
            return Err(AtrError::TooLong(out.len()));
        }
        Ok(out)
    }

    /// The bytes as received.
    pub fn raw(&self) -> &[u8] {
        &self.raw
    }

    /// The convention (TS).
    pub fn convention(&self) -> Convention {
        self.convention
    }

    /// T0.
    pub fn t0(&self) -> u8 {
        self.t0
    }

    /// Every level of interface bytes, level 1 first.
    pub fn levels(&self) -> &[InterfaceBytes] {
        &self.levels
    }

    /// The interface bytes of level `i` (1-based), if present.
    pub fn level(&self, i: usize) -> Option<&InterfaceBytes> {
        self.levels.get(i.checked_sub(1)?)
    }

    /// TAi (1-based level).
    pub fn ta(&self, i: usize) -> Option<u8> {
        self.level(i)?.ta
    }

    /// TBi (1-based level).
    pub fn tb(&self, i: usize) -> Option<u8> {
        self.level(i)?.tb
    }

    /// TCi (1-based level).
    pub fn tc(&self, i: usize) -> Option<u8> {
        self.level(i)?.tc
    }

    /// TDi (1-based level).
    pub fn td(&self, i: usize) -> Option<u8> {
        self.level(i)?.td
    }

    /// The historical bytes.
    pub fn historical(&self) -> &[u8] {
        &self.historical
    }

    /// TCK, when present.
    pub fn tck(&self) -> Option<u8> {
        self.tck
    }

    /// `Some(true)` when TCK is present and the XOR of T0..TCK is zero,
    /// `Some(false)` when it is present and wrong, `None` when absent.
    pub fn tck_ok(&self) -> Option<bool> {
        self.tck_ok
    }

    /// TA1, if present: the FI (high nibble) and DI (low nibble) values.
    pub fn ta1(&self) -> Option<u8> {
        self.ta(1)
    }

    /// Fi (§8.3, table 7) from TA1; 372 when TA1 is absent; `None` when FI
    /// is RFU.
    pub fn fi(&self) -> Option<u16> {
        match self.ta1() {
            Some(ta1) => params::fi(ta1 >> 4),
            None => Some(params::DEFAULT_FI),
        }
    }

    /// Di (§8.3, table 8) from TA1; 1 when TA1 is absent; `None` when DI is
    /// RFU.
    pub fn di(&self) -> Option<u8> {
        match self.ta1() {
            Some(ta1) => params::di(ta1 & 0x0F),
            None => Some(params::DEFAULT_DI),
        }
    }

    /// f(max) in kHz (§8.3, table 7) from TA1; 5000 when TA1 is absent;
    /// `None` when FI is RFU.
    pub fn fmax_khz(&self) -> Option<u32> {
        match self.ta1() {
            Some(ta1) => params::fmax_khz(ta1 >> 4),
            None => Some(5_000),
        }
    }

    /// The extra guard time integer N (TC1, default 0). N = 255 means the
    /// minimum guard time (§8.3).
    pub fn n(&self) -> u8 {
        self.tc(1).unwrap_or(0)
    }

    /// The T=0 waiting time integer WI (TC2, default 10). TC2 = 0 is RFU and
    /// is returned as is.
    pub fn wi(&self) -> u8 {
        self.tc(2).unwrap_or(DEFAULT_WI)
    }

    /// TA2, the specific mode byte (§8.3), if present.
    pub fn specific_mode(&self) -> Option<SpecificMode> {
        self.ta(2).map(|ta2| SpecificMode {
            protocol: ta2 & 0x0F,
            can_change: ta2 & 0x80 == 0,
            implicit: ta2 & 0x10 != 0,
        })
    }

    /// The protocols offered by the TDi bytes, in order of first
    /// appearance, without duplicates and without T=15 (which qualifies
    /// global bytes, it is not a protocol). `[0]` when no TDi is present
    /// (§8.2.3: T=0 is then the only protocol).
    pub fn protocols(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for t in self.levels.iter().filter_map(InterfaceBytes::protocol) {
            if t != 15 && !out.contains(&t) {
                out.push(t);
            }
        }
        if out.is_empty() {
            out.push(0);
        }
        out
    }

    /// True when the card offers protocol `t`.
    pub fn offers(&self, t: u8) -> bool {
        self.protocols().contains(&t)
    }

    /// The protocol the card uses after this ATR: TA2's when in specific
    /// mode, else the first TDi's, else T=0 (§8.2.3).
    pub fn default_protocol(&self) -> u8 {
        match self.specific_mode() {
            Some(m) => m.protocol,
            None => self.protocols().first().copied().unwrap_or(0),
        }
    }

    /// The first byte chosen by `pick` at a level i ≥ 3 whose TDi−1
    /// indicates protocol `t` (the specific bytes of §8.2.3 / §11.4).
    fn specific_byte(&self, t: u8, pick: impl Fn(&InterfaceBytes) -> Option<u8>) -> Option<u8> {
        self.levels
            .windows(2)
            .enumerate()
            .filter(|(i, _)| *i >= 1) // windows()[i] = (level i+1, level i+2)
            .find_map(|(_, w)| match w {
                [prev, cur] if prev.protocol() == Some(t) => pick(cur),
                _ => None,
            })
    }

    /// IFSC (§11.4.2): the first TAi (i ≥ 3) after a TDi−1 indicating T=1;
    /// 32 when absent. `FF` is clamped to 254 as libccid does; `00` (RFU) is
    /// replaced by the default.
    pub fn ifsc(&self) -> u8 {
        match self.specific_byte(1, |l| l.ta) {
            Some(0) | None => DEFAULT_IFSC,
            Some(0xFF) => 254,
            Some(v) => v,
        }
    }

    /// The raw T=1 waiting-integers byte (first TBi, i ≥ 3, after T=1):
    /// BWI in bits 5..8, CWI in bits 1..4.
    pub fn t1_waiting_integers(&self) -> Option<u8> {
        self.specific_byte(1, |l| l.tb)
    }

    /// CWI (§11.4.3), default 13.
    pub fn cwi(&self) -> u8 {
        self.t1_waiting_integers()
            .map_or(DEFAULT_CWI, |tb| tb & 0x0F)
    }

    /// BWI (§11.4.3), default 4.
    pub fn bwi(&self) -> u8 {
        self.t1_waiting_integers().map_or(DEFAULT_BWI, |tb| tb >> 4)
    }

    /// The T=1 error detection code (§11.4.4): bit 1 of the first TCi
    /// (i ≥ 3) after T=1; LRC when absent.
    pub fn edc(&self) -> Edc {
        match self.specific_byte(1, |l| l.tc) {
            Some(tc) if tc & 1 != 0 => Edc::Crc,
            _ => Edc::Lrc,
        }
    }

    /// The T=15 global TAi (first TAi, i ≥ 3, after a TDi−1 indicating
    /// T=15): clock stop in bits 7..8, class indicator in bits 1..6.
    pub fn t15_ta(&self) -> Option<u8> {
        self.specific_byte(15, |l| l.ta)
    }

    /// The class indicator Y (§8.3, table 10): bit 1 class A (5 V), bit 2
    /// class B (3 V), bit 3 class C (1.8 V). `None` when the card does not
    /// give one (it then supports class A only, per §6.2.1).
    pub fn class_indicator(&self) -> Option<u8> {
        self.t15_ta().map(|ta| ta & 0x3F)
    }

    /// The clock stop indicator X (§8.3, table 11), if given.
    pub fn clock_stop(&self) -> Option<ClockStop> {
        self.t15_ta().map(|ta| match ta >> 6 {
            0 => ClockStop::NotSupported,
            1 => ClockStop::Low,
            2 => ClockStop::High,
            _ => ClockStop::NoPreference,
        })
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// OpenPGP card v2 (shared trace 02): TA1 18, TC1 FF, T=1, IFSC FE, TB3 75,
    /// T=15 TA4 03, 10 historical bytes, TCK 0C.
    const OPENPGP: [u8; 21] = [
        0x3B, 0xDA, 0x18, 0xFF, 0x81, 0xB1, 0xFE, 0x75, 0x1F, 0x03, 0x00, 0x31, 0xC5, 0x73, 0xC0,
        0x01, 0x40, 0x00, 0x90, 0x00, 0x0C,
    ];
    /// YubiKey NEO (shared trace 04).
    const NEO: [u8; 22] = [
        0x3B, 0xFC, 0x13, 0x00, 0x00, 0x81, 0x31, 0xFE, 0x15, 0x59, 0x75, 0x62, 0x69, 0x6B, 0x65,
        0x79, 0x4E, 0x45, 0x4F, 0x72, 0x33, 0xE1,
    ];
    /// A T=0-only card (shared trace 14): TA1 94, TB1 00, TC1 00, 14
    /// historical bytes, no TCK.
    const T0_ONLY: [u8; 19] = [
        0x3B, 0x7E, 0x94, 0x00, 0x00, 0x80, 0x25, 0xD2, 0x03, 0x10, 0x01, 0x00, 0x56, 0x00, 0x00,
        0x00, 0x02, 0x02, 0x00,
    ];

    // §8.2: full decoding of a T=1 ATR with T=15 global bytes.
    #[test]
    fn openpgp_card() {
        let a = Atr::parse(&OPENPGP).unwrap();
        assert_eq!(a.convention(), Convention::Direct);
        assert_eq!(a.t0(), 0xDA);
        assert_eq!(a.levels().len(), 4);
        assert_eq!(a.ta1(), Some(0x18));
        assert_eq!(a.fi(), Some(372));
        assert_eq!(a.di(), Some(12));
        assert_eq!(a.fmax_khz(), Some(5000));
        assert_eq!(a.n(), 0xFF);
        assert_eq!(a.td(1), Some(0x81));
        assert_eq!(a.td(2), Some(0xB1));
        assert_eq!(a.protocols(), vec![1]);
        assert_eq!(a.default_protocol(), 1);
        assert_eq!(a.ifsc(), 254);
        assert_eq!(a.t1_waiting_integers(), Some(0x75));
        assert_eq!((a.bwi(), a.cwi()), (7, 5));
        assert_eq!(a.edc(), Edc::Lrc);
        assert_eq!(a.class_indicator(), Some(0x03));
        assert_eq!(a.clock_stop(), Some(ClockStop::NotSupported));
        assert_eq!(a.historical().len(), 10);
        assert_eq!(a.tck(), Some(0x0C));
        assert_eq!(a.tck_ok(), Some(true));
        assert_eq!(a.raw(), &OPENPGP);
        assert_eq!(a.specific_mode(), None);
    }

    // §8.2.5: TCK checked by XOR; §11.4: IFSC/BWI/CWI defaults and values.
    #[test]
    fn yubikey_neo() {
        let a = Atr::parse(&NEO).unwrap();
        assert_eq!(a.ta1(), Some(0x13));
        assert_eq!(a.di(), Some(4));
        assert_eq!(a.ifsc(), 254);
        assert_eq!((a.bwi(), a.cwi()), (1, 5));
        assert_eq!(a.tck_ok(), Some(true));
        assert_eq!(a.historical(), b"YubikeyNEOr3");
        assert_eq!(a.class_indicator(), None);
    }

    // §8.2.5: no TCK when only T=0 is indicated; §8.2.3 default protocol T=0.
    #[test]
    fn t0_only_card() {
        let a = Atr::parse(&T0_ONLY).unwrap();
        assert_eq!(a.tck(), None);
        assert_eq!(a.tck_ok(), None);
        assert_eq!(a.protocols(), vec![0]);
        assert_eq!(a.default_protocol(), 0);
        assert_eq!((a.fi(), a.di()), (Some(512), Some(8)));
        assert_eq!(a.wi(), 10);
        assert_eq!(a.ifsc(), DEFAULT_IFSC);
        assert_eq!(a.edc(), Edc::Lrc);
        assert_eq!((a.bwi(), a.cwi()), (DEFAULT_BWI, DEFAULT_CWI));
    }

    // §8.2.5: a wrong TCK is reported, not refused.
    #[test]
    fn wrong_tck_is_a_flag() {
        let mut b = OPENPGP;
        b[20] ^= 0x01;
        let a = Atr::parse(&b).unwrap();
        assert_eq!(a.tck_ok(), Some(false));
        assert_eq!(a.ifsc(), 254);
    }

    // §8.1: TS is 3B or 3F.
    #[test]
    fn ts_and_convention() {
        assert_eq!(
            Atr::parse(&[0x3F, 0x00]).unwrap().convention(),
            Convention::Inverse
        );
        assert_eq!(
            Atr::parse(&[0x3B, 0x00]).unwrap().convention(),
            Convention::Direct
        );
        assert_eq!(Atr::parse(&[0x03, 0x00]), Err(AtrError::InvalidTs(0x03)));
        assert_eq!(Atr::parse(&[]), Err(AtrError::Empty));
    }

    // §8.2.1: minimal ATR is TS T0, defaults everywhere (§8.3).
    #[test]
    fn minimal_atr_defaults() {
        let a = Atr::parse(&[0x3B, 0x00]).unwrap();
        assert!(a.levels().is_empty());
        assert_eq!(
            (a.fi(), a.di(), a.fmax_khz()),
            (Some(372), Some(1), Some(5000))
        );
        assert_eq!(a.n(), 0);
        assert_eq!(a.wi(), 10);
        assert_eq!(a.protocols(), vec![0]);
        assert_eq!(a.tck(), None);
    }

    // Malformed ATRs are classified.
    #[test]
    fn malformed_classified() {
        // T0 announces TA1 that is not there.
        assert_eq!(
            Atr::parse(&[0x3B, 0x10]),
            Err(AtrError::Truncated {
                what: "TA",
                offset: 2
            })
        );
        // Historical bytes missing.
        assert!(matches!(
            Atr::parse(&[0x3B, 0x02, 0x01]),
            Err(AtrError::Truncated {
                what: "historical byte",
                ..
            })
        ));
        // T=1 indicated, TCK missing.
        assert_eq!(Atr::parse(&[0x3B, 0x80, 0x01]), Err(AtrError::MissingTck));
        // T=0 only, an extra byte.
        assert_eq!(
            Atr::parse(&[0x3B, 0x00, 0x00]),
            Err(AtrError::TrailingBytes(1))
        );
        // Over 33 bytes.
        let mut long = OPENPGP.to_vec();
        long.resize(34, 0);
        assert_eq!(Atr::parse(&long), Err(AtrError::TooLong(34)));
        // A chain of 17 TD-only levels.
        let mut chain = vec![0x3B, 0x80];
        chain.extend(std::iter::repeat(0x80).take(17));
        assert_eq!(Atr::parse(&chain), Err(AtrError::TooManyLevels));
    }

    // §8.2.5: TCK presence follows any TDi, not only the last one.
    #[test]
    fn tck_presence_uses_every_td() {
        // TD1 = T=1, TD2 = T=0 (last TD indicates T=0): TCK still present.
        let b = Atr::build(
            Convention::Direct,
            &[
                InterfaceBytes {
                    td: Some(0x01),
                    ..Default::default()
                },
                InterfaceBytes {
                    td: Some(0x00),
                    ..Default::default()
                },
                InterfaceBytes {
                    ta: Some(0x20),
                    ..Default::default()
                },
            ],
            &[],
        )
        .unwrap();
        let a = Atr::parse(&b).unwrap();
        assert!(a.tck().is_some());
        assert_eq!(a.tck_ok(), Some(true));
        assert_eq!(a.protocols(), vec![1, 0]);
        // The TA3 follows a T=0 TD2, so it is not IFSC.
        assert_eq!(a.ifsc(), DEFAULT_IFSC);
    }

    // §8.3: TA2 specific mode, protocol and implicit bit b5.
    #[test]
    fn specific_mode() {
        let b = Atr::build(
            Convention::Direct,
            &[
                InterfaceBytes {
                    ta: Some(0x96),
                    td: Some(0x01),
                    ..Default::default()
                },
                InterfaceBytes {
                    ta: Some(0x91),
                    ..Default::default()
                },
            ],
            &[],
        )
        .unwrap();
        let a = Atr::parse(&b).unwrap();
        assert_eq!(
            a.specific_mode(),
            Some(SpecificMode {
                protocol: 1,
                can_change: false,
                implicit: true
            })
        );
        assert_eq!(a.default_protocol(), 1);
    }

    // §8.2.3 / §11.4: the T=1 bytes are the first after a T=1 TD, at i ≥ 3;
    // a TD1 = T=1 makes level 2 global (TA2 is specific mode, not IFSC).
    #[test]
    fn t1_specific_bytes_need_level_three() {
        let b = Atr::build(
            Convention::Direct,
            &[
                InterfaceBytes {
                    td: Some(0x81),
                    ..Default::default()
                },
                InterfaceBytes {
                    ta: Some(0x01),
                    td: Some(0x81),
                    ..Default::default()
                },
                InterfaceBytes {
                    ta: Some(0x80),
                    tb: Some(0x45),
                    tc: Some(0x01),
                    ..Default::default()
                },
            ],
            &[],
        )
        .unwrap();
        let a = Atr::parse(&b).unwrap();
        assert_eq!(a.ifsc(), 0x80);
        assert_eq!(a.t1_waiting_integers(), Some(0x45));
        assert_eq!(a.edc(), Edc::Crc);
        // IFSC 0xFF → 254, 0x00 → 32.
        for (ta, want) in [(0xFF, 254), (0x00, 32), (0x10, 16)] {
            let b = Atr::build(
                Convention::Direct,
                &[
                    InterfaceBytes {
                        td: Some(0x81),
                        ..Default::default()
                    },
                    InterfaceBytes {
                        td: Some(0x01),
                        ..Default::default()
                    },
                    InterfaceBytes {
                        ta: Some(ta),
                        ..Default::default()
                    },
                ],
                &[],
            )
            .unwrap();
            assert_eq!(Atr::parse(&b).unwrap().ifsc(), want);
        }
    }

    // §8.3: clock stop indicator values.
    #[test]
    fn clock_stop_values() {
        for (x, want) in [
            (0x00, ClockStop::NotSupported),
            (0x40, ClockStop::Low),
            (0x80, ClockStop::High),
            (0xC0, ClockStop::NoPreference),
        ] {
            let b = Atr::build(
                Convention::Direct,
                &[
                    InterfaceBytes {
                        td: Some(0x80),
                        ..Default::default()
                    },
                    InterfaceBytes {
                        td: Some(0x0F),
                        ..Default::default()
                    },
                    InterfaceBytes {
                        ta: Some(x | 0x07),
                        ..Default::default()
                    },
                ],
                &[],
            )
            .unwrap();
            let a = Atr::parse(&b).unwrap();
            assert_eq!(a.clock_stop(), Some(want));
            assert_eq!(a.class_indicator(), Some(0x07));
            // T=15 is not a protocol.
            assert_eq!(a.protocols(), vec![0]);
        }
    }

    fn arb_level() -> impl Strategy<Value = InterfaceBytes> {
        (
            proptest::option::of(any::<u8>()),
            proptest::option::of(any::<u8>()),
            proptest::option::of(any::<u8>()),
            0u8..16,
        )
            .prop_map(|(ta, tb, tc, t)| InterfaceBytes {
                ta,
                tb,
                tc,
                td: Some(t),
            })
    }

    proptest! {
        // Arbitrary bytes never panic.
        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..40)) {
            let _ = Atr::parse(&bytes);
            let mut b = bytes.clone();
            if let Some(first) = b.first_mut() { *first = 0x3B; }
            if let Ok(a) = Atr::parse(&b) {
                let _ = (a.ifsc(), a.bwi(), a.cwi(), a.edc(), a.fi(), a.di(), a.fmax_khz(),
                         a.protocols(), a.default_protocol(), a.clock_stop(), a.specific_mode());
                prop_assert!(a.raw().len() <= MAX_ATR_LEN);
            }
        }

        // Well-formed ATRs round-trip their fields.
        #[test]
        fn built_atrs_round_trip(levels in proptest::collection::vec(arb_level(), 0..5),
                                 hist in proptest::collection::vec(any::<u8>(), 0..16),
                                 inverse in any::<bool>()) {
            let conv = if inverse { Convention::Inverse } else { Convention::Direct };
            let Ok(bytes) = Atr::build(conv, &levels, &hist) else { return Ok(()); };
            let a = Atr::parse(&bytes).unwrap();
            prop_assert_eq!(a.convention(), conv);
            prop_assert_eq!(a.historical(), &hist[..]);
            // The last level has no TDi; a lone empty level 1 is dropped.
            let mut want: Vec<InterfaceBytes> = levels.clone();
            if let Some(last) = want.last_mut() { last.td = None; }
            for (i, l) in want.iter_mut().enumerate() {
                if let (Some(td), Some(next)) = (l.td, levels.get(i + 1)) {
                    let mut n = *next;
                    if i + 2 >= levels.len() { n.td = None; }
                    l.td = Some((n.y() << 4) | (td & 0x0F));
                }
            }
            if want.len() == 1 && want[0].y() == 0 { want.clear(); }
            prop_assert_eq!(a.levels(), &want[..]);
            if a.tck().is_some() {
                prop_assert_eq!(a.tck_ok(), Some(true));
            }
            prop_assert_eq!(Atr::build(conv, a.levels(), a.historical()).unwrap(), bytes);
        }
    }
}
