//! Descriptor dumps in the format of libccid's `parse` tool.

#![forbid(unsafe_code)]
