//! Load errors: each names the rule file (and the line, when Lua gives one).

use std::path::PathBuf;

/// Why a rule folder or a rule file could not be loaded.
///
/// Evaluation never returns this: a rule that fails while deciding or observing fails closed
/// (see [`RuleVerdict`](crate::RuleVerdict)).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RulesError {
    /// The rule folder (or a file in it) could not be read; a missing folder is this error.
    #[error("cannot read rules at `{}`: {source}", path.display())]
    Io {
        /// The folder or file.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// The file is not valid Lua source.
    #[error("syntax error in rule file {file}{}: {message}", at_line(*line))]
    Syntax {
        /// The file name, e.g. `hold_large.lua`.
        file: String,
        /// The line Lua reported, if any.
        line: Option<u32>,
        /// Lua's message, without the `file:line:` prefix.
        message: String,
    },
    /// The file is valid Lua but not a valid rule: missing or bad `name`, `stage`, `priority`,
    /// `decide` / `observe`, a duplicate name, an error or a blown limit while running the file,
    /// a file name used twice, or text that is not UTF-8.
    #[error("invalid rule file {file}: {message}")]
    Invalid {
        /// The file name.
        file: String,
        /// What is wrong.
        message: String,
    },
    /// The file is precompiled Lua bytecode; only source text is accepted.
    #[error("rule file {file} is precompiled Lua bytecode; only Lua source text is accepted")]
    BytecodeRefused {
        /// The file name.
        file: String,
    },
    /// The Lua sandbox itself could not be prepared (for example a memory limit too small for it).
    #[error("cannot prepare the Lua sandbox: {message}")]
    Sandbox {
        /// What went wrong.
        message: String,
    },
}

fn at_line(line: Option<u32>) -> String {
    line.map(|l| format!(" line {l}")).unwrap_or_default()
}
