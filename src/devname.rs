//! Device names pcscd passes to IFDHCreateChannelByName.

#![forbid(unsafe_code)]
