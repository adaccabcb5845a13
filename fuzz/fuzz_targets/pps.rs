//! PPS request encoding and the check of the card's answer (ISO 7816-3 §9).
#![no_main]
use ccid::iso7816::pps::{PpsRequest, PPSS};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let [flags, protocol, p1, p2, p3, answer @ ..] = data else {
        return;
    };
    let req = PpsRequest {
        protocol: *protocol,
        pps1: (flags & 1 != 0).then_some(*p1),
        pps2: (flags & 2 != 0).then_some(*p2),
        pps3: (flags & 4 != 0).then_some(*p3),
    };
    let Ok(encoded) = req.encode() else {
        assert!(*protocol > 14);
        return;
    };
    assert_eq!(encoded.first(), Some(&PPSS));
    assert_eq!(encoded.iter().fold(0u8, |a, b| a ^ b), 0, "PCK");
    // The card echoing the request is always a success with the request's
    // values.
    let echo = req.check_response(&encoded).expect("an echo is accepted");
    assert_eq!(echo.protocol, req.protocol);
    assert_eq!(echo.fi_di, req.pps1.unwrap_or(0x11));
    assert_eq!((echo.pps2, echo.pps3), (req.pps2, req.pps3));
    // Any other answer: accepted only with the request's protocol and
    // echoed or absent parameters.
    if let Ok(out) = req.check_response(answer) {
        assert_eq!(out.protocol, req.protocol & 0x0F);
        assert!(out.fi_di == 0x11 || Some(out.fi_di) == req.pps1);
        assert!(out.pps2.is_none() || out.pps2 == req.pps2);
        assert!(out.pps3.is_none() || out.pps3 == req.pps3);
        assert!((3..=6).contains(&answer.len()));
    }
});
