//! The reader table, generated at build time from `supported_readers.txt`,
//! and the bundle's Info.plist generated from it.

#![forbid(unsafe_code)]

/// Section of the reader list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    /// Tested and known to work.
    Supported,
    /// Expected to work.
    ShouldWork,
    /// Known to have problems; opened with a warning.
    Unsupported,
    /// Known not to work; not in Info.plist.
    Disabled,
}

/// One reader of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReaderEntry {
    /// idVendor.
    pub vendor_id: u16,
    /// idProduct.
    pub product_id: u16,
    /// Section.
    pub section: Section,
    /// Name (iManufacturer iProduct).
    pub name: &'static str,
}

include!(concat!(env!("OUT_DIR"), "/readers.rs"));

/// The Info.plist of the bundle.
pub const INFO_PLIST: &str = include_str!(concat!(env!("OUT_DIR"), "/Info.plist"));

/// The readers Info.plist lists (every section but `disabled`).
pub fn listed() -> impl Iterator<Item = &'static ReaderEntry> {
    READERS.iter().filter(|r| r.section != Section::Disabled)
}

/// The table entry of `vid:pid`.
pub fn lookup(vid: u16, pid: u16) -> Option<&'static ReaderEntry> {
    READERS
        .iter()
        .find(|r| r.vendor_id == vid && r.product_id == pid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_and_plist_agree() {
        assert!(READERS.len() >= 600);
        let qemu = lookup(0x08E6, 0x4433).unwrap();
        assert_eq!(qemu.section, Section::Supported);
        let listed = listed().count();
        let (cfg, w) = crate::config::Config::from_plist(INFO_PLIST, &|_| None);
        assert!(w.is_empty(), "{w:?}");
        let readers = cfg.readers.unwrap();
        assert_eq!(readers.len(), listed);
        for r in READERS {
            let in_plist = readers
                .iter()
                .any(|e| e.vendor_id == r.vendor_id && e.product_id == r.product_id);
            assert_eq!(in_plist, r.section != Section::Disabled, "{r:?}");
        }
        assert!(INFO_PLIST.contains("<string>CCIDCLASSDRIVER</string>"));
        assert!(INFO_PLIST.contains("<string>libccid.so</string>"));
        assert!(readers.iter().any(|e| e.name.contains('&')));
    }
}
