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
