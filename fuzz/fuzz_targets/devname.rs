//! Device names pcscd passes to IFDHCreateChannelByName.
#![no_main]
use ccid::devname::{parse, DeviceName};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let name = String::from_utf8_lossy(data);
    match parse(&name) {
        Ok(DeviceName::Usb(u)) => {
            assert!(name.starts_with("usb:"));
            // The Display form parses back to the same parts.
            let again = parse(&u.to_string()).expect("Display re-parses");
            assert_eq!(again, DeviceName::Usb(u), "Display of {name:?}");
            let _ = u.matches_device(0x08E6, 0x4433, 1, 2);
        }
        Ok(DeviceName::Friendly(f)) => {
            assert!(!name.starts_with("usb:"));
            assert_eq!(f, name);
        }
        Err(e) => {
            assert!(name.starts_with("usb:"));
            assert!(!e.to_string().is_empty());
        }
    }
});
