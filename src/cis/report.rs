//! The audit's three forms: text grouped by section (kube-bench's layout), JSON (cli.md's
//! shape plus extras), JUnit XML (one testcase per check; FAIL is a failure, WARN and INFO
//! are skipped, as kube-bench reports them).

use crate::cis::rules::title;
use crate::cis::{AuditReport, CheckResult, Status};
use serde_json::{json, Value};
use std::fmt::Write;

fn paint(s: &str, status: Status, colour: bool) -> String {
    if !colour {
        return s.to_string();
    }
    let code = match status {
        Status::Pass => "32",
        Status::Fail => "31",
        Status::Warn => "33",
        Status::Info => "34",
    };
    format!("\x1b[{code}m{s}\x1b[0m")
}

fn tag(status: Status, colour: bool) -> String {
    paint(&format!("[{}]", status.name()), status, colour)
}

/// The text form. `colour`: ANSI colours for a terminal.
pub fn text(report: &AuditReport, colour: bool) -> String {
    let mut out = String::new();
    let mut section = "";
    let mut group = "";
    for r in &report.results {
        let c = &r.check;
        if c.section() != section {
            section = c.section();
            if !out.is_empty() {
                out.push('\n');
            }
            let _ = writeln!(
                out,
                "{} {section} {}",
                tag(Status::Info, colour),
                title(section)
            );
        }
        if c.group() != group {
            group = c.group();
            if group != section {
                let _ = writeln!(
                    out,
                    "{} {group} {}",
                    tag(Status::Info, colour),
                    title(group)
                );
            }
        }
        let _ = writeln!(out, "{} {} {}", tag(r.status, colour), c.id, c.text);
        if r.status != Status::Pass && !r.found.is_empty() {
            let _ = writeln!(out, "       found: {}", r.found);
        }
        for n in &r.notes {
            let _ = writeln!(out, "       note: {n}");
        }
    }
    let open: Vec<&CheckResult> = report
        .results
        .iter()
        .filter(|r| matches!(r.status, Status::Fail | Status::Warn))
        .collect();
    if !open.is_empty() {
        let _ = writeln!(out, "\n== Remediations ==");
        for r in open {
            let _ = writeln!(out, "{} {}", r.check.id, r.remediation);
            if let Some(d) = r.check.dangerous {
                let _ = writeln!(out, "       caution: {d}");
            }
        }
    }
    let s = report.summary();
    let _ = writeln!(out, "\n== Summary ==");
    for (n, st) in [
        (s.pass, Status::Pass),
        (s.fail, Status::Fail),
        (s.warn, Status::Warn),
        (s.info, Status::Info),
    ] {
        let _ = writeln!(out, "{n} checks {}", paint(st.name(), st, colour));
    }
    let _ = writeln!(out, "benchmark: {}", report.benchmark_reason);
    out
}

/// One check as JSON: cli.md's fields, then the extras.
pub fn check_json(r: &CheckResult) -> Value {
    let c = &r.check;
    json!({
        "id": c.id,
        "text": c.text,
        "status": r.status.name(),
        "type": c.kind.name(),
        "component": c.component.name(),
        "expected": r.expected,
        "found": r.found,
        "remediation": r.remediation,
        "scored": c.scored(),
        "source": r.source.name(),
        "manifest": r.manifest.as_ref().map(|p| p.display().to_string()),
        "notes": r.notes,
        "kube_bench_status": r.kube_bench_status.name(),
        "running": r.running.iter().map(|v| json!({"pid": v.pid, "status": v.status.name(), "found": v.found})).collect::<Vec<_>>(),
        "targets": r.targets.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
        "failing": r.failing.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
        "fix": c.fix.iter().map(|f| f.to_json()).collect::<Vec<_>>(),
        "dangerous": c.dangerous,
    })
}

pub fn json(report: &AuditReport) -> Value {
    let s = report.summary();
    json!({
        "benchmark": report.benchmark.name(),
        "benchmark_reason": report.benchmark_reason,
        "checks": report.results.iter().map(check_json).collect::<Vec<_>>(),
        "summary": {"pass": s.pass, "fail": s.fail, "warn": s.warn, "info": s.info},
    })
}

/// XML 1.0 text: markup escaped, characters XML cannot carry dropped.
fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&apos;"),
            '\t' | '\n' | '\r' => o.push(ch),
            c if (c as u32) < 0x20 || c == '\u{fffe}' || c == '\u{ffff}' => {}
            c => o.push(c),
        }
    }
    o
}

/// JUnit XML: one testsuite per benchmark section, one testcase per check.
pub fn junit(report: &AuditReport) -> String {
    let s = report.summary();
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        out,
        "<testsuites name=\"kubeharden audit {}\" tests=\"{}\" failures=\"{}\" skipped=\"{}\">",
        esc(report.benchmark.name()),
        report.results.len(),
        s.fail,
        s.warn + s.info
    );
    let mut sections: Vec<&str> = report.results.iter().map(|r| r.check.section()).collect();
    sections.dedup();
    for sec in sections {
        let rs: Vec<&CheckResult> = report
            .results
            .iter()
            .filter(|r| r.check.section() == sec)
            .collect();
        let count = |f: fn(Status) -> bool| rs.iter().filter(|r| f(r.status)).count();
        let _ = writeln!(
            out,
            "  <testsuite name=\"{} {}\" tests=\"{}\" failures=\"{}\" skipped=\"{}\">",
            esc(sec),
            esc(title(sec)),
            rs.len(),
            count(|s| s == Status::Fail),
            count(|s| matches!(s, Status::Warn | Status::Info))
        );
        for r in rs {
            let c = &r.check;
            let _ = writeln!(
                out,
                "    <testcase name=\"{} {}\" classname=\"{}.{} {}\">",
                esc(c.id),
                esc(c.text),
                esc(report.benchmark.name()),
                esc(c.group()),
                esc(title(c.group()))
            );
            let detail = format!(
                "expected: {}\nfound: {}\nremediation: {}",
                r.expected, r.found, r.remediation
            );
            match r.status {
                Status::Fail => {
                    let _ = writeln!(
                        out,
                        "      <failure message=\"{}\">{}</failure>",
                        esc(&r.found),
                        esc(&detail)
                    );
                }
                Status::Warn | Status::Info => {
                    let _ = writeln!(out, "      <skipped message=\"{}\"/>", r.status.name());
                }
                Status::Pass => {}
            }
            let _ = writeln!(
                out,
                "      <system-out>{}</system-out>",
                esc(&check_json(r).to_string())
            );
            let _ = writeln!(out, "    </testcase>");
        }
        let _ = writeln!(out, "  </testsuite>");
    }
    out.push_str("</testsuites>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::esc;

    #[test]
    fn escapes() {
        assert_eq!(esc("a<b>&\"c'\u{1}"), "a&lt;b&gt;&amp;&quot;c&apos;");
    }
}
