//! The model of an edit: a container's argv as a list of items, the flags found in it, and
//! what `set`/`unset` do to it. Works on strings only; where the items live in the source is
//! `locate.rs`'s business.
//!
//! Flag parsing follows the Kubernetes binaries (spf13/pflag) and etcd (Go's flag package):
//! `--name=value`, or `--name` whose value is the next item when that item does not start
//! with `-` (the two-item form), or a bare `--name` (a boolean); `--` ends the flags; the last
//! occurrence of a flag wins. Names are compared after turning `_` into `-`, as the
//! Kubernetes components' flag normalizer does.

use super::ManifestError;

/// One change to a container's command-line flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FlagEdit {
    /// After the edit the flag occurs exactly once, as `--name=value`.
    Set { name: String, value: String },
    /// After the edit the flag does not occur (nor the value item of its two-item form).
    Unset { name: String },
}

impl FlagEdit {
    pub fn name(&self) -> &str {
        match self {
            FlagEdit::Set { name, .. } | FlagEdit::Unset { name } => name,
        }
    }
}

/// Flag names are `[a-z0-9][a-z0-9-]*` (every Kubernetes and etcd flag fits).
pub fn validate_flag_name(name: &str) -> Result<(), ManifestError> {
    let b = name.as_bytes();
    let ok = b
        .first()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-');
    if ok {
        Ok(())
    } else {
        Err(ManifestError::InvalidFlagName {
            name: name.to_string(),
        })
    }
}

/// Values may be anything on one line: no line breaks (a YAML list item holds one line here,
/// and a line break in a flag value is almost certainly a mistake) and no NUL (which cannot
/// reach a process's argv).
pub fn validate_flag_value(v: &str) -> Result<(), ManifestError> {
    let bad = v
        .chars()
        .find(|c| matches!(c, '\n' | '\r' | '\0' | '\u{85}' | '\u{2028}' | '\u{2029}'));
    match bad {
        None => Ok(()),
        Some(c) => Err(ManifestError::InvalidFlagValue {
            value: v.to_string(),
            reason: if c == '\0' {
                "it contains a nul character"
            } else {
                "it contains a line break"
            },
        }),
    }
}

/// Parses a `--flag` argument of the CLI: `NAME=VALUE` or `--NAME=VALUE` (split at the first
/// `=`, so the value may itself contain `=`).
pub fn parse_flag_arg(s: &str) -> Result<FlagEdit, ManifestError> {
    let body = s.strip_prefix("--").unwrap_or(s);
    let Some((name, value)) = body.split_once('=') else {
        return Err(ManifestError::InvalidFlagArg { arg: s.to_string() });
    };
    validate_flag_name(name)?;
    validate_flag_value(value)?;
    Ok(FlagEdit::Set {
        name: name.to_string(),
        value: value.to_string(),
    })
}

/// Which list of the container an item belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ListId {
    Command,
    Args,
}

/// The value a flag has where it occurs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FlagValue {
    /// `--name` alone.
    Bare,
    /// `--name=value`, or `--name value` as two items.
    Value(String),
}

#[derive(Debug, Clone)]
struct Entry {
    list: ListId,
    /// Index in the original list, `None` for an item the edit adds.
    orig: Option<usize>,
    original: Option<String>,
    text: String,
    deleted: bool,
}

/// One occurrence of a flag: its item, the value item of the two-item form, and the last item
/// that belongs to it (new flags go after the last occurrence's `end`).
struct Group {
    name: String,
    first: usize,
    value_item: Option<usize>,
    end: usize,
    /// `--name` followed by `-x`: `-x` may be its value or a flag; we cannot know which.
    ambiguous: bool,
    value: FlagValue,
}

/// What happens to one list: each original item kept, rewritten or deleted, and new items in
/// their place in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PlanEntry {
    Orig {
        idx: usize,
        new_text: Option<String>,
        deleted: bool,
    },
    New(String),
}

/// The container's argv (command ++ args) as items that edits rewrite, delete or add.
pub(crate) struct Model {
    entries: Vec<Entry>,
    has_command: bool,
    has_args: bool,
}

fn normalize(name: &str) -> String {
    name.replace('_', "-")
}

impl Model {
    /// `None` for a list the container does not have.
    pub fn new(command: Option<&[String]>, args: Option<&[String]>) -> Model {
        let mut entries = Vec::new();
        for (list, items) in [(ListId::Command, command), (ListId::Args, args)] {
            for (i, t) in items.unwrap_or_default().iter().enumerate() {
                entries.push(Entry {
                    list,
                    orig: Some(i),
                    original: Some(t.clone()),
                    text: t.clone(),
                    deleted: false,
                });
            }
        }
        Model {
            entries,
            has_command: command.is_some(),
            has_args: args.is_some(),
        }
    }

    fn live(&self) -> Vec<usize> {
        (0..self.entries.len())
            .filter(|&i| !self.entries[i].deleted)
            .collect()
    }

    /// The first item of a non-empty `command` is the program, never a flag.
    fn has_program(&self) -> bool {
        self.entries
            .first()
            .is_some_and(|e| e.list == ListId::Command)
    }

    /// Flag occurrences in argv order, and whether a `--` terminator was found.
    fn groups(&self) -> (Vec<Group>, bool) {
        let live = self.live();
        let mut groups = Vec::new();
        let mut i = usize::from(self.has_program());
        while i < live.len() {
            let t = &self.entries[live[i]].text;
            if t == "--" {
                return (groups, true);
            }
            if let Some(rest) = t.strip_prefix("--") {
                let (name, inline) = match rest.split_once('=') {
                    Some((n, v)) => (n, Some(v)),
                    None => (rest, None),
                };
                let mut g = Group {
                    name: normalize(name),
                    first: live[i],
                    value_item: None,
                    end: live[i],
                    ambiguous: false,
                    value: FlagValue::Bare,
                };
                if let Some(v) = inline {
                    g.value = FlagValue::Value(v.to_string());
                } else if let Some(&nx) = live.get(i + 1) {
                    let nt = &self.entries[nx].text;
                    if !nt.starts_with('-') || nt == "-" {
                        g.value = FlagValue::Value(nt.clone());
                        g.value_item = Some(nx);
                        g.end = nx;
                        i += 1;
                    } else if !nt.starts_with("--") {
                        g.ambiguous = true;
                        g.end = nx;
                    }
                }
                groups.push(g);
            }
            i += 1;
        }
        (groups, false)
    }

    /// The value the program sees for `name` (its last occurrence), `None` when absent.
    pub fn effective(&self, name: &str) -> Option<FlagValue> {
        let n = normalize(name);
        self.groups()
            .0
            .into_iter()
            .rfind(|g| g.name == n)
            .map(|g| g.value)
    }

    fn delete(&mut self, g: &Group) {
        self.entries[g.first].deleted = true;
        if let Some(v) = g.value_item {
            self.entries[v].deleted = true;
        }
    }

    /// True for `sh -c SCRIPT` and the like: the program's flags are inside the script
    /// string, where this editor cannot see them, and a flag added to the list would only
    /// become a positional parameter of the script.
    fn runs_shell_script(&self) -> bool {
        let Some(prog) = self.entries.first().filter(|e| e.list == ListId::Command) else {
            return false;
        };
        let base = prog.text.rsplit('/').next().unwrap_or_default();
        matches!(base, "sh" | "bash" | "ash" | "dash" | "ksh" | "zsh")
            && self.entries[1..].iter().any(|e| {
                e.text.starts_with('-') && !e.text.starts_with("--") && e.text.contains('c')
            })
    }

    /// Applies one edit. Errors say why the edit cannot be made safely.
    pub fn apply(&mut self, edit: &FlagEdit) -> Result<(), String> {
        let name = edit.name();
        if self.runs_shell_script() {
            return Err(format!(
                "it runs a shell script ({} -c ...); flags inside the script cannot be edited",
                self.entries[0].text
            ));
        }
        let (groups, terminated) = self.groups();
        let n = normalize(name);
        let matched: Vec<&Group> = groups.iter().filter(|g| g.name == n).collect();
        if let Some(g) = matched.iter().find(|g| g.ambiguous) {
            return Err(format!(
                "--{name} is followed by {:?}, which may be its value or another flag; refusing to guess",
                self.entries[g.end].text
            ));
        }
        match edit {
            FlagEdit::Unset { .. } => matched.iter().for_each(|g| self.delete(g)),
            FlagEdit::Set { value, .. } => {
                let text = format!("--{name}={value}");
                if let Some((last, rest)) = matched.split_last() {
                    rest.iter().for_each(|g| self.delete(g));
                    if let Some(v) = last.value_item {
                        self.entries[v].deleted = true;
                    }
                    self.entries[last.first].text = text;
                } else {
                    let (at, list) = self.insertion_point(&groups, terminated, name)?;
                    self.entries.insert(
                        at,
                        Entry {
                            list,
                            orig: None,
                            original: None,
                            text,
                            deleted: false,
                        },
                    );
                }
            }
        }
        Ok(())
    }

    /// Where a new flag goes: after the last flag (with its value), else at the end of `args`
    /// if the container has that list, else at the end of `command` (after the program).
    fn insertion_point(
        &self,
        groups: &[Group],
        terminated: bool,
        name: &str,
    ) -> Result<(usize, ListId), String> {
        if let Some(g) = groups.last() {
            return Ok((g.end + 1, self.entries[g.end].list));
        }
        if terminated {
            return Err(format!("the arguments hold a '--' terminator and no flags before it; refusing to guess where --{name} goes"));
        }
        let list = if self.has_args {
            ListId::Args
        } else if self.has_command && self.has_program() {
            ListId::Command
        } else {
            return Err(format!(
                "the container has no command or args list to add --{name} to"
            ));
        };
        let at = self.entries.iter().rposition(|e| e.list == list).map_or(
            // An empty args list: it comes after all of command's items.
            self.entries.len(),
            |i| i + 1,
        );
        Ok((at, list))
    }

    /// True when the edits changed any item.
    pub fn changed(&self) -> bool {
        self.entries.iter().any(|e| match &e.original {
            Some(o) => e.deleted || *o != e.text,
            None => !e.deleted,
        })
    }

    /// A list's items after the edits.
    pub fn list_after(&self, list: ListId) -> Vec<String> {
        self.entries
            .iter()
            .filter(|e| e.list == list && !e.deleted)
            .map(|e| e.text.clone())
            .collect()
    }

    pub fn list_touched(&self, list: ListId) -> bool {
        self.plan(list).iter().any(|p| {
            !matches!(
                p,
                PlanEntry::Orig {
                    new_text: None,
                    deleted: false,
                    ..
                }
            )
        })
    }

    /// The per-item plan for one list.
    pub fn plan(&self, list: ListId) -> Vec<PlanEntry> {
        self.entries
            .iter()
            .filter(|e| e.list == list)
            .filter_map(|e| match (e.orig, &e.original) {
                (Some(idx), Some(o)) => Some(PlanEntry::Orig {
                    idx,
                    new_text: (*o != e.text && !e.deleted).then(|| e.text.clone()),
                    deleted: e.deleted,
                }),
                _ if e.deleted => None,
                _ => Some(PlanEntry::New(e.text.clone())),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    fn run(
        cmd: Option<&[&str]>,
        args: Option<&[&str]>,
        edits: &[FlagEdit],
    ) -> (Vec<String>, Vec<String>) {
        let c = cmd.map(v);
        let a = args.map(v);
        let mut m = Model::new(c.as_deref(), a.as_deref());
        for e in edits {
            m.apply(e).unwrap();
        }
        (m.list_after(ListId::Command), m.list_after(ListId::Args))
    }

    fn set(n: &str, val: &str) -> FlagEdit {
        FlagEdit::Set {
            name: n.into(),
            value: val.into(),
        }
    }

    #[test]
    fn folds_duplicates_and_two_item_form() {
        let (c, _) = run(
            Some(&["p", "--a=1", "--b", "x", "--a", "2", "--c"]),
            None,
            &[set("a", "3")],
        );
        assert_eq!(c, v(&["p", "--b", "x", "--a=3", "--c"]));
        let (c, a) = run(Some(&["p", "--a"]), Some(&["2", "--z=1"]), &[set("a", "3")]);
        assert_eq!((c, a), (v(&["p", "--a=3"]), v(&["--z=1"])));
        let (c, _) = run(
            Some(&["p", "--a_b=1"]),
            None,
            &[FlagEdit::Unset { name: "a-b".into() }],
        );
        assert_eq!(c, v(&["p"]));
    }

    #[test]
    fn appends_after_last_flag() {
        let (c, a) = run(Some(&["p"]), Some(&["--x=1", "pos"]), &[set("y", "2")]);
        assert_eq!((c, a), (v(&["p"]), v(&["--x=1", "--y=2", "pos"])));
        let (c, a) = run(Some(&["p", "--x", "v"]), Some(&[]), &[set("y", "2")]);
        assert_eq!((c, a), (v(&["p", "--x", "v", "--y=2"]), v(&[])));
        let (c, a) = run(Some(&["p"]), Some(&[]), &[set("y", "2")]);
        assert_eq!((c, a), (v(&["p"]), v(&["--y=2"])));
        let (_, a) = run(
            None,
            Some(&["--q"]),
            &[set("y", "2"), FlagEdit::Unset { name: "q".into() }],
        );
        assert_eq!(a, v(&["--y=2"]));
    }

    #[test]
    fn refuses_what_it_cannot_know() {
        let c = v(&["p", "--a", "-1"]);
        let mut m = Model::new(Some(&c), None);
        assert!(m.apply(&set("a", "2")).is_err());
        let c = v(&["p", "--", "--a=1"]);
        let mut m = Model::new(Some(&c), None);
        assert!(m.apply(&set("a", "2")).is_err());
        let mut m = Model::new(None, None);
        assert!(m.apply(&set("a", "2")).is_err());
    }

    #[test]
    fn noop_is_unchanged() {
        let c = v(&["p", "--a=1"]);
        let mut m = Model::new(Some(&c), None);
        m.apply(&set("a", "1")).unwrap();
        assert!(!m.changed());
        m.apply(&set("a", "2")).unwrap();
        assert!(m.changed());
        assert_eq!(m.effective("a"), Some(FlagValue::Value("2".into())));
    }

    #[test]
    fn flag_args() {
        assert_eq!(parse_flag_arg("--a-b=c=d").unwrap(), set("a-b", "c=d"));
        assert_eq!(parse_flag_arg("a=").unwrap(), set("a", ""));
        assert!(parse_flag_arg("a").is_err());
        assert!(parse_flag_arg("A=1").is_err());
        assert!(parse_flag_arg("-a=1").is_err());
        assert!(parse_flag_arg("a=1\n").is_err());
        assert!(validate_flag_name("").is_err());
        assert!(validate_flag_name("-a").is_err());
        assert!(validate_flag_value("a\0").is_err());
    }
}
