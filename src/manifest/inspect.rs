//! Where the editor will work, for fuzz targets and tests that check it from outside: the
//! chosen container's `command`/`args` lists, their byte spans and their items as written.
//! Not part of the editor's contract (hidden from the docs).

use super::lists::{list_loc, ListLoc};
use super::locate::parse_document;
use super::scan::{Src, Style};
use super::{doc, read, unsupported, ManifestError};
use std::ops::Range;

/// One of the container's lists, as it is in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListView {
    /// `command` or `args`.
    pub key: &'static str,
    /// A flow list (`[a, b]`) rather than a block list (`- a`).
    pub flow: bool,
    /// Whole lines, from the one holding the key to the one holding the list's end (with its
    /// line break): the only lines an edit of this list may change.
    pub lines: Range<usize>,
    pub items: Vec<ItemView>,
}

/// One item of a list: its source text and whether it is a plain (unquoted) scalar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemView {
    pub raw: String,
    pub plain: bool,
}

/// The lists of the container `edit_flags` would edit (chosen the same way), those it can edit.
pub fn lists(input: &[u8], container: Option<&str>) -> Result<Vec<ListView>, ManifestError> {
    let root = read(input)?;
    let sel = doc::select(&root, container)?;
    let src = Src::new(input);
    let tree = parse_document(&src).map_err(|e| unsupported(&src, e))?;
    let mut out = Vec::new();
    for key in ["command", "args"] {
        let entry = tree
            .get("spec")
            .and_then(|s| s.value.get(sel.field))
            .and_then(|l| l.value.items())
            .and_then(|items| items.get(sel.index).copied())
            .and_then(|c| c.get(key));
        let Some(entry) = entry else { continue };
        // A list the editor could not edit (a multi-line item, an anchor) is left out: an edit
        // that succeeds never touched it.
        let Ok(loc) = list_loc(&src, entry, key) else {
            continue;
        };
        let (flow, last) = match &loc {
            ListLoc::Flow { close, .. } => (true, *close),
            ListLoc::Block { colon, items } => (false, items.last().map_or(*colon, |i| i.end)),
        };
        let items = loc
            .items()
            .iter()
            .map(|i| ItemView {
                raw: String::from_utf8_lossy(&input[i.start..i.end]).into_owned(),
                plain: i.style == Style::Plain,
            })
            .collect();
        out.push(ListView {
            key,
            flow,
            lines: src.line_start(entry.colon)..src.next_line(last),
            items,
        });
    }
    Ok(out)
}
