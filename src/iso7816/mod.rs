//! ISO 7816-3 card protocols: ATR, PPS, T=0 and T=1. Pure, no I/O.
//!
//! Every module here is sans-IO: it takes bytes and returns the bytes to
//! send next, never touches a transport and never reads a clock. The reader
//! layer carries the bytes in CCID XfrBlock messages and applies the
//! timeouts computed by [`params`].
//!
//! * [`atr`]: Answer-to-Reset decoding (§8).
//! * [`params`]: Fi/Di tables, baud rates and the waiting-time maths (§7, §10, §11.4.3).
//! * [`pps`]: protocol and parameters selection messages (§9).
//! * [`negotiate`]: the protocol-selection plan used by IFDHSetProtocolParameters.
//! * [`apdu`]: command APDU cases (§12.1).
//! * [`t0`]: T=0 command validation and the character-level engine (§10, §12.2).
//! * [`t1`]: T=1 blocks, the host engine and a card-side responder (§11).

#![forbid(unsafe_code)]

pub mod apdu;
pub mod atr;
pub mod negotiate;
pub mod params;
pub mod pps;
pub mod t0;
pub mod t1;
