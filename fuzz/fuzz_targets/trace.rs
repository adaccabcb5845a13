//! Published CCID traces (pcscd/libccid logs, GnuPG, libnfc, plain hex,
//! the native format): parsing never panics, and a parsed trace written in
//! the native format reads back to the same events.
#![no_main]
use ccid_sim::trace::parse_str;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let Ok(t) = parse_str("fuzz", &text) else {
        return;
    };
    let _ = (t.host_frames(), t.reader_frames(), t.segments().len());
    let native = t.to_native();
    let back = parse_str("native", &native).expect("the native form parses");
    let kinds =
        |t: &ccid_sim::trace::Trace| t.events.iter().map(|e| e.kind.clone()).collect::<Vec<_>>();
    assert_eq!(kinds(&back), kinds(&t), "native round trip");
});
