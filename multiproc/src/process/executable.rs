//! The executable that spawned children (and fork servers) run: Python's
//! `set_executable`, and the build identity that lets a copy of this
//! program stand in for it.
//!
//! # Design
//!
//! A spawned child names its target by code offsets (`target.rs`), so it
//! must run the very same build as its parent. Without
//! [`set_executable`] it runs `/proc/self/exe` and the child checks the
//! file's device and inode. Another path (a copy placed by a cluster's
//! broadcast, say) is another inode, so a copy is recognised by its GNU
//! build id instead: the `NT_GNU_BUILD_ID` note the linker writes into the
//! program headers, a hash of the linked output (`ld --build-id`, the
//! default of the usual Linux toolchains), or on macOS the Mach-O
//! `LC_UUID` load command that Apple's linker always writes (in a
//! universal binary, the slice of this process's architecture). Two
//! builds of different code have different ids; a copy has the same.
//! Reading it takes a few small reads of the headers, never the whole
//! file; this process's own is read once.
//!
//! The parent checks the path at `start`, before anything runs (it exists,
//! is an executable regular file, has this build's id), and reports a
//! mismatch as [`ErrorKind::Bootstrap`] naming both files. The child
//! checks again (the file might be replaced in between): its executable is
//! the parent's file, or has the parent's build id.

use std::{
    fs::File,
    io,
    path::{Path, PathBuf},
    sync::{Mutex, OnceLock},
};

use crate::{Error, ErrorKind, Result};

/// The path set by [`set_executable`]; `None`: the running executable.
static EXECUTABLE: Mutex<Option<PathBuf>> = Mutex::new(None);

fn lock() -> std::sync::MutexGuard<'static, Option<PathBuf>> {
    EXECUTABLE.lock().unwrap_or_else(|e| e.into_inner())
}

/// Sets the program that spawned children and fork servers of this
/// process run (Python's `set_executable`): another path of the same
/// build, such as a copy of this program. Its build is checked at each
/// start: another program (or another build of this one) is refused with
/// [`ErrorKind::Bootstrap`], a missing or non-executable path with
/// [`ErrorKind::Io`], before any process starts.
///
/// It applies to [`StartMethod::Spawn`](crate::StartMethod::Spawn) and to
/// a fork server started afterwards (its children are forks of it); a fork
/// server already running keeps its program. [`StartMethod::Fork`](crate::StartMethod::Fork) runs no
/// program (the child is a copy of this process's memory): the setting
/// does not apply to it. The children themselves run with their own
/// executable (the copy) as their default. A relative path is made
/// absolute against the current directory now.
///
/// ```
/// use multiproc::{self as mp, StartMethod};
///
/// fn double(x: u32) -> u32 {
///     2 * x
/// }
///
/// # fn main() -> mp::Result<()> {
/// // A copy of this program, as a cluster's broadcast would place it.
/// let dir = std::env::temp_dir().join(format!("mp-exe-doc-{}", std::process::id()));
/// std::fs::create_dir_all(&dir).unwrap();
/// let copy = dir.join("copy");
/// std::fs::copy(std::env::current_exe().unwrap(), &copy).unwrap();
/// mp::set_executable(&copy);
/// let mut p = mp::ProcessBuilder::new().start_method(StartMethod::Spawn).target_with(double, 21);
/// p.start()?;
/// assert_eq!(p.join()?, 42);
/// mp::reset_executable();
/// std::fs::remove_dir_all(&dir).unwrap();
/// # Ok(()) }
/// ```
pub fn set_executable(path: impl AsRef<Path>) {
    // A relative path names the file from today's directory, also after a
    // later change of directory (a failure here keeps it relative).
    let path = path.as_ref();
    *lock() = Some(std::path::absolute(path).unwrap_or_else(|_| path.to_owned()));
}

/// Goes back to running this process's own executable (`/proc/self/exe`)
/// in spawned children.
pub fn reset_executable() {
    *lock() = None;
}

/// The program set by [`set_executable`], if any (`None`: this process's
/// own executable; Python's `get_executable()` returns `sys.executable`
/// then).
pub fn get_executable() -> Option<PathBuf> {
    lock().clone()
}

/// The set executable, checked against this build: its path for
/// `posix_spawn`, or `None` for `/proc/self/exe`.
pub(crate) fn checked() -> Result<Option<PathBuf>> {
    let Some(path) = get_executable() else {
        return Ok(None);
    };
    let file = File::open(&path).map_err(|e| {
        Error::io(
            format!("cannot open the executable {} set for children", path.display()),
            e,
        )
    })?;
    let meta = file.metadata().map_err(|e| {
        Error::io(
            format!("cannot read the executable {} set for children", path.display()),
            e,
        )
    })?;
    if !meta.is_file() || !is_executable(&meta) {
        return Err(Error::io(
            format!(
                "the executable {} set for children is not an executable file",
                path.display()
            ),
            io::Error::from(io::ErrorKind::PermissionDenied),
        ));
    }
    let mine = own_build_id().map_err(|e| Error::io("cannot read this program's build id", e))?;
    let theirs = build_id(&file).map_err(|e| {
        Error::io(
            format!(
                "cannot read the build id of the executable {} set for children",
                path.display()
            ),
            e,
        )
    })?;
    let own_path = own_path();
    match (mine, theirs) {
        (Some(a), Some(b)) if *a == b => Ok(Some(path)),
        (None, _) => Err(Error::new(
            ErrorKind::Bootstrap,
            format!(
                "this program ({}) has no build id to check {} against; link it with --build-id to use set_executable",
                own_path,
                path.display()
            ),
        )),
        (Some(a), theirs) => Err(Error::new(
            ErrorKind::Bootstrap,
            format!(
                "the executable {} set for children is not the same build as this program ({}): build id {} there, {} here",
                path.display(),
                own_path,
                theirs.as_deref().map_or_else(|| "none".to_owned(), hex),
                hex(a)
            ),
        )),
    }
}

/// Whether the file may be run: an execute bit on Unix; any file on
/// Windows, where being a program is the file's format, not a permission.
#[cfg(unix)]
fn is_executable(meta: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::PermissionsExt;
    meta.permissions().mode() & 0o111 != 0
}
#[cfg(not(unix))]
fn is_executable(_meta: &std::fs::Metadata) -> bool {
    true
}

/// The path of this process's executable file as the system opens it.
fn own_file() -> PathBuf {
    if cfg!(target_os = "linux") {
        PathBuf::from("/proc/self/exe")
    } else {
        std::env::current_exe().unwrap_or_default()
    }
}

/// This process's executable path, for messages.
pub(crate) fn own_path() -> String {
    let file = own_file();
    std::fs::read_link(&file).map_or_else(|_| file.display().to_string(), |p| p.display().to_string())
}

/// The GNU build id of this process's executable, read once.
pub(crate) fn own_build_id() -> io::Result<Option<&'static [u8]>> {
    static OWN: OnceLock<Option<Vec<u8>>> = OnceLock::new();
    if let Some(id) = OWN.get() {
        return Ok(id.as_deref());
    }
    let id = build_id(&File::open(own_file())?)?;
    Ok(OWN.get_or_init(|| id).as_deref())
}

/// The bytes as lowercase hex.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

const PT_NOTE: u32 = 4;
const NT_GNU_BUILD_ID: u32 = 3;

/// The build id of an executable file: the `NT_GNU_BUILD_ID` note of a
/// 64-bit little-endian ELF file, or the `LC_UUID` of a 64-bit Mach-O
/// file (macOS's linker always writes one; in a universal binary, the
/// slice of this process's architecture). `None` when it has none (or is
/// not such a file).
pub(crate) fn build_id(file: &File) -> io::Result<Option<Vec<u8>>> {
    let mut eh = [0u8; 64];
    if read_exact_at(file, &mut eh, 0)?.is_none() {
        return Ok(None);
    }
    if let Some(offset) = macho_offset(file, &eh)? {
        return macho_uuid(file, offset);
    }
    if &eh[..4] != b"\x7fELF" || eh[4] != 2 || eh[5] != 1 {
        return Ok(None);
    }
    let phoff = u64::from_le_bytes(eh[0x20..0x28].try_into().expect("8 bytes"));
    let phentsize = u64::from(u16::from_le_bytes([eh[0x36], eh[0x37]]));
    let phnum = u64::from(u16::from_le_bytes([eh[0x38], eh[0x39]]));
    if phentsize < 56 {
        return Ok(None);
    }
    for i in 0..phnum {
        let mut ph = [0u8; 56];
        if read_exact_at(file, &mut ph, phoff + i * phentsize)?.is_none() {
            return Ok(None);
        }
        if u32::from_le_bytes(ph[0..4].try_into().expect("4 bytes")) != PT_NOTE {
            continue;
        }
        let offset = u64::from_le_bytes(ph[8..16].try_into().expect("8 bytes"));
        let size = u64::from_le_bytes(ph[32..40].try_into().expect("8 bytes"));
        // Notes are small; a huge one is not something to read.
        let Ok(size) = usize::try_from(size.min(1 << 16)) else {
            continue;
        };
        let mut notes = vec![0u8; size];
        if read_exact_at(file, &mut notes, offset)?.is_none() {
            continue;
        }
        if let Some(id) = find_build_id(&notes) {
            return Ok(Some(id.to_vec()));
        }
    }
    Ok(None)
}

/// The build id among the notes of one `PT_NOTE` segment.
/// `MH_MAGIC_64` as a little-endian file starts.
const MH_MAGIC_64: [u8; 4] = [0xcf, 0xfa, 0xed, 0xfe];
/// `FAT_MAGIC` (a universal binary's header is big-endian).
const FAT_MAGIC: [u8; 4] = [0xca, 0xfe, 0xba, 0xbe];
const LC_UUID: u32 = 0x1b;
/// `CPU_TYPE_ARM64` and `CPU_TYPE_X86_64`.
const OWN_CPU_TYPE: u32 = if cfg!(target_arch = "aarch64") {
    0x0100_000c
} else {
    0x0100_0007
};

/// Where the 64-bit Mach-O image of this architecture starts in `file`
/// (whose first bytes are `head`): 0 for a thin one, the slice's offset in
/// a universal binary; `None` when it is no Mach-O file or has no slice
/// for this architecture.
fn macho_offset(file: &File, head: &[u8; 64]) -> io::Result<Option<u64>> {
    if head[..4] == MH_MAGIC_64 {
        return Ok(Some(0));
    }
    if head[..4] != FAT_MAGIC {
        return Ok(None);
    }
    let be = |b: &[u8]| u32::from_be_bytes(b.try_into().expect("4 bytes"));
    // Java class files share the magic; they give a version there, never
    // more than a few dozen architectures.
    let n = be(&head[4..8]).min(64);
    for i in 0..u64::from(n) {
        let mut arch = [0u8; 20];
        if read_exact_at(file, &mut arch, 8 + i * 20)?.is_none() {
            return Ok(None);
        }
        if be(&arch[0..4]) == OWN_CPU_TYPE {
            return Ok(Some(u64::from(be(&arch[8..12]))));
        }
    }
    Ok(None)
}

/// The `LC_UUID` of the 64-bit little-endian Mach-O image at `offset`.
fn macho_uuid(file: &File, offset: u64) -> io::Result<Option<Vec<u8>>> {
    let mut mh = [0u8; 32];
    if read_exact_at(file, &mut mh, offset)?.is_none() || mh[..4] != MH_MAGIC_64 {
        return Ok(None);
    }
    let size = u32::from_le_bytes(mh[20..24].try_into().expect("4 bytes"));
    // Load commands are small; a huge table is not something to read.
    let Ok(size) = usize::try_from(size.min(1 << 20)) else {
        return Ok(None);
    };
    let mut cmds = vec![0u8; size];
    if read_exact_at(file, &mut cmds, offset + 32)?.is_none() {
        return Ok(None);
    }
    Ok(find_uuid(&cmds).map(<[u8]>::to_vec))
}

/// The `LC_UUID` command's 16 bytes among Mach-O load commands.
fn find_uuid(mut cmds: &[u8]) -> Option<&[u8]> {
    while cmds.len() >= 8 {
        let cmd = u32::from_le_bytes(cmds[0..4].try_into().ok()?);
        let len = usize::try_from(u32::from_le_bytes(cmds[4..8].try_into().ok()?)).ok()?;
        if len < 8 || len > cmds.len() {
            return None;
        }
        if cmd == LC_UUID && len >= 24 {
            return Some(&cmds[8..24]);
        }
        cmds = &cmds[len..];
    }
    None
}

fn find_build_id(mut notes: &[u8]) -> Option<&[u8]> {
    let word = |b: &[u8], at: usize| {
        b.get(at..at + 4)
            .map(|w| u32::from_le_bytes(w.try_into().expect("4 bytes")))
    };
    while notes.len() >= 12 {
        let namesz = word(notes, 0)? as usize;
        let descsz = word(notes, 4)? as usize;
        let kind = word(notes, 8)?;
        let name_end = 12usize.checked_add(namesz)?;
        let desc_start = name_end.next_multiple_of(4);
        let desc_end = desc_start.checked_add(descsz)?;
        let name = notes.get(12..name_end)?;
        let desc = notes.get(desc_start..desc_end)?;
        if kind == NT_GNU_BUILD_ID && name == b"GNU\0" {
            return Some(desc);
        }
        notes = notes.get(desc_end.next_multiple_of(4)..)?;
    }
    None
}

/// Fills `buf` from `offset`; `None` when the file ends first.
fn read_exact_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<Option<()>> {
    #[cfg(unix)]
    let read = std::os::unix::fs::FileExt::read_exact_at(file, buf, offset);
    #[cfg(windows)]
    let read = seek_read_exact(file, buf, offset);
    match read {
        Ok(()) => Ok(Some(())),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(None),
        Err(e) => Err(e),
    }
}

/// `read_exact_at` for Windows (`seek_read` may return fewer bytes).
#[cfg(windows)]
fn seek_read_exact(file: &File, mut buf: &mut [u8], mut offset: u64) -> io::Result<()> {
    use std::os::windows::fs::FileExt;
    while !buf.is_empty() {
        match file.seek_read(buf, offset)? {
            0 => return Err(io::ErrorKind::UnexpectedEof.into()),
            n => {
                buf = &mut buf[n..];
                offset += n as u64;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_build_id_is_the_files() {
        let own = own_build_id().unwrap().expect("the test binary has a build id");
        assert!(own.len() >= 16);
        let again = build_id(&File::open(std::env::current_exe().unwrap()).unwrap()).unwrap();
        assert_eq!(again.as_deref(), Some(own));
    }

    #[test]
    fn notes_are_walked_past_other_notes() {
        let mut notes = Vec::new();
        // An ABI tag note (name "GNU", 16 bytes), then the build id.
        for (kind, desc) in [(1u32, vec![0u8; 16]), (NT_GNU_BUILD_ID, vec![0xab; 20])] {
            notes.extend_from_slice(&4u32.to_le_bytes());
            notes.extend_from_slice(&(desc.len() as u32).to_le_bytes());
            notes.extend_from_slice(&kind.to_le_bytes());
            notes.extend_from_slice(b"GNU\0");
            notes.extend_from_slice(&desc);
        }
        assert_eq!(find_build_id(&notes), Some(&[0xab; 20][..]));
        assert_eq!(find_build_id(&notes[..30]), None);
        assert_eq!(find_build_id(&[0xff; 12]), None);
    }

    /// A 64-bit Mach-O image: its header, a segment command, then `uuid`.
    fn macho(uuid: [u8; 16]) -> Vec<u8> {
        let mut cmds = Vec::new();
        cmds.extend_from_slice(&0x19u32.to_le_bytes()); // LC_SEGMENT_64
        cmds.extend_from_slice(&72u32.to_le_bytes());
        cmds.extend_from_slice(&[0u8; 64]);
        cmds.extend_from_slice(&LC_UUID.to_le_bytes());
        cmds.extend_from_slice(&24u32.to_le_bytes());
        cmds.extend_from_slice(&uuid);
        let mut image = MH_MAGIC_64.to_vec();
        image.extend_from_slice(&[0u8; 12]); // cputype, cpusubtype, filetype
        image.extend_from_slice(&2u32.to_le_bytes()); // ncmds
        image.extend_from_slice(&(cmds.len() as u32).to_le_bytes());
        image.extend_from_slice(&[0u8; 8]); // flags, reserved
        image.extend_from_slice(&cmds);
        image
    }

    fn file_with(bytes: &[u8]) -> File {
        use std::io::{Seek, Write};
        let mut f = tempfile();
        f.write_all(bytes).unwrap();
        f.rewind().unwrap();
        f
    }

    fn tempfile() -> File {
        let path = std::env::temp_dir().join(format!(
            "multiproc-macho-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        std::fs::remove_file(&path).unwrap();
        f
    }

    #[test]
    fn a_thin_macho_files_id_is_its_uuid() {
        let f = file_with(&macho([7; 16]));
        assert_eq!(build_id(&f).unwrap(), Some(vec![7; 16]));
    }

    #[test]
    fn a_universal_binarys_id_is_this_architectures_slice() {
        let other = if OWN_CPU_TYPE == 0x0100_000c {
            0x0100_0007u32
        } else {
            0x0100_000c
        };
        let (a, b) = (macho([1; 16]), macho([2; 16]));
        let mut fat = FAT_MAGIC.to_vec();
        fat.extend_from_slice(&2u32.to_be_bytes());
        let first = 8 + 2 * 20;
        for (cpu, off, len) in [(other, first, a.len()), (OWN_CPU_TYPE, first + a.len(), b.len())] {
            for v in [cpu, 0, off as u32, len as u32, 0] {
                fat.extend_from_slice(&v.to_be_bytes());
            }
        }
        fat.extend_from_slice(&a);
        fat.extend_from_slice(&b);
        assert_eq!(build_id(&file_with(&fat)).unwrap(), Some(vec![2; 16]));
    }

    #[test]
    fn malformed_load_commands_give_no_uuid() {
        let mut image = macho([3; 16]);
        // A command length of zero would loop forever.
        image[36..40].copy_from_slice(&0u32.to_le_bytes());
        assert_eq!(build_id(&file_with(&image)).unwrap(), None);
        assert_eq!(find_uuid(&[0x1b, 0, 0, 0, 200, 0, 0, 0]), None);
    }

    #[test]
    fn not_an_elf_file_has_no_build_id() {
        let f = File::open("/proc/self/status").unwrap();
        assert_eq!(build_id(&f).unwrap(), None);
    }
}
