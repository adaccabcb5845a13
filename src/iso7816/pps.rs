//! Protocol and parameters selection (ISO/IEC 7816-3:2006 §9).
//!
//! A PPS request is `PPSS PPS0 [PPS1] [PPS2] [PPS3] PCK` (§9.2):
//! * PPSS = `FF`;
//! * PPS0 bits 1..4 = the protocol T, bits 5/6/7 announce PPS1/PPS2/PPS3,
//!   bit 8 is reserved (0);
//! * PPS1 = `FI DI` as in TA1, PPS2 = SPU, PPS3 = RFU;
//! * PCK makes the exclusive-or of PPSS through PCK zero.
//!
//! §9.3: the exchange succeeds when the response echoes PPSS and PPS0 bits
//! 1..4, and each of PPS1/PPS2/PPS3 is either echoed or absent; PPS1 absent
//! means the card stays at Fd/Dd.

#![forbid(unsafe_code)]
#![warn(clippy::indexing_slicing)]

use super::params::DEFAULT_FI_DI;
use thiserror::Error;

/// PPSS, the initial byte of a PPS message.
pub const PPSS: u8 = 0xFF;

/// A PPS request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PpsRequest {
    /// The protocol T (0..=14).
    pub protocol: u8,
    /// PPS1: `FI DI`.
    pub pps1: Option<u8>,
    /// PPS2: SPU.
    pub pps2: Option<u8>,
    /// PPS3 (RFU in the 2006 edition).
    pub pps3: Option<u8>,
}

/// What the card accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PpsOutcome {
    /// The protocol now in use.
    pub protocol: u8,
    /// The `FI DI` byte now in use: PPS1 when echoed, else `11` (Fd/Dd).
    pub fi_di: u8,
    /// PPS2 when echoed.
    pub pps2: Option<u8>,
    /// PPS3 when echoed.
    pub pps3: Option<u8>,
}

/// A rejected PPS request or response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum PpsError {
    /// The request's protocol is not 0..=14.
    #[error("PPS protocol T={0} out of range")]
    InvalidProtocol(u8),
    /// The response is shorter than its PPS0 announces (or than 3 bytes).
    #[error("PPS response truncated ({0} bytes)")]
    Truncated(usize),
    /// Bytes follow the response's PCK.
    #[error("PPS response has {0} trailing bytes")]
    TrailingBytes(usize),
    /// PPSS is not `FF`.
    #[error("PPS response PPSS {0:#04x} is not FF")]
    BadPpss(u8),
    /// PPS0 bit 8 (reserved) is set.
    #[error("PPS response PPS0 {0:#04x} has its reserved bit set")]
    ReservedBit(u8),
    /// The exclusive-or of PPSS..PCK is not zero.
    #[error("PPS response PCK wrong (xor {0:#04x})")]
    BadPck(u8),
    /// PPS0's protocol is not the one requested.
    #[error("PPS response protocol T={got}, requested T={sent}")]
    ProtocolMismatch {
        /// Requested.
        sent: u8,
        /// Answered.
        got: u8,
    },
    /// PPSn is present with a value other than the one requested, or
    /// present although not requested.
    #[error("PPS response PPS{index} {got:#04x} does not echo {sent:?}")]
    ParameterMismatch {
        /// 1, 2 or 3.
        index: u8,
        /// Requested value, `None` when not requested.
        sent: Option<u8>,
        /// Answered value.
        got: u8,
    },
}

impl PpsRequest {
    /// A request for protocol `protocol` with `FI DI` = `pps1`.
    pub fn new(protocol: u8, pps1: Option<u8>) -> Self {
        PpsRequest {
            protocol,
            pps1,
            pps2: None,
            pps3: None,
        }
    }

    /// PPS0.
    pub fn pps0(&self) -> u8 {
        (self.protocol & 0x0F)
            | if self.pps1.is_some() { 0x10 } else { 0 }
            | if self.pps2.is_some() { 0x20 } else { 0 }
            | if self.pps3.is_some() { 0x40 } else { 0 }
    }

    /// The request bytes, PCK included (3 to 6 bytes).
    pub fn encode(&self) -> Result<Vec<u8>, PpsError> {
        if self.protocol > 14 {
            return Err(PpsError::InvalidProtocol(self.protocol));
        }
        let mut out = vec![PPSS, self.pps0()];
        out.extend(self.pps1);
        out.extend(self.pps2);
        out.extend(self.pps3);
        out.push(out.iter().fold(0, |a, b| a ^ b));
        Ok(out)
    }

    /// Checks the card's answer per §9.3 and returns what was agreed.
    pub fn check_response(&self, answer: &[u8]) -> Result<PpsOutcome, PpsError> {
        let resp = decode(answer)?;
        let got_t = resp.pps0 & 0x0F;
        if got_t != self.protocol & 0x0F {
            return Err(PpsError::ProtocolMismatch {
                sent: self.protocol,
                got: got_t,
            });
        }
        let echo = |index: u8, sent: Option<u8>, got: Option<u8>| match (sent, got) {
            (_, None) => Ok(None),
            (Some(s), Some(g)) if s == g => Ok(Some(g)),
            (sent, Some(got)) => Err(PpsError::ParameterMismatch { index, sent, got }),
        };
        let pps1 = echo(1, self.pps1, resp.pps1)?;
        let pps2 = echo(2, self.pps2, resp.pps2)?;
        let pps3 = echo(3, self.pps3, resp.pps3)?;
        Ok(PpsOutcome {
            protocol: got_t,
            fi_di: pps1.unwrap_or(DEFAULT_FI_DI),
            pps2,
            pps3,
        })
    }
}

struct Decoded {
    pps0: u8,
    pps1: Option<u8>,
    pps2: Option<u8>,
    pps3: Option<u8>,
}

fn decode(answer: &[u8]) -> Result<Decoded, PpsError> {
    let short = PpsError::Truncated(answer.len());
    let ppss = *answer.first().ok_or(short)?;
    if ppss != PPSS {
        return Err(PpsError::BadPpss(ppss));
    }
    let pps0 = *answer.get(1).ok_or(short)?;
    if pps0 & 0x80 != 0 {
        return Err(PpsError::ReservedBit(pps0));
    }
    let mut pos = 2;
    let mut opt = |bit: u8| -> Result<Option<u8>, PpsError> {
        if pps0 & bit == 0 {
            return Ok(None);
        }
        let b = *answer.get(pos).ok_or(short)?;
        pos += 1;
        Ok(Some(b))
    };
    let pps1 = opt(0x10)?;
    let pps2 = opt(0x20)?;
    let pps3 = opt(0x40)?;
    // PCK.
    if answer.get(pos).is_none() {
        return Err(short);
    }
    if answer.len() > pos + 1 {
        return Err(PpsError::TrailingBytes(answer.len() - pos - 1));
    }
    let x = answer.iter().fold(0, |a, b| a ^ b);
    if x != 0 {
        return Err(PpsError::BadPck(x));
    }
    Ok(Decoded {
        pps0,
        pps1,
        pps2,
        pps3,
    })
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    // §9.2: PPSS FF, PPS0 = T | presence bits, PCK = XOR. Bytes from shared
    // trace 14 (`FF 10 13 FC`).
    #[test]
    fn encode_request() {
        assert_eq!(
            PpsRequest::new(0, Some(0x13)).encode().unwrap(),
            vec![0xFF, 0x10, 0x13, 0xFC]
        );
        assert_eq!(
            PpsRequest::new(1, None).encode().unwrap(),
            vec![0xFF, 0x01, 0xFE]
        );
        let all = PpsRequest {
            protocol: 1,
            pps1: Some(0x96),
            pps2: Some(0x00),
            pps3: Some(0x00),
        };
        let b = all.encode().unwrap();
        assert_eq!(b[..5], [0xFF, 0x71, 0x96, 0x00, 0x00]);
        assert_eq!(b.iter().fold(0, |a, x| a ^ x), 0);
        assert_eq!(b.len(), 6);
        assert_eq!(
            PpsRequest::new(15, None).encode(),
            Err(PpsError::InvalidProtocol(15))
        );
    }

    // §9.3: an exact echo succeeds.
    #[test]
    fn echo_succeeds() {
        let r = PpsRequest::new(1, Some(0x96));
        let out = r.check_response(&r.encode().unwrap()).unwrap();
        assert_eq!(out.protocol, 1);
        assert_eq!(out.fi_di, 0x96);
    }

    // §9.3: PPS1 absent in the response means Fd/Dd.
    #[test]
    fn pps1_absent_means_default() {
        let r = PpsRequest::new(1, Some(0x96));
        let out = r.check_response(&[0xFF, 0x01, 0xFE]).unwrap();
        assert_eq!(out.fi_di, 0x11);
    }

    // §9.3: each failure is typed.
    #[test]
    fn failures() {
        let r = PpsRequest::new(1, Some(0x96));
        assert_eq!(
            r.check_response(&[0xFF, 0x10, 0x96, 0x79]),
            Err(PpsError::ProtocolMismatch { sent: 1, got: 0 })
        );
        assert_eq!(
            r.check_response(&[0xFF, 0x11, 0x95, 0x7B]),
            Err(PpsError::ParameterMismatch {
                index: 1,
                sent: Some(0x96),
                got: 0x95
            })
        );
        assert_eq!(
            r.check_response(&[0xFF, 0x11, 0x96, 0x00]),
            Err(PpsError::BadPck(0x78))
        );
        assert_eq!(
            r.check_response(&[0xFE, 0x11, 0x96, 0x79]),
            Err(PpsError::BadPpss(0xFE))
        );
        assert_eq!(r.check_response(&[0xFF, 0x11]), Err(PpsError::Truncated(2)));
        assert_eq!(r.check_response(&[]), Err(PpsError::Truncated(0)));
        assert_eq!(
            r.check_response(&[0xFF, 0x11, 0x96, 0x78, 0x00]),
            Err(PpsError::TrailingBytes(1))
        );
        assert_eq!(
            r.check_response(&[0xFF, 0x91, 0x96, 0xF8]),
            Err(PpsError::ReservedBit(0x91))
        );
        // PPS2 answered although not requested.
        assert_eq!(
            r.check_response(&[0xFF, 0x21, 0x01, 0xDF]),
            Err(PpsError::ParameterMismatch {
                index: 2,
                sent: None,
                got: 0x01
            })
        );
    }

    proptest! {
        // Random answers never panic; a successful check always agrees with
        // the request.
        #[test]
        fn check_never_panics(t in 0u8..15, p1 in proptest::option::of(any::<u8>()),
                              answer in proptest::collection::vec(any::<u8>(), 0..8)) {
            let r = PpsRequest::new(t, p1);
            if let Ok(out) = r.check_response(&answer) {
                prop_assert_eq!(out.protocol, t);
                prop_assert!(out.fi_di == 0x11 || Some(out.fi_di) == p1);
            }
        }

        // Every request answered by its own echo succeeds.
        #[test]
        fn echo_round_trip(t in 0u8..15, p1 in proptest::option::of(any::<u8>()),
                           p2 in proptest::option::of(any::<u8>()), p3 in proptest::option::of(any::<u8>())) {
            let r = PpsRequest { protocol: t, pps1: p1, pps2: p2, pps3: p3 };
            let out = r.check_response(&r.encode().unwrap()).unwrap();
            prop_assert_eq!(out, PpsOutcome { protocol: t, fi_di: p1.unwrap_or(0x11), pps2: p2, pps3: p3 });
        }
    }
}
