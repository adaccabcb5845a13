//! USB transport on rusb.
