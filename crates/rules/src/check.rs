//! Checking a rule folder without stopping at the first problem: what `capture rules check`
//! prints. Every file is loaded on its own (syntax, the rule table, its stage, priority and
//! function), then the set as a whole (duplicate names); each problem names its file and, where
//! it can be found, its line.

use std::path::Path;

use crate::{Limits, RuleSet, RulesError};

/// One problem (or note) about a rule file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The file name, e.g. `hold_large.lua`.
    pub file: String,
    /// The line, when it is known.
    pub line: Option<u32>,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{line}: {}", self.file, self.message),
            None => write!(f, "{}: {}", self.file, self.message),
        }
    }
}

/// What [`check_dir`] found.
#[derive(Debug)]
pub struct Checked {
    /// The loaded set, when no file has a problem.
    pub rules: Option<RuleSet>,
    /// Problems: the folder cannot be loaded while there is one.
    pub problems: Vec<Problem>,
    /// Advice that does not stop the folder from loading (for example a rule whose file runs
    /// again for every capture because its function uses file-level locals).
    pub notes: Vec<Problem>,
}

/// Checks every `*.lua` file of `dir` (as [`RuleSet::load_dir`] would load them). A missing or
/// unreadable folder is an error; everything else is a [`Problem`].
pub fn check_dir(dir: &Path, limits: Limits) -> Result<Checked, RulesError> {
    let mut problems = Vec::new();
    let mut sources = Vec::new();
    for (file, bytes) in crate::read_dir(dir)? {
        if bytes.first() == Some(&0x1b) {
            let message = RulesError::BytecodeRefused { file: file.clone() }.to_string();
            problems.push(Problem { file, line: None, message: strip_file(&message) });
            continue;
        }
        match String::from_utf8(bytes) {
            Ok(text) => sources.push((file, text)),
            Err(_) => {
                problems.push(Problem { file, line: None, message: "the file is not UTF-8 text".into() })
            }
        }
    }
    let mut checked = check_sources(sources, limits);
    if !problems.is_empty() {
        problems.append(&mut checked.problems);
        problems.sort_by(|a, b| (&a.file, a.line).cmp(&(&b.file, b.line)));
        return Ok(Checked { rules: None, problems, notes: checked.notes });
    }
    Ok(checked)
}

/// [`check_dir`] for `(file name, source)` pairs.
pub fn check_sources(sources: Vec<(String, String)>, limits: Limits) -> Checked {
    let mut problems = Vec::new();
    for (file, text) in &sources {
        if let Err(e) = RuleSet::from_sources(vec![(file.clone(), text.clone())], limits) {
            problems.push(problem(&e, text));
        }
    }
    if !problems.is_empty() {
        return Checked { rules: None, problems, notes: Vec::new() };
    }
    match RuleSet::from_sources(sources.clone(), limits) {
        Ok(rules) => {
            let notes = rules
                .rules()
                .iter()
                .filter(|r| !r.stateless)
                .map(|r| {
                    let f = if r.stage == crate::RuleStage::PreValidate { "decide" } else { "observe" };
                    let text = sources.iter().find(|(file, _)| *file == r.file).map(|(_, t)| t.as_str());
                    Problem {
                        file: r.file.clone(),
                        line: text.and_then(|t| field_line(t, f)),
                        message: format!(
                            "note: `{f}` uses local variables of the file (helpers, constants or tables \
                             defined outside it), so the file runs again for every capture (slower); \
                             define them inside `{f}` if speed matters"
                        ),
                    }
                })
                .collect();
            Checked { rules: Some(rules), problems: Vec::new(), notes }
        }
        Err(e) => {
            let text = match &e {
                RulesError::Invalid { file, .. } | RulesError::Syntax { file, .. } => {
                    sources.iter().find(|(f, _)| f == file).map(|(_, t)| t.as_str()).unwrap_or("")
                }
                _ => "",
            };
            Checked { rules: None, problems: vec![problem(&e, text)], notes: Vec::new() }
        }
    }
}

/// A load error as a problem, with the line found in the message or in the source.
fn problem(e: &RulesError, text: &str) -> Problem {
    match e {
        RulesError::Syntax { file, line, message } => {
            Problem { file: file.clone(), line: *line, message: format!("syntax error: {message}") }
        }
        RulesError::Invalid { file, message } => {
            Problem { file: file.clone(), line: line_of(message, text), message: message.clone() }
        }
        RulesError::BytecodeRefused { file } => {
            Problem { file: file.clone(), line: None, message: strip_file(&e.to_string()) }
        }
        other => Problem { file: String::new(), line: None, message: other.to_string() },
    }
}

/// The error text without its leading "rule file NAME" part.
fn strip_file(message: &str) -> String {
    message
        .split_once(" is ")
        .map(|(_, rest)| format!("the file is {rest}"))
        .unwrap_or_else(|| message.to_owned())
}

/// Where the loader's message points: an explicit line ("line 3", "at line 3"), the field it
/// names, or the `return` of the rule table.
fn line_of(message: &str, text: &str) -> Option<u32> {
    for marker in ["at line ", "line "] {
        if let Some(rest) = message.split_once(marker).map(|(_, r)| r) {
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            if let Ok(n) = digits.parse() {
                return Some(n);
            }
        }
    }
    let field = |name: &str| field_line(text, name);
    if let Some(rest) = message.split_once("unknown field(s) `").map(|(_, r)| r) {
        let name: String = rest.chars().take_while(|&c| c != '`').collect();
        return field(&name).or_else(|| return_line(text));
    }
    let named = [
        ("bad name", "name"),
        ("`name` must", "name"),
        ("duplicate rule name", "name"),
        ("bad stage", "stage"),
        ("bad priority", "priority"),
        ("has `decide`, not `observe`", "observe"),
        ("has `observe`, not `decide`", "decide"),
        ("needs `decide", "decide"),
        ("needs `observe", "observe"),
    ];
    for (needle, name) in named {
        if message.contains(needle) {
            return field(name).or_else(|| return_line(text));
        }
    }
    return_line(text)
}

/// The first line where `name = ` appears as a field (not `name ==`), outside comments.
fn field_line(text: &str, name: &str) -> Option<u32> {
    text.lines().enumerate().find_map(|(i, line)| {
        let code = line.split("--").next().unwrap_or("");
        let mut start = 0;
        while let Some(at) = code[start..].find(name) {
            let at = start + at;
            let before = code[..at].chars().next_back();
            let after = code[at + name.len()..].trim_start();
            let word_start = before.is_none_or(|c| !(c.is_alphanumeric() || c == '_' || c == '.'));
            if word_start && after.starts_with('=') && !after.starts_with("==") {
                return u32::try_from(i + 1).ok();
            }
            start = at + name.len();
        }
        None
    })
}

/// The line of the last `return` at the start of a line (the rule table's, usually).
fn return_line(text: &str) -> Option<u32> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| {
            let t = l.trim_start();
            t == "return" || t.starts_with("return ") || t.starts_with("return{")
        })
        .last()
        .and_then(|(i, _)| u32::try_from(i + 1).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(files: &[(&str, &str)]) -> Checked {
        check_sources(files.iter().map(|(f, s)| (f.to_string(), s.to_string())).collect(), Limits::default())
    }

    fn lines(c: &Checked) -> Vec<String> {
        c.problems.iter().map(|p| p.to_string()).collect()
    }

    #[test]
    fn each_problem_names_its_file_and_line() {
        let c = check(&[
            (
                "a_typo.lua",
                "return {\n  name = 'a',\n  stage = 'pre-validate',\n  priorty = 5,\n  decide = function(ctx) return allow() end,\n}\n",
            ),
            (
                "b_stage.lua",
                "-- comment\nreturn {\n  name = 'b',\n  stage = 'pre_validate',\n  decide = function(ctx) return allow() end,\n}\n",
            ),
            ("c_syntax.lua", "return {\n  name = 'c',\n  stage = = 1,\n}\n"),
            ("d_missing.lua", "local x = 1\nreturn { name = 'd', stage = 'post-capture' }\n"),
            (
                "e_priority.lua",
                "return { name = 'e', stage = 'pre-validate',\n priority = 1.5, decide = function() end }",
            ),
            (
                "f_good.lua",
                "return { name = 'f', stage = 'pre-validate', decide = function(ctx) return allow() end }",
            ),
            ("g_error.lua", "local a = 1\nerror('boom')\n"),
            (
                "h_wrong_fn.lua",
                "return {\n name = 'h', stage = 'post-capture',\n observe = function() end,\n decide = function() end }",
            ),
        ]);
        assert!(c.rules.is_none());
        let got = lines(&c);
        assert_eq!(got.len(), 7, "{got:#?}");
        assert!(got[0].starts_with("a_typo.lua:4: unknown field(s) `priorty`"), "{got:#?}");
        assert!(
            got[1].starts_with("b_stage.lua:4: rule `b`: bad stage the string \"pre_validate\""),
            "{got:#?}"
        );
        assert!(got[2].starts_with("c_syntax.lua:3: syntax error: unexpected symbol"), "{got:#?}");
        assert!(
            got[3]
                .starts_with("d_missing.lua:2: rule `d`: a post-capture rule needs `observe = function(ctx)"),
            "{got:#?}"
        );
        assert!(got[4].starts_with("e_priority.lua:2: rule `e`: bad priority the float 1.5"), "{got:#?}");
        assert!(got[5].starts_with("g_error.lua:2: running the file failed at line 2: boom"), "{got:#?}");
        assert!(
            got[6].starts_with("h_wrong_fn.lua:4: rule `h`: a post-capture rule has `observe`, not `decide`"),
            "{got:#?}"
        );
    }

    #[test]
    fn a_good_folder_loads_and_notes_slow_rules() {
        let c = check(&[
            (
                "a.lua",
                "return { name = 'a', stage = 'pre-validate', decide = function(ctx) return allow() end }",
            ),
            (
                "b.lua",
                "local limit = 5\nreturn { name = 'b', stage = 'pre-validate',\n  decide = function(ctx) return limit > 1 and allow() or hold('x') end }",
            ),
        ]);
        assert!(c.problems.is_empty(), "{:?}", c.problems);
        assert_eq!(c.rules.as_ref().map(|r| r.rules().len()), Some(2));
        assert_eq!(c.notes.len(), 1);
        assert!(
            c.notes[0].to_string().starts_with("b.lua:3: note: `decide` uses local variables"),
            "{:?}",
            c.notes
        );
        // Duplicates are found across files.
        let c = check(&[
            (
                "a.lua",
                "return { name = 'same', stage = 'pre-validate', decide = function(ctx) return allow() end }",
            ),
            (
                "b.lua",
                "\nreturn { name = 'same', stage = 'pre-validate', decide = function(ctx) return allow() end }",
            ),
        ]);
        assert_eq!(lines(&c), ["b.lua:2: duplicate rule name `same` (also in a.lua)"]);
    }

    #[test]
    fn fields_are_found_as_fields_only() {
        let text = "-- name = 'in a comment'\nlocal x = name == 1\nreturn {\n  rename = 1,\n  name = 'x',\n}";
        assert_eq!(field_line(text, "name"), Some(5));
        assert_eq!(return_line(text), Some(3));
        assert_eq!(line_of("running the file failed at line 12: boom", text), Some(12));
    }
}
