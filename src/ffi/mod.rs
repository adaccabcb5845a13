//! The C ABI pcscd binds: ten IFDH* functions.
