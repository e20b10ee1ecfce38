//! Replays every committed fuzz input on stable: each file of `corpus/<target>/` (the seeds
//! and what fuzzing kept) and of `regressions/<target>/` (inputs that once crashed a target)
//! is fed to its target's function, exactly as the libFuzzer binary would. A panic fails the
//! test and names the file, so CI catches a regression without a nightly toolchain.

use std::path::{Path, PathBuf};

fn inputs(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

#[test]
fn every_committed_input_runs_clean_through_its_target() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut replayed = 0;
    for target in gridledger_fuzz::TARGETS {
        let corpus = inputs(&root.join("corpus").join(target));
        assert!(
            !corpus.is_empty(),
            "target {target} has no committed seed corpus"
        );
        for file in corpus
            .into_iter()
            .chain(inputs(&root.join("regressions").join(target)))
        {
            let data = std::fs::read(&file).expect("a committed input is readable");
            eprintln!("{target}: {}", file.display());
            assert!(gridledger_fuzz::run(target, &data), "{target} is a target");
            replayed += 1;
        }
    }
    eprintln!("replayed {replayed} inputs");
}

#[test]
fn every_target_has_a_libfuzzer_binary() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for target in gridledger_fuzz::TARGETS {
        let source = root.join("fuzz_targets").join(format!("{target}.rs"));
        let text = std::fs::read_to_string(&source).expect("the target's binary exists");
        assert!(
            text.contains(&format!("gridledger_fuzz::{target}::run")),
            "{} runs its target",
            source.display()
        );
    }
}
