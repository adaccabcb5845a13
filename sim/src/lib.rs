//! Virtual CCID readers and cards.
