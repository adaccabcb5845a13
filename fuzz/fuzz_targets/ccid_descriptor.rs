//! The 54-byte CCID class descriptor.
#![no_main]
use ccid::proto::descriptor::CcidDescriptor;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(d) = CcidDescriptor::parse(data) {
        assert_eq!(&d.to_bytes()[..], data);
        let _ = (
            d.exchange_level(),
            d.slot_count(),
            d.features(),
            d.pin_support(),
        );
    }
});
