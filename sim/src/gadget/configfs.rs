//! A USB gadget in configfs (libcomposite) with one FunctionFS function,
//! its FunctionFS mount, and binding it to a UDC.
//!
//! ```text
//! <configfs>/usb_gadget/<name>/            idVendor idProduct bcdDevice bcdUSB UDC
//!     strings/0x409/                       manufacturer product serialnumber
//!     configs/c.1/  strings/0x409/         MaxPower, configuration
//!     functions/ffs.<name>/                the FunctionFS instance <name>
//!     configs/c.1/ffs.<name> -> functions/ffs.<name>
//! <mount dir>                              mount -t functionfs <name> <mount dir>
//! ```
//!
//! Everything is plain file I/O; the mount uses mount(2) through `nix`.
#![forbid(unsafe_code)]

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// Where configfs keeps USB gadgets.
pub const GADGET_ROOT: &str = "/sys/kernel/config/usb_gadget";
/// Where the kernel lists UDCs.
pub const UDC_CLASS: &str = "/sys/class/udc";

/// The USB identity a gadget presents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// idVendor.
    pub vendor_id: u16,
    /// idProduct.
    pub product_id: u16,
    /// bcdDevice.
    pub bcd_device: u16,
    /// iManufacturer.
    pub manufacturer: String,
    /// iProduct.
    pub product: String,
    /// iSerialNumber.
    pub serial: String,
}

/// The paths of one gadget.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GadgetPaths {
    /// The gadget's name: directory in configfs and FunctionFS instance.
    pub name: String,
    /// `<configfs>/usb_gadget/<name>`.
    pub dir: PathBuf,
    /// Where FunctionFS is mounted.
    pub mount: PathBuf,
}

impl GadgetPaths {
    /// The paths of gadget `name` under the standard roots, mounted at
    /// `<mount_base>/ffs-<name>`.
    pub fn new(name: &str, mount_base: &Path) -> GadgetPaths {
        GadgetPaths {
            name: name.to_string(),
            dir: Path::new(GADGET_ROOT).join(name),
            mount: mount_base.join(format!("ffs-{name}")),
        }
    }

    fn function(&self) -> PathBuf {
        self.dir
            .join("functions")
            .join(format!("ffs.{}", self.name))
    }

    fn config(&self) -> PathBuf {
        self.dir.join("configs").join("c.1")
    }

    fn link(&self) -> PathBuf {
        self.config().join(format!("ffs.{}", self.name))
    }

    fn udc_file(&self) -> PathBuf {
        self.dir.join("UDC")
    }
}

fn ctx(e: io::Error, what: &str, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{what} {}: {e}", path.display()))
}

fn write_attr(path: &Path, value: &str) -> io::Result<()> {
    fs::write(path, format!("{value}\n")).map_err(|e| ctx(e, "writing", path))
}

fn mkdir(path: &Path) -> io::Result<()> {
    match fs::create_dir(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(ctx(e, "creating", path)),
    }
}

/// Checks that configfs offers USB gadgets, with a hint when it does not.
pub fn check_available() -> io::Result<()> {
    if Path::new(GADGET_ROOT).is_dir() {
        return Ok(());
    }
    Err(io::Error::new(
        io::ErrorKind::NotFound,
        format!(
            "{GADGET_ROOT} is missing: load the modules (modprobe dummy_hcd num=N; modprobe \
             libcomposite; modprobe usb_f_fs) and mount configfs (mount -t configfs none \
             /sys/kernel/config)"
        ),
    ))
}

/// Checks that UDC `udc` exists.
pub fn check_udc(udc: &str) -> io::Result<()> {
    let p = Path::new(UDC_CLASS).join(udc);
    if p.exists() {
        return Ok(());
    }
    let mut have: Vec<String> = fs::read_dir(UDC_CLASS)
        .map(|d| {
            d.filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
                .collect()
        })
        .unwrap_or_default();
    have.sort();
    Err(io::Error::new(
        io::ErrorKind::NotFound,
        format!(
            "no UDC {udc} (present: {}); dummy_hcd makes dummy_udc.0 .. dummy_udc.<num-1>",
            if have.is_empty() {
                "none".to_string()
            } else {
                have.join(", ")
            }
        ),
    ))
}

/// The connection speed of `udc` as sysfs reports it ("high-speed", ...).
pub fn udc_speed(udc: &str) -> io::Result<String> {
    fs::read_to_string(Path::new(UDC_CLASS).join(udc).join("current_speed"))
}

/// Creates the configfs tree of a gadget with one FunctionFS function and
/// mounts the FunctionFS instance. A tree or mount of the same name left
/// by an earlier run is removed first.
pub fn create(paths: &GadgetPaths, id: &Identity, config_name: &str) -> io::Result<()> {
    if paths.dir.exists() || mounted_at(&paths.mount)?.is_some() {
        remove(paths)?;
    }
    mkdir(&paths.dir)?;
    let d = &paths.dir;
    write_attr(&d.join("idVendor"), &format!("{:#06x}", id.vendor_id))?;
    write_attr(&d.join("idProduct"), &format!("{:#06x}", id.product_id))?;
    write_attr(&d.join("bcdDevice"), &format!("{:#06x}", id.bcd_device))?;
    write_attr(&d.join("bcdUSB"), "0x0200")?;
    let strings = d.join("strings").join("0x409");
    mkdir(&strings)?;
    write_attr(&strings.join("manufacturer"), &id.manufacturer)?;
    write_attr(&strings.join("product"), &id.product)?;
    write_attr(&strings.join("serialnumber"), &id.serial)?;
    let config = paths.config();
    let cstrings = config.join("strings").join("0x409");
    fs::create_dir_all(&cstrings).map_err(|e| ctx(e, "creating", &cstrings))?;
    write_attr(&cstrings.join("configuration"), config_name)?;
    write_attr(&config.join("MaxPower"), "100")?;
    mkdir(&paths.function())?;
    std::os::unix::fs::symlink(paths.function(), paths.link())
        .map_err(|e| ctx(e, "linking", &paths.link()))?;
    fs::create_dir_all(&paths.mount).map_err(|e| ctx(e, "creating", &paths.mount))?;
    nix::mount::mount(
        Some(paths.name.as_str()),
        &paths.mount,
        Some("functionfs"),
        nix::mount::MsFlags::empty(),
        None::<&str>,
    )
    .map_err(|e| {
        io::Error::new(
            io::Error::from(e).kind(),
            format!(
                "mount -t functionfs {} {}: {e} (is usb_f_fs loaded?)",
                paths.name,
                paths.mount.display()
            ),
        )
    })?;
    Ok(())
}

/// Binds the gadget to `udc`: the host sees the device plugged in.
pub fn bind(paths: &GadgetPaths, udc: &str) -> io::Result<()> {
    write_attr(&paths.udc_file(), udc)
}

/// Unbinds the gadget: the host sees the device unplugged. Unbinding a
/// gadget that is not bound is not an error.
pub fn unbind(paths: &GadgetPaths) -> io::Result<()> {
    match fs::write(paths.udc_file(), "\n") {
        Ok(()) => Ok(()),
        Err(e) if e.raw_os_error() == Some(nix::libc::ENODEV) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(ctx(e, "writing", &paths.udc_file())),
    }
}

/// The UDC the gadget is bound to, if any.
pub fn bound_udc(paths: &GadgetPaths) -> Option<String> {
    let s = fs::read_to_string(paths.udc_file()).ok()?;
    let s = s.trim();
    (!s.is_empty()).then(|| s.to_string())
}

/// The FunctionFS instance mounted at `dir`, from /proc/self/mounts.
pub fn mounted_at(dir: &Path) -> io::Result<Option<String>> {
    let text = match fs::read_to_string("/proc/self/mounts") {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    Ok(functionfs_mount_source(&text, dir))
}

/// In the text of /proc/self/mounts, the source of a functionfs mount at
/// `dir`.
pub fn functionfs_mount_source(mounts: &str, dir: &Path) -> Option<String> {
    let want = dir.to_string_lossy();
    mounts.lines().find_map(|l| {
        let mut f = l.split_whitespace();
        let (src, target, kind) = (f.next()?, f.next()?, f.next()?);
        (kind == "functionfs" && unescape_mount_field(target) == want).then(|| src.to_string())
    })
}

/// /proc/self/mounts writes space, tab, newline and backslash as `\ooo`.
fn unescape_mount_field(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let oct = b.get(i + 1..i + 4).and_then(|d| {
            std::str::from_utf8(d)
                .ok()
                .and_then(|t| u8::from_str_radix(t, 8).ok())
        });
        match (b[i], oct) {
            (b'\\', Some(v)) => {
                out.push(v);
                i += 4;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Removes a gadget completely: unbinds it, unmounts FunctionFS (every file
/// of it must be closed), and removes the configfs tree in the order
/// configfs requires. Parts already gone are skipped, so this also cleans
/// up after a crashed run.
pub fn remove(paths: &GadgetPaths) -> io::Result<()> {
    let mut errors = Vec::new();
    if paths.dir.exists() {
        if let Err(e) = unbind(paths) {
            errors.push(e.to_string());
        }
    }
    match mounted_at(&paths.mount) {
        Ok(Some(_)) => {
            if let Err(e) = nix::mount::umount(&paths.mount) {
                errors.push(format!("umount {}: {e}", paths.mount.display()));
            }
        }
        Ok(None) => {}
        Err(e) => errors.push(format!("/proc/self/mounts: {e}")),
    }
    if paths.mount.is_dir() {
        // only an empty mount point is removed
        let _ = fs::remove_dir(&paths.mount);
    }
    if paths.dir.exists() {
        if let Err(e) = remove_tree(&paths.dir) {
            errors.push(e.to_string());
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(io::Error::other(errors.join("; ")))
    }
}

/// Removes a gadget directory: links in configurations, configuration
/// strings, configurations, functions, gadget strings, then the gadget.
/// configfs refuses recursive removal; each directory goes by rmdir.
fn remove_tree(dir: &Path) -> io::Result<()> {
    let entries = |p: &Path| -> Vec<PathBuf> {
        fs::read_dir(p)
            .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default()
    };
    let rmdir = |p: &Path| fs::remove_dir(p).map_err(|e| ctx(e, "removing", p));
    for config in entries(&dir.join("configs")) {
        for e in entries(&config) {
            if e.is_symlink() {
                fs::remove_file(&e).map_err(|err| ctx(err, "removing", &e))?;
            }
        }
        for s in entries(&config.join("strings")) {
            rmdir(&s)?;
        }
        rmdir(&config)?;
    }
    for f in entries(&dir.join("functions")) {
        rmdir(&f)?;
    }
    for s in entries(&dir.join("strings")) {
        rmdir(&s)?;
    }
    for os in entries(&dir.join("os_desc")) {
        if os.is_symlink() {
            fs::remove_file(&os).map_err(|e| ctx(e, "removing", &os))?;
        }
    }
    rmdir(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        let p = GadgetPaths::new("ccidsim3", Path::new("/dev"));
        assert_eq!(p.dir, Path::new("/sys/kernel/config/usb_gadget/ccidsim3"));
        assert_eq!(p.mount, Path::new("/dev/ffs-ccidsim3"));
        assert_eq!(
            p.link(),
            Path::new("/sys/kernel/config/usb_gadget/ccidsim3/configs/c.1/ffs.ccidsim3")
        );
        assert_eq!(
            p.function(),
            Path::new("/sys/kernel/config/usb_gadget/ccidsim3/functions/ffs.ccidsim3")
        );
    }

    #[test]
    fn finds_functionfs_mounts() {
        let mounts = "sysfs /sys sysfs rw 0 0\n\
                      ccidsim0 /dev/ffs-ccidsim0 functionfs rw,relatime 0 0\n\
                      odd /run/with\\040space functionfs rw 0 0\n\
                      tmpfs /dev/ffs-ccidsim1 tmpfs rw 0 0\n";
        assert_eq!(
            functionfs_mount_source(mounts, Path::new("/dev/ffs-ccidsim0")),
            Some("ccidsim0".into())
        );
        assert_eq!(
            functionfs_mount_source(mounts, Path::new("/run/with space")),
            Some("odd".into())
        );
        assert_eq!(
            functionfs_mount_source(mounts, Path::new("/dev/ffs-ccidsim1")),
            None
        );
        assert_eq!(functionfs_mount_source("", Path::new("/x")), None);
        assert_eq!(unescape_mount_field("a\\134b\\"), "a\\b\\");
    }

    #[test]
    fn missing_udc_is_explained() {
        let e = check_udc("dummy_udc.999").unwrap_err().to_string();
        assert!(e.contains("dummy_udc.999"), "{e}");
    }
}
