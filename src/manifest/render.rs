//! Writes one sequence item as YAML text, in the style of the list it goes into, quoted
//! exactly as much as needed for it to parse back to the same string.
//!
//! Two parsers read what we write: serde_norway (libyaml, YAML 1.1/1.2 mix) for our own check,
//! and the kubelet (go-yaml v2 through sigs.k8s.io/yaml). The rules below are deliberately
//! stricter than either, so that a plain scalar we emit means the same string to both.

use super::scan::Style;

/// Where the item goes: a block sequence (`- item`) or a flow sequence (`[a, item]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Context {
    Block,
    Flow,
}

/// Renders `s` preferring `style`; falls back to single quotes, then double quotes, when the
/// preferred style cannot hold `s` safely. Double quotes hold anything (escapes are limited
/// to forms that are valid in JSON too, so JSON manifests stay JSON).
pub(crate) fn render(s: &str, style: Style, ctx: Context) -> String {
    match style {
        Style::Plain if plain_safe(s, ctx) => s.to_string(),
        Style::Plain | Style::Single if single_safe(s) => format!("'{}'", s.replace('\'', "''")),
        _ => double_quoted(s),
    }
}

/// Plain only for flag items (`--x...`, which no YAML resolver reads as a number, boolean or
/// null) made of printable ASCII without spaces, without characters that end or confuse a
/// plain scalar in the context, and not ending in `:`.
///
/// In a flow list no YAML flow indicator or comment sign is left plain: libyaml takes
/// `[a, --b=x?y]` as one item, but PyYAML (and other scanners that stop a flow plain scalar at
/// `?`) refuse it. Quoting costs nothing and every YAML parser then reads the same string.
fn plain_safe(s: &str, ctx: Context) -> bool {
    let b = s.as_bytes();
    if !s.starts_with("--") || s.starts_with("---") || b.last() == Some(&b':') {
        return false;
    }
    b.iter().all(|&c| match c {
        c if is_flow_indicator(c) => ctx == Context::Block,
        0x21..=0x7e => true,
        _ => false,
    })
}

/// The characters a plain scalar inside a flow collection must not hold for every YAML
/// parser to read it alike: the flow indicators (`,` `[` `]` `{` `}`), the mapping indicators
/// `:` and `?`, and `#` (a comment after a space; quoted so that no scanner has to decide).
pub(crate) fn is_flow_indicator(c: u8) -> bool {
    matches!(c, b',' | b'[' | b']' | b'{' | b'}' | b':' | b'?' | b'#')
}

/// Single quotes hold any printable character on one line (`'` is doubled). Tabs and
/// non-printable characters are left to double quotes, which can escape them.
fn single_safe(s: &str) -> bool {
    s.chars().all(|c| !needs_escape(c) && c != '\t')
}

fn needs_escape(c: char) -> bool {
    matches!(c,
        '\0'..='\u{1f}' | '\u{7f}'..='\u{9f}' | '\u{2028}' | '\u{2029}' | '\u{feff}' | '\u{fffe}' | '\u{ffff}')
}

pub(crate) fn double_quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            c if needs_escape(c) => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn back(text: &str) -> String {
        let doc = format!("k:\n- {text}\nf: [{text}]\n");
        let v: serde_norway::Value = serde_norway::from_str(&doc).unwrap();
        let a = v["k"][0].as_str().unwrap().to_string();
        assert_eq!(v["f"][0].as_str().unwrap(), a);
        a
    }

    #[test]
    fn round_trips() {
        for s in [
            "--a=b",
            "--a=b: c",
            "--a=b #c",
            "--b=x?y",
            "--a=x#y",
            "--a=?",
            "--a=*x",
            "--a=&x",
            "--a=!x",
            "--a=\"q\"",
            "--a='q'",
            "--a=x:",
            "--a=[1,2]",
            "--a={x}",
            "--a=\t\u{1}\u{85}\u{2028}é",
            "--a=\\",
            "--controllers=*,bootstrapsigner",
            "---x",
            "--a=",
        ] {
            for style in [Style::Plain, Style::Single, Style::Double] {
                let r = render(s, style, Context::Flow);
                assert_eq!(back(&r), s, "{style:?} {r}");
                let r = render(s, style, Context::Block);
                let doc = format!("k:\n- {r}\n");
                let v: serde_norway::Value = serde_norway::from_str(&doc).unwrap();
                assert_eq!(v["k"][0].as_str().unwrap(), s, "{style:?} {r}");
            }
        }
    }

    #[test]
    fn keeps_plain_when_it_can() {
        assert_eq!(
            render("--a=https://x:1/y", Style::Plain, Context::Block),
            "--a=https://x:1/y"
        );
        assert_eq!(
            render("--a=https://x:1/y", Style::Plain, Context::Flow),
            "'--a=https://x:1/y'"
        );
        assert_eq!(render("--a=b", Style::Double, Context::Flow), "\"--a=b\"");
        let json: serde_json::Value = serde_json::from_str(&render(
            "--a=\t\u{1}\u{2028}\"",
            Style::Double,
            Context::Flow,
        ))
        .unwrap();
        assert_eq!(json, "--a=\t\u{1}\u{2028}\"");
    }
}
