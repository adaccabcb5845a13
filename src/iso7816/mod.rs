//! ISO 7816-3 card protocols: ATR, PPS, T=0 and T=1. Pure, no I/O.

#![forbid(unsafe_code)]
