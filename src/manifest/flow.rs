//! The flow-collection half of the structural parser (`[a, b]`, `{k: v}`, JSON): the same
//! tree of spans as `locate.rs` builds for block collections. Flow collections ignore
//! indentation and may span lines; comments run from `#` to the end of the line.

use super::locate::{Entry, Kind, Node, Parser};
use super::scan::{decode_scalar, err, scan_plain_flow, scan_quoted, ScanResult, Style};

impl Parser<'_, '_> {
    /// Skips whitespace, line breaks and comments inside a flow collection.
    fn flow_ws(&self, mut i: usize) -> ScanResult<usize> {
        let src = self.src;
        loop {
            match src.at(i) {
                b' ' | b'\t' | b'\r' => i += 1,
                b'\n' => {
                    i += 1;
                    if src.is_doc_marker(i) {
                        return err(i, "a document marker inside a flow collection");
                    }
                }
                b'#' => i = src.eol(i),
                _ => return Ok(i),
            }
        }
    }

    /// A flow collection (`[...]` or `{...}`) opening at `open`.
    pub(super) fn flow(&mut self, open: usize) -> ScanResult<Node> {
        self.enter(open)?;
        let src = self.src;
        let is_seq = src.at(open) == b'[';
        let close_c = if is_seq { b']' } else { b'}' };
        let mut items = Vec::new();
        let mut entries = Vec::new();
        let mut i = open + 1;
        let close = loop {
            i = self.flow_ws(i)?;
            if src.at(i) == close_c {
                break i;
            }
            if i >= src.len() {
                return err(open, "unterminated flow collection");
            }
            let node = self.flow_node(i)?;
            let mut j = self.flow_ws(node.end)?;
            let json_like = matches!(
                node.kind,
                Kind::Scalar {
                    style: Style::Single | Style::Double,
                    ..
                } | Kind::FlowSeq { .. }
                    | Kind::FlowMap(_)
            );
            let n1 = src.at(j + 1);
            let is_pair = src.at(j) == b':'
                && (json_like
                    || src.blank_at(j + 1)
                    || matches!(n1, b',' | b'[' | b']' | b'{' | b'}'));
            let (key_node, value) = if is_pair {
                let colon = j;
                j = self.flow_ws(j + 1)?;
                let value = if src.at(j) == b',' || src.at(j) == close_c {
                    Node::null(j, None)
                } else {
                    let v = self.flow_node(j)?;
                    j = self.flow_ws(v.end)?;
                    v
                };
                (node, Some((colon, value)))
            } else {
                (node, None)
            };
            if is_seq {
                match value {
                    Some((_, v)) => items.push(Node {
                        start: key_node.start,
                        end: v.end.max(key_node.end),
                        props: key_node.props,
                        kind: Kind::FlowPair,
                    }),
                    None => items.push(key_node),
                }
            } else {
                let key = self.key_text(&key_node);
                let (colon, value) =
                    value.unwrap_or((key_node.end, Node::null(key_node.end, None)));
                entries.push(Entry { key, colon, value });
            }
            match src.at(j) {
                b',' => i = j + 1,
                c if c == close_c => break j,
                _ => return err(j, "expected ',' or the end of a flow collection"),
            }
        };
        self.depth -= 1;
        let kind = if is_seq {
            Kind::FlowSeq { open, close, items }
        } else {
            Kind::FlowMap(entries)
        };
        Ok(Node {
            start: open,
            end: close + 1,
            props: None,
            kind,
        })
    }

    fn key_text(&self, n: &Node) -> Option<String> {
        match n.kind {
            Kind::Scalar {
                style,
                multiline: false,
            } if n.props.is_none() => {
                let raw = std::str::from_utf8(&self.src.b[n.start..n.end]).ok()?;
                decode_scalar(raw, style)
            }
            _ => None,
        }
    }

    /// One node inside a flow collection, starting at `i`.
    fn flow_node(&mut self, mut i: usize) -> ScanResult<Node> {
        let src = self.src;
        let mut props = None;
        let token_end = |mut e: usize| {
            while !src.blank_at(e) && !matches!(src.at(e), b',' | b'[' | b']' | b'{' | b'}') {
                e += 1;
            }
            e
        };
        while matches!(src.at(i), b'&' | b'!') {
            props.get_or_insert(i);
            i = self.flow_ws(token_end(i))?;
        }
        let mut n = match src.at(i) {
            b'[' | b'{' => self.flow(i)?,
            q @ (b'"' | b'\'') => {
                let (end, multiline) = scan_quoted(src, i)?;
                let style = if q == b'"' {
                    Style::Double
                } else {
                    Style::Single
                };
                Node {
                    start: i,
                    end,
                    props: None,
                    kind: Kind::Scalar { style, multiline },
                }
            }
            b'*' => Node {
                start: i,
                end: token_end(i),
                props: None,
                kind: Kind::Alias,
            },
            b'?' if src.blank_at(i + 1) => {
                return err(i, "a complex mapping key ('? ') is not supported")
            }
            b'|' | b'>' => return err(i, "a block scalar inside a flow collection"),
            b',' | b']' | b'}' => Node::null(i, None),
            _ => {
                let (end, multiline) = scan_plain_flow(src, i)?;
                if end == i {
                    return err(i, "unexpected character in a flow collection");
                }
                Node {
                    start: i,
                    end,
                    props: None,
                    kind: Kind::Scalar {
                        style: Style::Plain,
                        multiline,
                    },
                }
            }
        };
        n.props = props;
        Ok(n)
    }
}
