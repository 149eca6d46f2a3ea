//! The `command:`/`args:` lists of the located container, checked to hold only items this
//! editor can rewrite safely (single-line scalars without anchors or tags).

use super::locate::{Entry, Kind, Node};
use super::scan::{err, ScanResult, Src, Style};

/// The located items of a `command:` or `args:` list, ready for editing.
#[derive(Debug)]
pub(crate) enum ListLoc {
    Block {
        colon: usize,
        items: Vec<ItemLoc>,
    },
    Flow {
        open: usize,
        close: usize,
        items: Vec<ItemLoc>,
    },
}

/// One single-line scalar item: its text span and style; `dash` for block items.
#[derive(Debug, Clone)]
pub(crate) struct ItemLoc {
    pub dash: usize,
    pub start: usize,
    pub end: usize,
    pub style: Style,
}

impl ListLoc {
    pub fn items(&self) -> &[ItemLoc] {
        match self {
            ListLoc::Block { items, .. } | ListLoc::Flow { items, .. } => items,
        }
    }
}

/// Checks that the list under `entry` (named `what`, e.g. `command`) has only items this
/// editor can rewrite safely, and returns their spans.
pub(crate) fn list_loc(src: &Src, entry: &Entry, what: &str) -> ScanResult<ListLoc> {
    let v = &entry.value;
    if let Some(a) = v.props {
        return err(
            a,
            format!("an anchor or tag on the {what} list is not supported"),
        );
    }
    let check = |n: &Node| -> ScanResult<ItemLoc> {
        if let Some(a) = n.props {
            return err(
                a,
                format!("an anchor or tag on a {what} item is not supported"),
            );
        }
        match n.kind {
            Kind::Scalar {
                style,
                multiline: false,
            } => Ok(ItemLoc {
                dash: n.start,
                start: n.start,
                end: n.end,
                style,
            }),
            Kind::Scalar {
                multiline: true, ..
            } => err(
                n.start,
                format!("a multi-line {what} item is not supported"),
            ),
            Kind::BlockScalar => err(
                n.start,
                format!("a block scalar (| or >) as a {what} item is not supported"),
            ),
            Kind::Alias => err(
                n.start,
                format!("an alias as a {what} item is not supported"),
            ),
            Kind::Null => err(n.start, format!("an empty {what} item is not supported")),
            Kind::FlowPair => err(
                n.start,
                format!("a key: value pair as a {what} item is not supported"),
            ),
            _ => err(
                n.start,
                format!("a nested collection as a {what} item is not supported"),
            ),
        }
    };
    match &v.kind {
        Kind::BlockSeq(items) => {
            let mut out = Vec::with_capacity(items.len());
            for it in items {
                let mut loc = check(&it.node)?;
                let ls = src.line_start(it.dash);
                if src.skip_ws(ls) != it.dash || src.line_of(it.node.start) != src.line_of(it.dash)
                {
                    return err(
                        it.dash,
                        format!(
                            "a {what} item that does not sit alone on its line is not supported"
                        ),
                    );
                }
                loc.dash = it.dash;
                out.push(loc);
            }
            Ok(ListLoc::Block {
                colon: entry.colon,
                items: out,
            })
        }
        Kind::FlowSeq { open, close, items } => {
            let out = items.iter().map(check).collect::<ScanResult<Vec<_>>>()?;
            Ok(ListLoc::Flow {
                open: *open,
                close: *close,
                items: out,
            })
        }
        Kind::Alias => err(
            v.start,
            format!("the {what} list is an alias, which is not supported"),
        ),
        _ => err(
            v.start,
            format!("the {what} value is not a list this editor can change"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::locate::parse_document;
    use crate::manifest::scan::decode_scalar;

    fn argv_of(doc: &str, key: &str) -> Vec<String> {
        let src = Src::new(doc.as_bytes());
        let root = parse_document(&src).unwrap();
        let c = root
            .get("spec")
            .unwrap()
            .value
            .get("containers")
            .unwrap()
            .value
            .items()
            .unwrap()[0];
        let e = c.get(key).unwrap();
        let loc = list_loc(&src, e, key).unwrap();
        loc.items()
            .iter()
            .map(|i| {
                decode_scalar(
                    std::str::from_utf8(&src.b[i.start..i.end]).unwrap(),
                    i.style,
                )
                .unwrap()
            })
            .collect()
    }

    #[test]
    fn block_and_flow_lists() {
        let doc = "spec:\n  containers:\n  - name: a\n    command:\n    - x   # c\n    - '--y=1'\n    args: [\"--z\", b]\n";
        assert_eq!(argv_of(doc, "command"), ["x", "--y=1"]);
        assert_eq!(argv_of(doc, "args"), ["--z", "b"]);
        let doc =
            "spec:\n  containers:\n  -\n    command:\n    # own line\n\n    - x\n    image: i\n";
        assert_eq!(argv_of(doc, "command"), ["x"]);
        let json = r#"{"spec":{"containers":[{"command":["a","--b=c"]}]}}"#;
        assert_eq!(argv_of(json, "command"), ["a", "--b=c"]);
    }

    #[test]
    fn refuses_anchors_in_lists() {
        let doc = "spec:\n  containers:\n  - command: &a [x]\n";
        let src = Src::new(doc.as_bytes());
        let root = parse_document(&src).unwrap();
        let c = root
            .get("spec")
            .unwrap()
            .value
            .get("containers")
            .unwrap()
            .value
            .items()
            .unwrap()[0];
        let e = list_loc(&src, c.get("command").unwrap(), "command").unwrap_err();
        assert_eq!(src.line_of(e.pos), 3);
    }

    #[test]
    fn skips_block_scalars_and_multiline_values() {
        let doc = "metadata:\n  annotations:\n    a: |\n      x: y\n      - z\n    b: \"q\n      r\"\nspec:\n  containers:\n  - command: [x]\n";
        assert_eq!(argv_of(doc, "command"), ["x"]);
    }
}
