//! Virtual CCID readers and cards.
pub mod trace;
pub mod replay;
pub mod gadget;
