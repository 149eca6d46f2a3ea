//! The byte-preserving flag editor for static pod manifests.
//!
//! `edit_flags` sets or removes command-line flags of one container, changing only the items
//! concerned and leaving every other byte (comments, indentation, quoting, blank lines, line
//! endings, order) as it was. It never returns a file whose meaning is not exactly the intended
//! one: the result is parsed again and must equal the input's parsed document with only the
//! container's `command`/`args` replaced by the model's; otherwise it is refused.
//!
//! Modules, one job each:
//! - `scan`    byte-level helpers: lines, scalar extents, scalar decoding
//! - `locate`  a structural YAML parser with byte spans (block context)
//! - `flow`    the same for flow collections (`[...]`, `{...}`, JSON)
//! - `lists`   the container's `command`/`args` lists, checked to be safely editable
//! - `argv`    the model: flags in an argv, what set/unset do to it
//! - `render`  writes an item in a list's style with the quoting it needs
//! - `edit`    turns the model's plan into byte edits
//! - `doc`     the serde_norway view: one document, a Pod, the container, its argv

mod argv;
mod doc;
mod edit;
mod flow;
#[doc(hidden)]
pub mod inspect;
mod lists;
mod locate;
mod render;
mod scan;
pub mod volumes;

pub use argv::{parse_flag_arg, validate_flag_name, validate_flag_value, FlagEdit};

use argv::{FlagValue, ListId, Model};
use scan::{ScanError, Src};

/// Why a manifest cannot be read or edited. Messages are lowercase and say where (a line, or
/// a path such as `spec.containers[0].command[3]`).
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("line {line}: {what}")]
    Text { line: usize, what: String },
    #[error("{}yaml parse error: {message}", fmt_at(*.line, *.column))]
    Yaml {
        line: Option<usize>,
        column: Option<usize>,
        message: String,
    },
    #[error("line {line}: the file holds several yaml documents; a static pod manifest must hold exactly one")]
    MultipleDocuments { line: usize },
    #[error("not a pod manifest: {0}")]
    NotAPod(String),
    #[error("no container named {wanted:?} in pod {pod:?} (containers: {available})")]
    NoSuchContainer {
        wanted: String,
        pod: String,
        available: String,
    },
    #[error("pod {pod:?} has {count} containers ({available}) and none is named like the pod; choose one with --container")]
    AmbiguousContainer {
        pod: String,
        count: usize,
        available: String,
    },
    #[error("{path} {detail}")]
    BadArgv { path: String, detail: String },
    /// A shape the editor does not change (anchors, block scalars as items, ...), or cannot
    /// follow; `what` says which.
    #[error("{}{what}", fmt_at(*.line, None))]
    Unsupported { line: Option<usize>, what: String },
    #[error("{}cannot edit container {container:?}: {reason}", fmt_at(*.line, None))]
    CannotEdit {
        line: Option<usize>,
        container: String,
        reason: String,
    },
    #[error("invalid flag name {name:?}: a flag name is lowercase letters, digits and '-', without leading dashes")]
    InvalidFlagName { name: String },
    #[error("invalid flag value {value:?}: {reason}")]
    InvalidFlagValue { value: String, reason: &'static str },
    #[error("invalid flag argument {arg:?}: expected NAME=VALUE")]
    InvalidFlagArg { arg: String },
    #[error("line {line}: refusing to write the edited manifest: {detail}")]
    VerifyFailed { line: usize, detail: String },
}

fn fmt_at(line: Option<usize>, column: Option<usize>) -> String {
    match (line, column) {
        (Some(l), Some(c)) => format!("line {l}, column {c}: "),
        (Some(l), None) => format!("line {l}: "),
        _ => String::new(),
    }
}

impl ManifestError {
    /// The 1-based line the error is about, when there is one.
    pub fn line(&self) -> Option<usize> {
        match self {
            ManifestError::Text { line, .. }
            | ManifestError::MultipleDocuments { line }
            | ManifestError::VerifyFailed { line, .. } => Some(*line),
            ManifestError::Yaml { line, .. }
            | ManifestError::Unsupported { line, .. }
            | ManifestError::CannotEdit { line, .. } => *line,
            _ => None,
        }
    }
}

/// A container's argv as the manifest states it.
#[derive(Debug, Clone)]
pub struct ContainerArgv {
    /// The container's name.
    pub name: String,
    /// The pod's `metadata.name` ("" when missing).
    pub pod: String,
    /// `command` (empty when absent: the image's entrypoint runs).
    pub command: Vec<String>,
    /// `args` (empty when absent).
    pub args: Vec<String>,
    pub has_command: bool,
    pub has_args: bool,
    /// The container's parsed mapping (probes, ports, ... for the health gate).
    pub container: serde_norway::Value,
}

impl ContainerArgv {
    /// `command ++ args`.
    pub fn argv(&self) -> Vec<String> {
        self.command.iter().chain(&self.args).cloned().collect()
    }
}

/// The result of `edit_flags`.
#[derive(Debug, Clone)]
pub struct EditOutcome {
    /// The new file content (equal to the input when nothing changes).
    pub bytes: Vec<u8>,
    pub changed: bool,
    /// The name of the container edited.
    pub container: String,
    /// `command ++ args` before.
    pub argv_before: Vec<String>,
    /// `command ++ args` after: the model, verified against a re-parse of `bytes`.
    pub argv_after: Vec<String>,
    /// Names of flags whose effective value (last occurrence) changed, in edit order. A bare
    /// `--flag` set to `--flag=true` counts as changed.
    pub changed_flags: Vec<String>,
}

fn text_error(src: &Src, e: ScanError) -> ManifestError {
    ManifestError::Text {
        line: src.line_of(e.pos),
        what: e.what,
    }
}

fn unsupported(src: &Src, e: ScanError) -> ManifestError {
    let what = if e.what.contains("not supported") {
        e.what
    } else {
        format!("{}: this layout is not supported by the editor", e.what)
    };
    ManifestError::Unsupported {
        line: Some(src.line_of(e.pos)),
        what,
    }
}

fn read(input: &[u8]) -> Result<serde_norway::Value, ManifestError> {
    if let Err(e) = scan::check_text(input) {
        return Err(text_error(&Src::new(input), e));
    }
    doc::parse_single(input)
}

/// Reads the argv of the container chosen as in `set` (`container`, else the one named like
/// the pod, else the only one).
pub fn container_argv(
    input: &[u8],
    container: Option<&str>,
) -> Result<ContainerArgv, ManifestError> {
    let root = read(input)?;
    let sel = doc::select(&root, container)?;
    Ok(ContainerArgv {
        name: sel.name,
        pod: sel.pod,
        has_command: sel.command.is_some(),
        has_args: sel.args.is_some(),
        command: sel.command.unwrap_or_default(),
        args: sel.args.unwrap_or_default(),
        container: sel.value.clone(),
    })
}

/// Sets or removes flags of one container. See the module documentation for the guarantees.
pub fn edit_flags(
    input: &[u8],
    container: Option<&str>,
    edits: &[FlagEdit],
) -> Result<EditOutcome, ManifestError> {
    for e in edits {
        validate_flag_name(e.name())?;
        if let FlagEdit::Set { value, .. } = e {
            validate_flag_value(value)?;
        }
    }
    let root = read(input)?;
    let sel = doc::select(&root, container)?;
    let mut model = Model::new(sel.command.as_deref(), sel.args.as_deref());
    let names: Vec<&str> = edits
        .iter()
        .map(FlagEdit::name)
        .fold(Vec::new(), |mut v, n| {
            if !v.contains(&n) {
                v.push(n);
            }
            v
        });
    let before: Vec<Option<FlagValue>> = names.iter().map(|n| model.effective(n)).collect();
    for e in edits {
        model.apply(e).map_err(|reason| ManifestError::CannotEdit {
            line: None,
            container: sel.name.clone(),
            reason,
        })?;
    }
    let argv_before: Vec<String> = sel
        .command
        .iter()
        .chain(&sel.args)
        .flatten()
        .cloned()
        .collect();
    let command_after = model.list_after(ListId::Command);
    let args_after = model.list_after(ListId::Args);
    let mut outcome = EditOutcome {
        bytes: input.to_vec(),
        changed: false,
        container: sel.name.clone(),
        argv_before,
        argv_after: command_after.iter().chain(&args_after).cloned().collect(),
        changed_flags: names
            .iter()
            .zip(&before)
            .filter(|(n, b)| model.effective(n) != **b)
            .map(|(n, _)| n.to_string())
            .collect(),
    };
    if !model.changed() {
        return Ok(outcome);
    }

    let src = Src::new(input);
    let tree = locate::parse_document(&src).map_err(|e| unsupported(&src, e))?;
    let entry = |key: &str| {
        tree.get("spec")
            .and_then(|s| s.value.get(sel.field))
            .and_then(|l| l.value.items())
            .and_then(|items| items.get(sel.index).copied())
            .and_then(|c| c.get(key))
    };
    let mut byte_edits = Vec::new();
    let mut list_line = 1;
    for (list, key, strings) in [
        (ListId::Command, "command", &sel.command),
        (ListId::Args, "args", &sel.args),
    ] {
        if !model.list_touched(list) {
            continue;
        }
        let Some(e) = entry(key) else {
            return Err(ManifestError::Unsupported {
                line: None,
                what: format!("the {key} list could not be located; this layout is not supported"),
            });
        };
        list_line = src.line_of(e.colon);
        let loc = lists::list_loc(&src, e, key).map_err(|e| unsupported(&src, e))?;
        // The located items must be exactly the ones serde_norway read, or we are looking at
        // the wrong place.
        let found: Vec<Option<String>> = loc
            .items()
            .iter()
            .map(|i| {
                std::str::from_utf8(&input[i.start..i.end])
                    .ok()
                    .and_then(|raw| scan::decode_scalar(raw, i.style))
            })
            .collect();
        let expected: Vec<Option<String>> = strings.iter().flatten().cloned().map(Some).collect();
        if found != expected {
            return Err(ManifestError::Unsupported {
                line: Some(list_line),
                what: format!(
                    "the {key} items could not be read back exactly; this layout is not supported"
                ),
            });
        }
        edit::list_edits(&src, &loc, &model.plan(list), &mut byte_edits)
            .map_err(|e| unsupported(&src, e))?;
    }
    let bytes = edit::keep_final_break(input, edit::apply(input, &mut byte_edits));

    let want_cmd = sel.command.as_ref().map(|_| command_after.clone());
    let want_args = sel.args.as_ref().map(|_| args_after.clone());
    verify(&bytes, &root, &sel, want_cmd, want_args, list_line)?;
    outcome.bytes = bytes;
    outcome.changed = true;
    Ok(outcome)
}

/// The edited file must parse to the original document with only the container's lists
/// replaced by the model's.
fn verify(
    bytes: &[u8],
    root: &serde_norway::Value,
    sel: &doc::Selected,
    command: Option<Vec<String>>,
    args: Option<Vec<String>>,
    line: usize,
) -> Result<(), ManifestError> {
    let fail = |detail: String| ManifestError::VerifyFailed { line, detail };
    if scan::check_text(bytes).is_err() {
        return Err(fail("the result is not clean utf-8 text".into()));
    }
    let mut got =
        doc::parse_single(bytes).map_err(|e| fail(format!("the result does not parse ({e})")))?;
    // Put the original lists back into the result: then it must equal the input document,
    // and what came out must be the model's lists.
    let original =
        |key: &str, present: bool| present.then(|| sel.value.get(key).cloned().unwrap_or_default());
    let originals = [
        original("command", command.is_some()),
        original("args", args.is_some()),
    ];
    let Some(taken) = doc::swap_lists(&mut got, sel, originals) else {
        return Err(fail("the container would no longer be where it was".into()));
    };
    let as_strings = |v: &Option<serde_norway::Value>| -> Option<Vec<String>> {
        v.as_ref()?
            .as_sequence()?
            .iter()
            .map(|s| s.as_str().map(str::to_string))
            .collect()
    };
    let got_lists = [as_strings(&taken[0]), as_strings(&taken[1])];
    let lists_ok = got_lists[0] == command && got_lists[1] == args;
    if lists_ok && got == *root {
        return Ok(());
    }
    Err(fail(if lists_ok {
        "content outside the edited lists would change".to_string()
    } else {
        let want: Vec<String> = command.iter().chain(&args).flatten().cloned().collect();
        format!(
            "its command and args would be {:?} and {:?} instead of {want:?}",
            got_lists[0], got_lists[1]
        )
    }))
}
