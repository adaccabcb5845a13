//! Control words read from the control FIFO, one per line.
//!
//! ```text
//! plug [i]            bind reader i (all readers without i): the host sees it plugged
//! unplug [i]          unbind reader i (all without i)
//! remove <i> <slot>   take the card out of a slot of reader i
//! insert <i> <slot>   put the card back
//! stats               print the counters of every reader
//! verbose 0|1         log every message
//! quit                tear everything down and exit
//! ```
#![forbid(unsafe_code)]

/// One control word.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControlWord {
    /// Bind one reader, or all.
    Plug(Option<usize>),
    /// Unbind one reader, or all.
    Unplug(Option<usize>),
    /// Remove the card of a slot.
    Remove {
        /// Reader index.
        reader: usize,
        /// Slot number.
        slot: u8,
    },
    /// Insert the card of a slot.
    Insert {
        /// Reader index.
        reader: usize,
        /// Slot number.
        slot: u8,
    },
    /// Print the counters.
    Stats,
    /// Per-message logging on or off.
    Verbose(bool),
    /// Exit.
    Quit,
}

fn number<T: std::str::FromStr>(word: &str, what: &str) -> Result<T, String> {
    word.parse()
        .map_err(|_| format!("{what} must be a number, not {word:?}"))
}

/// Parses one line. Empty lines and `#` comments give `Ok(None)`.
pub fn parse(line: &str) -> Result<Option<ControlWord>, String> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let Some((&first, args)) = words.split_first() else {
        return Ok(None);
    };
    if first.starts_with('#') {
        return Ok(None);
    }
    let optional_index = |args: &[&str]| -> Result<Option<usize>, String> {
        match args {
            [] => Ok(None),
            [i] => number(i, "the reader index").map(Some),
            _ => Err(format!("{first} takes at most one reader index")),
        }
    };
    let slot_args = |args: &[&str]| -> Result<(usize, u8), String> {
        match args {
            [i, s] => Ok((number(i, "the reader index")?, number(s, "the slot")?)),
            _ => Err(format!("usage: {first} <reader index> <slot>")),
        }
    };
    let word = match first {
        "plug" => ControlWord::Plug(optional_index(args)?),
        "unplug" => ControlWord::Unplug(optional_index(args)?),
        "remove" => {
            let (reader, slot) = slot_args(args)?;
            ControlWord::Remove { reader, slot }
        }
        "insert" => {
            let (reader, slot) = slot_args(args)?;
            ControlWord::Insert { reader, slot }
        }
        "stats" if args.is_empty() => ControlWord::Stats,
        "verbose" => match args {
            ["0"] | ["off"] => ControlWord::Verbose(false),
            ["1"] | ["on"] => ControlWord::Verbose(true),
            _ => return Err("usage: verbose 0|1".into()),
        },
        "quit" | "exit" if args.is_empty() => ControlWord::Quit,
        _ => return Err(format!("unknown control word {line:?}")),
    };
    Ok(Some(word))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words() {
        assert_eq!(parse("plug"), Ok(Some(ControlWord::Plug(None))));
        assert_eq!(parse(" plug 3 \n"), Ok(Some(ControlWord::Plug(Some(3)))));
        assert_eq!(parse("unplug"), Ok(Some(ControlWord::Unplug(None))));
        assert_eq!(parse("unplug 11"), Ok(Some(ControlWord::Unplug(Some(11)))));
        assert_eq!(
            parse("remove 0 3"),
            Ok(Some(ControlWord::Remove { reader: 0, slot: 3 }))
        );
        assert_eq!(
            parse("insert 2 7"),
            Ok(Some(ControlWord::Insert { reader: 2, slot: 7 }))
        );
        assert_eq!(parse("stats"), Ok(Some(ControlWord::Stats)));
        assert_eq!(parse("verbose 1"), Ok(Some(ControlWord::Verbose(true))));
        assert_eq!(parse("verbose off"), Ok(Some(ControlWord::Verbose(false))));
        assert_eq!(parse("quit"), Ok(Some(ControlWord::Quit)));
        assert_eq!(parse(""), Ok(None));
        assert_eq!(parse("   # a comment"), Ok(None));
    }

    #[test]
    fn bad_words_are_explained() {
        for bad in [
            "plug x",
            "plug 1 2",
            "remove 1",
            "remove a 1",
            "insert 0 256",
            "verbose",
            "quit now",
            "dance",
        ] {
            let e = parse(bad).unwrap_err();
            assert!(!e.is_empty(), "{bad}");
        }
        assert!(parse("remove 1").unwrap_err().contains("usage"));
        assert!(parse("insert 0 256").unwrap_err().contains("slot"));
    }
}
