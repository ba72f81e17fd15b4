//! The scheduler core (`dag/`, `state_machine/`, `autoscale/`) does no I/O and imports
//! nothing async, so it stays testable without a runtime and the module graph keeps
//! pointing one way: the shell (engine, store, queue, API) depends on the core, never
//! the reverse. This reads the core's sources and refuses what would break that.

use std::path::{Path, PathBuf};

/// The pure core: directories under `src/`.
const CORE: [&str; 3] = ["dag", "state_machine", "autoscale"];

/// What the core may not name: async runtimes and I/O clients, and the modules of the
/// shell around it.
const FORBIDDEN: &[&str] = &[
    "tokio",
    "sqlx",
    "redis",
    "reqwest",
    "axum",
    "async fn",
    "async move",
    ".await",
    "std::net",
    "std::fs",
    "crate::store",
    "crate::engine",
    "crate::queue",
    "crate::api",
    "crate::live",
    "crate::server",
    "crate::cli",
    "crate::up",
    "crate::views",
];

/// Each forbidden name a source text uses outside comments, with its line number.
fn offences(text: &str) -> Vec<(usize, &'static str)> {
    let mut found = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let code = line.split("//").next().unwrap_or("");
        for word in FORBIDDEN {
            if uses(code, word) {
                found.push((n + 1, *word));
            }
        }
    }
    found
}

/// Whether `code` names `word` as a whole: `self.await_decision()` is no `.await`, and
/// `tokio_like` no `tokio`.
fn uses(code: &str, word: &str) -> bool {
    let ident = |c: char| c.is_alphanumeric() || c == '_';
    code.match_indices(word).any(|(at, _)| {
        let before = code[..at].chars().next_back();
        let after = code[at + word.len()..].chars().next();
        let glued_before = word.starts_with(ident) && before.is_some_and(ident);
        !glued_before && !after.is_some_and(ident)
    })
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn the_scheduler_core_imports_nothing_async_and_no_shell_module() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    for dir in CORE {
        rust_files(&src.join(dir), &mut files);
    }
    assert!(
        files.len() >= CORE.len(),
        "no core sources found: {files:?}"
    );
    let mut problems = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        for (line, word) in offences(&text) {
            problems.push(format!("{}:{line}: uses `{word}`", file.display()));
        }
    }
    assert!(
        problems.is_empty(),
        "the scheduler core must stay free of I/O and async (move this to the engine):\n{}",
        problems.join("\n")
    );
}

#[test]
fn the_check_catches_imports_and_ignores_comments() {
    let text = "use tokio::sync::mpsc;\n// tokio in a comment is fine\nlet s = crate::store::open(u).await;\nself.await_decision(i);\nlet tokio_free = 1;\n";
    assert_eq!(
        offences(text),
        vec![(1, "tokio"), (3, ".await"), (3, "crate::store")]
    );
}
