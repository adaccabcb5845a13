//! `ccid`: a USB CCID smart-card reader driver for pcsc-lite.
//!
//! pcscd loads `ifd-ccid.bundle/Contents/Linux/libccid.so` and calls its ten
//! `IFDH*` functions ([`ffi`]). Those are thin shims over safe code:
//!
//! ```text
//!  pcscd ──► ffi (C ABI, panic guard, pointer checks)
//!              │
//!              ▼
//!           reader (registry of Luns, Device per USB interface, Slot per card slot,
//!              │     the one exchange function that checks bSeq/bSlot/type)
//!              ├──► iso7816 (ATR, PPS, T=0, T=1: sans-IO state machines)
//!              ├──► proto (CCID messages and descriptors: sans-IO codecs)
//!              ▼
//!           transport (trait) ──► usb (rusb)  |  ccid-sim (virtual readers)
//! ```
//!
//! Protocol modules never do I/O and never read a clock: they take bytes and
//! return what to send next, so they are tested without hardware. `unsafe`
//! code lives only in [`ffi`], [`logging`] (looking up pcscd's log functions)
//! and the USB transport.

pub mod config;
pub mod devname;
pub mod dump;
pub mod error;
pub mod ifd;
pub mod iso7816;
pub mod logging;
pub mod pinpad;
pub mod proto;
pub mod quirks;
pub mod reader;
pub mod readers;
pub mod transport;

pub mod ffi;

pub use error::{Error, Result};
