//! T=1 blocks (ISO/IEC 7816-3:2006 §11.3 and §11.4): prologue `NAD PCB
//! LEN`, information field, and the epilogue EDC.
//!
//! PCB (§11.3.2):
//! * I-block `0 N(S) M 00000`;
//! * R-block `1 0 0 N(R) xxxx`, xxxx = 0 error-free, 1 EDC/parity error,
//!   2 other error;
//! * S-block `1 1 r kkkkk`, r = response, kkkkk = 0 RESYNCH, 1 IFS,
//!   2 ABORT, 3 WTX.
//!
//! EDC (§11.4.4): LRC is the exclusive-or of the prologue and INF; CRC is
//! the ISO/IEC 13239 CRC-16 as the reference driver computes it:
//! polynomial x^16 + x^12 + x^5 + 1 processed LSB first (0x8408), initial
//! value FFFF, no final inversion, sent most significant byte first. Both
//! bytes are always checked and always sent.

#![forbid(unsafe_code)]
#![warn(clippy::indexing_slicing)]

use super::Edc;
use thiserror::Error;

/// LEN = FF is reserved (§11.3.2.3).
pub const LEN_RFU: u8 = 0xFF;

/// The error indication of an R-block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RCode {
    /// Error-free acknowledgement.
    Ok,
    /// EDC and/or parity error.
    Edc,
    /// Other error (also used for unknown codes).
    Other,
}

impl RCode {
    fn bits(self) -> u8 {
        match self {
            RCode::Ok => 0,
            RCode::Edc => 1,
            RCode::Other => 2,
        }
    }
}

/// The kind of an S-block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SKind {
    /// Resynchronisation (no INF).
    Resynch,
    /// Information field size (1-byte INF).
    Ifs,
    /// Chain abortion (no INF).
    Abort,
    /// Waiting time extension (1-byte INF).
    Wtx,
}

impl SKind {
    fn bits(self) -> u8 {
        match self {
            SKind::Resynch => 0,
            SKind::Ifs => 1,
            SKind::Abort => 2,
            SKind::Wtx => 3,
        }
    }

    /// The INF length this kind requires.
    pub fn inf_len(self) -> usize {
        match self {
            SKind::Resynch | SKind::Abort => 0,
            SKind::Ifs | SKind::Wtx => 1,
        }
    }
}

/// A decoded block.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Block {
    /// Information block.
    I {
        /// Send-sequence number N(S), 0 or 1.
        ns: u8,
        /// More-data bit M (chaining).
        more: bool,
        /// INF.
        inf: Vec<u8>,
    },
    /// Receive-ready block.
    R {
        /// N(R): the N(S) of the expected I-block, 0 or 1.
        nr: u8,
        /// Error indication.
        code: RCode,
    },
    /// Supervisory block.
    S {
        /// Which S-block.
        kind: SKind,
        /// Response (true) or request.
        response: bool,
        /// INF.
        inf: Vec<u8>,
    },
}

impl Block {
    /// The PCB byte.
    pub fn pcb(&self) -> u8 {
        match self {
            Block::I { ns, more, .. } => ((ns & 1) << 6) | if *more { 0x20 } else { 0 },
            Block::R { nr, code } => 0x80 | ((nr & 1) << 4) | code.bits(),
            Block::S { kind, response, .. } => {
                0xC0 | if *response { 0x20 } else { 0 } | kind.bits()
            }
        }
    }

    /// INF.
    pub fn inf(&self) -> &[u8] {
        match self {
            Block::I { inf, .. } | Block::S { inf, .. } => inf,
            Block::R { .. } => &[],
        }
    }

    /// Builds an S-block.
    pub fn s(kind: SKind, response: bool, inf: &[u8]) -> Block {
        Block::S {
            kind,
            response,
            inf: inf.to_vec(),
        }
    }
}

/// Why bytes are not a valid block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum BlockError {
    /// Fewer bytes than prologue + epilogue.
    #[error("block of {0} bytes is too short")]
    TooShort(usize),
    /// LEN = FF.
    #[error("LEN FF is reserved")]
    LenRfu,
    /// The byte count does not match LEN.
    #[error("block is {got} bytes, LEN says {want}")]
    LengthMismatch {
        /// Bytes received.
        got: usize,
        /// 3 + LEN + EDC length.
        want: usize,
    },
    /// The EDC does not match.
    #[error("EDC mismatch")]
    Edc,
    /// R-block with b6 set or LEN ≠ 0.
    #[error("malformed R-block (PCB {pcb:#04x}, LEN {len})")]
    BadRBlock {
        /// PCB.
        pcb: u8,
        /// LEN.
        len: u8,
    },
    /// S-block of unknown kind or with the wrong INF length.
    #[error("malformed S-block (PCB {pcb:#04x}, LEN {len})")]
    BadSBlock {
        /// PCB.
        pcb: u8,
        /// LEN.
        len: u8,
    },
}

impl BlockError {
    /// The R-block error code a receiver answers with (§11.6.3.2 rule 7.1):
    /// EDC for an EDC mismatch, other error otherwise.
    pub fn r_code(self) -> RCode {
        match self {
            BlockError::Edc => RCode::Edc,
            _ => RCode::Other,
        }
    }
}

/// LRC: exclusive-or of all bytes.
pub fn lrc(data: &[u8]) -> u8 {
    data.iter().fold(0, |a, b| a ^ b)
}

/// CRC-16 of ISO/IEC 13239 as used by T=1 (see the module documentation).
pub fn crc(data: &[u8]) -> u16 {
    let mut v: u16 = 0xFFFF;
    for &b in data {
        v ^= u16::from(b);
        for _ in 0..8 {
            v = if v & 1 != 0 {
                (v >> 1) ^ 0x8408
            } else {
                v >> 1
            };
        }
    }
    v
}

/// Appends the EDC of `data` to it.
pub fn push_edc(data: &mut Vec<u8>, edc: Edc) {
    match edc {
        Edc::Lrc => {
            let l = lrc(data);
            data.push(l);
        }
        Edc::Crc => {
            let c = crc(data);
            data.extend_from_slice(&c.to_be_bytes());
        }
    }
}

/// Encodes `block` with node address `nad`. INF longer than 254 bytes is
/// cut to 254 (callers never build such blocks).
pub fn encode(nad: u8, block: &Block, edc: Edc) -> Vec<u8> {
    let inf = block.inf();
    let inf = inf.get(..inf.len().min(254)).unwrap_or_default();
    let mut out = Vec::with_capacity(3 + inf.len() + edc.len());
    out.push(nad);
    out.push(block.pcb());
    out.push(inf.len() as u8);
    out.extend_from_slice(inf);
    push_edc(&mut out, edc);
    out
}

/// Decodes a block: length, LEN and EDC checked, then the PCB.
pub fn decode(bytes: &[u8], edc: Edc) -> Result<(u8, Block), BlockError> {
    let (nad, pcb, len) = match bytes {
        [nad, pcb, len, ..] => (*nad, *pcb, *len),
        _ => return Err(BlockError::TooShort(bytes.len())),
    };
    if len == LEN_RFU {
        return Err(BlockError::LenRfu);
    }
    let body_len = 3 + usize::from(len);
    let want = body_len + edc.len();
    if bytes.len() != want {
        return Err(BlockError::LengthMismatch {
            got: bytes.len(),
            want,
        });
    }
    let (body, epilogue) = bytes.split_at(body_len);
    let ok = match edc {
        Edc::Lrc => epilogue == [lrc(body)],
        Edc::Crc => epilogue == crc(body).to_be_bytes(),
    };
    if !ok {
        return Err(BlockError::Edc);
    }
    let inf = body.get(3..).unwrap_or_default().to_vec();
    let block = if pcb & 0x80 == 0 {
        Block::I {
            ns: (pcb >> 6) & 1,
            more: pcb & 0x20 != 0,
            inf,
        }
    } else if pcb & 0x40 == 0 {
        if pcb & 0x20 != 0 || len != 0 {
            return Err(BlockError::BadRBlock { pcb, len });
        }
        Block::R {
            nr: (pcb >> 4) & 1,
            code: match pcb & 0x0F {
                0 => RCode::Ok,
                1 => RCode::Edc,
                _ => RCode::Other,
            },
        }
    } else {
        let kind = match pcb & 0x1F {
            0 => SKind::Resynch,
            1 => SKind::Ifs,
            2 => SKind::Abort,
            3 => SKind::Wtx,
            _ => return Err(BlockError::BadSBlock { pcb, len }),
        };
        if inf.len() != kind.inf_len() {
            return Err(BlockError::BadSBlock { pcb, len });
        }
        Block::S {
            kind,
            response: pcb & 0x20 != 0,
            inf,
        }
    };
    Ok((nad, block))
}

/// Bytes that follow a block's 3-byte prologue (INF and EDC), from its LEN
/// byte: what a character-level reader must read after the prologue.
/// `None` for the reserved LEN `FF`.
pub fn rest_after_prologue(len: u8, edc: Edc) -> Option<usize> {
    (len != LEN_RFU).then(|| usize::from(len) + edc.len())
}

/// Swaps the nibbles of a NAD: the card answers with SAD and DAD exchanged
/// (§11.3.2.1).
pub fn swap_nad(nad: u8) -> u8 {
    nad.rotate_left(4)
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    // §11.4.4: the CRC check value of "123456789" for this CRC
    // (reflected 0x1021, init FFFF, no final XOR) is 6F91.
    #[test]
    fn crc_check_value() {
        assert_eq!(crc(b"123456789"), 0x6F91);
        assert_eq!(crc(&[]), 0xFFFF);
    }

    // §11.4.4: CRC sent MSB first, both bytes checked.
    #[test]
    fn crc_blocks_carry_both_bytes() {
        let b = encode(
            0,
            &Block::R {
                nr: 1,
                code: RCode::Ok,
            },
            Edc::Crc,
        );
        assert_eq!(b.len(), 5);
        let c = crc(&[0x00, 0x90, 0x00]);
        assert_eq!(b[3..], c.to_be_bytes());
        assert!(decode(&b, Edc::Crc).is_ok());
        let mut bad = b.clone();
        bad[4] ^= 0x01; // second CRC byte only
        assert_eq!(decode(&bad, Edc::Crc), Err(BlockError::Edc));
        let mut bad = b;
        bad[3] ^= 0x80; // first CRC byte only
        assert_eq!(decode(&bad, Edc::Crc), Err(BlockError::Edc));
    }

    // §11.3.2: PCB encodings; shared trace 03 has R-blocks `00 82 00 82`
    // (N(R)=0, other error) and `00 92 00 92` (N(R)=1, other error).
    #[test]
    fn pcb_encodings() {
        assert_eq!(
            encode(
                0,
                &Block::R {
                    nr: 0,
                    code: RCode::Other
                },
                Edc::Lrc
            ),
            vec![0x00, 0x82, 0x00, 0x82]
        );
        assert_eq!(
            decode(&[0x00, 0x92, 0x00, 0x92], Edc::Lrc),
            Ok((
                0,
                Block::R {
                    nr: 1,
                    code: RCode::Other
                }
            ))
        );
        let i = Block::I {
            ns: 1,
            more: true,
            inf: vec![1, 2],
        };
        assert_eq!(i.pcb(), 0x60);
        assert_eq!(
            Block::I {
                ns: 0,
                more: false,
                inf: vec![]
            }
            .pcb(),
            0x00
        );
        assert_eq!(Block::s(SKind::Resynch, false, &[]).pcb(), 0xC0);
        assert_eq!(Block::s(SKind::Resynch, true, &[]).pcb(), 0xE0);
        assert_eq!(Block::s(SKind::Ifs, false, &[0xFE]).pcb(), 0xC1);
        assert_eq!(Block::s(SKind::Abort, true, &[]).pcb(), 0xE2);
        assert_eq!(Block::s(SKind::Wtx, false, &[1]).pcb(), 0xC3);
        assert_eq!(
            Block::R {
                nr: 1,
                code: RCode::Edc
            }
            .pcb(),
            0x91
        );
        // An I-block round trip with LRC (§11.4.4: XOR of prologue and INF).
        let b = encode(0, &i, Edc::Lrc);
        assert_eq!(b, vec![0x00, 0x60, 0x02, 0x01, 0x02, 0x61]);
        assert_eq!(decode(&b, Edc::Lrc), Ok((0, i)));
    }

    // §11.3.2: malformed blocks are classified; §11.6.3.2 rule 7.1 gives
    // the R-block code to answer with.
    #[test]
    fn malformed_blocks() {
        assert_eq!(
            decode(&[0x00, 0x00], Edc::Lrc),
            Err(BlockError::TooShort(2))
        );
        assert_eq!(
            decode(&[0x00, 0x00, 0xFF, 0xFF], Edc::Lrc),
            Err(BlockError::LenRfu)
        );
        assert_eq!(
            decode(&[0x00, 0x00, 0x02, 0x01, 0x03], Edc::Lrc),
            Err(BlockError::LengthMismatch { got: 5, want: 6 })
        );
        assert_eq!(
            decode(&[0x00, 0x00, 0x00, 0x01], Edc::Lrc),
            Err(BlockError::Edc)
        );
        // R-block with b6 set.
        assert_eq!(
            decode(&[0x00, 0xA0, 0x00, 0xA0], Edc::Lrc),
            Err(BlockError::BadRBlock { pcb: 0xA0, len: 0 })
        );
        // R-block with INF.
        assert!(matches!(
            decode(&[0x00, 0x80, 0x01, 0x00, 0x81], Edc::Lrc),
            Err(BlockError::BadRBlock { .. })
        ));
        // S(WTX) without INF; unknown S kind.
        assert!(matches!(
            decode(&[0x00, 0xC3, 0x00, 0xC3], Edc::Lrc),
            Err(BlockError::BadSBlock { .. })
        ));
        assert!(matches!(
            decode(&[0x00, 0xC4, 0x00, 0xC4], Edc::Lrc),
            Err(BlockError::BadSBlock { .. })
        ));
        assert_eq!(BlockError::Edc.r_code(), RCode::Edc);
        assert_eq!(BlockError::LenRfu.r_code(), RCode::Other);
        // Unknown R codes decode as "other error".
        assert_eq!(
            decode(&[0x00, 0x83, 0x00, 0x83], Edc::Lrc),
            Ok((
                0,
                Block::R {
                    nr: 0,
                    code: RCode::Other
                }
            ))
        );
    }

    // §11.3.2.3 / §11.4.4: INF length from LEN, plus 1 (LRC) or 2 (CRC).
    #[test]
    fn rest_after_prologue_lengths() {
        assert_eq!(rest_after_prologue(0, Edc::Lrc), Some(1));
        assert_eq!(rest_after_prologue(254, Edc::Crc), Some(256));
        assert_eq!(rest_after_prologue(0xFF, Edc::Lrc), None);
    }

    #[test]
    fn nad_swap() {
        assert_eq!(swap_nad(0x12), 0x21);
        assert_eq!(swap_nad(0x00), 0x00);
    }

    fn arb_block() -> impl Strategy<Value = Block> {
        prop_oneof![
            (
                0u8..2,
                any::<bool>(),
                proptest::collection::vec(any::<u8>(), 0..=254)
            )
                .prop_map(|(ns, more, inf)| Block::I { ns, more, inf }),
            (
                0u8..2,
                prop_oneof![Just(RCode::Ok), Just(RCode::Edc), Just(RCode::Other)]
            )
                .prop_map(|(nr, code)| Block::R { nr, code }),
            (
                prop_oneof![
                    Just(SKind::Resynch),
                    Just(SKind::Ifs),
                    Just(SKind::Abort),
                    Just(SKind::Wtx)
                ],
                any::<bool>(),
                any::<u8>()
            )
                .prop_map(|(kind, response, v)| {
                    let inf = if kind.inf_len() == 1 { vec![v] } else { vec![] };
                    Block::S {
                        kind,
                        response,
                        inf,
                    }
                }),
        ]
    }

    proptest! {
        // Every block round-trips with both EDCs.
        #[test]
        fn round_trip(block in arb_block(), nad in any::<u8>(), crc_edc in any::<bool>()) {
            let edc = if crc_edc { Edc::Crc } else { Edc::Lrc };
            let bytes = encode(nad, &block, edc);
            prop_assert_eq!(decode(&bytes, edc), Ok((nad, block)));
        }

        // Random bytes never panic; any single-bit flip in a valid block is
        // detected by both EDCs.
        #[test]
        fn garbage_and_bit_flips(bytes in proptest::collection::vec(any::<u8>(), 0..300),
                                 block in arb_block(), bit in any::<usize>(), crc_edc in any::<bool>()) {
            let _ = decode(&bytes, Edc::Lrc);
            let _ = decode(&bytes, Edc::Crc);
            let edc = if crc_edc { Edc::Crc } else { Edc::Lrc };
            let mut b = encode(0, &block, edc);
            let i = bit % (b.len() * 8);
            b[i / 8] ^= 1 << (i % 8);
            let r = decode(&b, edc);
            prop_assert!(r.is_err() || r.as_ref().map(|(_, x)| x) != Ok(&block));
            // Flips outside LEN are EDC errors.
            if i / 8 != 2 {
                prop_assert_eq!(r, Err(BlockError::Edc));
            }
        }
    }
}
