//! What the loader checks in an ELF file before the dynamic loader sees it.
//!
//! Pure functions over the file's bytes (fuzzed: `crates/fuzz`): is it an ELF shared library at
//! all, is it cut short (a half-copied file maps fine and dies of SIGBUS on first touch), and is
//! the entry symbol a function (a data symbol of that name would be called as code and crash the
//! host). Anything this parser cannot read is left to the dynamic loader, never assumed good.

/// What is wrong with a file as a shared library.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ElfProblem {
    /// Not a shared library: empty, not ELF, or an ELF file of another type.
    NotALibrary(String),
    /// A loadable segment lies past the end of the file.
    Truncated {
        /// The file's size.
        size: u64,
        /// The size its segments need.
        needed: u64,
    },
    /// The entry symbol exists in the dynamic symbol table but is not a function.
    EntryNotFunction {
        /// What it is (`a data object`, ...).
        kind: &'static str,
    },
}

/// The result of [`inspect`] for a file that may be handed to the dynamic loader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ElfInfo {
    /// Whether the dynamic symbol table was read and holds the symbol: `Some(true)` found as a
    /// function, `Some(false)` not in the table, `None` the table could not be read.
    pub(crate) entry_found: Option<bool>,
}

const ET_DYN: u64 = 3;
const PT_LOAD: u64 = 1;
const SHT_DYNSYM: u64 = 11;
const STT_FUNC: u8 = 2;
const STT_GNU_IFUNC: u8 = 10;

/// Where the checked bytes come from: a slice (the fuzzer, tests) or an open file read at
/// offsets ([`FileBytes`]), so that the checks read only the few kilobytes they look at and a file
/// cut short meanwhile is a short read, never a fault.
pub(crate) trait Bytes {
    /// The size the checks judge the file by.
    fn size(&self) -> u64;
    /// Fills `out` with the bytes at `at`; false when they are not all there.
    fn read_at(&self, at: u64, out: &mut [u8]) -> bool;
}

impl Bytes for &[u8] {
    fn size(&self) -> u64 {
        self.len() as u64
    }

    fn read_at(&self, at: u64, out: &mut [u8]) -> bool {
        let Ok(at) = usize::try_from(at) else { return false };
        match at.checked_add(out.len()).and_then(|end| self.get(at..end)) {
            Some(bytes) => {
                out.copy_from_slice(bytes);
                true
            }
            None => false,
        }
    }
}

/// An open file as [`Bytes`]: read with `pread` in 4 KiB pages, each page read once.
pub(crate) struct FileBytes<'f> {
    file: &'f std::fs::File,
    size: u64,
    pages: std::cell::RefCell<std::collections::BTreeMap<u64, Box<[u8]>>>,
}

const PAGE: u64 = 4096;

impl<'f> FileBytes<'f> {
    /// `file` judged as `size` bytes long (its size when it was opened).
    pub(crate) fn new(file: &'f std::fs::File, size: u64) -> FileBytes<'f> {
        FileBytes { file, size, pages: Default::default() }
    }
}

impl Bytes for FileBytes<'_> {
    fn size(&self) -> u64 {
        self.size
    }

    fn read_at(&self, at: u64, out: &mut [u8]) -> bool {
        use std::os::unix::fs::FileExt;
        let Some(end) = at.checked_add(out.len() as u64) else { return false };
        if end > self.size {
            return false;
        }
        let mut pages = self.pages.borrow_mut();
        let mut done = 0usize;
        while done < out.len() {
            let pos = at + done as u64;
            let (number, within) = (pos / PAGE, (pos % PAGE) as usize);
            if !pages.contains_key(&number) {
                // Bounded: the checks look at headers, tables and names, a few pages of a file.
                if pages.len() >= 4096 {
                    return false;
                }
                let mut page = vec![0u8; usize::try_from(PAGE.min(self.size - number * PAGE)).unwrap_or(0)];
                let mut filled = 0;
                while filled < page.len() {
                    match self.file.read_at(&mut page[filled..], number * PAGE + filled as u64) {
                        Ok(0) | Err(_) => return false, // cut short since it was opened, or unreadable
                        Ok(n) => filled += n,
                    }
                }
                pages.insert(number, page.into_boxed_slice());
            }
            let page = &pages[&number];
            let take = (page.len().saturating_sub(within)).min(out.len() - done);
            if take == 0 {
                return false;
            }
            out[done..done + take].copy_from_slice(&page[within..within + take]);
            done += take;
        }
        true
    }
}

struct Reader<'a> {
    bytes: &'a dyn Bytes,
    wide: bool,
    little: bool,
}

impl Reader<'_> {
    fn int(&self, at: u64, len: usize) -> Option<u64> {
        let mut buf = [0u8; 8];
        let bytes = buf.get_mut(..len)?;
        if !self.bytes.read_at(at, bytes) {
            return None;
        }
        let mut v = 0u64;
        for i in 0..len {
            let b = if self.little { bytes[len - 1 - i] } else { bytes[i] };
            v = (v << 8) | u64::from(b);
        }
        Some(v)
    }

    /// A native word: 8 bytes in a 64-bit file, 4 in a 32-bit one.
    fn word(&self, at: u64) -> Option<u64> {
        self.int(at, if self.wide { 8 } else { 4 })
    }
}

/// Checks `bytes` (a whole file) as a shared library exporting `symbol`.
pub(crate) fn inspect(bytes: &[u8], symbol: &[u8]) -> Result<ElfInfo, ElfProblem> {
    inspect_bytes(&bytes, symbol)
}

/// [`inspect`] over any [`Bytes`].
pub(crate) fn inspect_bytes(source: &dyn Bytes, symbol: &[u8]) -> Result<ElfInfo, ElfProblem> {
    let size = source.size();
    if size == 0 {
        return Err(ElfProblem::NotALibrary("the file is empty".into()));
    }
    let mut head = [0u8; 64];
    let head_len = usize::try_from(size.min(64)).unwrap_or(64);
    if !source.read_at(0, &mut head[..head_len]) {
        return Err(ElfProblem::NotALibrary("the file cannot be read".into()));
    }
    let head = &head[..head_len];
    if head.len() < 4 || head[..4] != *b"\x7fELF" {
        let text = head.iter().all(|b| b.is_ascii_graphic() || b.is_ascii_whitespace());
        return Err(ElfProblem::NotALibrary(if text {
            "it is a text file, not an ELF shared library".into()
        } else {
            "it is not an ELF file (no \\x7fELF signature)".into()
        }));
    }
    let truncated = |needed| ElfProblem::Truncated { size, needed };
    if head.len() < 52 {
        return Err(truncated(64));
    }
    let r = Reader { bytes: source, wide: head[4] == 2, little: head[5] != 2 };
    let e_type = r.int(16, 2).ok_or(truncated(64))?;
    if e_type != ET_DYN {
        let what = match e_type {
            1 => "a relocatable object (.o)",
            2 => "an executable",
            4 => "a core dump",
            _ => "an ELF file of an unknown type",
        };
        return Err(ElfProblem::NotALibrary(format!("it is {what}, not a shared library")));
    }
    // ELF header fields: e_phoff, e_shoff, e_phentsize, e_phnum, e_shentsize, e_shnum.
    let (phoff, shoff, phentsize, phnum, shentsize, shnum) = if r.wide {
        (r.int(32, 8), r.int(40, 8), r.int(54, 2), r.int(56, 2), r.int(58, 2), r.int(60, 2))
    } else {
        (r.int(28, 4), r.int(32, 4), r.int(42, 2), r.int(44, 2), r.int(46, 2), r.int(48, 2))
    };
    let (Some(phoff), Some(phentsize), Some(phnum)) = (phoff, phentsize, phnum) else {
        return Err(truncated(64));
    };
    let table_end = phoff.saturating_add(phentsize.saturating_mul(phnum));
    if table_end > size {
        return Err(truncated(table_end));
    }
    let mut needed = 0u64;
    for i in 0..phnum {
        let at = phoff + i * phentsize;
        let fields = if r.wide {
            (r.int(at, 4), r.int(at.saturating_add(8), 8), r.int(at.saturating_add(32), 8))
        } else {
            (r.int(at, 4), r.int(at.saturating_add(4), 4), r.int(at.saturating_add(16), 4))
        };
        let (Some(kind), Some(offset), Some(filesz)) = fields else { break };
        if kind == PT_LOAD {
            needed = needed.max(offset.saturating_add(filesz));
        }
    }
    if needed > size {
        return Err(truncated(needed));
    }
    let entry_found = match (shoff, shentsize, shnum) {
        (Some(shoff), Some(shentsize), Some(shnum)) if shoff != 0 && shnum != 0 => {
            entry_symbol_type(&r, shoff, shentsize, shnum, symbol)
        }
        _ => None,
    };
    match entry_found {
        Some(Some(t)) if t == STT_FUNC || t == STT_GNU_IFUNC => Ok(ElfInfo { entry_found: Some(true) }),
        Some(Some(t)) => Err(ElfProblem::EntryNotFunction {
            kind: match t {
                0 => "a symbol without a type",
                1 => "a data object",
                3 => "a section",
                4 => "a file name",
                5 => "a common block",
                6 => "thread-local data",
                _ => "not a function",
            },
        }),
        Some(None) => Ok(ElfInfo { entry_found: Some(false) }),
        None => Ok(ElfInfo { entry_found: None }),
    }
}

/// The `st_info` type of `symbol` in the dynamic symbol table: `Some(Some(type))` found (and
/// defined), `Some(None)` not there, `None` the table could not be read.
fn entry_symbol_type(
    r: &Reader<'_>,
    shoff: u64,
    shentsize: u64,
    shnum: u64,
    symbol: &[u8],
) -> Option<Option<u8>> {
    // Section header: sh_type at 4; sh_offset, sh_size, sh_link, sh_entsize by class.
    let section = |i: u64| -> Option<(u64, u64, u64, u64, u64)> {
        let at = shoff.checked_add(i.checked_mul(shentsize)?)?;
        if r.wide {
            Some((
                r.int(at.saturating_add(4), 4)?,
                r.word(at.saturating_add(24))?,
                r.word(at.saturating_add(32))?,
                r.int(at.saturating_add(40), 4)?,
                r.word(at.saturating_add(56))?,
            ))
        } else {
            Some((
                r.int(at.saturating_add(4), 4)?,
                r.word(at.saturating_add(16))?,
                r.word(at.saturating_add(20))?,
                r.int(at.saturating_add(24), 4)?,
                r.word(at.saturating_add(36))?,
            ))
        }
    };
    let (_, symoff, symsize, link, entsize) =
        (0..shnum.min(4096)).filter_map(section).find(|s| s.0 == SHT_DYNSYM)?;
    let (_, stroff, strsize, _, _) = section(link)?;
    let min_entsize = if r.wide { 24 } else { 16 };
    if entsize < min_entsize {
        return None;
    }
    let count = symsize / entsize;
    for i in 0..count.min(1 << 20) {
        let at = symoff.checked_add(i * entsize)?;
        // Elf64_Sym: st_name u32, st_info u8, st_other u8, st_shndx u16, ...
        // Elf32_Sym: st_name u32, st_value u32, st_size u32, st_info u8, st_other u8, st_shndx u16.
        let (name, info, shndx) = if r.wide {
            (r.int(at, 4)?, r.int(at.saturating_add(4), 1)?, r.int(at.saturating_add(6), 2)?)
        } else {
            (r.int(at, 4)?, r.int(at.saturating_add(12), 1)?, r.int(at.saturating_add(14), 2)?)
        };
        if name >= strsize || shndx == 0 {
            continue; // no name, or an undefined (imported) symbol
        }
        // The name is `symbol` when its bytes and a NUL after them lie in the string table.
        let start = stroff.checked_add(name)?;
        let wanted = symbol.len() as u64 + 1;
        if name.checked_add(wanted)? > strsize {
            continue;
        }
        let mut found = vec![0u8; symbol.len() + 1];
        if !r.bytes.read_at(start, &mut found) {
            return None;
        }
        if found[..symbol.len()] == *symbol && found[symbol.len()] == 0 {
            return Some(Some((info & 0xf) as u8));
        }
    }
    Some(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An open file read at offsets gives exactly the slice's bytes, across page boundaries and
    /// at the end; a read past the end, or of a file cut short since it was opened, is refused.
    #[test]
    fn file_bytes_read_what_the_slice_holds_and_refuse_what_is_not_there() {
        let dir = std::env::temp_dir().join(format!("capture-elf-file-bytes-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("bytes");
        // Not a multiple of the page: the last page is short.
        let data: Vec<u8> = (0..3 * PAGE as usize + 123).map(|i| (i * 7 + i / 251) as u8).collect();
        std::fs::write(&path, &data).unwrap();
        let file = std::fs::File::open(&path).unwrap();
        let paged = FileBytes::new(&file, data.len() as u64);
        let slice: &[u8] = &data;
        assert_eq!(paged.size(), slice.size());
        let n = data.len() as u64;
        let page = PAGE;
        for at in
            [0, 1, page - 8, page - 1, page, 2 * page - 3, 3 * page, n - 9, n - 1, n, n + 1, u64::MAX - 2]
        {
            for len in [0usize, 1, 2, 4, 8, 9, 4096, 5000] {
                let (mut a, mut b) = (vec![0u8; len], vec![0u8; len]);
                let (ra, rb) = (paged.read_at(at, &mut a), slice.read_at(at, &mut b));
                assert_eq!(ra, rb, "at {at}, len {len}");
                if ra {
                    assert_eq!(a, b, "at {at}, len {len}");
                }
            }
        }
        // Cut short after it was opened (and before its last pages were read): refused, no fault.
        let fresh = std::fs::File::open(&path).unwrap();
        let judged = FileBytes::new(&fresh, n);
        std::fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(page).unwrap();
        let mut tail = [0u8; 8];
        assert!(!judged.read_at(n - 8, &mut tail), "a page that is gone is not there");
        assert!(judged.read_at(0, &mut tail), "a page that is still there is read");
        assert_eq!(tail[..], data[..8]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn files_that_are_not_libraries_are_named() {
        let cases: [(&[u8], &str); 4] = [
            (b"", "the file is empty"),
            (b"this is a text file\n", "text file"),
            (&[0u8, 159, 146, 150, 1, 2, 3], "not an ELF file"),
            (b"\x7fELF\x02\x01\x01", "truncated"),
        ];
        for (bytes, words) in cases {
            let e = inspect(bytes, b"x").unwrap_err();
            let text = format!("{e:?}");
            assert!(
                text.contains(words) || (words == "truncated" && matches!(e, ElfProblem::Truncated { .. })),
                "{text}"
            );
        }
    }

    #[test]
    fn the_entry_symbol_type_is_read_from_dynsym() {
        // Minimal libraries (gcc -shared -nostdlib -s), also seeds of the `elf` fuzz target.
        let function = include_bytes!("../../fuzz/corpus/elf/entry-function.so");
        let data = include_bytes!("../../fuzz/corpus/elf/entry-data.so");
        let symbol = b"capture_connector_entry";
        assert_eq!(inspect(function, symbol), Ok(ElfInfo { entry_found: Some(true) }));
        assert_eq!(inspect(data, symbol), Err(ElfProblem::EntryNotFunction { kind: "a data object" }));
        assert_eq!(inspect(function, b"other"), Ok(ElfInfo { entry_found: Some(false) }));
        assert!(matches!(inspect(&function[..600], symbol), Err(ElfProblem::Truncated { .. })));
    }

    #[test]
    fn the_test_binary_is_an_executable_not_a_library() {
        let me = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        // Test binaries are PIE executables (ET_DYN) on most Linux toolchains; either way the
        // check must not panic and must not call it truncated.
        match inspect(&me, b"main") {
            Ok(_) | Err(ElfProblem::NotALibrary(_)) | Err(ElfProblem::EntryNotFunction { .. }) => {}
            Err(e) => panic!("{e:?}"),
        }
    }
}
