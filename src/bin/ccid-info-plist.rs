//! Prints the bundle's Info.plist (generated from supported_readers.txt),
//! for `make bundle` and `make install`.

#![forbid(unsafe_code)]

fn main() {
    print!("{}", ccid::readers::INFO_PLIST);
}
