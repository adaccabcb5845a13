//! The application side of T=0 status words: what to send after a
//! `61xx` (more data available) or `6Cxx` (wrong Le) answer, and how the
//! final response is assembled. pcscd passes these status words through
//! unchanged for T=0 cards, so a PC/SC client handles them itself.
#![forbid(unsafe_code)]

/// What a client does after receiving one response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// The exchange is complete.
    Done,
    /// Send this command next (GET RESPONSE, or the command again with the
    /// corrected Le).
    Send(Vec<u8>),
}

/// Decides the follow-up to `response`, which answered `command`.
pub fn follow_up(command: &[u8], response: &[u8]) -> Next {
    match response {
        [0x61, le] => Next::Send(vec![0x00, 0xC0, 0x00, 0x00, *le]),
        [0x6C, le] if command.len() >= 4 => {
            let mut again = command.to_vec();
            if again.len() == 4 {
                again.push(*le);
            } else if let Some(last) = again.last_mut() {
                *last = *le;
            }
            Next::Send(again)
        }
        _ => Next::Done,
    }
}

/// Accumulates the data of a chain of responses (`61xx` chains return
/// data in pieces) and keeps the last status word.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Assembled {
    data: Vec<u8>,
    sw: Option<[u8; 2]>,
}

impl Assembled {
    /// Adds one response (data followed by SW1 SW2). A `6Cxx` answer
    /// carries no data; it is recorded only as the current status word.
    pub fn push(&mut self, response: &[u8]) -> Result<(), String> {
        let split = response
            .len()
            .checked_sub(2)
            .ok_or_else(|| format!("response of {} bytes has no status word", response.len()))?;
        let (data, sw) = response.split_at(split);
        self.data.extend_from_slice(data);
        self.sw = Some([
            *sw.first().ok_or("missing SW1")?,
            *sw.get(1).ok_or("missing SW2")?,
        ]);
        Ok(())
    }

    /// The data followed by the final status word.
    pub fn bytes(&self) -> Vec<u8> {
        let mut out = self.data.clone();
        if let Some(sw) = self.sw {
            out.extend_from_slice(&sw);
        }
        out
    }

    /// The final status word, if any response was added.
    pub fn sw(&self) -> Option<[u8; 2]> {
        self.sw
    }
}

/// An APDU to send and, optionally, the status word it must end with:
/// `HEX` or `HEX=SW` where SW is 2 hex digits (SW1 only) or 4 (SW1 SW2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expectation {
    /// The command bytes.
    pub command: Vec<u8>,
    /// The expected status word prefix.
    pub sw_prefix: Vec<u8>,
}

impl Expectation {
    /// Parses `HEX[=SW]`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let (cmd, sw) = match text.split_once('=') {
            Some((c, s)) => (c, s),
            None => (text, ""),
        };
        let command = crate::hex::parse(cmd)?;
        if command.len() < 4 {
            return Err(format!("APDU {cmd:?} is shorter than 4 bytes"));
        }
        let sw_prefix = crate::hex::parse(sw)?;
        if sw_prefix.len() > 2 {
            return Err(format!(
                "expected status word {sw:?} is longer than 2 bytes"
            ));
        }
        Ok(Self { command, sw_prefix })
    }

    /// Whether `sw` satisfies the expectation.
    pub fn accepts(&self, sw: [u8; 2]) -> bool {
        sw.starts_with(&self.sw_prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn get_response_after_61() {
        let select = [0x00, 0xA4, 0x04, 0x00, 0x02, 0x3F, 0x00];
        assert_eq!(
            follow_up(&select, &[0x61, 0x0D]),
            Next::Send(vec![0x00, 0xC0, 0x00, 0x00, 0x0D])
        );
        assert_eq!(follow_up(&select, &[0x90, 0x00]), Next::Done);
        assert_eq!(follow_up(&select, &[0x01, 0x61, 0x0D]), Next::Done);
    }

    #[test]
    fn resend_with_le_after_6c() {
        assert_eq!(
            follow_up(&[0x00, 0xCA, 0x9F, 0x7F, 0x00], &[0x6C, 0x2D]),
            Next::Send(vec![0x00, 0xCA, 0x9F, 0x7F, 0x2D])
        );
        assert_eq!(
            follow_up(&[0x00, 0xCA, 0x9F, 0x7F], &[0x6C, 0x2D]),
            Next::Send(vec![0x00, 0xCA, 0x9F, 0x7F, 0x2D])
        );
        assert_eq!(follow_up(&[0x00, 0xCA], &[0x6C, 0x2D]), Next::Done);
    }

    #[test]
    fn assembles_chained_data() {
        let mut a = Assembled::default();
        a.push(&[0x61, 0x03]).unwrap();
        a.push(&[0x01, 0x02, 0x03, 0x90, 0x00]).unwrap();
        assert_eq!(a.bytes(), vec![0x01, 0x02, 0x03, 0x90, 0x00]);
        assert_eq!(a.sw(), Some([0x90, 0x00]));
        assert!(a.push(&[0x90]).is_err());
    }

    #[test]
    fn expectation_syntax() {
        let e = Expectation::parse("00A4040000=6A82").unwrap();
        assert_eq!(e.command, vec![0x00, 0xA4, 0x04, 0x00, 0x00]);
        assert!(e.accepts([0x6A, 0x82]));
        assert!(!e.accepts([0x90, 0x00]));
        let e = Expectation::parse("00A4040000=61").unwrap();
        assert!(e.accepts([0x61, 0x0D]));
        let e = Expectation::parse("00A4040000").unwrap();
        assert!(e.accepts([0x6F, 0x00]));
        assert!(Expectation::parse("00A4").is_err());
        assert!(Expectation::parse("00A4040000=900000").is_err());
        assert!(Expectation::parse("00A404000=9000").is_err());
    }
}
