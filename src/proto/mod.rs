//! The CCID wire layer: pure, no I/O, no clock.

#![forbid(unsafe_code)]

pub mod codec;
pub mod descriptor;
pub mod message;
