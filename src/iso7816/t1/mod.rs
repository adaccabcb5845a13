//! T=1, the half-duplex block transmission protocol (ISO/IEC 7816-3:2006
//! §11).

#![forbid(unsafe_code)]

pub use super::atr::Edc;

/// Largest information field (IFSC/IFSD) a block may carry (§11.4.2).
pub const MAX_IFS: u8 = 254;

/// The T=1 parameters agreed for a card.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct T1Params {
    /// The card's information field size (IFSC, 1..=254): the largest INF
    /// the host may send.
    pub ifsc: u8,
    /// The host's information field size (IFSD, 1..=254): the largest INF
    /// the card may send.
    pub ifsd: u8,
    /// The error detection code.
    pub edc: Edc,
    /// The node address byte sent by the host (0: no addressing).
    pub nad: u8,
}

impl Default for T1Params {
    /// IFSC = IFSD = 32, LRC, NAD 0 (§11.4).
    fn default() -> Self {
        T1Params {
            ifsc: 32,
            ifsd: 32,
            edc: Edc::Lrc,
            nad: 0,
        }
    }
}

pub mod block;
pub mod card;
pub mod engine;
#[cfg(test)]
mod tests;

pub use block::{Block, BlockError, RCode, SKind};
pub use engine::{LinkError, SecureAnswer, T1Engine, T1Error, T1Step};
