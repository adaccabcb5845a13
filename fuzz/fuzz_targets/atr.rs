//! Answer-to-Reset decoding: any bytes a card or reader hands back after
//! IccPowerOn.
#![no_main]
use ccid::iso7816::atr::{Atr, MAX_ATR_LEN};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(atr) = Atr::parse(data) else {
        return;
    };
    assert_eq!(atr.raw(), data);
    assert!(data.len() <= MAX_ATR_LEN);
    // Every accessor on every level, including ones past the end.
    for i in 0..20 {
        let _ = (atr.level(i), atr.ta(i), atr.tb(i), atr.tc(i), atr.td(i));
    }
    let _ = (atr.fi(), atr.di(), atr.fmax_khz(), atr.n(), atr.wi());
    let _ = (atr.specific_mode(), atr.default_protocol(), atr.t15_ta());
    let _ = (
        atr.class_indicator(),
        atr.clock_stop(),
        atr.t1_waiting_integers(),
    );
    let (ifsc, cwi, bwi) = (atr.ifsc(), atr.cwi(), atr.bwi());
    assert!(cwi <= 15 && bwi <= 15);
    let _ = (ifsc, atr.edc(), atr.historical(), atr.tck(), atr.tck_ok());
    for t in atr.protocols() {
        assert!(atr.offers(t));
    }
    // Rebuilding from the parts gives the same bytes unless the TCK was
    // wrong (rebuilding computes a correct one).
    if atr.tck_ok() != Some(false) {
        let rebuilt = Atr::build(atr.convention(), atr.levels(), atr.historical())
            .expect("a parsed ATR rebuilds");
        assert_eq!(rebuilt, data, "ATR does not rebuild to its bytes");
    }
});
