//! Byte-level helpers over the manifest source: lines, whitespace, and the extent and decoded
//! value of single scalars.
//!
//! Everything here works on byte offsets into the original input so that the editor can
//! replace exact spans and leave every other byte alone. The rules follow libyaml (the parser
//! behind serde_norway) closely enough for the structures the editor navigates; anything this
//! module gets wrong is caught by the re-parse check in `mod.rs`, which refuses the edit.

/// An error found while scanning: a byte position and a lowercase description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ScanError {
    pub pos: usize,
    pub what: String,
}

pub(crate) type ScanResult<T> = Result<T, ScanError>;

pub(crate) fn err<T>(pos: usize, what: impl Into<String>) -> ScanResult<T> {
    Err(ScanError {
        pos,
        what: what.into(),
    })
}

/// The source with a precomputed line index (starts of lines), so line numbers for messages
/// cost a binary search instead of a rescan.
pub(crate) struct Src<'a> {
    pub b: &'a [u8],
    line_starts: Vec<usize>,
}

impl<'a> Src<'a> {
    pub fn new(b: &'a [u8]) -> Self {
        // A UTF-8 byte order mark is not content: the first line starts after it, so that
        // columns on line 1 agree with libyaml's.
        let bom = if b.starts_with(b"\xEF\xBB\xBF") { 3 } else { 0 };
        let mut line_starts = vec![bom];
        line_starts.extend(
            b.iter()
                .enumerate()
                .filter(|(_, c)| **c == b'\n')
                .map(|(i, _)| i + 1),
        );
        Src { b, line_starts }
    }

    /// Where the text starts (after a byte order mark).
    pub fn start(&self) -> usize {
        self.line_starts[0]
    }

    pub fn len(&self) -> usize {
        self.b.len()
    }

    /// Byte at `i`, or 0 past the end (0 never occurs in accepted input: see `check_text`).
    pub fn at(&self, i: usize) -> u8 {
        self.b.get(i).copied().unwrap_or(0)
    }

    /// 1-based line number of byte `pos`.
    pub fn line_of(&self, pos: usize) -> usize {
        match self.line_starts.binary_search(&pos) {
            Ok(i) => i + 1,
            Err(i) => i.max(1),
        }
    }

    pub fn line_start(&self, pos: usize) -> usize {
        self.line_starts[self.line_of(pos) - 1]
    }

    pub fn col(&self, pos: usize) -> usize {
        pos.saturating_sub(self.line_start(pos))
    }

    /// End of the line's content (position of its `\r\n`, `\n`, or the end of input).
    pub fn eol(&self, pos: usize) -> usize {
        let mut i = pos;
        while i < self.b.len() && self.b[i] != b'\n' {
            i += 1;
        }
        if i > pos && self.b[i - 1] == b'\r' && i < self.b.len() {
            i - 1
        } else {
            i
        }
    }

    /// Start of the next line (just after the line terminator), or the end of input.
    pub fn next_line(&self, pos: usize) -> usize {
        let line = self.line_of(pos);
        self.line_starts.get(line).copied().unwrap_or(self.b.len())
    }

    /// The file's first line terminator, used for new lines that have no neighbour to copy.
    pub fn default_eol(&self) -> &'static str {
        match self.b.iter().position(|c| *c == b'\n') {
            Some(i) if i > 0 && self.b[i - 1] == b'\r' => "\r\n",
            _ => "\n",
        }
    }

    /// Skips spaces and tabs within the line.
    pub fn skip_ws(&self, mut i: usize) -> usize {
        while matches!(self.at(i), b' ' | b'\t') {
            i += 1;
        }
        i
    }

    /// True at a line end or the end of input.
    pub fn is_eol(&self, i: usize) -> bool {
        i >= self.b.len() || self.b[i] == b'\n' || (self.b[i] == b'\r' && self.at(i + 1) == b'\n')
    }

    /// True where a token ends: whitespace, a line end or the end of input (libyaml's BLANKZ).
    pub fn blank_at(&self, i: usize) -> bool {
        matches!(self.at(i), b' ' | b'\t' | b'\r' | b'\n' | 0)
    }

    /// True when the rest of the line from `i` (just after a token) is only whitespace and
    /// possibly a comment (libyaml starts a comment at any `#` where a token could start).
    pub fn rest_is_trivia(&self, i: usize) -> bool {
        let j = self.skip_ws(i);
        self.is_eol(j) || self.at(j) == b'#'
    }

    /// Number of leading spaces of the line starting at `ls`.
    pub fn indent(&self, ls: usize) -> usize {
        let mut i = ls;
        while self.at(i) == b' ' {
            i += 1;
        }
        i - ls
    }

    /// True for a line holding only whitespace or a comment.
    pub fn is_trivia_line(&self, ls: usize) -> bool {
        let j = self.skip_ws(ls);
        self.is_eol(j) || self.at(j) == b'#'
    }

    /// True for a `---` or `...` line (document start/end marker).
    pub fn is_doc_marker(&self, ls: usize) -> bool {
        let b = self.b;
        ls + 3 <= b.len()
            && (&b[ls..ls + 3] == b"---" || &b[ls..ls + 3] == b"...")
            && self.blank_at(ls + 3)
    }

    /// From line start `ls`, the first line holding content (not blank, not a comment).
    /// Returns `Err(line_start)` at the end of input or a document marker line.
    pub fn next_content_line(&self, mut ls: usize) -> Result<usize, usize> {
        while ls < self.b.len() {
            if self.is_doc_marker(ls) {
                return Err(ls);
            }
            if !self.is_trivia_line(ls) {
                return Ok(ls);
            }
            ls = self.next_line(ls);
        }
        Err(self.b.len())
    }
}

/// Refuses input the line model cannot represent: not UTF-8, NUL bytes, and line breaks
/// other than `\n` and `\r\n` (libyaml also breaks lines at a lone `\r`, U+0085, U+2028 and
/// U+2029, so a file holding them would be split differently by the parser than by us).
pub(crate) fn check_text(b: &[u8]) -> ScanResult<&str> {
    let s = match std::str::from_utf8(b) {
        Ok(s) => s,
        Err(e) => return err(e.valid_up_to(), "the manifest is not valid utf-8"),
    };
    // A byte scan: every character of interest starts with one of these bytes.
    for (i, &c) in b.iter().enumerate() {
        let bad = match c {
            0 => "a nul byte",
            b'\r' if b.get(i + 1) != Some(&b'\n') => {
                "a carriage return not followed by a line feed"
            }
            0xC2 if b.get(i + 1) == Some(&0x85) => "a unicode line separator character",
            0xE2 if b.get(i + 1) == Some(&0x80) && matches!(b.get(i + 2), Some(0xA8 | 0xA9)) => {
                "a unicode line separator character"
            }
            _ => continue,
        };
        return err(i, format!("{bad} is not supported"));
    }
    Ok(s)
}

/// How a scalar is written in the source; the renderer reuses it for new and rewritten items.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Style {
    Plain,
    Single,
    Double,
}

/// Scans a single- or double-quoted scalar starting at `q` (on the quote). Returns the
/// position after the closing quote and whether the scalar spans lines.
pub(crate) fn scan_quoted(src: &Src, q: usize) -> ScanResult<(usize, bool)> {
    let quote = src.at(q);
    let mut i = q + 1;
    let mut multiline = false;
    while i < src.len() {
        let c = src.b[i];
        if c == b'\n' {
            multiline = true;
        }
        if quote == b'\'' && c == b'\'' {
            if src.at(i + 1) == b'\'' {
                i += 2;
                continue;
            }
            return Ok((i + 1, multiline));
        }
        if quote == b'"' {
            if c == b'\\' {
                if src.at(i + 1) == b'\n' || src.at(i + 1) == b'\r' {
                    multiline = true;
                }
                i += 2;
                continue;
            }
            if c == b'"' {
                return Ok((i + 1, multiline));
            }
        }
        i += 1;
    }
    err(q, "unterminated quoted scalar")
}

/// Scans the first line of a block-context plain scalar from `q`. Returns the end of its
/// text (trailing blanks excluded), the position of a `:` that makes it a mapping key, and
/// whether a comment cut the line.
pub(crate) fn scan_plain_line(src: &Src, q: usize) -> (usize, Option<usize>, bool) {
    let e = src.eol(q);
    let mut i = q;
    let mut end = q;
    while i < e {
        let c = src.b[i];
        if c == b':' && src.blank_at(i + 1) {
            return (end, Some(i), false);
        }
        if c == b'#' && i > q && matches!(src.b[i - 1], b' ' | b'\t') {
            return (end, None, true);
        }
        if c != b' ' && c != b'\t' {
            end = i + 1;
        }
        i += 1;
    }
    (end, None, false)
}

/// Scans a flow-context plain scalar from `q` (possibly over several lines). Returns the end
/// of its text and whether it spans lines.
pub(crate) fn scan_plain_flow(src: &Src, q: usize) -> ScanResult<(usize, bool)> {
    let mut i = q;
    let mut end = q;
    let mut multiline = false;
    loop {
        // Inside a line: runs until a blank or an indicator that ends a flow plain scalar.
        while !src.blank_at(i) {
            let c = src.b[i];
            if matches!(c, b',' | b'[' | b']' | b'{' | b'}') {
                return Ok((end, multiline));
            }
            if c == b':' {
                let n = src.at(i + 1);
                if src.blank_at(i + 1) {
                    return Ok((end, multiline));
                }
                if matches!(n, b',' | b'?' | b'[' | b']' | b'{' | b'}') {
                    return err(i, "unexpected ':' in a plain scalar");
                }
            }
            i += 1;
            end = i;
        }
        // Whitespace and line breaks: the scalar goes on unless a comment, an indicator
        // or a document marker follows.
        let mut j = i;
        let mut crossed = false;
        while matches!(src.at(j), b' ' | b'\t' | b'\r' | b'\n') {
            if src.b[j] == b'\n' {
                crossed = true;
            }
            j += 1;
        }
        let c = src.at(j);
        if j >= src.len()
            || c == b'#'
            || matches!(c, b',' | b'[' | b']' | b'{' | b'}')
            || (c == b':' && src.blank_at(j + 1))
            || (crossed && src.col(j) == 0 && src.is_doc_marker(j))
        {
            return Ok((end, multiline));
        }
        multiline |= crossed;
        i = j;
    }
}

/// Decodes a single-line scalar's source text into its string value, or `None` when this
/// module cannot decode it with certainty (the caller then refuses the edit).
pub(crate) fn decode_scalar(raw: &str, style: Style) -> Option<String> {
    match style {
        Style::Plain => Some(raw.to_string()),
        Style::Single => Some(
            raw.strip_prefix('\'')?
                .strip_suffix('\'')?
                .replace("''", "'"),
        ),
        Style::Double => decode_double(raw.strip_prefix('"')?.strip_suffix('"')?),
    }
}

/// Four hex digits of a `\u` escape, as a number (a lone surrogate is left to the caller).
fn hex_unit(it: &mut std::str::Chars) -> Option<u32> {
    let s: String = it.by_ref().take(4).collect();
    if s.len() != 4 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u32::from_str_radix(&s, 16).ok()
}

fn decode_double(body: &str) -> Option<String> {
    let mut out = String::with_capacity(body.len());
    let mut it = body.chars();
    while let Some(c) = it.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        let e = it.next()?;
        let hex = |it: &mut std::str::Chars, n: usize| -> Option<char> {
            let s: String = it.by_ref().take(n).collect();
            if s.len() != n {
                return None;
            }
            char::from_u32(u32::from_str_radix(&s, 16).ok()?)
        };
        out.push(match e {
            '0' => '\0',
            'a' => '\u{7}',
            'b' => '\u{8}',
            't' | '\t' => '\t',
            'n' => '\n',
            'v' => '\u{b}',
            'f' => '\u{c}',
            'r' => '\r',
            'e' => '\u{1b}',
            ' ' => ' ',
            '"' => '"',
            '/' => '/',
            '\\' => '\\',
            '\'' => '\'',
            'N' => '\u{85}',
            '_' => '\u{a0}',
            'L' => '\u{2028}',
            'P' => '\u{2029}',
            'x' => hex(&mut it, 2)?,
            'u' => match hex_unit(&mut it)? {
                // A UTF-16 surrogate pair, as JSON writes a character above U+FFFF.
                hi @ 0xd800..=0xdbff => {
                    if it.next()? != '\\' || it.next()? != 'u' {
                        return None;
                    }
                    let lo = hex_unit(&mut it).filter(|lo| (0xdc00..=0xdfff).contains(lo))?;
                    char::from_u32(0x10000 + ((hi - 0xd800) << 10) + (lo - 0xdc00))?
                }
                unit => char::from_u32(unit)?,
            },
            'U' => hex(&mut it, 8)?,
            _ => return None,
        });
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_and_eol() {
        let s = Src::new(b"a: 1\r\nbb: 2\nc");
        assert_eq!(s.line_of(0), 1);
        assert_eq!(s.line_of(6), 2);
        assert_eq!(s.line_of(12), 3);
        assert_eq!(s.eol(0), 4);
        assert_eq!(s.next_line(12), 13);
        assert_eq!(s.default_eol(), "\r\n");
    }

    #[test]
    fn decodes_escapes() {
        assert_eq!(
            decode_scalar(r#""a\"b\\c\x41\u00e9""#, Style::Double).unwrap(),
            "a\"b\\cAé"
        );
        assert_eq!(decode_scalar("'it''s'", Style::Single).unwrap(), "it's");
        assert_eq!(decode_scalar(r#""\q""#, Style::Double), None);
    }

    #[test]
    fn rejects_odd_line_breaks() {
        assert!(check_text(b"a\rb").is_err());
        assert!(check_text("a\u{2028}".as_bytes()).is_err());
        assert!(check_text(b"a\r\nb").is_ok());
        assert!(check_text(b"\xff").is_err());
    }

    #[test]
    fn plain_flow_ends() {
        let s = Src::new(b"[a b, c]");
        assert_eq!(scan_plain_flow(&s, 1).unwrap(), (4, false));
        let s = Src::new(b"[http://x:1/y]");
        assert_eq!(scan_plain_flow(&s, 1).unwrap(), (13, false));
    }
}
