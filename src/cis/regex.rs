//! A small backtracking matcher for kube-bench's `regex` op (Go `regexp.MatchString`:
//! unanchored). It covers the RE2 syntax rule files use: literals, `.`, classes `[a-z]`/`[^…]`,
//! `\d \w \s` and their negations, `^ $`, groups `(…)`/`(?:…)` with `|`, and the quantifiers
//! `* + ? {n} {n,} {n,m}` (greedy, or lazy with `?`). No check of the control-plane
//! benchmarks uses this op; anything else is reported as an invalid expression.

#[derive(Debug, Clone)]
enum Node {
    Lit(char),
    Any,
    Class(Vec<(char, char)>, bool),
    Start,
    End,
    Group(Vec<Vec<Node>>),
    Repeat(Box<Node>, usize, Option<usize>, bool),
}

struct Parser<'a> {
    s: &'a [char],
    i: usize,
}

fn class_escape(c: char) -> Option<(Vec<(char, char)>, bool)> {
    let digit = vec![('0', '9')];
    let word = vec![('0', '9'), ('A', 'Z'), ('a', 'z'), ('_', '_')];
    let space = vec![('\t', '\n'), ('\x0c', '\r'), (' ', ' ')];
    match c {
        'd' => Some((digit, false)),
        'D' => Some((digit, true)),
        'w' => Some((word, false)),
        'W' => Some((word, true)),
        's' => Some((space, false)),
        'S' => Some((space, true)),
        _ => None,
    }
}

fn literal_escape(c: char) -> Result<char, String> {
    match c {
        'n' => Ok('\n'),
        't' => Ok('\t'),
        'r' => Ok('\r'),
        c if c.is_ascii_punctuation() => Ok(c),
        c => Err(format!("unsupported escape \\{c}")),
    }
}

impl Parser<'_> {
    fn peek(&self) -> Option<char> {
        self.s.get(self.i).copied()
    }

    fn alt(&mut self) -> Result<Vec<Vec<Node>>, String> {
        let mut alts = vec![self.seq()?];
        while self.peek() == Some('|') {
            self.i += 1;
            alts.push(self.seq()?);
        }
        Ok(alts)
    }

    fn seq(&mut self) -> Result<Vec<Node>, String> {
        let mut seq = Vec::new();
        while let Some(c) = self.peek() {
            if c == '|' || c == ')' {
                break;
            }
            let atom = self.atom()?;
            let atom = self.quantified(atom)?;
            seq.push(atom);
        }
        Ok(seq)
    }

    fn number(&mut self) -> Option<usize> {
        let start = self.i;
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.i += 1;
        }
        self.s[start..self.i]
            .iter()
            .collect::<String>()
            .parse()
            .ok()
    }

    fn quantified(&mut self, atom: Node) -> Result<Node, String> {
        let (min, max) = match self.peek() {
            Some('*') => (0, None),
            Some('+') => (1, None),
            Some('?') => (0, Some(1)),
            Some('{') => {
                let save = self.i;
                self.i += 1;
                let Some(min) = self.number() else {
                    self.i = save;
                    return Ok(atom);
                };
                let max = if self.peek() == Some(',') {
                    self.i += 1;
                    self.number()
                } else {
                    Some(min)
                };
                if self.peek() != Some('}') {
                    return Err("malformed repetition".into());
                }
                (min, max)
            }
            _ => return Ok(atom),
        };
        self.i += 1;
        if matches!(atom, Node::Start | Node::End) {
            return Err("repetition of an anchor".into());
        }
        let lazy = self.peek() == Some('?');
        if lazy {
            self.i += 1;
        }
        Ok(Node::Repeat(Box::new(atom), min, max, !lazy))
    }

    fn atom(&mut self) -> Result<Node, String> {
        let c = self.peek().ok_or("unexpected end")?;
        self.i += 1;
        Ok(match c {
            '.' => Node::Any,
            '^' => Node::Start,
            '$' => Node::End,
            '(' => {
                if self.s[self.i..].starts_with(&['?', ':']) {
                    self.i += 2;
                }
                let alts = self.alt()?;
                if self.peek() != Some(')') {
                    return Err("missing )".into());
                }
                self.i += 1;
                Node::Group(alts)
            }
            '[' => self.class()?,
            '\\' => {
                let e = self.peek().ok_or("trailing \\")?;
                self.i += 1;
                match class_escape(e) {
                    Some((r, neg)) => Node::Class(r, neg),
                    None => Node::Lit(literal_escape(e)?),
                }
            }
            '*' | '+' | '?' => return Err(format!("missing argument to repetition operator {c}")),
            c => Node::Lit(c),
        })
    }

    fn class(&mut self) -> Result<Node, String> {
        let neg = self.peek() == Some('^');
        if neg {
            self.i += 1;
        }
        let mut ranges = Vec::new();
        let mut first = true;
        loop {
            let c = self.peek().ok_or("missing ]")?;
            self.i += 1;
            if c == ']' && !first {
                break;
            }
            first = false;
            let lo = if c == '\\' {
                let e = self.peek().ok_or("trailing \\")?;
                self.i += 1;
                if let Some((r, false)) = class_escape(e) {
                    ranges.extend(r);
                    continue;
                }
                literal_escape(e)?
            } else {
                c
            };
            if self.peek() == Some('-') && self.s.get(self.i + 1).is_some_and(|&n| n != ']') {
                let hi = self.s[self.i + 1];
                self.i += 2;
                ranges.push((lo, hi));
            } else {
                ranges.push((lo, lo));
            }
        }
        Ok(Node::Class(ranges, neg))
    }
}

fn seq_at(seq: &[Node], t: &[char], pos: usize, k: &mut dyn FnMut(usize) -> bool) -> bool {
    match seq.split_first() {
        None => k(pos),
        Some((n, rest)) => node_at(n, t, pos, &mut |p| seq_at(rest, t, p, k)),
    }
}

fn node_at(n: &Node, t: &[char], pos: usize, k: &mut dyn FnMut(usize) -> bool) -> bool {
    match n {
        Node::Lit(c) => t.get(pos) == Some(c) && k(pos + 1),
        Node::Any => t.get(pos).is_some_and(|&c| c != '\n') && k(pos + 1),
        Node::Class(r, neg) => {
            t.get(pos)
                .is_some_and(|&c| r.iter().any(|&(lo, hi)| lo <= c && c <= hi) != *neg)
                && k(pos + 1)
        }
        Node::Start => pos == 0 && k(pos),
        Node::End => pos == t.len() && k(pos),
        Node::Group(alts) => alts.iter().any(|s| seq_at(s, t, pos, k)),
        Node::Repeat(inner, min, max, greedy) => {
            repeat_at(inner, (*min, *max, *greedy), t, pos, 0, k)
        }
    }
}

fn repeat_at(
    inner: &Node,
    q: (usize, Option<usize>, bool),
    t: &[char],
    pos: usize,
    count: usize,
    k: &mut dyn FnMut(usize) -> bool,
) -> bool {
    let (min, max, greedy) = q;
    let more_allowed = max.is_none_or(|m| count < m);
    let more = |k: &mut dyn FnMut(usize) -> bool| {
        more_allowed
            && node_at(inner, t, pos, &mut |p| {
                (p != pos || count < min) && repeat_at(inner, q, t, p, count + 1, k)
            })
    };
    if count < min {
        more(k)
    } else if greedy {
        more(k) || k(pos)
    } else if k(pos) {
        // Lazy: the shortest repetition first.
        true
    } else {
        more(k)
    }
}

/// Go's `regexp.MustCompile(expr).MatchString(text)`; an expression this matcher cannot
/// read is an error (kube-bench would panic on an invalid one).
pub fn is_match(expr: &str, text: &str) -> Result<bool, String> {
    let s: Vec<char> = expr.chars().collect();
    let mut p = Parser { s: &s, i: 0 };
    let alts = p.alt()?;
    if p.i != s.len() {
        return Err(format!(
            "unexpected {:?} in regular expression {expr:?}",
            s[p.i]
        ));
    }
    let t: Vec<char> = text.chars().collect();
    let root = Node::Group(alts);
    Ok((0..=t.len()).any(|start| node_at(&root, &t, start, &mut |_| true)))
}

#[cfg(test)]
mod tests {
    use super::is_match;

    #[test]
    fn go_like_matches() {
        let ok = |e: &str, t: &str| is_match(e, t).unwrap();
        assert!(ok("RBAC", "Node,RBAC"));
        assert!(ok("^Node,", "Node,RBAC"));
        assert!(!ok("^RBAC", "Node,RBAC"));
        assert!(ok("^[0-9]+s?$", "300s"));
        assert!(!ok("^[0-9]+s?$", "300m"));
        assert!(ok("(a|b){2}c$", "xabc"));
        assert!(ok(r"^\d{1,3}(\.\d+)?$", "12.5"));
        assert!(ok("a.*?z", "a--z"));
        assert!(ok("[^,]+", "x"));
        assert!(!ok("[^,]+", ","));
        assert!(ok("", "anything"));
        assert!(is_match("(", "x").is_err());
        assert!(is_match("*a", "x").is_err());
    }
}
