//! The IFDH entry points called the way pcscd calls them, behind a safe
//! interface: valid, correctly sized buffers and NUL-terminated names. For
//! in-process callers (benchmarks, simulators) that exercise the exact C
//! ABI path without writing `unsafe` themselves.

use super::{DWORD, RESPONSECODE, SCARD_IO_HEADER};
use std::ffi::CString;

/// The largest ATR pcscd accepts (`MAX_ATR_SIZE`).
const MAX_ATR: usize = 33;

/// `IFDHCreateChannelByName(lun, name)`. A name with an interior NUL is
/// refused with `IFD_COMMUNICATION_ERROR` without calling the driver.
pub fn create_channel_by_name(lun: DWORD, name: &str) -> RESPONSECODE {
    let Ok(c) = CString::new(name) else {
        return crate::ifd::IfdCode::CommunicationError.value() as RESPONSECODE;
    };
    let mut bytes = c.into_bytes_with_nul();
    // SAFETY: `bytes` is a NUL-terminated string that lives for the call.
    unsafe { super::IFDHCreateChannelByName(lun, bytes.as_mut_ptr().cast()) }
}

/// `IFDHCloseChannel(lun)`.
pub fn close_channel(lun: DWORD) -> RESPONSECODE {
    super::IFDHCloseChannel(lun)
}

/// `IFDHPowerICC(lun, action)` with pcscd's ATR buffer; returns the code
/// and the ATR (empty unless the card was powered).
pub fn power_icc(lun: DWORD, action: DWORD) -> (RESPONSECODE, Vec<u8>) {
    let mut atr = [0u8; MAX_ATR];
    let mut len: DWORD = MAX_ATR as DWORD;
    // SAFETY: `atr` holds `len` writable bytes and `len` is a valid DWORD,
    // both living for the call.
    let rc = unsafe { super::IFDHPowerICC(lun, action, atr.as_mut_ptr(), &mut len) };
    let n = usize::try_from(len).unwrap_or(0).min(MAX_ATR);
    (rc, atr.get(..n).unwrap_or_default().to_vec())
}

/// `IFDHGetCapabilities(lun, tag)` with pcscd's 264-byte buffer; returns
/// the code and the value.
pub fn get_capabilities(lun: DWORD, tag: DWORD) -> (RESPONSECODE, Vec<u8>) {
    let mut value = [0u8; 264];
    let mut len: DWORD = value.len() as DWORD;
    // SAFETY: `value` holds `len` writable bytes and `len` is a valid
    // DWORD, both living for the call.
    let rc = unsafe { super::IFDHGetCapabilities(lun, tag, &mut len, value.as_mut_ptr()) };
    let n = usize::try_from(len).unwrap_or(0).min(value.len());
    (rc, value.get(..n).unwrap_or_default().to_vec())
}

/// `IFDHSetProtocolParameters(lun, protocol, flags, pts1, pts2, pts3)`.
pub fn set_protocol_parameters(
    lun: DWORD,
    protocol: DWORD,
    flags: u8,
    pts: [u8; 3],
) -> RESPONSECODE {
    super::IFDHSetProtocolParameters(lun, protocol, flags, pts[0], pts[1], pts[2])
}

/// `IFDHTransmitToICC(lun, {protocol}, apdu, …)` with an answer buffer of
/// `capacity` bytes (pcscd uses 65 546); returns the code and the answer.
pub fn transmit_to_icc(
    lun: DWORD,
    protocol: DWORD,
    apdu: &[u8],
    capacity: usize,
) -> (RESPONSECODE, Vec<u8>) {
    let mut tx = apdu.to_vec();
    let mut rx = vec![0u8; capacity];
    let mut rx_len: DWORD = capacity as DWORD;
    let send = SCARD_IO_HEADER {
        Protocol: protocol,
        Length: 0,
    };
    let mut recv = SCARD_IO_HEADER {
        Protocol: protocol,
        Length: 0,
    };
    // SAFETY: `tx` holds `tx.len()` readable bytes, `rx` holds `rx_len`
    // writable bytes, `rx_len` and `recv` are valid for writes; all live
    // for the call.
    let rc = unsafe {
        super::IFDHTransmitToICC(
            lun,
            send,
            tx.as_mut_ptr(),
            tx.len() as DWORD,
            rx.as_mut_ptr(),
            &mut rx_len,
            &mut recv,
        )
    };
    rx.truncate(usize::try_from(rx_len).unwrap_or(0).min(capacity));
    (rc, rx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_luns_and_bad_names_give_codes() {
        let lun: DWORD = 0x7FF0_0000;
        assert_ne!(create_channel_by_name(lun, "a\0b"), 0);
        assert_eq!(power_icc(lun, 500).1, Vec::<u8>::new());
        assert_ne!(get_capabilities(lun, 0x0FAC).0, 0);
        let (rc, rx) = transmit_to_icc(lun, 1, &[0, 0xA4, 0, 0], 258);
        assert_ne!(rc, 0);
        assert!(rx.is_empty());
        assert_ne!(set_protocol_parameters(lun, 2, 0, [0; 3]), 0);
        assert_ne!(close_channel(lun), 0);
    }
}
