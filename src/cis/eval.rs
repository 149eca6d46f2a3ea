//! kube-bench's test semantics (check/test.go, check/check.go), op for op:
//! - an item with `set: true` fails when its flag is not found, passes on presence when it
//!   has no compare, else the compare decides; `set: false` passes iff the flag is not found;
//! - with several lines of output (`use_multiple_values`) every line must pass, and no
//!   output at all is one empty line;
//! - `bin_op` and/or combine the items.
//!
//! Where the value comes from is the caller's business (`Lookup`): the component's reading of
//! its command line, kube-bench's reading of `ps` text, or a file's `stat`.

use crate::cis::regex;
use crate::cis::rules::{BinOp, Item, Op, Tests};

/// One line of an audit's output, under one reading: the value an item's flag has there.
pub trait Lookup {
    fn find(&self, item: &Item) -> Option<String>;
}

impl<F: Fn(&Item) -> Option<String>> Lookup for F {
    fn find(&self, item: &Item) -> Option<String> {
        self(item)
    }
}

/// What one item found and concluded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemOutcome {
    pub pass: bool,
    /// The value on the line that decided (the first failing one, else the last).
    pub found: Option<String>,
    /// Why a compare could not be made (e.g. "Invalid Number(s)").
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestsOutcome {
    pub pass: bool,
    pub items: Vec<ItemOutcome>,
}

/// `compareOp()`: the verdict, or why there is none (which counts as a failure).
pub fn compare(op: Op, actual: &str, expected: &str) -> Result<bool, String> {
    let bool_eq = || {
        let lower = actual.to_lowercase();
        if lower == "true" || lower == "false" {
            lower == expected
        } else {
            actual == expected
        }
    };
    let ints = || match (actual.trim().parse::<i64>(), expected.trim().parse::<i64>()) {
        (Ok(a), Ok(b)) => Ok((a, b)),
        _ => Err("Invalid Number(s) used for comparison".to_string()),
    };
    Ok(match op {
        Op::Eq => bool_eq(),
        Op::NotEq => !bool_eq(),
        Op::Gt => ints().map(|(a, b)| a > b)?,
        Op::Gte => ints().map(|(a, b)| a >= b)?,
        Op::Lt => ints().map(|(a, b)| a < b)?,
        Op::Lte => ints().map(|(a, b)| a <= b)?,
        Op::Has => actual.contains(expected),
        Op::NotHave => !actual.contains(expected),
        Op::Regex => regex::is_match(expected, actual)?,
        Op::ValidElements => all_elements_valid(&split_list(actual), &split_list(expected)),
        Op::Bitmask => {
            let parse =
                |s: &str| i64::from_str_radix(s, 8).map_err(|_| "Not numeric value".to_string());
            let (a, mask) = (parse(actual)?, parse(expected)?);
            (mask & a) == a
        }
    })
}

/// `splitAndRemoveLastSeparator(s, ",")`.
pub fn split_list(s: &str) -> Vec<String> {
    let clean = s.trim().trim_end_matches(',');
    if clean.is_empty() {
        return Vec::new();
    }
    clean.split(',').map(|p| p.trim().to_string()).collect()
}

/// `allElementsValid()`: every actual element is allowed; two empty lists pass.
pub fn all_elements_valid(actual: &[String], allowed: &[String]) -> bool {
    match (actual.is_empty(), allowed.is_empty()) {
        (true, true) => true,
        (true, false) | (false, true) => false,
        _ => actual.iter().all(|a| allowed.contains(a)),
    }
}

/// `testItem.evaluate()` on one line.
fn evaluate(item: &Item, found: Option<String>) -> ItemOutcome {
    let (pass, error) = match (&found, item.set, item.compare) {
        (_, false, _) => (found.is_none(), None),
        (None, true, _) => (false, None),
        (Some(_), true, None) => (true, None),
        (Some(v), true, Some((op, expected))) => match compare(op, v, expected) {
            Ok(p) => (p, None),
            Err(e) => (false, Some(e)),
        },
    };
    ItemOutcome { pass, found, error }
}

/// `testItem.execute()`: every line must pass; no lines is one empty line.
pub fn eval_item(item: &Item, lines: &[&dyn Lookup]) -> ItemOutcome {
    if lines.is_empty() {
        return evaluate(item, None);
    }
    let mut last = None;
    for line in lines {
        let out = evaluate(item, line.find(item));
        if !out.pass {
            return out;
        }
        last = Some(out);
    }
    last.unwrap_or_else(|| evaluate(item, None))
}

/// `Check.execute()`: the items combined with `bin_op`.
pub fn eval_tests(tests: &Tests, lines: &[&dyn Lookup]) -> TestsOutcome {
    let items: Vec<ItemOutcome> = tests.items.iter().map(|i| eval_item(i, lines)).collect();
    let pass = match tests.bin_op {
        BinOp::And => items.iter().all(|o| o.pass),
        BinOp::Or => items.iter().any(|o| o.pass),
    };
    TestsOutcome { pass, items }
}

/// An item in words, as kube-bench's expected result says it.
pub fn describe_item(item: &Item) -> String {
    match (item.set, item.compare) {
        (false, _) => format!("'{}' is not present", item.flag),
        (true, None) => format!("'{}' is present", item.flag),
        (true, Some((Op::Bitmask, v))) => {
            format!("'{}' has permissions {v} or more restrictive", item.flag)
        }
        (true, Some((op, v))) => format!("'{}' {} '{}'", item.flag, op.describe(), v),
    }
}

/// The expected result: items joined with AND/OR.
pub fn describe(tests: &Tests) -> String {
    let sep = match tests.bin_op {
        BinOp::And => " AND ",
        BinOp::Or => " OR ",
    };
    tests
        .items
        .iter()
        .map(describe_item)
        .collect::<Vec<_>>()
        .join(sep)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cis::rules::{absent, cmp, present};

    fn c(op: Op, a: &str, e: &str) -> bool {
        compare(op, a, e).unwrap_or(false)
    }

    #[test]
    fn ops_as_kube_bench() {
        assert!(c(Op::Eq, "FALSE", "false"));
        assert!(!c(Op::Eq, "0", "false"));
        assert!(c(Op::Eq, "127.0.0.1", "127.0.0.1"));
        assert!(c(Op::NotEq, "true", "false"));
        assert!(!c(Op::NotEq, "False", "false"));
        assert!(c(Op::Gte, " 30", "30"));
        assert!(!c(Op::Gte, "29", "30"));
        assert!(compare(Op::Gte, "300s", "30").is_err());
        assert!(c(Op::Gt, "31", "30") && c(Op::Lt, "1", "2") && c(Op::Lte, "2", "2"));
        assert!(c(Op::Has, "Node,RBAC", "Node"));
        assert!(c(Op::Has, "NodeRestriction", "Node"));
        assert!(c(Op::NotHave, "Node,RBAC", "AlwaysAllow"));
        assert!(c(Op::ValidElements, "a, b,", "a,b,c"));
        assert!(!c(Op::ValidElements, "a,d", "a,b,c"));
        assert!(!c(Op::ValidElements, "", "a"));
        assert!(c(Op::ValidElements, "", ""));
        assert!(c(Op::Regex, "300s", "^[0-9]+s$"));
    }

    #[test]
    fn bitmask_is_bit_by_bit() {
        for (a, m, want) in [
            ("600", "600", true),
            ("400", "600", true),
            ("000", "600", true),
            ("640", "600", false),
            ("700", "600", false),
            ("640", "644", true),
            ("604", "644", true),
            ("664", "644", false),
            ("500", "700", true),
            ("750", "700", false),
            ("2755", "755", false),
        ] {
            assert_eq!(c(Op::Bitmask, a, m), want, "{a} vs {m}");
        }
        assert!(compare(Op::Bitmask, "", "600").is_err());
    }

    #[test]
    fn items_lines_and_bin_ops() {
        let none = |_: &Item| None;
        let val = |_: &Item| Some("false".to_string());
        const OR: &[Item] = &[cmp("--x", Op::Eq, "false"), absent("--x")];
        const PRESENT: &[Item] = &[present("--x")];
        const ABSENT: &[Item] = &[absent("--x")];
        let t = Tests {
            bin_op: BinOp::Or,
            items: OR,
        };
        assert!(eval_tests(&t, &[&none]).pass);
        assert!(eval_tests(&t, &[&val]).pass);
        let t = Tests {
            bin_op: BinOp::And,
            items: PRESENT,
        };
        assert!(!eval_tests(&t, &[&none]).pass);
        assert!(!eval_tests(&t, &[]).pass);
        assert!(!eval_tests(&t, &[&val, &none]).pass);
        assert!(eval_tests(&t, &[&val, &val]).pass);
        let t = Tests {
            bin_op: BinOp::And,
            items: ABSENT,
        };
        assert!(eval_tests(&t, &[]).pass);
    }
}
