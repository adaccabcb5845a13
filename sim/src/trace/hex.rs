//! Hex helpers shared by the format parsers.

/// The outcome of reading space-separated hex bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HexRun<'a> {
    /// The bytes read.
    pub bytes: Vec<u8>,
    /// The text from the first token that is not a hex byte (trimmed).
    pub rest: &'a str,
}

/// Reads whitespace-separated two-digit hex bytes from the start of `text`.
pub(crate) fn run(text: &str) -> HexRun<'_> {
    let mut bytes = Vec::new();
    let mut s = text.trim_start();
    loop {
        let end = s.find(char::is_whitespace).unwrap_or(s.len());
        let tok = &s[..end];
        match byte(tok) {
            Some(b) if !tok.is_empty() => {
                bytes.push(b);
                s = s[end..].trim_start();
                if s.is_empty() {
                    break;
                }
            }
            _ => break,
        }
    }
    HexRun {
        bytes,
        rest: s.trim(),
    }
}

/// One two-digit hex byte.
pub(crate) fn byte(tok: &str) -> Option<u8> {
    if tok.len() != 2 || !tok.bytes().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    u8::from_str_radix(tok, 16).ok()
}

/// Reads a contiguous even-length hex string (`62000000…`).
pub(crate) fn contiguous(text: &str) -> Option<Vec<u8>> {
    let t = text.trim();
    if t.is_empty() || !t.len().is_multiple_of(2) || !t.bytes().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    (0..t.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(t.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Parses `0x…` as hex, otherwise decimal.
pub(crate) fn number(tok: &str) -> Option<u32> {
    let t = tok.trim().trim_end_matches([',', ';', ')']);
    if let Some(h) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        u32::from_str_radix(h, 16).ok()
    } else {
        t.parse().ok()
    }
}

/// Formats bytes as `62 00 …` (upper case, single spaces).
pub(crate) fn format(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 3);
    for (i, b) in bytes.iter().enumerate() {
        if i > 0 {
            s.push(' ');
        }
        s.push_str(&format!("{b:02X}"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_and_rests() {
        let r = run("62 00 0a  FF rest of line");
        assert_eq!(r.bytes, vec![0x62, 0, 0x0A, 0xFF]);
        assert_eq!(r.rest, "rest of line");
        let r = run("  ");
        assert!(r.bytes.is_empty());
        assert_eq!(r.rest, "");
        let r = run("00 0");
        assert_eq!(r.bytes, vec![0]);
        assert_eq!(r.rest, "0");
    }

    #[test]
    fn contiguous_and_numbers() {
        assert_eq!(contiguous("6F04FF"), Some(vec![0x6F, 0x04, 0xFF]));
        assert_eq!(contiguous("6F0"), None);
        assert_eq!(contiguous("zz"), None);
        assert_eq!(number("0x1F"), Some(31));
        assert_eq!(number("254"), Some(254));
        assert_eq!(number("x"), None);
        assert_eq!(format(&[0x3B, 0x0A]), "3B 0A");
    }
}
