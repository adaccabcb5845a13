//! pcsc-lite IFD handler constants (`ifdhandler.h`, `pcsclite.h`, `reader.h`)
//! as plain integers, platform-neutral, plus the one mapping from driver
//! errors to `IFD_*` response codes.

#![forbid(unsafe_code)]

use crate::error::Error;
use crate::transport::TransportError;

/// An `IFD_*` response code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(i64)]
#[allow(missing_docs)]
pub enum IfdCode {
    Success = 0,
    ErrorTag = 600,
    ErrorSetFailure = 601,
    ErrorValueReadOnly = 602,
    ErrorPtsFailure = 605,
    ErrorNotSupported = 606,
    ProtocolNotSupported = 607,
    ErrorPowerAction = 608,
    ErrorSwallow = 609,
    ErrorEject = 610,
    ErrorConfiscate = 611,
    CommunicationError = 612,
    ResponseTimeout = 613,
    NotSupported = 614,
    IccPresent = 615,
    IccNotPresent = 616,
    NoSuchDevice = 617,
    ErrorInsufficientBuffer = 618,
}

impl IfdCode {
    /// The C constant's name, for logs.
    pub fn name(self) -> &'static str {
        match self {
            IfdCode::Success => "IFD_SUCCESS",
            IfdCode::ErrorTag => "IFD_ERROR_TAG",
            IfdCode::ErrorSetFailure => "IFD_ERROR_SET_FAILURE",
            IfdCode::ErrorValueReadOnly => "IFD_ERROR_VALUE_READ_ONLY",
            IfdCode::ErrorPtsFailure => "IFD_ERROR_PTS_FAILURE",
            IfdCode::ErrorNotSupported => "IFD_ERROR_NOT_SUPPORTED",
            IfdCode::ProtocolNotSupported => "IFD_PROTOCOL_NOT_SUPPORTED",
            IfdCode::ErrorPowerAction => "IFD_ERROR_POWER_ACTION",
            IfdCode::ErrorSwallow => "IFD_ERROR_SWALLOW",
            IfdCode::ErrorEject => "IFD_ERROR_EJECT",
            IfdCode::ErrorConfiscate => "IFD_ERROR_CONFISCATE",
            IfdCode::CommunicationError => "IFD_COMMUNICATION_ERROR",
            IfdCode::ResponseTimeout => "IFD_RESPONSE_TIMEOUT",
            IfdCode::NotSupported => "IFD_NOT_SUPPORTED",
            IfdCode::IccPresent => "IFD_ICC_PRESENT",
            IfdCode::IccNotPresent => "IFD_ICC_NOT_PRESENT",
            IfdCode::NoSuchDevice => "IFD_NO_SUCH_DEVICE",
            IfdCode::ErrorInsufficientBuffer => "IFD_ERROR_INSUFFICIENT_BUFFER",
        }
    }

    /// The numeric value.
    pub fn value(self) -> i64 {
        self as i64
    }
}

/// `TAG_IFD_*` and `SCARD_ATTR_*` values.
#[allow(missing_docs)]
pub mod tag {
    pub const TAG_IFD_ATR: u32 = 0x0303;
    pub const TAG_IFD_SLOTNUM: u32 = 0x0180;
    pub const TAG_IFD_SLOT_THREAD_SAFE: u32 = 0x0FAC;
    pub const TAG_IFD_THREAD_SAFE: u32 = 0x0FAD;
    pub const TAG_IFD_SLOTS_NUMBER: u32 = 0x0FAE;
    pub const TAG_IFD_SIMULTANEOUS_ACCESS: u32 = 0x0FAF;
    pub const TAG_IFD_POLLING_THREAD: u32 = 0x0FB0;
    pub const TAG_IFD_POLLING_THREAD_KILLABLE: u32 = 0x0FB1;
    pub const TAG_IFD_STOP_POLLING_THREAD: u32 = 0x0FB2;
    pub const TAG_IFD_POLLING_THREAD_WITH_TIMEOUT: u32 = 0x0FB3;
    pub const TAG_IFD_DEVICE_REMOVED: u32 = 0x0FB4;
    pub const SCARD_ATTR_VENDOR_NAME: u32 = 0x0001_0100;
    pub const SCARD_ATTR_VENDOR_IFD_TYPE: u32 = 0x0001_0101;
    pub const SCARD_ATTR_VENDOR_IFD_VERSION: u32 = 0x0001_0102;
    pub const SCARD_ATTR_VENDOR_IFD_SERIAL_NO: u32 = 0x0001_0103;
    pub const SCARD_ATTR_CHANNEL_ID: u32 = 0x0002_0110;
    pub const SCARD_ATTR_MAXINPUT: u32 = 0x0007_A007;
    pub const SCARD_ATTR_ICC_PRESENCE: u32 = 0x0009_0300;
    pub const SCARD_ATTR_ICC_INTERFACE_STATUS: u32 = 0x0009_0301;
    pub const SCARD_ATTR_ATR_STRING: u32 = 0x0009_0303;
}

/// Power actions of `IFDHPowerICC`.
pub mod power {
    /// IFD_POWER_UP.
    pub const IFD_POWER_UP: u32 = 500;
    /// IFD_POWER_DOWN.
    pub const IFD_POWER_DOWN: u32 = 501;
    /// IFD_RESET.
    pub const IFD_RESET: u32 = 502;
}

/// `SCARD_PROTOCOL_*`.
pub mod protocol {
    /// T=0.
    pub const SCARD_PROTOCOL_T0: u32 = 1;
    /// T=1.
    pub const SCARD_PROTOCOL_T1: u32 = 2;
    /// Raw.
    pub const SCARD_PROTOCOL_RAW: u32 = 4;
    /// T=15.
    pub const SCARD_PROTOCOL_T15: u32 = 8;
}

/// Largest ATR pcscd accepts.
pub const MAX_ATR_SIZE: usize = 33;

/// The single mapping from driver errors to IFD response codes.
pub fn code_for(err: &Error) -> IfdCode {
    match err {
        Error::Transport(t) => match t {
            TransportError::NoDevice => IfdCode::NoSuchDevice,
            TransportError::Timeout => IfdCode::ResponseTimeout,
            _ => IfdCode::CommunicationError,
        },
        Error::NoDevice => IfdCode::NoSuchDevice,
        Error::Timeout { .. } => IfdCode::ResponseTimeout,
        Error::IccAbsent => IfdCode::IccNotPresent,
        Error::InsufficientBuffer { .. } => IfdCode::ErrorInsufficientBuffer,
        Error::ProtocolNotSupported(_) => IfdCode::ProtocolNotSupported,
        Error::NotSupported(_) => IfdCode::ErrorNotSupported,
        Error::CommandNotSupported => IfdCode::NotSupported,
        Error::UnknownTag(_) => IfdCode::ErrorTag,
        Error::ReadOnly(_) => IfdCode::ErrorValueReadOnly,
        Error::PpsFailed(_) => IfdCode::ErrorPtsFailure,
        Error::PowerAction(_) => IfdCode::ErrorPowerAction,
        Error::UnknownLun(_) | Error::NoReader(_) | Error::Refused(_) => IfdCode::NoSuchDevice,
        Error::Frame(_)
        | Error::Unexpected { .. }
        | Error::Slot { .. }
        | Error::IccMute
        | Error::Protocol(_)
        | Error::Parity
        | Error::InvalidArgument(_)
        | Error::Config(_)
        | Error::Panic => IfdCode::CommunicationError,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::message::{FrameError, MessageType, SlotError, Status};

    #[test]
    fn every_error_maps_to_its_code() {
        let cases: Vec<(Error, IfdCode)> = vec![
            (
                Error::Transport(TransportError::NoDevice),
                IfdCode::NoSuchDevice,
            ),
            (
                Error::Transport(TransportError::Timeout),
                IfdCode::ResponseTimeout,
            ),
            (
                Error::Transport(TransportError::Pipe),
                IfdCode::CommunicationError,
            ),
            (
                Error::Transport(TransportError::Io("x".into())),
                IfdCode::CommunicationError,
            ),
            (Error::NoDevice, IfdCode::NoSuchDevice),
            (Error::Timeout { ms: 5 }, IfdCode::ResponseTimeout),
            (Error::IccAbsent, IfdCode::IccNotPresent),
            (Error::IccMute, IfdCode::CommunicationError),
            (
                Error::InsufficientBuffer { need: 3, have: 1 },
                IfdCode::ErrorInsufficientBuffer,
            ),
            (
                Error::ProtocolNotSupported("T=15".into()),
                IfdCode::ProtocolNotSupported,
            ),
            (Error::NotSupported("x".into()), IfdCode::ErrorNotSupported),
            (Error::CommandNotSupported, IfdCode::NotSupported),
            (Error::UnknownTag(0x1234), IfdCode::ErrorTag),
            (Error::ReadOnly(0x1234), IfdCode::ErrorValueReadOnly),
            (Error::PpsFailed("x".into()), IfdCode::ErrorPtsFailure),
            (Error::PowerAction("x".into()), IfdCode::ErrorPowerAction),
            (Error::UnknownLun(7), IfdCode::NoSuchDevice),
            (Error::NoReader("x".into()), IfdCode::NoSuchDevice),
            (
                Error::Refused("bogus firmware".into()),
                IfdCode::NoSuchDevice,
            ),
            (
                Error::Frame(FrameError::Short { len: 3 }),
                IfdCode::CommunicationError,
            ),
            (
                Error::Unexpected {
                    what: "type",
                    expected: 0x80,
                    got: 0x81,
                },
                IfdCode::CommunicationError,
            ),
            (
                Error::Slot {
                    error: SlotError::HW_ERROR,
                    status: Status(0x40),
                },
                IfdCode::CommunicationError,
            ),
            (Error::Protocol("t1".into()), IfdCode::CommunicationError),
            (Error::Parity, IfdCode::CommunicationError),
            (Error::InvalidArgument("x"), IfdCode::CommunicationError),
            (Error::Config("x".into()), IfdCode::CommunicationError),
            (Error::Panic, IfdCode::CommunicationError),
        ];
        for (e, c) in cases {
            assert_eq!(code_for(&e), c, "{e:?}");
        }
        let _ = MessageType::PC_TO_RDR_ABORT;
    }

    #[test]
    fn codes_have_the_header_values() {
        assert_eq!(IfdCode::Success.value(), 0);
        assert_eq!(IfdCode::CommunicationError.value(), 612);
        assert_eq!(IfdCode::NoSuchDevice.value(), 617);
        assert_eq!(IfdCode::ErrorInsufficientBuffer.value(), 618);
        assert_eq!(
            IfdCode::ErrorInsufficientBuffer.name(),
            "IFD_ERROR_INSUFFICIENT_BUFFER"
        );
    }
}
