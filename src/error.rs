//! The driver's error type. Lower layers have their own enums
//! ([`TransportError`], [`FrameError`], the ISO 7816 engines' errors) that
//! convert into [`Error`]; [`crate::ifd::code_for`] maps it to IFD codes.

#![forbid(unsafe_code)]

use crate::proto::message::{FrameError, SlotError, Status};
use crate::transport::TransportError;
use thiserror::Error;

/// Everything that can go wrong in the reader layer and above.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Error {
    /// The transport failed.
    #[error("transport: {0}")]
    Transport(#[from] TransportError),
    /// The device is gone or was marked removed.
    #[error("device removed")]
    NoDevice,
    /// No answer within the computed timeout.
    #[error("no answer within {ms} ms")]
    Timeout {
        /// The timeout that expired.
        ms: u64,
    },
    /// A malformed frame from the device.
    #[error("malformed frame: {0}")]
    Frame(#[from] FrameError),
    /// A well-formed frame that does not answer the command sent.
    #[error("unexpected {what}: expected {expected:#x}, got {got:#x}")]
    Unexpected {
        /// Which field.
        what: &'static str,
        /// Expected value.
        expected: u32,
        /// Value received.
        got: u32,
    },
    /// The reader reported a failed command.
    #[error("reader error {error:?} (bStatus {status:?})")]
    Slot {
        /// bError.
        error: SlotError,
        /// bStatus.
        status: Status,
    },
    /// No card in the slot.
    #[error("card absent")]
    IccAbsent,
    /// The card does not answer.
    #[error("card mute")]
    IccMute,
    /// Parity error reported by the reader.
    #[error("parity error")]
    Parity,
    /// The caller's buffer is too small.
    #[error("buffer too small: need {need}, have {have}")]
    InsufficientBuffer {
        /// Bytes needed.
        need: usize,
        /// Bytes available.
        have: usize,
    },
    /// The protocol is not supported by the reader or the card.
    #[error("protocol not supported: {0}")]
    ProtocolNotSupported(String),
    /// The request is not supported (IFD_ERROR_NOT_SUPPORTED).
    #[error("not supported: {0}")]
    NotSupported(String),
    /// The reader answered 'command not supported' (IFD_NOT_SUPPORTED).
    #[error("command not supported by the reader")]
    CommandNotSupported,
    /// Unknown capability tag.
    #[error("unknown tag {0:#x}")]
    UnknownTag(u32),
    /// A read-only tag.
    #[error("tag {0:#x} is read-only")]
    ReadOnly(u32),
    /// PPS exchange failed.
    #[error("PPS failed: {0}")]
    PpsFailed(String),
    /// Power action failed.
    #[error("power action failed: {0}")]
    PowerAction(String),
    /// A card protocol (T=0, T=1, ATR) error.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// A caller argument is invalid.
    #[error("invalid argument: {0}")]
    InvalidArgument(&'static str),
    /// A Lun that no channel was created for.
    #[error("unknown Lun {0:#x}")]
    UnknownLun(u64),
    /// No reader matches the device name.
    #[error("no reader: {0}")]
    NoReader(String),
    /// The driver refuses the reader on purpose.
    #[error("refused: {0}")]
    Refused(String),
    /// Configuration problem.
    #[error("configuration: {0}")]
    Config(String),
    /// A panic was caught at the C boundary.
    #[error("internal error (panic)")]
    Panic,
}

impl Error {
    /// The IFD response code for this error.
    pub fn code(&self) -> crate::ifd::IfdCode {
        crate::ifd::code_for(self)
    }
}

/// Result with [`Error`].
pub type Result<T> = std::result::Result<T, Error>;
