//! Readers: the Lun registry, one [`device::Device`] per opened CCID
//! interface, one [`slot::Slot`] per card slot, and the exchange path.

#![forbid(unsafe_code)]

pub mod control;
pub mod device;
pub mod exchange;
pub mod iccd;
pub mod protocol;
pub mod registry;
pub mod slot;

use crate::config::LogLevel;
use crate::logging;

/// Logs an interrupt-endpoint message at COMM level, as libccid does.
pub(crate) fn trace_notification(lun: u64, msg: &[u8]) {
    if !logging::level().contains(LogLevel::COMM) {
        return;
    }
    let what = match msg.first() {
        Some(0x50) => "NotifySlotChange",
        Some(0x51) => "HardwareError",
        _ => "Unrecognized notification",
    };
    log::debug!(target: "ccid::comm", "{what}: lun: {lun:X}, {}", logging::hex(msg));
}

/// Logs a control-pipe transfer at COMM level.
pub(crate) fn trace_control(prefix: &str, data: &[u8]) {
    if logging::level().contains(LogLevel::COMM) {
        log::debug!(target: "ccid::comm", "{prefix} {}", logging::hex(data));
    }
}

/// TAG_IFD_DEVICE_REMOVED: pcscd says the reader was unplugged. Any PC/SC
/// client can send this tag through SCardSetAttrib, so it is acted upon
/// only when the device really is gone (the transport says so, or a
/// standard GET_STATUS request on the control pipe fails with 'no device').
pub fn device_removed(slot: &slot::Slot) {
    let dev = &slot.device;
    if dev.is_gone() {
        dev.mark_gone();
        return;
    }
    let setup = crate::transport::ControlSetup {
        request_type: 0x80,
        request: 0x00,
        value: 0,
        index: 0,
    };
    let mut buf = [0u8; 2];
    match dev.exchanger().transport().control_in(
        setup,
        &mut buf,
        std::time::Duration::from_millis(200),
    ) {
        Err(crate::transport::TransportError::NoDevice) => {
            log::debug!("{}: removed", dev.name);
            dev.mark_gone();
        }
        _ => log::info!(
            "{}: TAG_IFD_DEVICE_REMOVED ignored: the device still answers",
            dev.name
        ),
    }
}

#[cfg(test)]
pub(crate) mod testing;
#[cfg(test)]
mod tests;
