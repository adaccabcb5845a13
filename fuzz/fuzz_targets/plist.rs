//! The bundle's Info.plist: the key/value reader and the configuration
//! built from it with the environment overrides. The input is split at its
//! first NUL byte: before it the value of every `LIBCCID_*` variable, after
//! it the plist text.
#![no_main]
use ccid::config::{parse_number, parse_plist, Config};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (env, text) = match data.iter().position(|b| *b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (&[][..], data),
    };
    let env = String::from_utf8_lossy(env).into_owned();
    let text = String::from_utf8_lossy(text);
    let _ = parse_number(&env);
    // Keys may hold any character once entities are decoded (`&lt;`); the
    // reader must simply not fail differently on the same text twice.
    let first = parse_plist(&text);
    assert_eq!(first, parse_plist(&text));
    let lookup = |name: &str| name.starts_with("LIBCCID_").then(|| env.clone());
    let (cfg, _warnings) = Config::from_plist(&text, &lookup);
    let _ = (cfg.power_voltage(), cfg.timeout_cap_ms());
    if let Some(readers) = &cfg.readers {
        for r in readers.iter().take(64) {
            assert!(cfg.is_listed(r.vendor_id, r.product_id));
            let _ = cfg.friendly_name(r.vendor_id, r.product_id);
            let _ = cfg.ids_for_name(&r.name);
        }
    }
    let (no_env, _) = Config::from_plist(&text, &|_| None);
    assert_eq!(
        no_env.readers, cfg.readers,
        "the environment changed the reader list"
    );
});
