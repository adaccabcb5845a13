//! PIN_VERIFY_STRUCTURE and PIN_MODIFY_STRUCTURE from SCardControl callers.
#![no_main]
use ccid::pinpad::{PinModify, PinVerify};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(v) = PinVerify::parse(data) {
        let d = v.ccid_data();
        assert!(d.len() >= PinVerify::APDU_OFFSET);
    }
    if let Ok(m) = PinModify::parse(data) {
        let d = m.ccid_data();
        assert!(d.len() >= m.apdu_offset());
    }
});
