//! Recorded CCID traces: parsing the logs people publish into a list of
//! events with their line numbers.
//!
//! Supported formats, detected per file:
//!
//! * **libccid** (`LIBCCID_ifdLogLevel=0x000F` under `pcscd --debug`): the
//!   older `00000050 [140234] -> 000000 62 00 …` form where the six hex
//!   digits number the reader, and the newer `-> lun: 0, 62 00 …` form;
//!   optional ANSI colours, the `%.8d` delay prefix and the `[thread]`
//!   field. Interrupt messages (`NotifySlotChange: 50 03`), control
//!   transfers (`receive:` after `ControlUSB() request: 0x03`), T=1 blocks
//!   (`sending:` / `received:`), and the pcscd and driver lines that reveal
//!   the IFD handler calls (`IFDHPowerICC() action: PowerUp`, …).
//! * **GnuPG scdaemon's ccid-driver**: `ccid-driver: sending 6F …`, the
//!   `status: … error: … octet[9]: … data: …` answers and the field-decoded
//!   `PC_to_RDR_…:` / `RDR_to_PC_…:` blocks, with lines wrapped by mail
//!   archives joined again.
//! * **libnfc** (`TX:` / `RX:` frames, possibly continued on the next line).
//! * **Plain hex** as quoted in questions: `Request:` / `Response:` labels,
//!   contiguous or spaced hex, Java `(byte) 0x62, …` arrays.
//! * **Native**: this crate's own line format (`# ccid-trace 1`), written by
//!   [`Trace::to_native`].
//!
//! A line `# --- [excerpt gap] ---` separates excerpts of one log: events
//! after it start a new segment. Lines a trace shows cut at the end of an
//! excerpt are kept as truncated frames; bad bytes anywhere else are an
//! error naming the file and the line.

#![forbid(unsafe_code)]

mod gnupg;
mod hex;
mod libccid;
mod libnfc;
mod native;
mod plain;

use ccid::proto::message::{Header, MessageType, HEADER_LEN};
use std::fmt;
use std::path::Path;

/// Direction of a transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Host to reader.
    Out,
    /// Reader to host.
    In,
}

/// One bulk transfer as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transfer {
    /// The reader the log attributes the transfer to: the six-digit field
    /// of older libccid logs, `lun >> 16` of newer ones; `None` when the
    /// format does not say.
    pub reader: Option<u32>,
    /// The bytes (empty for a zero-length packet).
    pub data: Vec<u8>,
    /// The line was visibly cut in the published text.
    pub cut: bool,
    /// The header was rebuilt from a decoded or partial printout rather
    /// than copied from a hex dump.
    pub reconstructed: bool,
}

impl Transfer {
    /// A transfer of `data` with no reader attribution.
    pub fn new(data: Vec<u8>) -> Self {
        Transfer {
            reader: None,
            data,
            cut: false,
            reconstructed: false,
        }
    }

    /// The CCID header, if at least 10 bytes are present.
    pub fn header(&self) -> Option<Header> {
        Header::parse(&self.data).ok()
    }

    /// Whether the bytes form exactly one complete CCID message.
    pub fn is_complete_message(&self) -> bool {
        self.header()
            .is_some_and(|h| self.data.len() == HEADER_LEN + h.length as usize)
    }

    /// `bMessageType`, if any byte is present.
    pub fn message_type(&self) -> Option<MessageType> {
        self.data.first().map(|b| MessageType(*b))
    }

    /// `bSeq`, if present.
    pub fn seq(&self) -> Option<u8> {
        self.data.get(6).copied()
    }
}

/// An IFD handler entry point (or a driver step) revealed by a log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    /// IFDHCreateChannel(ByName): the reader is opened.
    CreateChannel {
        /// The device name given by pcscd, if printed.
        device: Option<String>,
    },
    /// The open failed.
    CreateChannelFailed,
    /// IFDHCloseChannel.
    CloseChannel,
    /// IFDHPowerICC(IFD_POWER_UP).
    PowerUp,
    /// IFDHPowerICC(IFD_POWER_DOWN).
    PowerDown,
    /// IFDHPowerICC(IFD_RESET).
    Reset,
    /// IFDHICCPresence.
    Presence,
    /// IFDHTransmitToICC.
    Transmit,
    /// IFDHControl.
    Control {
        /// The control code.
        code: u32,
    },
    /// IFDHSetProtocolParameters.
    SetProtocol {
        /// 0 for T=0, 1 for T=1.
        protocol: u8,
    },
    /// IFDHSetCapabilities.
    SetCapabilities {
        /// The tag.
        tag: u32,
    },
    /// IFDHGetCapabilities (no I/O of its own).
    GetCapabilities {
        /// The tag.
        tag: u32,
    },
}

/// What one recorded line (or group of wrapped lines) says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventKind {
    /// A bulk-OUT transfer.
    BulkOut(Transfer),
    /// A bulk-IN transfer; an empty one is a zero-length packet.
    BulkIn(Transfer),
    /// An interrupt-IN message (NotifySlotChange, HardwareError, …).
    Interrupt {
        /// The reader, when the log says.
        reader: Option<u32>,
        /// The message.
        data: Vec<u8>,
    },
    /// A class request on the control pipe is about to be made
    /// (`ControlUSB() request: 0x03` is GET_DATA_RATES).
    ControlRequest {
        /// bRequest.
        request: u8,
    },
    /// Data read by a control transfer (`receive:`).
    ControlIn(Vec<u8>),
    /// Data written by a control transfer (`send:`).
    ControlOut(Vec<u8>),
    /// A T=1 block carried inside an XfrBlock (an annotation).
    T1Block {
        /// Direction.
        direction: Direction,
        /// The block.
        block: Vec<u8>,
    },
    /// A PPS request or confirmation (an annotation).
    Pps {
        /// Direction.
        direction: Direction,
        /// The PPS bytes.
        data: Vec<u8>,
    },
    /// An IFD handler call.
    Call {
        /// The call.
        call: Call,
        /// The Lun pcscd passed, when printed.
        lun: Option<u32>,
    },
    /// The ATR the driver reported (`Card ATR:`).
    Atr(Vec<u8>),
    /// The APDU an application sent (`APDU:`, `APDU_data:`).
    Apdu(Vec<u8>),
    /// The response the driver returned (`SW:`, GnuPG's `response:`).
    Response(Vec<u8>),
    /// The input of an IFDHControl call.
    ControlTx(Vec<u8>),
    /// The output of an IFDHControl call.
    ControlRx(Vec<u8>),
    /// The card protocol the host uses (0 = T=0, 1 = T=1).
    Protocol(u8),
    /// What IFDHICCPresence reported.
    PresenceResult {
        /// `true` for "Card present".
        present: bool,
    },
    /// A bulk-IN read timed out.
    ReadTimeout,
    /// The driver opened the USB device (seen even when the line naming
    /// the IFD handler call is missing from an excerpt).
    DeviceOpened,
    /// The reader was unplugged (pcscd's hotplug code says so).
    DeviceRemoved,
    /// A USB transfer failed because the device is gone; a command on
    /// the line before was not delivered.
    NoDevice,
    /// The driver numbered the reader opened for `lun`.
    ReaderIndex {
        /// The reader number used in the older frame format.
        index: u32,
    },
    /// The device name pcscd gives the reader (first time it appears),
    /// e.g. `usb:08e6/4433:libudev:0:/dev/bus/usb/001/002`.
    DeviceName(String),
    /// The reader's USB identity.
    VidPid {
        /// idVendor.
        vendor: u16,
        /// idProduct.
        product: u16,
    },
    /// A class-descriptor field printed by the host (name, value text).
    DescriptorField {
        /// Field name, e.g. `dwFeatures`.
        name: String,
        /// The value as printed.
        value: String,
    },
    /// `# --- [excerpt gap] ---`: the following events start a new segment.
    Gap,
}

/// One event with the line it starts on (1-based).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Line number in the file, 1-based.
    pub line: usize,
    /// What happened.
    pub kind: EventKind,
}

/// The log format of a trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// libccid COMM output inside a pcscd log.
    Libccid,
    /// GnuPG scdaemon's built-in ccid-driver.
    Gnupg,
    /// libnfc's acr122_usb driver.
    Libnfc,
    /// Hex quoted in prose.
    PlainHex,
    /// This crate's format.
    Native,
}

impl Format {
    /// A short name.
    pub fn name(self) -> &'static str {
        match self {
            Format::Libccid => "libccid",
            Format::Gnupg => "gnupg ccid-driver",
            Format::Libnfc => "libnfc",
            Format::PlainHex => "plain hex",
            Format::Native => "ccid-trace",
        }
    }
}

/// A parse failure: file, line and reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// The file (or name) parsed.
    pub file: String,
    /// 1-based line number.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.file, self.line, self.message)
    }
}

impl std::error::Error for ParseError {}

/// A parsed trace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trace {
    /// The file name (or the name given to [`parse_str`]).
    pub name: String,
    /// The detected format.
    pub format: Format,
    /// Events in file order.
    pub events: Vec<Event>,
}

impl Trace {
    /// Events split at excerpt gaps (the gap events themselves excluded).
    pub fn segments(&self) -> Vec<&[Event]> {
        self.events.split(|e| e.kind == EventKind::Gap).collect()
    }

    /// Number of bulk-OUT transfers.
    pub fn host_frames(&self) -> usize {
        self.events
            .iter()
            .filter(|e| matches!(e.kind, EventKind::BulkOut(_)))
            .count()
    }

    /// Number of bulk-IN transfers.
    pub fn reader_frames(&self) -> usize {
        self.events
            .iter()
            .filter(|e| matches!(e.kind, EventKind::BulkIn(_)))
            .count()
    }

    /// The trace in this crate's native format; [`parse_str`] reads it back
    /// to the same events (line numbers aside).
    pub fn to_native(&self) -> String {
        native::write(self)
    }
}

/// Reads and parses a trace file.
pub fn parse_file(path: &Path) -> Result<Trace, ParseError> {
    let name = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| ParseError {
        file: name.clone(),
        line: 0,
        message: format!("cannot read: {e}"),
    })?;
    let text = String::from_utf8_lossy(&bytes);
    parse_str(&name, &text)
}

/// Parses the text of a trace; `name` is used in errors.
pub fn parse_str(name: &str, text: &str) -> Result<Trace, ParseError> {
    let lines: Vec<&str> = text.lines().collect();
    let format = detect(&lines);
    let src = Source {
        file: name,
        lines: &lines,
    };
    let events = match format {
        Format::Libccid => libccid::parse(&src)?,
        Format::Gnupg => gnupg::parse(&src)?,
        Format::Libnfc => libnfc::parse(&src)?,
        Format::PlainHex => plain::parse(&src)?,
        Format::Native => native::parse(&src)?,
    };
    Ok(Trace {
        name: name.to_string(),
        format,
        events,
    })
}

/// The lines of one file, for the format parsers.
pub(crate) struct Source<'a> {
    file: &'a str,
    lines: &'a [&'a str],
}

impl Source<'_> {
    fn error(&self, line: usize, message: impl Into<String>) -> ParseError {
        ParseError {
            file: self.file.to_string(),
            line,
            message: message.into(),
        }
    }

    /// Whether line `idx` (0-based) is the last line with text before an
    /// excerpt gap or the end of the file: only there may a line be cut.
    fn is_excerpt_end(&self, idx: usize) -> bool {
        for l in self.lines.iter().skip(idx + 1) {
            let t = l.trim();
            if t.is_empty() {
                continue;
            }
            return is_gap(t);
        }
        true
    }
}

/// Whether a line is the excerpt-gap marker.
pub(crate) fn is_gap(line: &str) -> bool {
    line.trim_start_matches(['>', ' ']).trim() == "# --- [excerpt gap] ---"
}

/// Picks the format from signature lines.
fn detect(lines: &[&str]) -> Format {
    if lines
        .iter()
        .find(|l| !l.trim().is_empty())
        .is_some_and(|l| l.trim() == native::MAGIC)
    {
        return Format::Native;
    }
    if lines.iter().any(|l| l.contains("ccid-driver:")) {
        return Format::Gnupg;
    }
    if lines
        .iter()
        .any(|l| l.contains("libnfc.") && libnfc::frame_start(l).is_some())
    {
        return Format::Libnfc;
    }
    if lines.iter().any(|l| libccid::is_signature(l)) {
        return Format::Libccid;
    }
    Format::PlainHex
}

/// Formats bytes as `62 00 00 …` (upper-case hex, single spaces).
pub fn hex_string(bytes: &[u8]) -> String {
    hex::format(bytes)
}

/// The message type whose specification name is `name`.
pub(crate) fn message_type_named(name: &str) -> Option<u8> {
    (0..=255u8).find(|b| MessageType(*b).name() == Some(name))
}

#[cfg(test)]
mod tests;
