//! Hexadecimal text <-> bytes, as used on the command line and in the
//! machine-readable output.
#![forbid(unsafe_code)]

/// Parses hex digits into bytes. Spaces and colons between digits are
/// ignored, so `"3B 7A"`, `"3b:7a"` and `"3B7A"` are the same.
pub fn parse(text: &str) -> Result<Vec<u8>, String> {
    let digits: Vec<u8> = text.bytes().filter(|b| !matches!(b, b' ' | b':')).collect();
    if digits.len() % 2 == 1 {
        return Err(format!("odd number of hex digits in {text:?}"));
    }
    digits
        .chunks(2)
        .map(|pair| {
            let hi = nibble(pair.first().copied());
            let lo = nibble(pair.get(1).copied());
            match (hi, lo) {
                (Some(h), Some(l)) => Ok(h << 4 | l),
                _ => Err(format!("not a hex string: {text:?}")),
            }
        })
        .collect()
}

fn nibble(c: Option<u8>) -> Option<u8> {
    let c = c?;
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Formats bytes as upper-case hex digits without separators.
pub fn format(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push_str(&std::format!("{b:02X}"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_with_and_without_separators() {
        assert_eq!(parse("3B7a").unwrap(), vec![0x3B, 0x7A]);
        assert_eq!(parse("3b:7a:18").unwrap(), vec![0x3B, 0x7A, 0x18]);
        assert_eq!(parse("00 A4 04 00").unwrap(), vec![0x00, 0xA4, 0x04, 0x00]);
        assert_eq!(parse("").unwrap(), Vec::<u8>::new());
    }

    #[test]
    fn rejects_bad_input() {
        assert!(parse("ABC").unwrap_err().contains("odd"));
        assert!(parse("0G").unwrap_err().contains("not a hex"));
        assert!(parse("é0").is_err());
    }

    #[test]
    fn formats_upper_case() {
        assert_eq!(format(&[0x00, 0xAB, 0x9F]), "00AB9F");
        assert_eq!(format(&[]), "");
    }
}
