//! The one seam between the driver and a device: real USB through rusb
//! ([`usb`]), or a virtual reader (the `ccid-sim` crate implements
//! [`Transport`] in-process).
//!
//! Every call has a timeout; none may block longer than it.

#![forbid(unsafe_code)]

use std::time::Duration;
use thiserror::Error;

#[cfg(feature = "usb")]
pub mod usb;

/// A transport failure, mapped to IFD codes in one place (`crate::error`).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TransportError {
    /// The device is gone (unplugged, or marked removed).
    #[error("device removed")]
    NoDevice,
    /// The operation did not complete in time.
    #[error("timeout")]
    Timeout,
    /// The endpoint stalled or the request was refused.
    #[error("pipe error (stall)")]
    Pipe,
    /// The device sent more data than the buffer holds.
    #[error("overflow")]
    Overflow,
    /// The transfer was cancelled.
    #[error("cancelled")]
    Cancelled,
    /// Access to the device was refused.
    #[error("access denied")]
    Access,
    /// The interface is claimed by someone else.
    #[error("interface busy")]
    Busy,
    /// No such device or interface.
    #[error("not found")]
    NotFound,
    /// Any other I/O error.
    #[error("I/O error: {0}")]
    Io(String),
}

/// Direction and kind of a control request (bmRequestType).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ControlSetup {
    /// bmRequestType.
    pub request_type: u8,
    /// bRequest.
    pub request: u8,
    /// wValue.
    pub value: u16,
    /// wIndex.
    pub index: u16,
}

/// USB-level facts about an opened CCID interface.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UsbInfo {
    /// idVendor.
    pub vendor_id: u16,
    /// idProduct.
    pub product_id: u16,
    /// bcdDevice.
    pub bcd_device: u16,
    /// USB bus number (0 when not known).
    pub bus: u8,
    /// USB device address (0 when not known).
    pub address: u8,
    /// Port path, e.g. "1-2.3" (empty when not known).
    pub port_path: String,
    /// bConfigurationValue.
    pub configuration: u8,
    /// bInterfaceNumber.
    pub interface_number: u8,
    /// bInterfaceClass (0x0B, or 0xFF for proprietary readers).
    pub interface_class: u8,
    /// bInterfaceProtocol (0 CCID, 1 ICCD version A, 2 ICCD version B).
    pub interface_protocol: u8,
    /// Number of endpoints of the interface.
    pub num_endpoints: u8,
    /// Whether an interrupt-IN endpoint exists.
    pub has_interrupt: bool,
    /// wMaxPacketSize of bulk-IN.
    pub bulk_in_packet_size: u16,
    /// wMaxPacketSize of interrupt-IN.
    pub interrupt_packet_size: u16,
    /// iManufacturer string.
    pub manufacturer: Option<String>,
    /// iProduct string.
    pub product: Option<String>,
    /// iSerialNumber string.
    pub serial: Option<String>,
    /// iInterface string.
    pub interface_name: Option<String>,
    /// The raw 54-byte CCID class descriptor.
    pub ccid_descriptor: Vec<u8>,
}

/// A byte pipe to one CCID interface.
///
/// Implementations are shared between threads: bulk-IN and interrupt-IN may
/// be read concurrently with bulk-OUT writes.
pub trait Transport: Send + Sync {
    /// Facts about the device and interface.
    fn info(&self) -> &UsbInfo;

    /// Writes one whole message to bulk-OUT.
    fn bulk_out(&self, data: &[u8], timeout: Duration) -> Result<(), TransportError>;

    /// Reads one bulk-IN transfer into `buf`; returns the length, which may
    /// be 0 (a zero-length packet).
    fn bulk_in(&self, buf: &mut [u8], timeout: Duration) -> Result<usize, TransportError>;

    /// Reads one interrupt-IN transfer. Transports without an interrupt
    /// endpoint return [`TransportError::NotFound`].
    fn interrupt_in(&self, buf: &mut [u8], timeout: Duration) -> Result<usize, TransportError>;

    /// A control transfer from the device (bmRequestType bit 7 set).
    fn control_in(
        &self,
        setup: ControlSetup,
        buf: &mut [u8],
        timeout: Duration,
    ) -> Result<usize, TransportError>;

    /// A control transfer to the device.
    fn control_out(
        &self,
        setup: ControlSetup,
        data: &[u8],
        timeout: Duration,
    ) -> Result<usize, TransportError>;

    /// Whether the device is known to be gone. Once true, it stays true.
    fn is_gone(&self) -> bool {
        false
    }
}

/// CCID class request: ABORT.
pub const REQUEST_ABORT: u8 = 0x01;
/// CCID class request: GET_CLOCK_FREQUENCIES.
pub const REQUEST_GET_CLOCK_FREQUENCIES: u8 = 0x02;
/// CCID class request: GET_DATA_RATES.
pub const REQUEST_GET_DATA_RATES: u8 = 0x03;
/// bmRequestType of a class request to the interface, device to host.
pub const CLASS_INTERFACE_IN: u8 = 0xA1;
/// bmRequestType of a class request to the interface, host to device.
pub const CLASS_INTERFACE_OUT: u8 = 0x21;
