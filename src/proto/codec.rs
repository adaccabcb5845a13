//! Length-checked reading of bytes that come from a device or a caller.
//!
//! Nothing in the driver indexes device bytes directly: every field is taken
//! through a [`Reader`], which fails with a [`DecodeError`] instead of
//! panicking or reading past the end.

use thiserror::Error;

/// A decoding failure: the input is shorter than its structure requires, or
/// carries a value the structure does not allow.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DecodeError {
    /// The input ended before a field could be read.
    #[error("{what}: need {need} bytes, have {have}")]
    Short {
        /// What was being read.
        what: &'static str,
        /// Bytes needed from the current position.
        need: usize,
        /// Bytes left.
        have: usize,
    },
    /// Bytes were left over after a structure that must fill its input.
    #[error("{what}: {extra} trailing bytes")]
    Trailing {
        /// What was being read.
        what: &'static str,
        /// Bytes left over.
        extra: usize,
    },
    /// A field carries a value the structure does not allow.
    #[error("{what}: invalid value {value:#x}")]
    Invalid {
        /// The field.
        what: &'static str,
        /// The value found.
        value: u64,
    },
}

/// A cursor over a byte slice whose reads are all bounds-checked.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// Starts reading at the beginning of `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    /// Bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    /// Current offset from the start.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Takes the next `n` bytes.
    pub fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], DecodeError> {
        let have = self.remaining();
        if n > have {
            return Err(DecodeError::Short {
                what,
                need: n,
                have,
            });
        }
        let out = self
            .buf
            .get(self.pos..self.pos + n)
            .ok_or(DecodeError::Short {
                what,
                need: n,
                have,
            })?;
        self.pos += n;
        Ok(out)
    }

    /// Takes everything left.
    pub fn rest(&mut self) -> &'a [u8] {
        let out = self.buf.get(self.pos..).unwrap_or(&[]);
        self.pos = self.buf.len();
        out
    }

    /// Skips `n` bytes.
    pub fn skip(&mut self, n: usize, what: &'static str) -> Result<(), DecodeError> {
        self.take(n, what).map(|_| ())
    }

    /// Reads one byte.
    pub fn u8(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        Ok(self.take(1, what)?.first().copied().unwrap_or(0))
    }

    /// Reads a little-endian `u16`.
    pub fn u16_le(&mut self, what: &'static str) -> Result<u16, DecodeError> {
        let b = self.array::<2>(what)?;
        Ok(u16::from_le_bytes(b))
    }

    /// Reads a big-endian `u16`.
    pub fn u16_be(&mut self, what: &'static str) -> Result<u16, DecodeError> {
        let b = self.array::<2>(what)?;
        Ok(u16::from_be_bytes(b))
    }

    /// Reads a little-endian `u32`.
    pub fn u32_le(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        let b = self.array::<4>(what)?;
        Ok(u32::from_le_bytes(b))
    }

    /// Reads a fixed-size array.
    pub fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], DecodeError> {
        let s = self.take(N, what)?;
        let mut out = [0u8; N];
        out.copy_from_slice(s);
        Ok(out)
    }

    /// Peeks at the byte at `offset` from the current position.
    pub fn peek(&self, offset: usize) -> Option<u8> {
        self.buf.get(self.pos + offset).copied()
    }

    /// Fails when bytes are left.
    pub fn finish(&self, what: &'static str) -> Result<(), DecodeError> {
        match self.remaining() {
            0 => Ok(()),
            extra => Err(DecodeError::Trailing { what, extra }),
        }
    }
}

/// Reads a little-endian `u32` at `offset` of `buf`, if it is all there.
pub fn u32_le_at(buf: &[u8], offset: usize) -> Option<u32> {
    let b = buf.get(offset..offset.checked_add(4)?)?;
    Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

/// Reads a little-endian `u16` at `offset` of `buf`, if it is all there.
pub fn u16_le_at(buf: &[u8], offset: usize) -> Option<u16> {
    let b = buf.get(offset..offset.checked_add(2)?)?;
    Some(u16::from_le_bytes([b[0], b[1]]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_fields_in_order() {
        let mut r = Reader::new(&[1, 2, 3, 4, 5, 6, 7]);
        assert_eq!(r.u8("a").unwrap(), 1);
        assert_eq!(r.u16_le("b").unwrap(), 0x0302);
        assert_eq!(r.u32_le("c").unwrap(), 0x07060504);
        assert!(r.finish("all").is_ok());
    }

    #[test]
    fn short_input_is_an_error_not_a_panic() {
        let mut r = Reader::new(&[1, 2]);
        assert_eq!(
            r.u32_le("dw"),
            Err(DecodeError::Short {
                what: "dw",
                need: 4,
                have: 2
            })
        );
        // A failed read consumes nothing.
        assert_eq!(r.remaining(), 2);
        assert_eq!(u32_le_at(&[1, 2, 3], 0), None);
        assert_eq!(u32_le_at(&[1, 2, 3, 4], usize::MAX), None);
    }

    #[test]
    fn trailing_bytes_are_reported() {
        let mut r = Reader::new(&[1, 2]);
        r.u8("x").unwrap();
        assert_eq!(
            r.finish("s"),
            Err(DecodeError::Trailing {
                what: "s",
                extra: 1
            })
        );
    }
}
