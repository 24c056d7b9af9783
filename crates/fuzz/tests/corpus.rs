//! Every file of `corpus/<target>/` replayed through its target, as an ordinary test: CI runs
//! the fuzz targets on their corpora without a fuzzer (`crates/fuzz/README.md`).

use std::path::Path;

#[test]
fn every_corpus_file_passes_its_target() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    for target in capture_fuzz::TARGETS {
        let dir = root.join(target);
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.expect("entry").path())
            .collect();
        files.sort();
        assert!(!files.is_empty(), "{target}: the corpus is empty");
        for file in files {
            let data = std::fs::read(&file).expect("read");
            capture_fuzz::run(target, &data);
        }
    }
}

/// The struct readers' target on 20,000 generated inputs (a deterministic generator: CI runs a
/// small fuzzer of its own on the target that needs no plugin).
#[test]
fn struct_output_survives_generated_inputs() {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for _ in 0..20_000 {
        let len = usize::try_from(next() % 400).expect("small");
        let data: Vec<u8> = (0..len).map(|_| next().to_le_bytes()[0]).collect();
        capture_fuzz::run("struct_output", &data);
    }
}
