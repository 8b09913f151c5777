//! The variables' documentation: `.env.example`, built into the binary, is the one place each
//! variable is described with its default, and `screenrec serve --help` shows it. Its grammar:
//! a `# --- Section ---` line starts a section; `NAME=value` is a variable and its default;
//! `# NAME=value` one that is unset by default, with an example; the comment lines above a
//! variable (or above the variables in a row that follow them) describe it. Tests hold it to
//! what [`Config::from_lookup`](super::Config::from_lookup) reads and to its defaults.

/// `.env.example`, as shipped.
pub const ENV_EXAMPLE: &str = include_str!("../../.env.example");

/// One documented variable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Variable {
    pub name: &'static str,
    /// Its value when unset, if it has one.
    pub default: Option<&'static str>,
    /// An example value, for one that is unset by default.
    pub example: Option<&'static str>,
    pub help: String,
    pub section: &'static str,
}

/// A variable line (`NAME=value`), as its name and value.
fn assignment(line: &str) -> Option<(&str, &str)> {
    let (name, value) = line.split_once('=')?;
    let mut chars = name.chars();
    let valid = chars.next().is_some_and(|c| c.is_ascii_uppercase())
        && chars.all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
    valid.then_some((name, value))
}

/// Every variable of `text` (in `.env.example`'s grammar), in order.
pub fn parse(text: &'static str) -> Vec<Variable> {
    let (mut vars, mut help, mut section) = (Vec::new(), Vec::<&str>::new(), "");
    let mut after_variable = false;
    for line in text.lines() {
        let line = line.trim_end();
        if line.is_empty() {
            (help, after_variable) = (Vec::new(), false);
            continue;
        }
        if let Some(title) = line.strip_prefix("# ---") {
            section = title.trim_matches(|c: char| c == '-' || c.is_whitespace());
            (help, after_variable) = (Vec::new(), false);
            continue;
        }
        let (commented, body) = match line.strip_prefix('#') {
            Some(rest) => (true, rest.trim_start()),
            None => (false, line),
        };
        match assignment(body) {
            Some((name, value)) => {
                vars.push(Variable {
                    name,
                    default: (!commented).then_some(value),
                    example: commented.then_some(value),
                    help: help.join(" "),
                    section,
                });
                after_variable = true;
            }
            None if commented => {
                if after_variable {
                    (help, after_variable) = (Vec::new(), false);
                }
                help.push(body);
            }
            None => {}
        }
    }
    vars
}

/// Every variable screenrec reads.
pub fn variables() -> Vec<Variable> {
    parse(ENV_EXAMPLE)
}

/// The variables as `screenrec serve --help` lists them: by section, each with its default
/// (or "unset", and an example) and its description.
pub fn help() -> String {
    let mut out = String::from("Environment variables (every one optional):\n");
    let mut section = None;
    for v in variables() {
        if section != Some(v.section) {
            out.push_str(&format!("\n  {}\n", v.section));
            section = Some(v.section);
        }
        let value = match (v.default, v.example) {
            (Some(d), _) => format!("[default: {d}]"),
            (None, Some(e)) if !e.is_empty() => format!("[unset; e.g. {e}]"),
            _ => "[unset]".into(),
        };
        out.push_str(&format!("    {} {value}\n", v.name));
        for line in wrap(&v.help, 84) {
            out.push_str(&format!("        {line}\n"));
        }
    }
    out
}

fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = vec![String::new()];
    for word in text.split_whitespace() {
        let line = lines.last_mut().expect("one line at least");
        if !line.is_empty() && line.len() + 1 + word.len() > width {
            lines.push(word.to_owned());
        } else {
            if !line.is_empty() {
                line.push(' ');
            }
            line.push_str(word);
        }
    }
    lines.retain(|l| !l.is_empty());
    lines
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::collections::{BTreeSet, HashMap};

    use super::*;
    use crate::config::Config;

    /// Read by the AWS SDK's conventions, documented with `AWS_REGION`.
    const UNDOCUMENTED: &[&str] = &["AWS_DEFAULT_REGION"];

    #[test]
    fn the_grammar_reads_defaults_examples_sections_and_shared_descriptions() {
        let vars = parse(
            "# --- One ---\n# Where.\nA=1\n# B=x\n\n# Both of these.\n# C=\nD=2\n# Own.\nE=3\n",
        );
        let got: Vec<_> = vars
            .iter()
            .map(|v| (v.name, v.default, v.example, v.help.as_str(), v.section))
            .collect();
        assert_eq!(
            got,
            [
                ("A", Some("1"), None, "Where.", "One"),
                ("B", None, Some("x"), "Where.", "One"),
                ("C", None, Some(""), "Both of these.", "One"),
                ("D", Some("2"), None, "Both of these.", "One"),
                ("E", Some("3"), None, "Own.", "One"),
            ]
        );
    }

    /// Every variable the configuration reads (under enough settings to reach each branch).
    fn read_by_config() -> BTreeSet<String> {
        let read = RefCell::new(BTreeSet::new());
        let key = format!("a={}", "0".repeat(64));
        let settings: [&[(&str, &str)]; 4] = [
            &[],
            &[
                ("STORAGE", "s3"),
                ("S3_BUCKET", "recordings"),
                ("S3_ENDPOINT", "http://h/"),
                ("REDIS_URL", "redis://h/"),
            ],
            &[("AUTH_MODE", "api-key"), ("API_KEYS", &key)],
            &[
                ("AUTH_MODE", "jwt"),
                ("JWT_SECRET", "0123456789abcdef0123456789abcdef"),
                ("JWT_ISSUER", "i"),
                ("JWT_AUDIENCE", "a"),
            ],
        ];
        for set in settings {
            let parsed = Config::from_lookup(|name| {
                read.borrow_mut().insert(name.to_owned());
                set.iter()
                    .find(|(n, _)| *n == name)
                    .map(|(_, v)| (*v).to_owned())
            });
            // Read to the end: an error stops reading.
            assert!(parsed.is_ok(), "{set:?}: {:?}", parsed.err());
        }
        read.into_inner()
    }

    #[test]
    fn every_variable_read_is_documented_and_every_documented_one_is_read() {
        let documented: BTreeSet<String> = variables().iter().map(|v| v.name.to_owned()).collect();
        let read = read_by_config();
        let undocumented: Vec<_> = read
            .iter()
            .filter(|n| !documented.contains(*n) && !UNDOCUMENTED.contains(&n.as_str()))
            .collect();
        assert!(
            undocumented.is_empty(),
            "read but not in .env.example: {undocumented:?}"
        );
        // The serverless functions' variables are read by the same configuration.
        let unread: Vec<_> = documented.difference(&read).collect();
        assert!(
            unread.is_empty(),
            "in .env.example but never read: {unread:?}"
        );
        for v in variables() {
            assert!(!v.help.is_empty(), "{} has no description", v.name);
        }
    }

    #[test]
    fn every_documented_default_is_the_default() {
        // Random per process when unset: fixed on both sides.
        let fixed = ("URL_SIGNING_SECRET", "0123456789abcdef0123456789abcdef");
        let config = |extra: Option<(&str, &str)>| {
            let vars: HashMap<&str, &str> = [Some(fixed), extra].into_iter().flatten().collect();
            let config = Config::from_lookup(|k| vars.get(k).map(|v| (*v).to_owned()));
            format!("{:?}", config.expect("the defaults are valid"))
        };
        let unset = config(None);
        for v in variables() {
            if let Some(default) = v.default {
                assert_eq!(
                    config(Some((v.name, default))),
                    unset,
                    "{}={default} in .env.example is not its default",
                    v.name
                );
            }
        }
    }

    #[test]
    fn the_help_lists_every_variable_with_its_default() {
        let help = help();
        for v in variables() {
            assert!(help.contains(&format!("    {} [", v.name)), "{}", v.name);
        }
        assert!(
            help.contains("BIND_ADDR [default: 127.0.0.1:8080]"),
            "{help}"
        );
        assert!(help.contains("REDIS_URL [unset; e.g. redis://"), "{help}");
    }
}
