//! Readers: Luns, devices, slots and the exchange path.

#![forbid(unsafe_code)]
