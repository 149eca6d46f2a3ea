//! Turns a list's plan (items kept, rewritten, deleted, added) into byte edits of the source.
//!
//! Only the bytes of rewritten items, the lines of deleted block items, new lines, and (for
//! flow lists) the separators around changed items are touched; everything else - comments,
//! blank lines, indentation, quoting, line endings - is copied from the input.

use super::argv::PlanEntry;
use super::lists::{ItemLoc, ListLoc};
use super::render::{render, Context};
use super::scan::{err, ScanResult, Src, Style};

/// Replace `start..end` of the input with `text`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ByteEdit {
    pub start: usize,
    pub end: usize,
    pub text: String,
}

/// Appends the edits that carry out `plan` on the list at `loc`.
pub(crate) fn list_edits(
    src: &Src,
    loc: &ListLoc,
    plan: &[PlanEntry],
    out: &mut Vec<ByteEdit>,
) -> ScanResult<()> {
    match loc {
        ListLoc::Block { colon, items } => block_edits(src, *colon, items, plan, out),
        ListLoc::Flow { open, close, items } => {
            flow_edits(src, *open, *close, items, plan, out);
            Ok(())
        }
    }
}

/// Applies non-overlapping edits (insertions before replacements at the same offset).
pub(crate) fn apply(input: &[u8], edits: &mut [ByteEdit]) -> Vec<u8> {
    edits.sort_by_key(|e| (e.start, e.end));
    let mut out =
        Vec::with_capacity(input.len() + edits.iter().map(|e| e.text.len()).sum::<usize>());
    let mut at = 0;
    for e in edits.iter() {
        debug_assert!(e.start >= at, "overlapping edits");
        out.extend_from_slice(&input[at..e.start]);
        out.extend_from_slice(e.text.as_bytes());
        at = e.end;
    }
    out.extend_from_slice(&input[at..]);
    out
}

/// A file that ended without a line break still does. Deleting its last line (a block item)
/// removes that line from its start, so the line break of the line before it would become the
/// file's last byte; it is dropped instead. A file that ended with a break is left as it is.
pub(crate) fn keep_final_break(input: &[u8], mut out: Vec<u8>) -> Vec<u8> {
    if input.is_empty() || input.ends_with(b"\n") || input.ends_with(b"\r") {
        return out;
    }
    if out.ends_with(b"\r\n") {
        out.truncate(out.len() - 2);
    } else if out.ends_with(b"\n") || out.ends_with(b"\r") {
        out.truncate(out.len() - 1);
    }
    out
}

fn text<'a>(src: &Src<'a>, a: usize, b: usize) -> &'a str {
    // Spans always fall on character boundaries: they start and end at ASCII bytes.
    std::str::from_utf8(&src.b[a..b]).unwrap_or_default()
}

/// The style new items copy: the nearest original item before them, else after them.
fn neighbour(plan: &[PlanEntry], k: usize) -> Option<usize> {
    let idx = |p: &PlanEntry| match p {
        PlanEntry::Orig { idx, .. } => Some(*idx),
        PlanEntry::New(_) => None,
    };
    plan[..k]
        .iter()
        .rev()
        .find_map(idx)
        .or_else(|| plan[k..].iter().find_map(idx))
}

/// Block lists work line by line: a deleted item loses its whole line (with its trailing
/// comment), a rewritten item keeps its indentation, dash and trailing comment, and new items
/// get new lines shaped like their neighbour's.
fn block_edits(
    src: &Src,
    colon: usize,
    items: &[ItemLoc],
    plan: &[PlanEntry],
    out: &mut Vec<ByteEdit>,
) -> ScanResult<()> {
    let mut live = 0;
    for p in plan {
        match p {
            PlanEntry::Orig {
                idx, deleted: true, ..
            } => {
                let it = &items[*idx];
                out.push(ByteEdit {
                    start: src.line_start(it.dash),
                    end: src.next_line(it.dash),
                    text: String::new(),
                });
            }
            PlanEntry::Orig { idx, new_text, .. } => {
                live += 1;
                if let Some(t) = new_text {
                    let it = &items[*idx];
                    out.push(ByteEdit {
                        start: it.start,
                        end: it.end,
                        text: render(t, it.style, Context::Block),
                    });
                }
            }
            PlanEntry::New(_) => live += 1,
        }
    }
    let mut k = 0;
    while k < plan.len() {
        if !matches!(plan[k], PlanEntry::New(_)) {
            k += 1;
            continue;
        }
        let run = k;
        while k < plan.len() && matches!(plan[k], PlanEntry::New(_)) {
            k += 1;
        }
        let Some(a_idx) = neighbour(plan, run) else {
            return err(colon, "no list item to copy the layout of");
        };
        let a = &items[a_idx];
        let after = plan[..run]
            .iter()
            .any(|p| matches!(p, PlanEntry::Orig { .. }));
        let a_deleted = plan
            .iter()
            .any(|p| matches!(p, PlanEntry::Orig { idx, deleted: true, .. } if *idx == a_idx));
        // Indentation, dash and the gap after it, copied byte for byte.
        let prefix = text(src, src.line_start(a.dash), a.start);
        let lines: Vec<String> = plan[run..k]
            .iter()
            .filter_map(|p| match p {
                PlanEntry::New(t) => {
                    Some(format!("{prefix}{}", render(t, a.style, Context::Block)))
                }
                PlanEntry::Orig { .. } => None,
            })
            .collect();
        let term = text(src, src.eol(a.dash), src.next_line(a.dash));
        let eol = if term.is_empty() {
            src.default_eol()
        } else {
            term
        };
        let (pos, body) = if !after {
            (
                src.line_start(a.dash),
                lines.iter().map(|l| format!("{l}{eol}")).collect(),
            )
        } else if !term.is_empty() {
            (
                src.next_line(a.dash),
                lines.iter().map(|l| format!("{l}{eol}")).collect(),
            )
        } else if a_deleted {
            // The anchor was the last line, without a line break, and goes away: the new
            // lines take its place and the file still ends without a line break.
            (src.len(), lines.join(eol))
        } else {
            (src.len(), format!("{eol}{}", lines.join(eol)))
        };
        out.push(ByteEdit {
            start: pos,
            end: pos,
            text: body,
        });
    }
    if live == 0 {
        // `key:` with no items would mean null, not an empty list.
        out.push(ByteEdit {
            start: colon + 1,
            end: colon + 1,
            text: " []".to_string(),
        });
    }
    Ok(())
}

/// The position of the separator comma in a segment between flow items (which holds only
/// whitespace, comments and that comma).
fn sep_comma(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b',' => return Some(i),
            b'#' => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            _ => i += 1,
        }
    }
    None
}

/// One element of a flow list after the edit.
enum El<'p> {
    Orig(usize),
    New(&'p str, Style),
}

/// Flow lists are edited by marking the bytes that go (deleted items with their comma, the
/// comma of an item that becomes last, lines left holding nothing, whitespace left dangling on
/// shared lines) and inserting new items after their neighbour: on a line of their own when
/// the neighbour has one, else inline with the list's spacing. Own-line comments and comments
/// of kept items stay where they are.
fn flow_edits(
    src: &Src,
    open: usize,
    close: usize,
    items: &[ItemLoc],
    plan: &[PlanEntry],
    out: &mut Vec<ByteEdit>,
) {
    let n = items.len();
    let comma: Vec<Option<usize>> = (0..n)
        .map(|k| {
            let end = if k + 1 < n { items[k + 1].start } else { close };
            sep_comma(text(src, items[k].end, end)).map(|i| items[k].end + i)
        })
        .collect();
    let trailing = comma.last().copied().flatten().is_some();

    let mut deleted = vec![false; n];
    let mut els = Vec::new();
    for (i, p) in plan.iter().enumerate() {
        match p {
            PlanEntry::Orig {
                idx, deleted: true, ..
            } => deleted[*idx] = true,
            PlanEntry::Orig { idx, new_text, .. } => {
                els.push(El::Orig(*idx));
                if let Some(t) = new_text {
                    let it = &items[*idx];
                    out.push(ByteEdit {
                        start: it.start,
                        end: it.end,
                        text: render(t, it.style, Context::Flow),
                    });
                }
            }
            PlanEntry::New(t) => els.push(El::New(
                t,
                neighbour(plan, i).map_or(Style::Double, |k| items[k].style),
            )),
        }
    }
    let m = els.len();
    let needs_comma = |j: usize| j + 1 < m || trailing;

    let base = open + 1;
    let mut mask = vec![false; close - base];
    let set = |mask: &mut Vec<bool>, a: usize, b: usize| {
        mask[a - base..b - base].iter_mut().for_each(|x| *x = true)
    };
    let mut inserts: Vec<(usize, String)> = Vec::new();
    for k in (0..n).filter(|&k| deleted[k]) {
        set(&mut mask, items[k].start, items[k].end);
        if let Some(c) = comma[k] {
            set(&mut mask, c, c + 1);
        }
    }
    for (j, el) in els.iter().enumerate() {
        if let El::Orig(k) = *el {
            match (needs_comma(j), comma[k]) {
                (true, None) => inserts.push((items[k].end, ",".to_string())),
                (false, Some(c)) => set(&mut mask, c, c + 1),
                _ => {}
            }
        }
    }

    // Lines inside the brackets that held only deleted items (and their trailing comments).
    let mut ls = src.next_line(open);
    while ls < close && src.next_line(ls) <= close {
        let (e, nl) = (src.eol(ls), src.next_line(ls));
        let first = src.skip_ws(ls);
        if first < e && mask[first - base] {
            let rest = (first..e).find(|&i| !mask[i - base] && !matches!(src.b[i], b' ' | b'\t'));
            if rest.is_none_or(|i| src.b[i] == b'#') {
                set(&mut mask, ls, nl);
            }
        }
        ls = nl;
    }

    // Whitespace around what went on lines that stay.
    let ws = |i: usize| i < close && matches!(src.b[i], b' ' | b'\t');
    let mut i = base;
    while i < close {
        if !mask[i - base] {
            i += 1;
            continue;
        }
        let mut j = i;
        while j < close && mask[j - base] {
            j += 1;
        }
        let mut k = j;
        while ws(k) && !mask[k - base] {
            k += 1;
        }
        if k > j && k < close && mask[k - base] {
            // Two gone pieces separated by blanks: the blanks go too.
            set(&mut mask, j, k);
            continue;
        }
        if src.b[i..j].contains(&b'\n') {
            i = j;
            continue;
        }
        let after = src.skip_ws(j);
        if (i == base || ws(i - 1)) && ws(j) {
            // `[a, b, c]` minus `b, `: the blanks after it go, unless a comment follows.
            if src.at(after) != b'#' {
                set(&mut mask, j, after);
            }
        } else if after >= close || src.is_eol(after) {
            // `[a, b]` minus `, b`: blanks before it go, unless they indent the line.
            let mut b = i;
            while b > base && ws(b - 1) && !mask[b - 1 - base] {
                b -= 1;
            }
            if b < i && b > src.line_start(i) && b > base {
                set(&mut mask, b, i);
            }
        }
        i = j;
    }

    // New items, after the nearest kept item before them.
    let gap = (0..n.saturating_sub(1))
        .find_map(|k| {
            let c = comma[k]?;
            let g = src.skip_ws(c + 1);
            (g == items[k + 1].start).then(|| text(src, c + 1, g).to_string())
        })
        .unwrap_or_else(|| " ".to_string());
    let own_line = |k: usize| {
        let ls = src.line_start(items[k].start);
        let mut e = src.skip_ws(items[k].end);
        if comma[k] == Some(e) {
            e = src.skip_ws(e + 1);
        }
        ls > open
            && src.skip_ws(ls) == items[k].start
            && src.rest_is_trivia(e)
            && src.eol(e) < close
    };
    let line_of = |k: usize| {
        let ls = src.line_start(items[k].start);
        let term = text(src, src.eol(ls), src.next_line(ls));
        (
            ls,
            text(src, ls, items[k].start),
            if term.is_empty() {
                src.default_eol()
            } else {
                term
            },
        )
    };
    let item = |j: usize| match els[j] {
        El::New(t, style) => format!(
            "{}{}",
            render(t, style, Context::Flow),
            if needs_comma(j) { "," } else { "" }
        ),
        El::Orig(_) => String::new(),
    };
    let mut anchor = None;
    let mut j = 0;
    while j < m {
        if let El::Orig(k) = els[j] {
            anchor = Some(k);
            j += 1;
            continue;
        }
        let run = j;
        while j < m && matches!(els[j], El::New(..)) {
            j += 1;
        }
        let next_kept = els[j..].iter().find_map(|e| match e {
            El::Orig(k) => Some(*k),
            El::New(..) => None,
        });
        let lines = |k: usize, at_line_start: bool| {
            let (ls, indent, eol) = line_of(k);
            let body: String = (run..j)
                .map(|x| format!("{indent}{}{eol}", item(x)))
                .collect();
            (if at_line_start { ls } else { src.next_line(ls) }, body)
        };
        inserts.push(match (anchor, next_kept) {
            (Some(k), _) if own_line(k) => lines(k, false),
            (Some(k), _) => {
                let pos = comma[k].map_or(items[k].end, |c| c + 1);
                (pos, (run..j).map(|x| format!("{gap}{}", item(x))).collect())
            }
            (None, Some(k)) if own_line(k) => lines(k, true),
            (None, Some(k)) => (
                items[k].start,
                (run..j).map(|x| format!("{}{gap}", item(x))).collect(),
            ),
            (None, None) if n > 0 && own_line(0) => lines(0, true),
            (None, None) => {
                let body = (run..j)
                    .map(|x| format!("{}{}", item(x), if x + 1 < j { gap.as_str() } else { "" }));
                (base, body.collect())
            }
        });
    }

    out.extend(inserts.into_iter().map(|(pos, text)| ByteEdit {
        start: pos,
        end: pos,
        text,
    }));
    let mut i = base;
    while i < close {
        if mask[i - base] {
            let j = (i..close).find(|&j| !mask[j - base]).unwrap_or(close);
            out.push(ByteEdit {
                start: i,
                end: j,
                text: String::new(),
            });
            i = j;
        } else {
            i += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::lists::list_loc;
    use crate::manifest::locate::parse_document;

    fn edit(doc: &str, plan: &[PlanEntry]) -> String {
        let src = Src::new(doc.as_bytes());
        let root = parse_document(&src).unwrap();
        let e = root.get("c").unwrap();
        let loc = list_loc(&src, e, "c").unwrap();
        let mut edits = Vec::new();
        list_edits(&src, &loc, plan, &mut edits).unwrap();
        String::from_utf8(apply(doc.as_bytes(), &mut edits)).unwrap()
    }

    fn keep(idx: usize) -> PlanEntry {
        PlanEntry::Orig {
            idx,
            new_text: None,
            deleted: false,
        }
    }
    fn del(idx: usize) -> PlanEntry {
        PlanEntry::Orig {
            idx,
            new_text: None,
            deleted: true,
        }
    }
    fn new(t: &str) -> PlanEntry {
        PlanEntry::New(t.into())
    }

    #[test]
    fn block() {
        let doc = "c:\n  - a # x\n  # own\n  - b\nd: 1\n";
        assert_eq!(
            edit(doc, &[keep(0), new("--n"), del(1)]),
            "c:\n  - a # x\n  - --n\n  # own\nd: 1\n"
        );
        assert_eq!(edit(doc, &[del(0), del(1)]), "c: []\n  # own\nd: 1\n");
        assert_eq!(
            edit("c:\r\n- a\r\n- b", &[keep(0), del(1), new("--n")]),
            "c:\r\n- a\r\n- --n"
        );
        assert_eq!(edit("c:\n- a", &[keep(0), new("--n")]), "c:\n- a\n- --n");
    }

    #[test]
    fn flow() {
        assert_eq!(
            edit("c: [a, b]\n", &[keep(0), del(1), new("--n")]),
            "c: [a, --n]\n"
        );
        assert_eq!(edit("c: [a, b]\n", &[del(0), keep(1)]), "c: [b]\n");
        assert_eq!(edit("c: [a]\n", &[del(0)]), "c: []\n");
        assert_eq!(edit("c: []\n", &[new("--n")]), "c: [\"--n\"]\n");
        assert_eq!(edit("c: [a,]\n", &[del(0)]), "c: []\n");
        let doc = "c: [\n  \"a\",  # x\n  \"b\"\n]\n";
        assert_eq!(edit(doc, &[keep(0), del(1)]), "c: [\n  \"a\"  # x\n]\n");
        assert_eq!(
            edit(doc, &[keep(0), keep(1), new("--n")]),
            "c: [\n  \"a\",  # x\n  \"b\",\n  \"--n\"\n]\n"
        );
        let doc = "c: [\n  a,\n  b,\n]\n";
        assert_eq!(edit(doc, &[keep(0), del(1)]), "c: [\n  a,\n]\n");
    }
}
