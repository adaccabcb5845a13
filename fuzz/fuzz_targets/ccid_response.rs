//! Bytes from bulk-IN and interrupt-IN: frame splitting, response and
//! notification decoding, command decoding (the simulator's side).
#![no_main]
use ccid::proto::message::{split_frames, Command, Notification, Response};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (frames, _missing) = split_frames(data);
    for f in frames {
        if let Ok(r) = Response::parse(f) {
            assert_eq!(r.encode(), f);
        }
        let _ = Command::decode(f);
    }
    if let Ok(n) = Notification::parse(data) {
        for slot in 0..300 {
            let _ = n.slot_state(slot);
        }
    }
});
