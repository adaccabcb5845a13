//! Descriptor dumps in the parse tool's text format (the reader files of
//! the shared data set).
#![no_main]
use ccid::dump;
use ccid::proto::descriptor::CcidDescriptor;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    match dump::parse(&text, "fuzz") {
        Ok(readers) => {
            for (_, iface) in dump::ccid_interfaces(&readers) {
                if let Some(d) = &iface.descriptor {
                    let again = CcidDescriptor::parse(&d.to_bytes()).expect("re-parses");
                    assert_eq!(&again, d);
                    let _ = (d.exchange_level(), d.slot_count(), d.pin_support());
                }
            }
        }
        Err(e) => assert!(
            e.to_string().contains("fuzz"),
            "error without its source: {e}"
        ),
    }
    let _ = dump::ReaderDump::parse(&text, "fuzz");
});
