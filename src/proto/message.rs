//! CCID bulk and interrupt messages (CCID Rev 1.1 §6.1–§6.3), both
//! directions: the driver encodes `PC_to_RDR_*` and decodes `RDR_to_PC_*`;
//! the simulator does the opposite with the same code.

use super::codec::{DecodeError, Reader};
use thiserror::Error;

/// Size of the header every bulk message starts with.
pub const HEADER_LEN: usize = 10;

/// Largest message the driver accepts or builds: a 65 536-byte data field,
/// its 4-byte extended header and 3 bytes of Le/T=1 framing, plus the header.
pub const MAX_MESSAGE_LEN: usize = HEADER_LEN + 4 + 3 + 65536 + 3;

/// `bMessageType`, an open set: unknown values survive decoding.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct MessageType(pub u8);

macro_rules! message_types {
    ($($name:ident = $val:expr, $text:expr;)*) => {
        impl MessageType {
            $(
                #[doc = $text]
                pub const $name: MessageType = MessageType($val);
            )*
            /// The specification's name, if the value is known.
            pub fn name(self) -> Option<&'static str> {
                match self.0 {
                    $($val => Some($text),)*
                    _ => None,
                }
            }
        }
    };
}

message_types! {
    PC_TO_RDR_ICC_POWER_ON = 0x62, "PC_to_RDR_IccPowerOn";
    PC_TO_RDR_ICC_POWER_OFF = 0x63, "PC_to_RDR_IccPowerOff";
    PC_TO_RDR_GET_SLOT_STATUS = 0x65, "PC_to_RDR_GetSlotStatus";
    PC_TO_RDR_XFR_BLOCK = 0x6F, "PC_to_RDR_XfrBlock";
    PC_TO_RDR_GET_PARAMETERS = 0x6C, "PC_to_RDR_GetParameters";
    PC_TO_RDR_RESET_PARAMETERS = 0x6D, "PC_to_RDR_ResetParameters";
    PC_TO_RDR_SET_PARAMETERS = 0x61, "PC_to_RDR_SetParameters";
    PC_TO_RDR_ESCAPE = 0x6B, "PC_to_RDR_Escape";
    PC_TO_RDR_ICC_CLOCK = 0x6E, "PC_to_RDR_IccClock";
    PC_TO_RDR_T0_APDU = 0x6A, "PC_to_RDR_T0APDU";
    PC_TO_RDR_SECURE = 0x69, "PC_to_RDR_Secure";
    PC_TO_RDR_MECHANICAL = 0x71, "PC_to_RDR_Mechanical";
    PC_TO_RDR_ABORT = 0x72, "PC_to_RDR_Abort";
    PC_TO_RDR_SET_DATA_RATE_AND_CLOCK = 0x73, "PC_to_RDR_SetDataRateAndClockFrequency";
    RDR_TO_PC_DATA_BLOCK = 0x80, "RDR_to_PC_DataBlock";
    RDR_TO_PC_SLOT_STATUS = 0x81, "RDR_to_PC_SlotStatus";
    RDR_TO_PC_PARAMETERS = 0x82, "RDR_to_PC_Parameters";
    RDR_TO_PC_ESCAPE = 0x83, "RDR_to_PC_Escape";
    RDR_TO_PC_DATA_RATE_AND_CLOCK = 0x84, "RDR_to_PC_DataRateAndClockFrequency";
    RDR_TO_PC_NOTIFY_SLOT_CHANGE = 0x50, "RDR_to_PC_NotifySlotChange";
    RDR_TO_PC_HARDWARE_ERROR = 0x51, "RDR_to_PC_HardwareError";
}

impl MessageType {
    /// The response type a command expects (CCID Rev 1.1 §6.2 table 6.2-1).
    pub fn expected_response(self) -> Option<MessageType> {
        Some(match self {
            MessageType::PC_TO_RDR_ICC_POWER_ON
            | MessageType::PC_TO_RDR_XFR_BLOCK
            | MessageType::PC_TO_RDR_SECURE => MessageType::RDR_TO_PC_DATA_BLOCK,
            MessageType::PC_TO_RDR_ICC_POWER_OFF
            | MessageType::PC_TO_RDR_GET_SLOT_STATUS
            | MessageType::PC_TO_RDR_ICC_CLOCK
            | MessageType::PC_TO_RDR_T0_APDU
            | MessageType::PC_TO_RDR_MECHANICAL
            | MessageType::PC_TO_RDR_ABORT => MessageType::RDR_TO_PC_SLOT_STATUS,
            MessageType::PC_TO_RDR_GET_PARAMETERS
            | MessageType::PC_TO_RDR_RESET_PARAMETERS
            | MessageType::PC_TO_RDR_SET_PARAMETERS => MessageType::RDR_TO_PC_PARAMETERS,
            MessageType::PC_TO_RDR_ESCAPE => MessageType::RDR_TO_PC_ESCAPE,
            MessageType::PC_TO_RDR_SET_DATA_RATE_AND_CLOCK => {
                MessageType::RDR_TO_PC_DATA_RATE_AND_CLOCK
            }
            _ => return None,
        })
    }
}

impl std::fmt::Debug for MessageType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.name() {
            Some(n) => write!(f, "{n}"),
            None => write!(f, "MessageType({:#04x})", self.0),
        }
    }
}

/// `bError` of a response, an open set with the specification's names.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SlotError(pub u8);

macro_rules! slot_errors {
    ($($name:ident = $val:expr, $text:expr;)*) => {
        impl SlotError {
            $(
                #[doc = $text]
                pub const $name: SlotError = SlotError($val);
            )*
            /// A readable description, as libccid logs it.
            pub fn description(self) -> String {
                match self.0 {
                    $($val => $text.to_string(),)*
                    n @ 1..=127 => format!("error on byte {n}"),
                    n => format!("Unknown reader error {n:#04x}"),
                }
            }
        }
    };
}

slot_errors! {
    CMD_NOT_SUPPORTED = 0x00, "Command not supported";
    BAD_LENGTH = 0x01, "Wrong command length";
    BAD_SLOT = 0x05, "Invalid slot number";
    ICC_SHORT_CIRCUIT = 0xA2, "Card short-circuiting. Card powered off";
    ATR_TOO_LONG = 0xA3, "ATR too long (> 33)";
    NO_DATA_EXCHANGED = 0xAB, "No data exchanged";
    EMV_T1_TOO_LONG = 0xB0, "Reader in EMV mode and T=1 message too long";
    EMV_PROTOCOL_ERROR = 0xBB, "Protocol error in EMV mode";
    T1_CARD_ERROR = 0xBD, "Card error during T=1 exchange";
    BAD_APDU_LENGTH = 0xBE, "Wrong APDU command length";
    CMD_SLOT_BUSY = 0xE0, "Slot busy";
    PIN_CANCELLED = 0xEF, "PIN cancelled";
    PIN_TIMEOUT = 0xF0, "PIN timeout";
    BUSY_WITH_AUTO_SEQUENCE = 0xF2, "Busy with autosequence";
    DEACTIVATED_PROTOCOL = 0xF3, "Deactivated protocol";
    PROCEDURE_BYTE_CONFLICT = 0xF4, "Procedure byte conflict";
    ICC_CLASS_NOT_SUPPORTED = 0xF5, "Class not supported";
    ICC_PROTOCOL_NOT_SUPPORTED = 0xF6, "Protocol not supported";
    BAD_ATR_TCK = 0xF7, "Invalid ATR checksum (TCK)";
    BAD_ATR_TS = 0xF8, "Invalid ATR first byte";
    HW_ERROR = 0xFB, "Hardware error";
    XFR_OVERRUN = 0xFC, "Overrun";
    XFR_PARITY_ERROR = 0xFD, "Parity error during exchange";
    ICC_MUTE = 0xFE, "Card absent or mute";
    CMD_ABORTED = 0xFF, "Activity aborted by Host";
}

impl std::fmt::Debug for SlotError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:#04x} ({})", self.0, self.description())
    }
}

/// `bmICCStatus`, bits 0..=1 of `bStatus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IccStatus {
    /// An ICC is present and active (powered and clocked).
    Active,
    /// An ICC is present and inactive.
    Inactive,
    /// No ICC is present.
    Absent,
    /// RFU value 3.
    Reserved,
}

/// `bmCommandStatus`, bits 6..=7 of `bStatus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommandStatus {
    /// Processed without error.
    Ok,
    /// Failed; `bError` says why.
    Failed,
    /// Time extension requested; `bError` is the multiplier.
    TimeExtension,
    /// RFU value 3.
    Reserved,
}

/// `bStatus` of a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status(pub u8);

impl Status {
    /// Builds a status byte.
    pub fn new(icc: IccStatus, cmd: CommandStatus) -> Status {
        let i = match icc {
            IccStatus::Active => 0,
            IccStatus::Inactive => 1,
            IccStatus::Absent => 2,
            IccStatus::Reserved => 3,
        };
        let c = match cmd {
            CommandStatus::Ok => 0,
            CommandStatus::Failed => 0x40,
            CommandStatus::TimeExtension => 0x80,
            CommandStatus::Reserved => 0xC0,
        };
        Status(i | c)
    }

    /// `bmICCStatus`.
    pub fn icc(self) -> IccStatus {
        match self.0 & 0x03 {
            0 => IccStatus::Active,
            1 => IccStatus::Inactive,
            2 => IccStatus::Absent,
            _ => IccStatus::Reserved,
        }
    }

    /// `bmCommandStatus`.
    pub fn command(self) -> CommandStatus {
        match self.0 >> 6 {
            0 => CommandStatus::Ok,
            1 => CommandStatus::Failed,
            2 => CommandStatus::TimeExtension,
            _ => CommandStatus::Reserved,
        }
    }
}

/// `bPowerSelect` of IccPowerOn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Voltage {
    /// Automatic voltage selection.
    Auto = 0,
    /// 5.0 V.
    V5 = 1,
    /// 3.0 V.
    V3 = 2,
    /// 1.8 V.
    V1_8 = 3,
}

impl Voltage {
    /// Decodes `bPowerSelect`.
    pub fn from_byte(b: u8) -> Option<Voltage> {
        Some(match b {
            0 => Voltage::Auto,
            1 => Voltage::V5,
            2 => Voltage::V3,
            3 => Voltage::V1_8,
            _ => return None,
        })
    }
    /// The `bVoltageSupport` bit of this voltage (0 for automatic).
    pub fn support_bit(self) -> u8 {
        match self {
            Voltage::Auto => 0,
            Voltage::V5 => 0x01,
            Voltage::V3 => 0x02,
            Voltage::V1_8 => 0x04,
        }
    }
}

/// A `PC_to_RDR_*` command, without its slot and sequence number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// PC_to_RDR_IccPowerOn.
    IccPowerOn {
        /// `bPowerSelect`.
        power_select: u8,
    },
    /// PC_to_RDR_IccPowerOff.
    IccPowerOff,
    /// PC_to_RDR_GetSlotStatus.
    GetSlotStatus,
    /// PC_to_RDR_XfrBlock.
    XfrBlock {
        /// `bBWI`: block waiting time multiplier.
        bwi: u8,
        /// `wLevelParameter`.
        level: u16,
        /// `abData`.
        data: Vec<u8>,
    },
    /// PC_to_RDR_GetParameters.
    GetParameters,
    /// PC_to_RDR_ResetParameters.
    ResetParameters,
    /// PC_to_RDR_SetParameters.
    SetParameters {
        /// `bProtocolNum`.
        protocol: u8,
        /// The 5-byte (T=0) or 7-byte (T=1) protocol data structure.
        data: Vec<u8>,
    },
    /// PC_to_RDR_Escape.
    Escape {
        /// `abData`.
        data: Vec<u8>,
    },
    /// PC_to_RDR_IccClock.
    IccClock {
        /// `bClockCommand`.
        clock_command: u8,
    },
    /// PC_to_RDR_T0APDU.
    T0Apdu {
        /// `bmChanges`.
        changes: u8,
        /// `bClassGetResponse`.
        class_get_response: u8,
        /// `bClassEnvelope`.
        class_envelope: u8,
    },
    /// PC_to_RDR_Secure.
    Secure {
        /// `bBWI`.
        bwi: u8,
        /// `wLevelParameter`.
        level: u16,
        /// `abData`: `bPINOperation` followed by the PIN structure.
        data: Vec<u8>,
    },
    /// PC_to_RDR_Mechanical.
    Mechanical {
        /// `bFunction`.
        function: u8,
    },
    /// PC_to_RDR_Abort.
    Abort,
    /// PC_to_RDR_SetDataRateAndClockFrequency.
    SetDataRateAndClockFrequency {
        /// `dwClockFrequency`, kHz.
        clock: u32,
        /// `dwDataRate`, bps.
        rate: u32,
    },
    /// A message type the decoder does not know.
    Unknown {
        /// `bMessageType`.
        message_type: u8,
        /// The three header bytes.
        specific: [u8; 3],
        /// `abData`.
        data: Vec<u8>,
    },
}

impl Command {
    /// The message type.
    pub fn message_type(&self) -> MessageType {
        match self {
            Command::IccPowerOn { .. } => MessageType::PC_TO_RDR_ICC_POWER_ON,
            Command::IccPowerOff => MessageType::PC_TO_RDR_ICC_POWER_OFF,
            Command::GetSlotStatus => MessageType::PC_TO_RDR_GET_SLOT_STATUS,
            Command::XfrBlock { .. } => MessageType::PC_TO_RDR_XFR_BLOCK,
            Command::GetParameters => MessageType::PC_TO_RDR_GET_PARAMETERS,
            Command::ResetParameters => MessageType::PC_TO_RDR_RESET_PARAMETERS,
            Command::SetParameters { .. } => MessageType::PC_TO_RDR_SET_PARAMETERS,
            Command::Escape { .. } => MessageType::PC_TO_RDR_ESCAPE,
            Command::IccClock { .. } => MessageType::PC_TO_RDR_ICC_CLOCK,
            Command::T0Apdu { .. } => MessageType::PC_TO_RDR_T0_APDU,
            Command::Secure { .. } => MessageType::PC_TO_RDR_SECURE,
            Command::Mechanical { .. } => MessageType::PC_TO_RDR_MECHANICAL,
            Command::Abort => MessageType::PC_TO_RDR_ABORT,
            Command::SetDataRateAndClockFrequency { .. } => {
                MessageType::PC_TO_RDR_SET_DATA_RATE_AND_CLOCK
            }
            Command::Unknown { message_type, .. } => MessageType(*message_type),
        }
    }

    fn specific_and_data(&self) -> ([u8; 3], std::borrow::Cow<'_, [u8]>) {
        use std::borrow::Cow;
        let none: Cow<'_, [u8]> = Cow::Borrowed(&[]);
        match self {
            Command::IccPowerOn { power_select } => ([*power_select, 0, 0], none),
            Command::IccPowerOff
            | Command::GetSlotStatus
            | Command::GetParameters
            | Command::ResetParameters
            | Command::Abort => ([0, 0, 0], none),
            Command::XfrBlock { bwi, level, data } | Command::Secure { bwi, level, data } => {
                let l = level.to_le_bytes();
                ([*bwi, l[0], l[1]], Cow::Borrowed(data.as_slice()))
            }
            Command::SetParameters { protocol, data } => {
                ([*protocol, 0, 0], Cow::Borrowed(data.as_slice()))
            }
            Command::Escape { data } => ([0, 0, 0], Cow::Borrowed(data.as_slice())),
            Command::IccClock { clock_command } => ([*clock_command, 0, 0], none),
            Command::T0Apdu {
                changes,
                class_get_response,
                class_envelope,
            } => ([*changes, *class_get_response, *class_envelope], none),
            Command::Mechanical { function } => ([*function, 0, 0], none),
            Command::SetDataRateAndClockFrequency { clock, rate } => {
                let mut d = Vec::with_capacity(8);
                d.extend_from_slice(&clock.to_le_bytes());
                d.extend_from_slice(&rate.to_le_bytes());
                ([0, 0, 0], Cow::Owned(d))
            }
            Command::Unknown { specific, data, .. } => (*specific, Cow::Borrowed(data.as_slice())),
        }
    }

    /// Encodes the command for `slot` with sequence number `seq`.
    pub fn encode(&self, slot: u8, seq: u8) -> Vec<u8> {
        let (specific, data) = self.specific_and_data();
        let mut out = Vec::with_capacity(HEADER_LEN + data.len());
        out.push(self.message_type().0);
        out.extend_from_slice(&(data.len() as u32).to_le_bytes());
        out.push(slot);
        out.push(seq);
        out.extend_from_slice(&specific);
        out.extend_from_slice(&data);
        out
    }

    /// Decodes a complete command message (simulator side).
    pub fn decode(frame: &[u8]) -> Result<(Header, Command), FrameError> {
        let header = Header::parse(frame)?;
        let data = frame.get(HEADER_LEN..).unwrap_or(&[]);
        if data.len() != header.length as usize {
            return Err(FrameError::LengthMismatch {
                declared: header.length,
                actual: data.len(),
            });
        }
        let s = header.specific;
        let level = u16::from_le_bytes([s[1], s[2]]);
        let cmd = match MessageType(header.message_type) {
            MessageType::PC_TO_RDR_ICC_POWER_ON => Command::IccPowerOn { power_select: s[0] },
            MessageType::PC_TO_RDR_ICC_POWER_OFF => Command::IccPowerOff,
            MessageType::PC_TO_RDR_GET_SLOT_STATUS => Command::GetSlotStatus,
            MessageType::PC_TO_RDR_XFR_BLOCK => Command::XfrBlock {
                bwi: s[0],
                level,
                data: data.to_vec(),
            },
            MessageType::PC_TO_RDR_GET_PARAMETERS => Command::GetParameters,
            MessageType::PC_TO_RDR_RESET_PARAMETERS => Command::ResetParameters,
            MessageType::PC_TO_RDR_SET_PARAMETERS => Command::SetParameters {
                protocol: s[0],
                data: data.to_vec(),
            },
            MessageType::PC_TO_RDR_ESCAPE => Command::Escape {
                data: data.to_vec(),
            },
            MessageType::PC_TO_RDR_ICC_CLOCK => Command::IccClock {
                clock_command: s[0],
            },
            MessageType::PC_TO_RDR_T0_APDU => Command::T0Apdu {
                changes: s[0],
                class_get_response: s[1],
                class_envelope: s[2],
            },
            MessageType::PC_TO_RDR_SECURE => Command::Secure {
                bwi: s[0],
                level,
                data: data.to_vec(),
            },
            MessageType::PC_TO_RDR_MECHANICAL => Command::Mechanical { function: s[0] },
            MessageType::PC_TO_RDR_ABORT => Command::Abort,
            MessageType::PC_TO_RDR_SET_DATA_RATE_AND_CLOCK => {
                let mut r = Reader::new(data);
                let clock = r.u32_le("dwClockFrequency")?;
                let rate = r.u32_le("dwDataRate")?;
                Command::SetDataRateAndClockFrequency { clock, rate }
            }
            MessageType(t) => Command::Unknown {
                message_type: t,
                specific: s,
                data: data.to_vec(),
            },
        };
        Ok((header, cmd))
    }
}

/// The 10-byte header common to every bulk message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// `bMessageType`.
    pub message_type: u8,
    /// `dwLength`: bytes after the header.
    pub length: u32,
    /// `bSlot`.
    pub slot: u8,
    /// `bSeq`.
    pub seq: u8,
    /// The three message-specific bytes.
    pub specific: [u8; 3],
}

impl Header {
    /// Decodes the header at the start of `frame`.
    pub fn parse(frame: &[u8]) -> Result<Header, FrameError> {
        let mut r = Reader::new(frame);
        let h = (|| -> Result<Header, DecodeError> {
            Ok(Header {
                message_type: r.u8("bMessageType")?,
                length: r.u32_le("dwLength")?,
                slot: r.u8("bSlot")?,
                seq: r.u8("bSeq")?,
                specific: r.array::<3>("header")?,
            })
        })();
        h.map_err(|_| FrameError::Short { len: frame.len() })
    }
}

/// A malformed bulk frame.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FrameError {
    /// Fewer than 10 bytes.
    #[error("frame of {len} bytes is shorter than the 10-byte header")]
    Short {
        /// Bytes received.
        len: usize,
    },
    /// `dwLength` does not match the bytes received.
    #[error("dwLength {declared} but {actual} data bytes received")]
    LengthMismatch {
        /// `dwLength`.
        declared: u32,
        /// Data bytes present.
        actual: usize,
    },
    /// A field could not be decoded.
    #[error(transparent)]
    Decode(#[from] DecodeError),
}

/// A `RDR_to_PC_*` bulk response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// `bMessageType`.
    pub message_type: MessageType,
    /// `bSlot`.
    pub slot: u8,
    /// `bSeq`.
    pub seq: u8,
    /// `bStatus`.
    pub status: Status,
    /// `bError`.
    pub error: SlotError,
    /// The third specific byte: `bChainParameter` (DataBlock),
    /// `bClockStatus` (SlotStatus), `bProtocolNum` (Parameters).
    pub specific: u8,
    /// `abData`.
    pub data: Vec<u8>,
}

impl Response {
    /// Decodes one complete response frame; `dwLength` must match exactly.
    pub fn parse(frame: &[u8]) -> Result<Response, FrameError> {
        let h = Header::parse(frame)?;
        let data = frame.get(HEADER_LEN..).unwrap_or(&[]);
        if data.len() != h.length as usize {
            return Err(FrameError::LengthMismatch {
                declared: h.length,
                actual: data.len(),
            });
        }
        Ok(Response {
            message_type: MessageType(h.message_type),
            slot: h.slot,
            seq: h.seq,
            status: Status(h.specific[0]),
            error: SlotError(h.specific[1]),
            specific: h.specific[2],
            data: data.to_vec(),
        })
    }

    /// Encodes the response (simulator side).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_LEN + self.data.len());
        out.push(self.message_type.0);
        out.extend_from_slice(&(self.data.len() as u32).to_le_bytes());
        out.push(self.slot);
        out.push(self.seq);
        out.push(self.status.0);
        out.push(self.error.0);
        out.push(self.specific);
        out.extend_from_slice(&self.data);
        out
    }

    /// `bChainParameter` of a DataBlock.
    pub fn chain_parameter(&self) -> u8 {
        self.specific
    }
}

/// Splits bytes read from bulk-IN into frames using each header's
/// `dwLength`. Returns the frames and, when the bytes end inside a frame, the
/// number of bytes still missing for it.
pub fn split_frames(buf: &[u8]) -> (Vec<&[u8]>, Option<usize>) {
    let mut frames = Vec::new();
    let mut rest = buf;
    while !rest.is_empty() {
        let Ok(h) = Header::parse(rest) else {
            return (frames, Some(HEADER_LEN - rest.len()));
        };
        let total = HEADER_LEN.saturating_add(h.length as usize);
        if total > rest.len() {
            frames.push(rest);
            return (frames, Some(total - rest.len()));
        }
        let (f, r) = rest.split_at(total);
        frames.push(f);
        rest = r;
    }
    (frames, None)
}

/// A message from the interrupt-IN endpoint (CCID Rev 1.1 §6.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notification {
    /// RDR_to_PC_NotifySlotChange: two bits per slot, bit 0 = present,
    /// bit 1 = changed.
    SlotChange {
        /// `bmSlotICCState`.
        bitmap: Vec<u8>,
    },
    /// RDR_to_PC_HardwareError.
    HardwareError {
        /// `bSlot`.
        slot: u8,
        /// `bSeq`.
        seq: u8,
        /// `bHardwareErrorCode` (0x01: overcurrent).
        code: u8,
    },
    /// Anything else.
    Unknown(Vec<u8>),
}

impl Notification {
    /// Decodes an interrupt message.
    pub fn parse(buf: &[u8]) -> Result<Notification, DecodeError> {
        let mut r = Reader::new(buf);
        let t = r.u8("bMessageType")?;
        match MessageType(t) {
            MessageType::RDR_TO_PC_NOTIFY_SLOT_CHANGE => {
                let bitmap = r.rest().to_vec();
                if bitmap.is_empty() {
                    return Err(DecodeError::Short {
                        what: "bmSlotICCState",
                        need: 1,
                        have: 0,
                    });
                }
                Ok(Notification::SlotChange { bitmap })
            }
            MessageType::RDR_TO_PC_HARDWARE_ERROR => Ok(Notification::HardwareError {
                slot: r.u8("bSlot")?,
                seq: r.u8("bSeq")?,
                code: r.u8("bHardwareErrorCode")?,
            }),
            _ => Ok(Notification::Unknown(buf.to_vec())),
        }
    }

    /// For a slot change: (present, changed) for `slot`, if the bitmap covers it.
    pub fn slot_state(&self, slot: usize) -> Option<(bool, bool)> {
        match self {
            Notification::SlotChange { bitmap } => {
                let byte = bitmap.get(slot / 4)?;
                let bits = byte >> (2 * (slot % 4));
                Some((bits & 1 != 0, bits & 2 != 0))
            }
            _ => None,
        }
    }

    /// Builds a NotifySlotChange for `slots` slots (simulator side).
    pub fn encode_slot_change(states: &[(bool, bool)]) -> Vec<u8> {
        let n = states.len().max(1).div_ceil(4);
        let mut out = vec![0u8; 1 + n];
        out[0] = MessageType::RDR_TO_PC_NOTIFY_SLOT_CHANGE.0;
        for (i, (present, changed)) in states.iter().enumerate() {
            let bits = u8::from(*present) | (u8::from(*changed) << 1);
            out[1 + i / 4] |= bits << (2 * (i % 4));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn power_on_encodes_like_the_reference() {
        // "-> 000000 62 00 00 00 00 00 01 01 00 00" in libccid 1.5.2 logs.
        let f = Command::IccPowerOn { power_select: 1 }.encode(0, 1);
        assert_eq!(f, [0x62, 0, 0, 0, 0, 0, 1, 1, 0, 0]);
        let (h, c) = Command::decode(&f).unwrap();
        assert_eq!(h.seq, 1);
        assert_eq!(c, Command::IccPowerOn { power_select: 1 });
    }

    #[test]
    fn xfr_block_round_trip() {
        let c = Command::XfrBlock {
            bwi: 0,
            level: 0x10,
            data: vec![1, 2, 3],
        };
        let f = c.encode(2, 9);
        assert_eq!(&f[..10], &[0x6F, 3, 0, 0, 0, 2, 9, 0, 0x10, 0]);
        assert_eq!(Command::decode(&f).unwrap().1, c);
    }

    #[test]
    fn response_checks_dw_length() {
        let ok = [0x81, 0, 0, 0, 0, 0, 7, 0x42, 0xFE, 0];
        let r = Response::parse(&ok).unwrap();
        assert_eq!(r.status.icc(), IccStatus::Absent);
        assert_eq!(r.status.command(), CommandStatus::Failed);
        assert_eq!(r.error, SlotError::ICC_MUTE);
        assert_eq!(r.encode(), ok);
        let long = [0x80, 5, 0, 0, 0, 0, 7, 0, 0, 0, 1];
        assert!(matches!(
            Response::parse(&long),
            Err(FrameError::LengthMismatch {
                declared: 5,
                actual: 1
            })
        ));
        assert!(matches!(
            Response::parse(&[0x80, 0]),
            Err(FrameError::Short { len: 2 })
        ));
    }

    #[test]
    fn split_concatenated_and_partial() {
        let a = Response {
            message_type: MessageType::RDR_TO_PC_DATA_BLOCK,
            slot: 0,
            seq: 1,
            status: Status(0),
            error: SlotError(0),
            specific: 0,
            data: vec![9; 4],
        }
        .encode();
        let mut two = a.clone();
        two.extend_from_slice(&a[..12]);
        let (frames, missing) = split_frames(&two);
        assert_eq!(frames.len(), 2);
        assert_eq!(frames[0], &a[..]);
        assert_eq!(missing, Some(2));
        assert_eq!(split_frames(&[]).0.len(), 0);
    }

    #[test]
    fn notify_slot_change_bits() {
        let n = Notification::parse(&[0x50, 0x03]).unwrap();
        assert_eq!(n.slot_state(0), Some((true, true)));
        assert_eq!(n.slot_state(4), None);
        let enc = Notification::encode_slot_change(&[(false, false), (true, true), (false, true)]);
        assert_eq!(enc, vec![0x50, 0b10_11_00]);
        let n = Notification::parse(&enc).unwrap();
        assert_eq!(n.slot_state(2), Some((false, true)));
        assert!(Notification::parse(&[0x50]).is_err());
        assert!(Notification::parse(&[]).is_err());
    }

    #[test]
    fn names() {
        assert_eq!(SlotError(0xFE).description(), "Card absent or mute");
        assert_eq!(SlotError(3).description(), "error on byte 3");
        assert_eq!(format!("{:?}", MessageType(0x6F)), "PC_to_RDR_XfrBlock");
    }
}
