//! The C ABI pcscd binds: the ten `IFDH*` functions of pcsc-lite's IFD
//! handler API v3 (`ifdhandler.h`), plus the polling callbacks handed out
//! through `IFDHGetCapabilities` (not exported).
//!
//! Every function is a thin shim: pointer and length checks, a panic guard
//! (a panic becomes `IFD_COMMUNICATION_ERROR` and a CRITICAL log line, never
//! an unwind into pcscd), a registry lookup, a call into safe code, and the
//! output lengths set to 0 on error.

#![allow(non_snake_case, non_camel_case_types)]
// DWORD is 64 bits on Linux and 32 bits on macOS: the conversions to u64
// are needed on one of them.
#![allow(clippy::useless_conversion)]

use crate::error::Error;
use crate::ifd::{self, IfdCode};
use crate::reader::slot::{Capability, Presence};
use crate::reader::{control, registry};
use std::ffi::{c_char, c_int, c_long, c_uchar, CStr};
use std::os::unix::ffi::OsStrExt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Duration;

/// `DWORD`: `unsigned long` on Linux, `uint32_t` on macOS.
#[cfg(not(target_os = "macos"))]
pub type DWORD = std::ffi::c_ulong;
/// `DWORD`: `unsigned long` on Linux, `uint32_t` on macOS.
#[cfg(target_os = "macos")]
pub type DWORD = u32;
/// `RESPONSECODE`: `long`.
pub type RESPONSECODE = c_long;
/// `UCHAR`.
pub type UCHAR = c_uchar;
/// `PUCHAR`.
pub type PUCHAR = *mut c_uchar;
/// `PDWORD` / `LPDWORD`.
pub type PDWORD = *mut DWORD;
/// `LPSTR`.
pub type LPSTR = *mut c_char;

/// `SCARD_IO_HEADER`, passed by value to `IFDHTransmitToICC`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct SCARD_IO_HEADER {
    /// Protocol (SCARD_PROTOCOL_*).
    pub Protocol: DWORD,
    /// Length (unused).
    pub Length: DWORD,
}

fn rc(code: IfdCode) -> RESPONSECODE {
    code.value() as RESPONSECODE
}

fn err_rc(what: &str, lun: DWORD, e: &Error) -> RESPONSECODE {
    let code = e.code();
    match e {
        Error::NoDevice | Error::IccAbsent | Error::UnknownTag(_) => {
            log::debug!("{what} (lun {lun:X}): {e}")
        }
        Error::NotSupported(_) | Error::InsufficientBuffer { .. } | Error::CommandNotSupported => {
            log::info!("{what} (lun {lun:X}): {e}")
        }
        _ => log::error!("{what} (lun {lun:X}): {e} -> {}", code.name()),
    }
    rc(code)
}

/// Runs `f`, turning a panic into `IFD_COMMUNICATION_ERROR`.
fn guard(name: &str, f: impl FnOnce() -> RESPONSECODE) -> RESPONSECODE {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(p) => {
            let msg = p
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            log::error!("{name}: internal error (panic: {msg})");
            rc(IfdCode::CommunicationError)
        }
    }
}

fn init() {
    crate::logging::init();
}

/// Borrows `len` bytes at `p`; `None` when `p` is null and `len` is not 0.
///
/// # Safety
/// When non-null, `p` must point to `len` readable bytes that stay valid and
/// unmodified for `'a`.
unsafe fn in_slice<'a>(p: *const u8, len: usize) -> Option<&'a [u8]> {
    if len == 0 {
        return Some(&[]);
    }
    if p.is_null() {
        return None;
    }
    // SAFETY: non-null, and the caller guarantees `len` readable bytes.
    Some(unsafe { std::slice::from_raw_parts(p, len) })
}

/// Copies `data` to `out` (capacity `cap`); fails when it does not fit.
///
/// # Safety
/// When non-null, `out` must point to `cap` writable bytes.
unsafe fn copy_out(out: *mut u8, cap: usize, data: &[u8]) -> Result<(), Error> {
    if data.len() > cap {
        return Err(Error::InsufficientBuffer {
            need: data.len(),
            have: cap,
        });
    }
    if data.is_empty() {
        return Ok(());
    }
    if out.is_null() {
        return Err(Error::InvalidArgument("null output buffer"));
    }
    // SAFETY: `out` is non-null with `cap >= data.len()` writable bytes per
    // the caller; the regions cannot overlap since `data` is driver-owned.
    unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), out, data.len()) };
    Ok(())
}

/// Writes `v` through `p` if it is not null.
///
/// # Safety
/// When non-null, `p` must be valid for a write of a `DWORD`.
unsafe fn set_dword(p: PDWORD, v: usize) {
    if !p.is_null() {
        // SAFETY: non-null and valid for writes per the caller.
        unsafe { *p = v as DWORD };
    }
}

/// Reads `*p`, or 0 when `p` is null.
///
/// # Safety
/// When non-null, `p` must be valid for a read of a `DWORD`.
unsafe fn get_dword(p: PDWORD) -> usize {
    if p.is_null() {
        0
    } else {
        // SAFETY: non-null and valid for reads per the caller.
        usize::try_from(unsafe { *p }).unwrap_or(usize::MAX)
    }
}

/// Opens the reader `DeviceName` for `Lun` (pcsc-lite: `usb:VVVV/PPPP...`,
/// or the friendly name on macOS).
///
/// # Safety
/// Pointers are null or valid for the lengths pcsc-lite's `ifdhandler.h`
/// documents for this function, for the duration of the call.
#[no_mangle]
pub unsafe extern "C" fn IFDHCreateChannelByName(Lun: DWORD, DeviceName: LPSTR) -> RESPONSECODE {
    guard("IFDHCreateChannelByName", || {
        init();
        if DeviceName.is_null() {
            return rc(IfdCode::CommunicationError);
        }
        // SAFETY: pcscd passes a NUL-terminated string valid for the call;
        // it is copied before returning and never written to.
        let name = unsafe { CStr::from_ptr(DeviceName) }
            .to_string_lossy()
            .into_owned();
        log::info!("IFDHCreateChannelByName lun: {Lun:X}, device: {name}");
        match registry::create_channel(u64::from(Lun), &name) {
            Ok(_) => rc(IfdCode::Success),
            Err(e @ (Error::NoReader(_) | Error::Refused(_))) => {
                log::info!("{name}: {e}");
                rc(IfdCode::NoSuchDevice)
            }
            Err(e) => err_rc("IFDHCreateChannelByName", Lun, &e),
        }
    })
}

/// Opens a reader by channel number (IFD API v1 style): the first CCID
/// reader found is used.
#[no_mangle]
pub extern "C" fn IFDHCreateChannel(Lun: DWORD, Channel: DWORD) -> RESPONSECODE {
    guard("IFDHCreateChannel", || {
        init();
        log::info!("IFDHCreateChannel lun: {Lun:X}, channel: {Channel}");
        match registry::create_channel(u64::from(Lun), "usb:") {
            Ok(_) => rc(IfdCode::Success),
            Err(e) => err_rc("IFDHCreateChannel", Lun, &e),
        }
    })
}

/// Closes the channel of `Lun`.
#[no_mangle]
pub extern "C" fn IFDHCloseChannel(Lun: DWORD) -> RESPONSECODE {
    guard("IFDHCloseChannel", || {
        match registry::close_channel(u64::from(Lun)) {
            Ok(()) => rc(IfdCode::Success),
            Err(e) => err_rc("IFDHCloseChannel", Lun, &e),
        }
    })
}

/// Reads a capability (`TAG_IFD_*`, `SCARD_ATTR_*`).
///
/// # Safety
/// Pointers are null or valid for the lengths pcsc-lite's `ifdhandler.h`
/// documents for this function, for the duration of the call.
#[no_mangle]
pub unsafe extern "C" fn IFDHGetCapabilities(
    Lun: DWORD,
    Tag: DWORD,
    Length: PDWORD,
    Value: PUCHAR,
) -> RESPONSECODE {
    guard("IFDHGetCapabilities", || {
        if Length.is_null() {
            return rc(IfdCode::CommunicationError);
        }
        // SAFETY: checked non-null; pcscd passes a valid DWORD.
        let cap = unsafe { get_dword(Length) };
        let slot = match registry::get(u64::from(Lun)) {
            Ok(s) => s,
            Err(e) => {
                // SAFETY: checked non-null above.
                unsafe { set_dword(Length, 0) };
                return err_rc("IFDHGetCapabilities", Lun, &e);
            }
        };
        let tag = u32::try_from(Tag).unwrap_or(u32::MAX);
        let result = match slot.capability(tag) {
            Ok(Capability::Bytes(b)) => {
                // SAFETY: pcscd passes `Value` with `*Length` writable bytes.
                unsafe { copy_out(Value, cap, &b) }.map(|_| b.len())
            }
            Ok(Capability::Empty) => Ok(0),
            Ok(Capability::PollingFunction) => {
                let f: extern "C" fn(DWORD, c_int) -> RESPONSECODE = IFDHPolling;
                // SAFETY: as above; a function pointer is copied as bytes, the
                // way pcscd reads it back (`*(void **)Value`).
                unsafe { copy_fn(Value, cap, f as usize) }
            }
            Ok(Capability::SleepFunction) => {
                let f: extern "C" fn(DWORD, c_int) -> RESPONSECODE = IFDHSleep;
                // SAFETY: as above.
                unsafe { copy_fn(Value, cap, f as usize) }
            }
            Ok(Capability::StopPollingFunction) => {
                let f: extern "C" fn(DWORD) -> RESPONSECODE = IFDHStopPolling;
                // SAFETY: as above.
                unsafe { copy_fn(Value, cap, f as usize) }
            }
            Err(e) => Err(e),
        };
        match result {
            Ok(n) => {
                // SAFETY: checked non-null above.
                unsafe { set_dword(Length, n) };
                rc(IfdCode::Success)
            }
            Err(e) => {
                // SAFETY: checked non-null above.
                unsafe { set_dword(Length, 0) };
                err_rc("IFDHGetCapabilities", Lun, &e)
            }
        }
    })
}

/// Copies a function pointer's bytes into the caller's buffer.
///
/// # Safety
/// As [`copy_out`].
unsafe fn copy_fn(out: *mut u8, cap: usize, f: usize) -> Result<usize, Error> {
    let bytes = f.to_ne_bytes();
    // SAFETY: forwarded from the caller.
    unsafe { copy_out(out, cap, &bytes) }.map(|_| bytes.len())
}

/// Sets a capability. Only `TAG_IFD_DEVICE_REMOVED` is accepted, and acted
/// upon only when the device is really gone.
///
/// # Safety
/// Pointers are null or valid for the lengths pcsc-lite's `ifdhandler.h`
/// documents for this function, for the duration of the call.
#[no_mangle]
pub unsafe extern "C" fn IFDHSetCapabilities(
    Lun: DWORD,
    Tag: DWORD,
    Length: DWORD,
    Value: PUCHAR,
) -> RESPONSECODE {
    guard("IFDHSetCapabilities", || {
        let slot = match registry::get(u64::from(Lun)) {
            Ok(s) => s,
            Err(e) => return err_rc("IFDHSetCapabilities", Lun, &e),
        };
        if Tag as u32 != ifd::tag::TAG_IFD_DEVICE_REMOVED {
            return rc(IfdCode::ErrorTag);
        }
        // SAFETY: pcscd passes `Length` readable bytes at `Value`.
        let v = unsafe { in_slice(Value, usize::try_from(Length).unwrap_or(0)) };
        if v.is_some_and(|v| v.len() == 1 && v[0] != 0) {
            crate::reader::device_removed(&slot);
        }
        rc(IfdCode::Success)
    })
}

/// Selects the protocol (and speed) for the card.
#[no_mangle]
pub extern "C" fn IFDHSetProtocolParameters(
    Lun: DWORD,
    Protocol: DWORD,
    Flags: UCHAR,
    PTS1: UCHAR,
    PTS2: UCHAR,
    PTS3: UCHAR,
) -> RESPONSECODE {
    guard("IFDHSetProtocolParameters", || {
        let slot = match registry::get(u64::from(Lun)) {
            Ok(s) => s,
            Err(e) => return err_rc("IFDHSetProtocolParameters", Lun, &e),
        };
        let protocol = u32::try_from(Protocol).unwrap_or(u32::MAX);
        match crate::reader::protocol::set_protocol(&slot, protocol, Flags, [PTS1, PTS2, PTS3]) {
            Ok(()) => rc(IfdCode::Success),
            Err(e) => err_rc("IFDHSetProtocolParameters", Lun, &e),
        }
    })
}

/// Powers the card up, down, or resets it; returns the ATR.
///
/// # Safety
/// Pointers are null or valid for the lengths pcsc-lite's `ifdhandler.h`
/// documents for this function, for the duration of the call.
#[no_mangle]
pub unsafe extern "C" fn IFDHPowerICC(
    Lun: DWORD,
    Action: DWORD,
    Atr: PUCHAR,
    AtrLength: PDWORD,
) -> RESPONSECODE {
    guard("IFDHPowerICC", || {
        // SAFETY: pcscd passes a valid DWORD or null.
        let cap = unsafe { get_dword(AtrLength) };
        // SAFETY: as above.
        unsafe { set_dword(AtrLength, 0) };
        let slot = match registry::get(u64::from(Lun)) {
            Ok(s) => s,
            Err(e) => return err_rc("IFDHPowerICC", Lun, &e),
        };
        let action = u32::try_from(Action).unwrap_or(u32::MAX);
        match action {
            ifd::power::IFD_POWER_DOWN => match slot.power_down() {
                Ok(()) => rc(IfdCode::Success),
                Err(e @ Error::NoDevice) => err_rc("IFDHPowerICC", Lun, &e),
                Err(e) => {
                    log::error!("power down (lun {Lun:X}): {e}");
                    rc(IfdCode::ErrorPowerAction)
                }
            },
            ifd::power::IFD_POWER_UP | ifd::power::IFD_RESET => {
                if AtrLength.is_null() {
                    return rc(IfdCode::CommunicationError);
                }
                match slot.power_up() {
                    Ok(atr) => {
                        // SAFETY: pcscd passes `*AtrLength` writable bytes at `Atr`.
                        match unsafe { copy_out(Atr, cap, &atr) } {
                            Ok(()) => {
                                // SAFETY: checked non-null above.
                                unsafe { set_dword(AtrLength, atr.len()) };
                                rc(IfdCode::Success)
                            }
                            Err(e) => err_rc("IFDHPowerICC", Lun, &e),
                        }
                    }
                    Err(e @ (Error::NoDevice | Error::IccAbsent)) => {
                        err_rc("IFDHPowerICC", Lun, &e)
                    }
                    Err(e) => {
                        log::error!("power up (lun {Lun:X}): {e}");
                        rc(IfdCode::ErrorPowerAction)
                    }
                }
            }
            other => {
                log::info!("IFDHPowerICC: action {other} not supported");
                rc(IfdCode::NotSupported)
            }
        }
    })
}

/// Sends an APDU to the card and returns its answer.
///
/// # Safety
/// Pointers are null or valid for the lengths pcsc-lite's `ifdhandler.h`
/// documents for this function, for the duration of the call.
#[no_mangle]
pub unsafe extern "C" fn IFDHTransmitToICC(
    Lun: DWORD,
    SendPci: SCARD_IO_HEADER,
    TxBuffer: PUCHAR,
    TxLength: DWORD,
    RxBuffer: PUCHAR,
    RxLength: PDWORD,
    RecvPci: *mut SCARD_IO_HEADER,
) -> RESPONSECODE {
    guard("IFDHTransmitToICC", || {
        if RxLength.is_null() {
            return rc(IfdCode::CommunicationError);
        }
        // SAFETY: checked non-null; pcscd passes a valid DWORD.
        let cap = unsafe { get_dword(RxLength) };
        // SAFETY: checked non-null.
        unsafe { set_dword(RxLength, 0) };
        // SAFETY: pcscd passes `TxLength` readable bytes at `TxBuffer`.
        let Some(tx) = (unsafe { in_slice(TxBuffer, usize::try_from(TxLength).unwrap_or(0)) })
        else {
            return rc(IfdCode::CommunicationError);
        };
        let slot = match registry::get(u64::from(Lun)) {
            Ok(s) => s,
            Err(e) => return err_rc("IFDHTransmitToICC", Lun, &e),
        };
        let protocol = transmit_protocol(SendPci.Protocol);
        let result = slot.transmit(protocol, tx).and_then(|answer| {
            // SAFETY: pcscd passes `*RxLength` writable bytes at `RxBuffer`.
            unsafe { copy_out(RxBuffer, cap, &answer) }.map(|_| answer.len())
        });
        match result {
            Ok(n) => {
                // SAFETY: checked non-null.
                unsafe { set_dword(RxLength, n) };
                if !RecvPci.is_null() {
                    // SAFETY: non-null; pcscd passes a valid header.
                    unsafe { (*RecvPci).Protocol = SendPci.Protocol };
                }
                rc(IfdCode::Success)
            }
            Err(e) => err_rc("IFDHTransmitToICC", Lun, &e),
        }
    })
}

/// pcscd's `SendPci.Protocol` is the protocol number (0 for T=0, 1 for
/// T=1) or SCARD_PROTOCOL_RAW, while IFDHSetProtocolParameters takes
/// SCARD_PROTOCOL_T0 / T1 (1 / 2): map the former onto the latter.
fn transmit_protocol(p: DWORD) -> u32 {
    match p {
        0 => ifd::protocol::SCARD_PROTOCOL_T0,
        1 => ifd::protocol::SCARD_PROTOCOL_T1,
        p => u32::try_from(p).unwrap_or(u32::MAX),
    }
}

/// Reader control (PC/SC v2 part 10 features, escape, properties).
///
/// # Safety
/// Pointers are null or valid for the lengths pcsc-lite's `ifdhandler.h`
/// documents for this function, for the duration of the call.
#[no_mangle]
pub unsafe extern "C" fn IFDHControl(
    Lun: DWORD,
    dwControlCode: DWORD,
    TxBuffer: PUCHAR,
    TxLength: DWORD,
    RxBuffer: PUCHAR,
    RxLength: DWORD,
    pdwBytesReturned: PDWORD,
) -> RESPONSECODE {
    guard("IFDHControl", || {
        // SAFETY: pcscd passes a valid DWORD or null.
        unsafe { set_dword(pdwBytesReturned, 0) };
        // SAFETY: pcscd passes `TxLength` readable bytes at `TxBuffer`.
        let Some(tx) = (unsafe { in_slice(TxBuffer, usize::try_from(TxLength).unwrap_or(0)) })
        else {
            return rc(IfdCode::CommunicationError);
        };
        let cap = if RxBuffer.is_null() {
            0
        } else {
            usize::try_from(RxLength).unwrap_or(0)
        };
        let slot = match registry::get(u64::from(Lun)) {
            Ok(s) => s,
            Err(e) => return err_rc("IFDHControl", Lun, &e),
        };
        let code = u32::try_from(dwControlCode).unwrap_or(u32::MAX);
        let result = control::control(&slot, code, tx, cap).and_then(|out| {
            // SAFETY: pcscd passes `RxLength` writable bytes at `RxBuffer`.
            unsafe { copy_out(RxBuffer, cap, &out) }.map(|_| out.len())
        });
        match result {
            Ok(n) => {
                // SAFETY: as above.
                unsafe { set_dword(pdwBytesReturned, n) };
                rc(IfdCode::Success)
            }
            Err(e) => err_rc("IFDHControl", Lun, &e),
        }
    })
}

/// Card presence.
#[no_mangle]
pub extern "C" fn IFDHICCPresence(Lun: DWORD) -> RESPONSECODE {
    guard("IFDHICCPresence", || {
        let slot = match registry::get(u64::from(Lun)) {
            Ok(s) => s,
            Err(e) => return err_rc("IFDHICCPresence", Lun, &e),
        };
        match slot.presence() {
            Ok(Presence::Present) => rc(IfdCode::IccPresent),
            Ok(Presence::Absent) => rc(IfdCode::IccNotPresent),
            Err(Error::NoDevice) => rc(IfdCode::NoSuchDevice),
            Err(e) => err_rc("IFDHICCPresence", Lun, &e),
        }
    })
}

/// Waits up to `timeout` ms for a card event (handed to pcscd through
/// TAG_IFD_POLLING_THREAD_WITH_TIMEOUT).
extern "C" fn IFDHPolling(Lun: DWORD, timeout: c_int) -> RESPONSECODE {
    guard("IFDHPolling", || {
        let slot = match registry::get(u64::from(Lun)) {
            Ok(s) => s,
            Err(e) => return err_rc("IFDHPolling", Lun, &e),
        };
        let ms = u64::try_from(timeout).unwrap_or(0);
        match slot
            .device
            .wait_event(usize::from(slot.index), Duration::from_millis(ms))
        {
            crate::reader::device::EventWait::Gone => rc(IfdCode::NoSuchDevice),
            _ => rc(IfdCode::Success),
        }
    })
}

/// Ends a running [`IFDHPolling`] (TAG_IFD_STOP_POLLING_THREAD).
extern "C" fn IFDHStopPolling(Lun: DWORD) -> RESPONSECODE {
    guard("IFDHStopPolling", || {
        if let Ok(slot) = registry::get(u64::from(Lun)) {
            slot.device.stop_wait(usize::from(slot.index));
        }
        rc(IfdCode::Success)
    })
}

/// For readers whose card cannot move (ICCD tokens): sleeps; pcscd cancels
/// it (TAG_IFD_POLLING_THREAD_KILLABLE).
extern "C" fn IFDHSleep(Lun: DWORD, timeout: c_int) -> RESPONSECODE {
    guard("IFDHSleep", || {
        let ms = u64::try_from(timeout).unwrap_or(0);
        match registry::get(u64::from(Lun)) {
            Ok(slot) => {
                let _ = slot
                    .device
                    .wait_event(usize::from(slot.index), Duration::from_millis(ms));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(ms.min(1000))),
        }
        rc(IfdCode::Success)
    })
}

pub mod caller;

#[cfg(test)]
mod tests;

/// The path of the loaded library (`.../Contents/Linux/libccid.so`), to
/// find the bundle's Info.plist wherever the bundle is installed.
pub fn library_path() -> Option<std::path::PathBuf> {
    let mut info = std::mem::MaybeUninit::<libc::Dl_info>::zeroed();
    let addr = library_path as *const libc::c_void;
    // SAFETY: dladdr only reads the address and fills `info`; it returns
    // 0 when the address is not in a loaded object.
    let found = unsafe { libc::dladdr(addr, info.as_mut_ptr()) };
    if found == 0 {
        return None;
    }
    // SAFETY: dladdr succeeded, so `info` was written.
    let info = unsafe { info.assume_init() };
    if info.dli_fname.is_null() {
        return None;
    }
    // SAFETY: dli_fname is a NUL-terminated path owned by the loader.
    let name = unsafe { CStr::from_ptr(info.dli_fname) };
    Some(std::path::PathBuf::from(std::ffi::OsStr::from_bytes(
        name.to_bytes(),
    )))
}
