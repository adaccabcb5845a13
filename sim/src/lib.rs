//! Virtual CCID readers and cards.
//!
//! * [`model`]: [`VirtualReader`], a sans-IO CCID reader built from a
//!   descriptor dump or from code, with [`card`]s in its slots, a
//!   [`timing`] model, scripted [`fault`]s and a scripted [`pinpad`];
//! * [`transport`]: [`SimTransport`], the reader behind the driver's
//!   `Transport` trait, with a [`SimControl`] handle for tests;
//! * [`coverage`]: a self-consistency check over many dumps;
//! * [`trace`], [`replay`]: recorded traces and their replay;
//! * [`gadget`]: a virtual reader presented as a real USB device.
#![forbid(unsafe_code)]

pub mod bench;
pub mod card;
pub mod cli;
pub mod coverage;
pub mod fault;
pub mod gadget;
pub mod model;
pub mod pinpad;
pub mod replay;
pub mod session;
pub mod timing;
pub mod trace;
pub mod transport;

pub use card::{AtrBuilder, Card, IsoApplet};
pub use fault::{Fault, FaultRule};
pub use model::{ReaderConfig, VirtualReader};
pub use timing::TimeModel;
pub use transport::{SimControl, SimTransport};
