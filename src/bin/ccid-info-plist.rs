//! Prints the bundle's Info.plist (generated from supported_readers.txt),
//! for `make bundle` and `make install`.

fn main() {
    print!("{}", ccid::readers::INFO_PLIST);
}
