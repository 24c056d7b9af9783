//! Hostile files for the plugin loader (`Plugin::load`, `Plugin::load_with`): every one must be a
//! typed [`PluginLoadError`] naming the file, or load correctly; never a panic, never a crash.
//!
//! Cases that could kill the process (SIGBUS, SIGSEGV) or hang it run in a child process: this
//! test binary again, filtered to the one test, with `CAPTURE_E2E_LOADER_CHILD` set. The parent fails
//! with the child's signal and output.

use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use capture_engine::plugin::{LoadOptions, MAX_PLUGIN_FILE};
use capture_engine::{Plugin, PluginLoadError};

use crate::plugins::scratch;
use crate::{optty_plugin, plugin_file};

// ---------------------------------------------------------------------------------------------
// helpers

const CHILD: &str = "CAPTURE_E2E_LOADER_CHILD";

/// A named change to a real plugin's bytes.
type Patch = Box<dyn Fn(&mut Vec<u8>)>;

/// Runs `body` in a child process (this test binary, only this test); fails if the child dies of
/// a signal, exits non-zero, or runs over `limit`.
fn isolated(name: &str, limit: Duration, body: impl FnOnce()) {
    if std::env::var(CHILD).as_deref() == Ok(name) {
        body();
        return;
    }
    let mut child = Command::new(std::env::current_exe().expect("current exe"))
        .args(["--exact", &format!("loader_attacks::{name}"), "--nocapture", "--test-threads=1"])
        .env(CHILD, name)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn the child test");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break Some(status);
        }
        if started.elapsed() > limit {
            child.kill().expect("kill the child I started");
            child.wait().expect("reap");
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let out = child.wait_with_output().expect("output");
    let text = format!(
        "--- child stdout:\n{}\n--- child stderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    match status {
        None => panic!("{name}: the child hung (killed after {limit:?})\n{text}"),
        Some(s) if s.signal().is_some() => {
            panic!(
                "{name}: the child was killed by signal {} ({})\n{text}",
                s.signal().unwrap(),
                signal_name(s.signal().unwrap())
            )
        }
        Some(s) if !s.success() => panic!("{name}: the child failed: {s}\n{text}"),
        Some(_) => assert!(text.contains("1 passed"), "{name}: the child ran no test\n{text}"),
    }
}

fn signal_name(sig: i32) -> &'static str {
    match sig {
        7 => "SIGBUS",
        11 => "SIGSEGV",
        4 => "SIGILL",
        6 => "SIGABRT",
        9 => "SIGKILL",
        _ => "?",
    }
}

/// The error must name the file and never leak the loader's `/proc/self/fd/N` name.
fn assert_names(err: &PluginLoadError, path: &Path) {
    let msg = err.to_string();
    println!("{msg}");
    assert!(msg.contains(&path.display().to_string()), "the error must name {}: {msg}", path.display());
    assert!(!msg.contains("/proc/self/fd/"), "the error leaks the descriptor path: {msg}");
}

fn write(path: &Path, bytes: &[u8]) -> PathBuf {
    std::fs::write(path, bytes).expect("write fixture");
    path.to_path_buf()
}

fn optty_bytes() -> Vec<u8> {
    std::fs::read(optty_plugin()).expect("read the Optty plugin")
}

fn put_u16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_le_bytes());
}

fn put_u64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

/// SHA-256 of some bytes, through the engine's own file hash (no extra dependency).
fn sha256_hex(bytes: &[u8]) -> String {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let path = std::env::temp_dir().join(format!("capture-attack-hash-{}-{n}", std::process::id()));
    std::fs::write(&path, bytes).expect("write");
    let hex = capture_engine::sha256_file(&path).expect("hash");
    let _ = std::fs::remove_file(&path);
    hex
}

/// Where a 64-bit little-endian ELF file's loadable segments end (max p_offset + p_filesz of
/// PT_LOAD): a debug build's plugin is mostly debug info after that.
fn segments_end(b: &[u8]) -> usize {
    let phoff = u64::from_le_bytes(b[32..40].try_into().unwrap()) as usize;
    let phnum = u16::from_le_bytes(b[56..58].try_into().unwrap()) as usize;
    (0..phnum)
        .map(|i| phoff + i * 56)
        .filter(|&at| u32::from_le_bytes(b[at..at + 4].try_into().unwrap()) == 1)
        .map(|at| {
            let off = u64::from_le_bytes(b[at + 8..at + 16].try_into().unwrap());
            let filesz = u64::from_le_bytes(b[at + 32..at + 40].try_into().unwrap());
            (off + filesz) as usize
        })
        .max()
        .expect("PT_LOAD")
}

fn loads_as_optty(path: &Path) {
    let p = Plugin::load(path).unwrap_or_else(|e| panic!("{} should load: {e}", path.display()));
    assert_eq!(p.manifest().id, "optty", "{}", path.display());
}

// ---------------------------------------------------------------------------------------------
// tiny and header-only files

#[test]
fn attack_tiny_files_are_typed_errors_naming_the_file() {
    let dir = scratch("attack-tiny");
    let real = optty_bytes();
    let mut cases: Vec<(String, Vec<u8>)> = vec![
        ("empty".into(), vec![]),
        ("one".into(), vec![0x7f]),
        ("three".into(), b"\x7fEL".to_vec()),
        ("magic".into(), b"\x7fELF".to_vec()),
        ("nul".into(), vec![0]),
        ("newline".into(), b"\n".to_vec()),
    ];
    for n in [5usize, 16, 17, 18, 51, 52, 53, 63, 64, 65] {
        let mut zeros = b"\x7fELF".to_vec();
        zeros.resize(n, 0);
        cases.push((format!("zeros{n}"), zeros));
        cases.push((format!("real{n}"), real[..n].to_vec()));
    }
    for (name, bytes) in &cases {
        let path = write(&dir.join(format!("lib{name}.so")), bytes);
        let err = Plugin::load(&path).expect_err(name);
        assert!(
            matches!(err, PluginLoadError::NotALibrary { .. } | PluginLoadError::Truncated { .. }),
            "{name}: {err:?}"
        );
        assert_names(&err, &path);
    }
}

#[test]
fn attack_header_only_libraries_without_segments_are_typed_errors() {
    // A well-formed 64-bit ET_DYN header and nothing else: no program headers (phnum 0) passes
    // the truncation check; the dynamic loader must then refuse it, typed.
    let dir = scratch("attack-header-only");
    let real = optty_bytes();
    let mut header = real[..64].to_vec();
    put_u16(&mut header, 56, 0); // e_phnum
    put_u64(&mut header, 40, 0); // e_shoff
    put_u16(&mut header, 60, 0); // e_shnum
    let path = write(&dir.join("libheader.so"), &header);
    let err = Plugin::load(&path).expect_err("no segments");
    assert_names(&err, &path);
    // A 32-bit ET_DYN header (52 bytes) on a 64-bit host.
    let mut h32 = vec![0u8; 52];
    h32[..4].copy_from_slice(b"\x7fELF");
    h32[4] = 1; // ELFCLASS32
    h32[5] = 1; // little-endian
    h32[6] = 1;
    put_u16(&mut h32, 16, 3); // ET_DYN
    put_u16(&mut h32, 18, 3); // EM_386
    let path = write(&dir.join("lib32.so"), &h32);
    let err = Plugin::load(&path).expect_err("32-bit");
    assert_names(&err, &path);
}

// ---------------------------------------------------------------------------------------------
// corrupted headers on a real plugin

#[test]
fn attack_corrupt_program_headers_are_typed_errors() {
    let dir = scratch("attack-phdrs");
    let real = optty_bytes();
    let len = real.len() as u64;
    let patches: Vec<(&str, Patch)> = vec![
        ("phoff-past-eof", Box::new(move |b| put_u64(b, 32, len + 4096))),
        ("phoff-max", Box::new(|b| put_u64(b, 32, u64::MAX))),
        ("phoff-overflow", Box::new(|b| put_u64(b, 32, u64::MAX - 8))),
        ("phnum-max", Box::new(|b| put_u16(b, 56, 0xffff))),
        ("phentsize-max", Box::new(|b| put_u16(b, 54, 0xffff))),
        ("phentsize-zero", Box::new(|b| put_u16(b, 54, 0))),
        ("phentsize-one", Box::new(|b| put_u16(b, 54, 1))),
        (
            "load-filesz-max",
            Box::new(|b| {
                // The first PT_LOAD's p_filesz (program headers at e_phoff, 56 bytes each).
                let phoff = u64::from_le_bytes(b[32..40].try_into().unwrap()) as usize;
                let phnum = u16::from_le_bytes(b[56..58].try_into().unwrap()) as usize;
                for i in 0..phnum {
                    let at = phoff + i * 56;
                    if u32::from_le_bytes(b[at..at + 4].try_into().unwrap()) == 1 {
                        put_u64(b, at + 32, u64::MAX);
                        return;
                    }
                }
                panic!("no PT_LOAD");
            }),
        ),
        (
            "e_type-rel-truncated",
            Box::new(|b| {
                put_u16(b, 16, 1);
                let half = segments_end(b) / 2;
                b.truncate(half);
            }),
        ),
        (
            "e_type-exec-truncated",
            Box::new(|b| {
                put_u16(b, 16, 2);
                let half = segments_end(b) / 2;
                b.truncate(half);
            }),
        ),
        ("e_type-core", Box::new(|b| put_u16(b, 16, 4))),
        ("e_machine-wrong", Box::new(|b| put_u16(b, 18, 0x28))),
        ("class-32", Box::new(|b| b[4] = 1)),
        ("big-endian", Box::new(|b| b[5] = 2)),
    ];
    for (name, patch) in patches {
        let mut bytes = real.clone();
        patch(&mut bytes);
        let path = write(&dir.join(format!("lib{name}.so")), &bytes);
        match Plugin::load(&path) {
            Ok(p) => panic!("{name}: a corrupted file loaded as {}", p.manifest().id),
            Err(err) => assert_names(&err, &path),
        }
    }
}

#[test]
fn attack_section_headers_past_eof_or_overflowing_still_load_or_are_typed() {
    // The dynamic loader never reads section headers: a library whose section header table is
    // unreadable loads (the entry symbol's type is then unknown), or is refused typed.
    let dir = scratch("attack-shdrs");
    let real = optty_bytes();
    let len = real.len() as u64;
    let patches: Vec<(&str, Patch)> = vec![
        ("shoff-past-eof", Box::new(move |b| put_u64(b, 40, len + 1))),
        ("shoff-far", Box::new(|b| put_u64(b, 40, 1 << 62))),
        ("shoff-max", Box::new(|b| put_u64(b, 40, u64::MAX))),
        ("shoff-overflow", Box::new(|b| put_u64(b, 40, u64::MAX - 63))),
        ("shnum-max", Box::new(|b| put_u16(b, 60, 0xffff))),
        ("shentsize-zero", Box::new(|b| put_u16(b, 58, 0))),
        ("shentsize-max", Box::new(|b| put_u16(b, 58, 0xffff))),
        (
            "shentsize-max-shnum-max",
            Box::new(|b| {
                put_u16(b, 58, 0xffff);
                put_u16(b, 60, 0xffff);
            }),
        ),
        ("shstrndx-max", Box::new(|b| put_u16(b, 62, 0xffff))),
        ("shoff-into-header", Box::new(|b| put_u64(b, 40, 1))),
        ("shoff-last-byte", Box::new(move |b| put_u64(b, 40, len - 1))),
    ];
    for (name, patch) in patches {
        let mut bytes = real.clone();
        patch(&mut bytes);
        let path = write(&dir.join(format!("lib{name}.so")), &bytes);
        match Plugin::load(&path) {
            Ok(p) => assert_eq!(p.manifest().id, "optty", "{name}"),
            Err(err) => assert_names(&err, &path),
        }
    }
}

#[test]
fn attack_dynsym_pointing_past_eof_is_not_a_crash() {
    // Find `.dynsym` in the section headers and point its sh_offset / sh_size / sh_link far away.
    let dir = scratch("attack-dynsym");
    let real = optty_bytes();
    let shoff = u64::from_le_bytes(real[40..48].try_into().unwrap()) as usize;
    let shentsize = u16::from_le_bytes(real[58..60].try_into().unwrap()) as usize;
    let shnum = u16::from_le_bytes(real[60..62].try_into().unwrap()) as usize;
    let dynsym = (0..shnum)
        .map(|i| shoff + i * shentsize)
        .find(|&at| u32::from_le_bytes(real[at + 4..at + 8].try_into().unwrap()) == 11)
        .expect("a .dynsym section");
    let patches: Vec<(&str, Patch)> = vec![
        ("symoff-max", Box::new(move |b| put_u64(b, dynsym + 24, u64::MAX - 4))),
        ("symsize-max", Box::new(move |b| put_u64(b, dynsym + 32, u64::MAX))),
        ("entsize-zero", Box::new(move |b| put_u64(b, dynsym + 56, 0))),
        ("entsize-max", Box::new(move |b| put_u64(b, dynsym + 56, u64::MAX))),
        ("link-max", Box::new(move |b| b[dynsym + 40..dynsym + 44].copy_from_slice(&u32::MAX.to_le_bytes()))),
        (
            "link-self",
            Box::new(move |b| {
                let me = ((dynsym - shoff) / shentsize) as u32;
                b[dynsym + 40..dynsym + 44].copy_from_slice(&me.to_le_bytes());
            }),
        ),
    ];
    for (name, patch) in patches {
        let mut bytes = real.clone();
        patch(&mut bytes);
        let path = write(&dir.join(format!("lib{name}.so")), &bytes);
        match Plugin::load(&path) {
            Ok(p) => assert_eq!(p.manifest().id, "optty", "{name}"),
            Err(err) => assert_names(&err, &path),
        }
    }
}

/// A real, loadable shared library whose `capture_connector_entry` is a data object (compiled
/// here with the system C compiler, `$CC` or `cc`).
fn data_entry_library(dir: &Path) -> PathBuf {
    let source = write(&dir.join("data_entry.c"), b"int capture_connector_entry[64] = {1};\n");
    let out = dir.join("libdataentry.so");
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".to_owned());
    let status = Command::new(&cc)
        .args(["-shared", "-fPIC", "-o"])
        .arg(&out)
        .arg(&source)
        .status()
        .unwrap_or_else(|e| panic!("cannot run `{cc}`: {e}"));
    assert!(status.success(), "`{cc}` failed");
    out
}

#[test]
fn attack_entry_data_symbol_with_section_headers_stripped_is_refused_not_called() {
    // A library whose `capture_connector_entry` is a data object is refused (EntryNotFunction).
    // The same library with its section header table gone (as `sstrip` leaves it, or with
    // e_shoff corrupted) is the same library to the dynamic loader, which never reads section
    // headers: the entry must still not be called, since calling data as code kills the host.
    let dir = scratch("attack-entry-data");
    let plain = data_entry_library(&dir);
    let err = Plugin::load(&plain).map(|_| ()).expect_err("data symbol");
    assert!(matches!(err, PluginLoadError::EntryNotFunction { .. }), "{err:?}");
    assert_names(&err, &plain);
    let data = std::fs::read(&plain).unwrap();
    isolated(
        "attack_entry_data_symbol_with_section_headers_stripped_is_refused_not_called",
        Duration::from_secs(60),
        || {
            let dir = scratch("attack-entry-data-child");
            let len = data.len() as u64;
            for (name, shoff, shnum) in [
                ("shnum-zero", None, Some(0u16)),
                ("shoff-zero", Some(0u64), None),
                ("shoff-past-eof", Some(len + 4096), None),
            ] {
                let mut bytes = data.clone();
                if let Some(v) = shoff {
                    put_u64(&mut bytes, 40, v);
                }
                if let Some(v) = shnum {
                    put_u16(&mut bytes, 60, v);
                }
                let path = write(&dir.join(format!("lib{name}.so")), &bytes);
                println!("loading {name}");
                std::io::stdout().flush().ok();
                let err = Plugin::load(&path).map(|_| ()).expect_err(name);
                println!("{name}: {err}");
                assert!(matches!(err, PluginLoadError::EntryNotFunction { .. }), "{name}: {err:?}");
                assert_names(&err, &path);
            }
        },
    );
}

// ---------------------------------------------------------------------------------------------
// not regular files

#[test]
fn attack_devices_fifos_directories_and_odd_links_are_typed_errors() {
    let dir = scratch("attack-not-files");
    let zero = dir.join("libzero.so");
    std::os::unix::fs::symlink("/dev/zero", &zero).expect("symlink");
    let null = dir.join("libnull.so");
    std::os::unix::fs::symlink("/dev/null", &null).expect("symlink");
    let fifo = dir.join("fifo.so");
    let ok = Command::new("mkfifo").arg(&fifo).status().expect("mkfifo");
    assert!(ok.success());
    let fifo_link = dir.join("libfifolink.so");
    std::os::unix::fs::symlink(&fifo, &fifo_link).expect("symlink");
    let subdir = dir.join("libdir.so");
    std::fs::create_dir(&subdir).expect("dir");
    let dir_link = dir.join("libdirlink.so");
    std::os::unix::fs::symlink(&subdir, &dir_link).expect("symlink");
    for (path, kind) in [
        (&zero, "a device"),
        (&null, "a device"),
        (&fifo, "a FIFO"),
        (&fifo_link, "a FIFO"),
        (&subdir, "a directory"),
        (&dir_link, "a directory"),
    ] {
        // A FIFO opened for reading waits for a writer: guard with a deadline.
        let (tx, rx) = std::sync::mpsc::channel();
        let p = path.clone();
        std::thread::spawn(move || tx.send(Plugin::load(&p).map(|_| ())).ok());
        let got =
            rx.recv_timeout(Duration::from_secs(10)).unwrap_or_else(|_| panic!("{}: hung", path.display()));
        let err = got.expect_err("not a file");
        assert!(matches!(err, PluginLoadError::NotAFile { .. }), "{}: {err:?}", path.display());
        assert!(err.to_string().contains(kind), "{err}");
        assert_names(&err, path);
    }
    // A dangling link, a link loop, a path through a file, an empty path.
    let dangling = dir.join("libdangling.so");
    std::os::unix::fs::symlink(dir.join("nowhere.so"), &dangling).expect("symlink");
    let a = dir.join("liba.so");
    let b = dir.join("libb.so");
    std::os::unix::fs::symlink(&b, &a).expect("symlink");
    std::os::unix::fs::symlink(&a, &b).expect("symlink");
    let file = write(&dir.join("plain"), b"x");
    let through = file.join("libx.so");
    for path in [&dangling, &a, &through] {
        let err = Plugin::load(path).map(|_| ()).expect_err("no file");
        assert!(matches!(err, PluginLoadError::NotFound { .. } | PluginLoadError::Read { .. }), "{err:?}");
        assert_names(&err, path);
    }
    let err = Plugin::load(Path::new("")).map(|_| ()).expect_err("empty path");
    assert!(matches!(err, PluginLoadError::NotFound { .. } | PluginLoadError::Read { .. }), "{err:?}");
}

#[test]
fn attack_proc_and_sys_pseudo_files_are_typed_errors() {
    // Regular files whose size says nothing of their content (0 in /proc, 4096 in /sys), and
    // the test executable itself (a PIE: ET_DYN, but not loadable).
    let mut paths: Vec<PathBuf> =
        vec!["/proc/self/maps".into(), "/proc/self/status".into(), "/proc/self/exe".into()];
    for p in ["/sys/kernel/mm/transparent_hugepage/enabled", "/sys/power/state", "/sys/kernel/uevent_seqnum"]
    {
        if Path::new(p).exists() {
            paths.push(p.into());
        }
    }
    for path in &paths {
        let err = Plugin::load(path).map(|_| ()).expect_err("not a plugin");
        assert_names(&err, path);
    }
}

// ---------------------------------------------------------------------------------------------
// size limit

#[test]
fn attack_a_file_over_the_size_limit_is_refused_before_it_is_read() {
    let dir = scratch("attack-too-big");
    // Sparse: no gigabytes are written.
    let over = dir.join("libover.so");
    std::fs::copy(optty_plugin(), &over).expect("copy");
    std::fs::OpenOptions::new().write(true).open(&over).unwrap().set_len(MAX_PLUGIN_FILE + 1).unwrap();
    let err = Plugin::load(&over).map(|_| ()).expect_err("over the limit");
    assert!(err.to_string().contains("limit"), "{err}");
    assert_names(&err, &over);
    let huge = dir.join("libhuge.so");
    std::fs::File::create(&huge).unwrap().set_len(u64::MAX / 4).ok();
    if std::fs::metadata(&huge).map(|m| m.len()).unwrap_or(0) > MAX_PLUGIN_FILE {
        let err = Plugin::load(&huge).map(|_| ()).expect_err("far over the limit");
        assert_names(&err, &huge);
    }
    // Exactly at the limit: a real plugin followed by zeros is still a valid library.
    let at = dir.join("libat.so");
    std::fs::copy(optty_plugin(), &at).expect("copy");
    std::fs::OpenOptions::new().write(true).open(&at).unwrap().set_len(MAX_PLUGIN_FILE).unwrap();
    loads_as_optty(&at);
    // Exactly at the limit, all zeros: not ELF.
    let zeros = dir.join("libzeros.so");
    std::fs::File::create(&zeros).unwrap().set_len(MAX_PLUGIN_FILE).unwrap();
    let err = Plugin::load(&zeros).map(|_| ()).expect_err("zeros");
    assert!(matches!(err, PluginLoadError::NotALibrary { .. }), "{err:?}");
    assert_names(&err, &zeros);
}

// ---------------------------------------------------------------------------------------------
// truncation

#[test]
fn attack_truncated_copies_are_refused_and_a_cut_after_the_segments_loads() {
    let dir = scratch("attack-truncated");
    let real = optty_bytes();
    let end = segments_end(&real);
    // Half of the file: a debug build is mostly debug info past the segments, so half the file
    // still holds every segment and must load; half of the segments must not.
    let half_file = write(&dir.join("libhalffile.so"), &real[..real.len() / 2]);
    let half_file_ok = real.len() / 2 >= end;
    let half = write(&dir.join("libhalf.so"), &real[..end / 2]);
    let err = Plugin::load(&half).map(|_| ()).expect_err("half the segments");
    let PluginLoadError::Truncated { size, needed, .. } = err else { panic!("{err:?}") };
    assert_eq!((size, needed), ((end / 2) as u64, end as u64));
    let err = Plugin::load(&half).map(|_| ()).unwrap_err();
    assert_names(&err, &half);
    for (name, cut) in [("short1", end - 1), ("quarter", end / 4), ("phdrs", 64 + 56), ("page", 4096)] {
        let path = write(&dir.join(format!("lib{name}.so")), &real[..cut]);
        let err = Plugin::load(&path).map(|_| ()).expect_err(name);
        assert!(matches!(err, PluginLoadError::Truncated { .. }), "{name}: {err:?}");
        assert_names(&err, &path);
    }
    // Cut at or after the end of the segments (section headers lost): the dynamic loader maps
    // only the segments, so this is a working library, or refused typed.
    isolated(
        "attack_truncated_copies_are_refused_and_a_cut_after_the_segments_loads",
        Duration::from_secs(60),
        || {
            if half_file_ok {
                loads_as_optty(&half_file);
            }
            let dir = scratch("attack-truncated-child");
            for (name, cut) in [("at-end", end), ("end-plus-1", end + 1)] {
                let path = write(&dir.join(format!("lib{name}.so")), &real[..cut]);
                match Plugin::load(&path) {
                    Ok(p) => assert_eq!(p.manifest().id, "optty"),
                    Err(err) => {
                        println!("{name}: {err}");
                        assert_names(&err, &path)
                    }
                }
            }
        },
    );
}

#[test]
fn attack_a_file_truncated_while_it_is_hashed_for_its_pin_does_not_kill_the_process() {
    // A file cut short while its pin's hash is computed (an operator's `cp` over the plugin while
    // the engine starts: `cp` truncates, then writes). A loader that mapped the file would die of
    // SIGBUS touching a page past the new end; reading it gets a short read. A typed error.
    isolated(
        "attack_a_file_truncated_while_it_is_hashed_for_its_pin_does_not_kill_the_process",
        Duration::from_secs(120),
        || {
            let dir = scratch("attack-truncate-race");
            let path = dir.join("libracing.so");
            for attempt in 0..5 {
                std::fs::copy(optty_plugin(), &path).expect("copy");
                // Sparse tail, under the limit: hashing it takes long enough to be cut under it.
                std::fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(256 << 20).unwrap();
                let cutter = {
                    let path = path.clone();
                    std::thread::spawn(move || {
                        std::thread::sleep(Duration::from_millis(30));
                        std::fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(4096).unwrap();
                    })
                };
                let pin = "0".repeat(64);
                println!("attempt {attempt}: loading while another thread truncates");
                std::io::stdout().flush().ok();
                let got = Plugin::load_with(&path, &LoadOptions::default().sha256(pin));
                cutter.join().unwrap();
                let err = got.map(|_| ()).expect_err("pin of zeros never matches");
                println!("attempt {attempt}: {err}");
                assert_names(&err, &path);
            }
        },
    );
}

// ---------------------------------------------------------------------------------------------
// pins

#[test]
fn attack_pins_right_wrong_and_odd() {
    let dir = scratch("attack-pins");
    let real = optty_bytes();
    let file = write(&dir.join("libpinned.so"), &real);
    let actual = sha256_hex(&real);
    for pin in [
        actual.clone(),
        actual.to_uppercase(),
        format!("  {actual}\n"),
        format!("\t{}", actual.to_uppercase()),
    ] {
        let p = Plugin::load_with(&file, &LoadOptions::default().sha256(pin.clone()))
            .unwrap_or_else(|e| panic!("pin {pin:?}: {e}"));
        assert_eq!(p.manifest().id, "optty");
    }
    let mut flipped = actual.clone().into_bytes();
    flipped[63] = if flipped[63] == b'0' { b'1' } else { b'0' };
    let flipped = String::from_utf8(flipped).unwrap();
    for pin in [
        flipped,
        String::new(),
        " ".into(),
        actual[..63].to_owned(),
        format!("{actual}0"),
        format!("sha256:{actual}"),
        actual.replace('a', "\u{0430}"), // Cyrillic a
        "z".repeat(64),
        "0".repeat(10_000),
    ] {
        let err = Plugin::load_with(&file, &LoadOptions::default().sha256(pin.clone()))
            .map(|_| ())
            .expect_err("wrong pin");
        assert!(
            matches!(&err, PluginLoadError::Sha256Mismatch { actual: a, .. } if *a == actual),
            "{pin:?}: {err:?}"
        );
        assert_names(&err, &file);
    }
    // The pin of a truncated file's own bytes: the pin holds, the truncation check still refuses.
    let cut = segments_end(&real) / 2;
    let half = write(&dir.join("libhalfpinned.so"), &real[..cut]);
    let err = Plugin::load_with(&half, &LoadOptions::default().sha256(sha256_hex(&real[..cut])))
        .map(|_| ())
        .expect_err("truncated");
    assert!(matches!(err, PluginLoadError::Truncated { .. }), "{err:?}");
    // An empty file's pin (the hash of nothing).
    let empty = write(&dir.join("libemptypinned.so"), b"");
    let err = Plugin::load_with(&empty, &LoadOptions::default().sha256(sha256_hex(b"")))
        .map(|_| ())
        .expect_err("empty");
    assert!(matches!(err, PluginLoadError::NotALibrary { .. }), "{err:?}");
    assert_names(&err, &empty);
    // Pins on what is not a file are refused as such, not hashed.
    let err =
        Plugin::load_with(&dir, &LoadOptions::default().sha256(actual.clone())).map(|_| ()).expect_err("dir");
    assert!(matches!(err, PluginLoadError::NotAFile { .. }), "{err:?}");
    let err = Plugin::load_with(&dir.join("missing.so"), &LoadOptions::default().sha256(actual.clone()))
        .map(|_| ())
        .expect_err("missing");
    assert!(matches!(err, PluginLoadError::NotFound { .. }), "{err:?}");
    // The pinned hash over a sparse file at the limit (the whole map is read).
    let big = dir.join("libbigpinned.so");
    std::fs::copy(optty_plugin(), &big).unwrap();
    std::fs::OpenOptions::new().write(true).open(&big).unwrap().set_len(64 << 20).unwrap();
    let big_hash = capture_engine::sha256_file(&big).unwrap();
    let p = Plugin::load_with(&big, &LoadOptions::default().sha256(big_hash)).expect("big pinned loads");
    assert_eq!(p.manifest().id, "optty");
}

// ---------------------------------------------------------------------------------------------
// the same file twice, by other names

#[test]
fn attack_the_same_file_twice_and_by_other_names() {
    let dir = scratch("attack-twice");
    let file = dir.join("libtwice.so");
    std::fs::copy(optty_plugin(), &file).expect("copy");
    loads_as_optty(&file);
    loads_as_optty(&file);
    let hard = dir.join("libhard.so");
    std::fs::hard_link(&file, &hard).expect("hard link");
    loads_as_optty(&hard);
    let soft = dir.join("libsoft.so");
    std::os::unix::fs::symlink(&file, &soft).expect("symlink");
    loads_as_optty(&soft);
    let relative = dir.join("librelative.so");
    std::os::unix::fs::symlink("libtwice.so", &relative).expect("symlink");
    loads_as_optty(&relative);
    let dotted = dir.join(".").join("sub/../libtwice.so");
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    loads_as_optty(&dotted);
    // Odd names: spaces, a newline, non-UTF-8 bytes.
    use std::os::unix::ffi::OsStrExt;
    for name in
        [&b"lib with space.so"[..], b"lib\nnewline.so", b"lib\xff\xfe.so", b"libcapture_plugin_optty.so"]
    {
        let path = dir.join(std::ffi::OsStr::from_bytes(name));
        std::fs::copy(optty_plugin(), &path).expect("copy");
        loads_as_optty(&path);
    }
    // Pinned loads of the already loaded file: right pin loads, wrong pin refused.
    let actual = sha256_hex(&optty_bytes());
    assert!(Plugin::load_with(&hard, &LoadOptions::default().sha256(actual)).is_ok());
    assert!(matches!(
        Plugin::load_with(&soft, &LoadOptions::default().sha256("1".repeat(64))),
        Err(PluginLoadError::Sha256Mismatch { .. })
    ));
    // Two plugins loaded at once from the same inode agree.
    let a = Plugin::load(&file).unwrap();
    let b = Plugin::load(&hard).unwrap();
    assert_eq!(a.manifest(), b.manifest());
}

#[test]
fn attack_a_file_replaced_by_rename_loads_the_new_file() {
    // The loader keeps loaded files open by (device, inode); a path whose file was replaced by a
    // rename is another inode and must load the new library, not the one it had.
    let dir = scratch("attack-replaced");
    let path = dir.join("libplugin.so");
    std::fs::copy(optty_plugin(), &path).expect("copy");
    loads_as_optty(&path);
    let tmp = dir.join("libplugin.so.tmp");
    std::fs::copy(plugin_file("medusa"), &tmp).expect("copy");
    std::fs::rename(&tmp, &path).expect("rename");
    let p = Plugin::load(&path).expect("the new file loads");
    assert_eq!(p.manifest().id, "medusa", "the replaced path must load the new library");
    // And back again, and a deleted-then-recreated path.
    std::fs::remove_file(&path).unwrap();
    std::fs::copy(optty_plugin(), &path).expect("copy");
    loads_as_optty(&path);
}

// ---------------------------------------------------------------------------------------------
// resources

#[test]
fn attack_refused_files_leak_no_descriptors() {
    isolated("attack_refused_files_leak_no_descriptors", Duration::from_secs(120), || {
        let dir = scratch("attack-fds");
        let real = optty_bytes();
        let files = [
            write(&dir.join("libtext.so"), b"hello"),
            write(&dir.join("libempty.so"), b""),
            write(&dir.join("libhalf.so"), &real[..segments_end(&real) / 2]),
            write(&dir.join("libmagic.so"), b"\x7fELF\x02\x01\x01"),
            dir.join("libmissing.so"),
            dir.clone(),
        ];
        let count = || std::fs::read_dir("/proc/self/fd").unwrap().count();
        // Warm up (worker threads, lazily opened files).
        for f in &files {
            let _ = Plugin::load(f);
        }
        let before = count();
        for _ in 0..50 {
            for f in &files {
                let _ = Plugin::load(f);
                let _ = Plugin::load_with(f, &LoadOptions::default().sha256("0".repeat(64)));
            }
        }
        let after = count();
        assert_eq!(before, after, "descriptors leaked by refused loads");
    });
}

#[test]
fn attack_a_path_swapped_to_a_fifo_between_check_and_open_never_hangs() {
    // A loader that checked the path's type and then opened it would wait forever for a writer
    // on a FIFO put there in between. Swap a FIFO and a file at the path as fast as possible
    // while loading it; every load must return.
    isolated(
        "attack_a_path_swapped_to_a_fifo_between_check_and_open_never_hangs",
        Duration::from_secs(60),
        || {
            let dir = scratch("attack-fifo-swap");
            let path = dir.join("libswap.so");
            let file = write(&dir.join("file"), b"\x7fELF\x02\x01\x01");
            let fifo = dir.join("fifo");
            assert!(Command::new("mkfifo").arg(&fifo).status().unwrap().success());
            let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
            let swapper = {
                let (path, file, fifo, stop) = (path.clone(), file.clone(), fifo.clone(), stop.clone());
                std::thread::spawn(move || {
                    let (tmp_f, tmp_p) = (path.with_extension("f"), path.with_extension("p"));
                    let _ = std::fs::hard_link(&file, &tmp_f);
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        let _ = std::fs::remove_file(&tmp_f);
                        let _ = std::fs::hard_link(&file, &tmp_f);
                        let _ = std::fs::rename(&tmp_f, &path);
                        let _ = std::fs::remove_file(&tmp_p);
                        let _ = std::os::unix::fs::symlink(&fifo, &tmp_p);
                        let _ = std::fs::rename(&tmp_p, &path);
                    }
                })
            };
            let (tx, rx) = std::sync::mpsc::channel::<usize>();
            {
                let path = path.clone();
                std::thread::spawn(move || {
                    for i in 0..200_000 {
                        let _ = Plugin::load(&path);
                        if tx.send(i).is_err() {
                            return;
                        }
                    }
                });
            }
            let started = Instant::now();
            let mut done = 0;
            // Bounded by loads and by time (a guard, not a measurement): the race was found within
            // 3,000-9,000 loads.
            while done < 20_000 && started.elapsed() < Duration::from_secs(20) {
                match rx.recv_timeout(Duration::from_secs(10)) {
                    Ok(i) => done = i,
                    Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
                    Err(_) => {
                        println!("HUNG after {done} loads: a load has not returned for 10 s");
                        std::io::stdout().flush().ok();
                        // The hung thread cannot be stopped: end the child here.
                        std::process::exit(3);
                    }
                }
            }
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            swapper.join().unwrap();
            println!("{done} loads, none hung");
        },
    );
}
