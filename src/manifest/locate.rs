//! Finds where things are in the source: a small structural YAML parser that records byte
//! spans, used to locate the `command:`/`args:` lists of one container.
//!
//! serde_norway gives us the meaning of a manifest but no positions, so this module rebuilds
//! the document's shape (block/flow mappings and sequences, scalars) with offsets. It only has
//! to be exact for documents that serde_norway already accepted, and only along the path to the
//! edited lists; a shape it does not understand is reported as unsupported (with its line), and
//! anything it misreads is caught by the re-parse check before a byte is written.
//!
//! This file holds the tree and the block-context parser; `flow.rs` parses flow collections
//! and `lists.rs` extracts the editable lists.

use super::scan::{decode_scalar, err, scan_plain_line, scan_quoted, ScanResult, Src, Style};

/// Deeper nesting than this is refused (serde_norway stops far earlier; this only bounds the
/// recursion on hostile input).
const MAX_DEPTH: usize = 256;

#[derive(Debug)]
pub(crate) struct Node {
    /// First byte of the node's content (after any anchor/tag).
    pub start: usize,
    /// One past its last byte (for block scalars: the start of the line after them).
    pub end: usize,
    /// Position of the first anchor or tag on the node, if any.
    pub props: Option<usize>,
    pub kind: Kind,
}

#[derive(Debug)]
pub(crate) enum Kind {
    /// No value (`key:` with nothing after it).
    Null,
    Scalar {
        style: Style,
        multiline: bool,
    },
    Alias,
    BlockScalar,
    BlockMap(Vec<Entry>),
    BlockSeq(Vec<Item>),
    FlowMap(Vec<Entry>),
    FlowSeq {
        open: usize,
        close: usize,
        items: Vec<Node>,
    },
    /// A `key: value` pair written inside a flow sequence.
    FlowPair,
}

#[derive(Debug)]
pub(crate) struct Entry {
    /// The decoded key, or `None` for a key this parser cannot decode.
    pub key: Option<String>,
    /// Position of the `:` after the key.
    pub colon: usize,
    pub value: Node,
}

#[derive(Debug)]
pub(crate) struct Item {
    pub dash: usize,
    pub node: Node,
}

impl Node {
    pub(super) fn null(at: usize, props: Option<usize>) -> Node {
        Node {
            start: at,
            end: at,
            props,
            kind: Kind::Null,
        }
    }

    /// The entry for `key` of a block or flow mapping.
    pub fn get(&self, key: &str) -> Option<&Entry> {
        match &self.kind {
            Kind::BlockMap(e) | Kind::FlowMap(e) => {
                e.iter().find(|e| e.key.as_deref() == Some(key))
            }
            _ => None,
        }
    }

    /// The item nodes of a block or flow sequence.
    pub fn items(&self) -> Option<Vec<&Node>> {
        match &self.kind {
            Kind::BlockSeq(items) => Some(items.iter().map(|i| &i.node).collect()),
            Kind::FlowSeq { items, .. } => Some(items.iter().collect()),
            _ => None,
        }
    }
}

/// What precedes a node on its line; decides whether a mapping or sequence may start there.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Ctx {
    /// After `key:` (a nested mapping or sequence must start on a later line).
    Key,
    /// After `- ` (a compact mapping or sequence may start on the same line).
    Dash,
    /// At the start of a line's content.
    Line,
}

pub(super) struct Parser<'s, 'a> {
    pub(super) src: &'s Src<'a>,
    pub(super) depth: usize,
}

/// Parses the single document of `src` into a tree of spans.
pub(crate) fn parse_document(src: &Src) -> ScanResult<Node> {
    let mut p = Parser { src, depth: 0 };
    let mut ls = src.start();
    let mut seen_start = false;
    let (root, resume) = loop {
        match src.next_content_line(ls) {
            Ok(l) if src.at(l) == b'%' => return err(l, "a yaml directive (%) is not supported"),
            Ok(l) => {
                let c = l + src.indent(l);
                break p.node_here(c, -1, Ctx::Line)?;
            }
            Err(l) if l < src.len() && src.at(l) == b'-' && !seen_start => {
                seen_start = true;
                let q = src.skip_ws(l + 3);
                if !src.rest_is_trivia(q) {
                    break p.node_here(q, -1, Ctx::Key)?;
                }
                ls = src.next_line(l);
            }
            Err(l) if l < src.len() => {
                return err(l, "a document marker where the document was expected")
            }
            Err(l) => return err(l, "the document is empty"),
        }
    };
    // Only trivia, and at most a closing `...`, may follow the root node.
    match src.next_content_line(resume) {
        Ok(l) => err(l, "unexpected content after the document"),
        Err(l) if l < src.len() && src.at(l) == b'.' => {
            match src.next_content_line(src.next_line(l)) {
                Err(e) if e >= src.len() => Ok(root),
                Ok(e) | Err(e) => err(e, "content after the document end marker"),
            }
        }
        Err(l) if l < src.len() => err(l, "a second yaml document"),
        Err(_) => Ok(root),
    }
}

impl Parser<'_, '_> {
    fn is_dash(&self, i: usize) -> bool {
        self.src.at(i) == b'-' && self.src.blank_at(i + 1)
    }

    /// First non-space byte of a structural line; a tab there would be indentation, which
    /// YAML forbids and this parser does not try to interpret.
    fn content_start(&self, ls: usize) -> ScanResult<usize> {
        let c = ls + self.src.indent(ls);
        if self.src.at(c) == b'\t' {
            return err(c, "a tab character in indentation is not supported");
        }
        Ok(c)
    }

    /// The node after an indicator (`:` of a key or `-` of an item) ending at `p`.
    fn value_after(&mut self, p: usize, parent: isize, ctx: Ctx) -> ScanResult<(Node, usize)> {
        let q = self.src.skip_ws(p);
        if self.src.rest_is_trivia(q) {
            return self.node_below(q, parent, ctx, None);
        }
        self.node_here(q, parent, ctx)
    }

    /// A node that starts on a line after `q` (or is empty). Returns the node and the line
    /// start where the caller resumes.
    fn node_below(
        &mut self,
        q: usize,
        parent: isize,
        ctx: Ctx,
        props: Option<usize>,
    ) -> ScanResult<(Node, usize)> {
        let ls = match self.src.next_content_line(self.src.next_line(q)) {
            Ok(ls) => ls,
            Err(ls) => return Ok((Node::null(q, props), ls)),
        };
        let c = self.content_start(ls)?;
        let m = (c - ls) as isize;
        let (mut node, resume) = if m > parent {
            self.node_here(c, parent, Ctx::Line)?
        } else if m == parent && ctx == Ctx::Key && self.is_dash(c) {
            // `key:` followed by `- item` at the key's own indentation.
            self.block_seq(c)?
        } else {
            return Ok((Node::null(q, props), ls));
        };
        node.props = node.props.or(props);
        Ok((node, resume))
    }

    /// The node whose content starts at `q` in block context; `parent` is the indentation of
    /// the enclosing block collection (-1 at the root).
    fn node_here(&mut self, q: usize, parent: isize, ctx: Ctx) -> ScanResult<(Node, usize)> {
        let src = self.src;
        let mut props = None;
        let mut p = q;
        while matches!(src.at(p), b'&' | b'!') {
            props.get_or_insert(p);
            while !src.blank_at(p) {
                p += 1;
            }
            p = src.skip_ws(p);
            if src.rest_is_trivia(p) {
                return self.node_below(p, parent, ctx, props);
            }
        }
        let c = src.at(p);
        let node = |end, kind| Node {
            start: p,
            end,
            props,
            kind,
        };
        match c {
            b'*' => {
                let mut e = p;
                while !src.blank_at(e) {
                    e += 1;
                }
                if !src.rest_is_trivia(e) {
                    return err(p, "an alias used as a mapping key is not supported");
                }
                Ok((node(e, Kind::Alias), src.next_line(e)))
            }
            b'[' | b'{' => {
                let n = self.flow(p)?;
                let a = src.skip_ws(n.end);
                if src.at(a) == b':' {
                    return err(
                        p,
                        "a flow collection used as a mapping key is not supported",
                    );
                }
                if !src.rest_is_trivia(n.end) {
                    return err(n.end, "unexpected content after a flow collection");
                }
                let end = n.end;
                Ok((Node { props, ..n }, src.next_line(end)))
            }
            b'"' | b'\'' => {
                let (end, multiline) = scan_quoted(src, p)?;
                let a = src.skip_ws(end);
                if src.at(a) == b':' && src.blank_at(a + 1) {
                    return self.map_here(p, props, ctx);
                }
                if !src.rest_is_trivia(end) {
                    return err(end, "unexpected content after a quoted scalar");
                }
                let style = if c == b'"' {
                    Style::Double
                } else {
                    Style::Single
                };
                Ok((
                    node(end, Kind::Scalar { style, multiline }),
                    src.next_line(end),
                ))
            }
            b'|' | b'>' => {
                let resume = self.block_scalar_end(p, parent);
                Ok((node(resume, Kind::BlockScalar), resume))
            }
            b'-' if src.blank_at(p + 1) => {
                if ctx == Ctx::Key || props.is_some() {
                    return err(
                        p,
                        "a block sequence on the same line as its key or anchor is not supported",
                    );
                }
                self.block_seq(p)
            }
            b'?' if src.blank_at(p + 1) => err(p, "a complex mapping key ('? ') is not supported"),
            _ => {
                let (end, colon, cut) = scan_plain_line(src, p);
                if colon.is_some() {
                    return self.map_here(p, props, ctx);
                }
                let (end, multiline) = if cut {
                    (end, false)
                } else {
                    self.plain_continuation(end, parent)?
                };
                let kind = Kind::Scalar {
                    style: Style::Plain,
                    multiline,
                };
                Ok((node(end, kind), src.next_line(end)))
            }
        }
    }

    /// A block mapping whose first key starts at `p`, if the context allows one there.
    fn map_here(&mut self, p: usize, props: Option<usize>, ctx: Ctx) -> ScanResult<(Node, usize)> {
        if let Some(a) = props {
            return err(a, "an anchor or tag on a mapping key is not supported");
        }
        if ctx == Ctx::Key {
            return err(p, "a mapping on the same line as its key is not valid here");
        }
        self.block_map(p)
    }

    /// Continuation lines of a block plain scalar whose first line ends at `end`.
    fn plain_continuation(&self, mut end: usize, parent: isize) -> ScanResult<(usize, bool)> {
        let src = self.src;
        let mut multiline = false;
        let mut ls = src.next_line(end);
        while ls < src.len() && !src.is_doc_marker(ls) {
            let j = src.skip_ws(ls);
            if src.is_eol(j) {
                ls = src.next_line(ls);
                continue;
            }
            if src.at(j) == b'#' || (src.indent(ls) as isize) <= parent {
                break;
            }
            let (e, colon, cut) = scan_plain_line(src, j);
            if colon.is_some() {
                return err(j, "a mapping key inside a multi-line plain scalar");
            }
            end = e;
            multiline = true;
            if cut {
                break;
            }
            ls = src.next_line(ls);
        }
        Ok((end, multiline))
    }

    /// The line start after a block scalar (`|` or `>`) whose header is at `p`: its content is
    /// every following blank line or line indented deeper than `parent`.
    fn block_scalar_end(&self, p: usize, parent: isize) -> usize {
        let src = self.src;
        let mut ls = src.next_line(p);
        while ls < src.len() && !src.is_doc_marker(ls) {
            let j = src.skip_ws(ls);
            if !src.is_eol(j) && (src.indent(ls) as isize) <= parent {
                break;
            }
            ls = src.next_line(ls);
        }
        ls
    }

    fn block_key(&self, k: usize) -> ScanResult<(Option<String>, usize)> {
        let src = self.src;
        match src.at(k) {
            q @ (b'"' | b'\'') => {
                let (end, multiline) = scan_quoted(src, k)?;
                if multiline {
                    return err(k, "a multi-line mapping key is not supported");
                }
                let a = src.skip_ws(end);
                if src.at(a) != b':' || !src.blank_at(a + 1) {
                    return err(k, "expected ':' after a mapping key");
                }
                let style = if q == b'"' {
                    Style::Double
                } else {
                    Style::Single
                };
                let raw = std::str::from_utf8(&src.b[k..end]).ok();
                Ok((raw.and_then(|r| decode_scalar(r, style)), a))
            }
            b'?' | b'[' | b'{' | b'*' | b'&' | b'!' | b'|' | b'>' => {
                err(k, "this kind of mapping key is not supported")
            }
            _ => match scan_plain_line(src, k) {
                (end, Some(colon), _) => {
                    let key = std::str::from_utf8(&src.b[k..end]).ok().map(str::to_string);
                    Ok((key, colon))
                }
                _ => err(k, "expected a mapping key"),
            },
        }
    }

    pub(super) fn enter(&mut self, at: usize) -> ScanResult<()> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return err(at, "nesting too deep");
        }
        Ok(())
    }

    /// A block mapping whose first key starts at `p`; its keys sit at `p`'s column.
    fn block_map(&mut self, p: usize) -> ScanResult<(Node, usize)> {
        self.enter(p)?;
        let src = self.src;
        let m = src.col(p);
        let mut entries = Vec::new();
        let mut k = p;
        let resume = loop {
            let (key, colon) = self.block_key(k)?;
            let (value, r) = self.value_after(colon + 1, m as isize, Ctx::Key)?;
            entries.push(Entry { key, colon, value });
            match src.next_content_line(r) {
                Err(ls) => break ls,
                Ok(ls) => {
                    let c = self.content_start(ls)?;
                    let i = c - ls;
                    if i < m {
                        break ls;
                    }
                    if i > m || self.is_dash(c) {
                        return err(c, "unexpected indentation or sequence item in a mapping");
                    }
                    k = c;
                }
            }
        };
        self.depth -= 1;
        let end = entries.last().map_or(p, |e| e.value.end);
        Ok((
            Node {
                start: p,
                end,
                props: None,
                kind: Kind::BlockMap(entries),
            },
            resume,
        ))
    }

    /// A block sequence whose first `-` is at `p`; its items' dashes sit at `p`'s column.
    fn block_seq(&mut self, p: usize) -> ScanResult<(Node, usize)> {
        self.enter(p)?;
        let src = self.src;
        let m = src.col(p);
        let mut items = Vec::new();
        let mut d = p;
        let resume = loop {
            let (node, r) = self.value_after(d + 1, m as isize, Ctx::Dash)?;
            items.push(Item { dash: d, node });
            match src.next_content_line(r) {
                Err(ls) => break ls,
                Ok(ls) => {
                    let c = self.content_start(ls)?;
                    let i = c - ls;
                    if i == m && self.is_dash(c) {
                        d = c;
                    } else if i <= m {
                        break ls;
                    } else {
                        return err(c, "unexpected indentation in a sequence");
                    }
                }
            }
        };
        self.depth -= 1;
        let end = items.last().map_or(p, |i| i.node.end);
        Ok((
            Node {
                start: p,
                end,
                props: None,
                kind: Kind::BlockSeq(items),
            },
            resume,
        ))
    }
}
