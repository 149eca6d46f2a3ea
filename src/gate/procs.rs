//! What /proc says about running processes: full argv and start time. The restart check
//! compares these with the manifest, as a person would with `ps -o lstart,args`.

use std::fs;

/// A process whose argv matched, with its start time in seconds since boot.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Proc {
    pub pid: i32,
    pub started: f64,
}

/// Seconds since boot on the clock /proc's start times use (CLOCK_BOOTTIME).
pub fn boot_now() -> f64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_BOOTTIME)
        .map(|t| t.tv_sec() as f64 + t.tv_nsec() as f64 / 1e9)
        .unwrap_or(0.0)
}

fn clock_ticks() -> f64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .map_or(100.0, |t| t as f64)
}

/// argv of a process, or None if it is gone (or a zombie: it has no argv any more).
pub fn cmdline(pid: i32) -> Option<Vec<String>> {
    let raw = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    if raw.is_empty() {
        return None;
    }
    let body = raw.strip_suffix(&[0]).unwrap_or(&raw);
    Some(
        body.split(|&b| b == 0)
            .map(|s| String::from_utf8_lossy(s).into_owned())
            .collect(),
    )
}

/// (state letter, start time in seconds since boot) from /proc/PID/stat.
fn stat(pid: i32) -> Option<(char, f64)> {
    let s = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // comm (field 2) may hold spaces and parentheses: fields are counted after the last ')'.
    let rest = &s[s.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let state = fields.first()?.chars().next()?;
    // starttime is field 22 overall: the 20th after the comm.
    let ticks: f64 = fields.get(19)?.parse().ok()?;
    Some((state, ticks / clock_ticks()))
}

/// Whether `pid` still runs (a zombie has exited).
pub fn alive(pid: i32) -> bool {
    matches!(stat(pid), Some((state, _)) if state != 'Z' && state != 'X')
}

/// Every live process whose argv satisfies `keep`, oldest first.
fn find(keep: impl Fn(&[String]) -> bool) -> Vec<Proc> {
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
            continue;
        };
        if !cmdline(pid).is_some_and(|a| keep(&a)) {
            continue;
        }
        if let Some((state, started)) = stat(pid) {
            if state != 'Z' && state != 'X' {
                found.push(Proc { pid, started });
            }
        }
    }
    found.sort_by(|a, b| a.started.total_cmp(&b.started));
    found
}

/// Every live process whose full argv equals `argv`.
pub fn find_by_argv(argv: &[String]) -> Vec<Proc> {
    find(|a| a == argv)
}

/// Every live process that is this component under another command line: same program
/// (argv[0]) and most of its arguments shared with `argv` — e.g. the argv of a change that
/// recovery has since reverted, which the kubelet may still run. Requiring shared arguments keeps
/// another instance of the program (another node's simulator, a test) out.
pub fn find_same_component(argv: &[String]) -> Vec<Proc> {
    let Some(program) = argv.first() else {
        return Vec::new();
    };
    let mine: std::collections::HashSet<&str> = argv[1..].iter().map(String::as_str).collect();
    find(|a| {
        if a.first() != Some(program) {
            return false;
        }
        let theirs: std::collections::HashSet<&str> = a[1..].iter().map(String::as_str).collect();
        let shared = mine.intersection(&theirs).count();
        let union = mine.union(&theirs).count();
        union == 0 || shared * 2 >= union
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_a_child_by_its_exact_argv_and_dates_it_after_it_was_spawned() {
        use std::os::unix::process::CommandExt;
        let before = boot_now();
        let argv = vec![
            "kube-test-sleeper".to_string(),
            "--flag=1".to_string(),
            format!("--nonce={}", std::process::id()),
        ];
        let mut child = std::process::Command::new("sleep")
            .arg0(&argv[0])
            .args(["30"])
            .spawn()
            .unwrap();
        // sleep's argv is [arg0, "30"]: look for exactly that.
        let want = vec![argv[0].clone(), "30".to_string()];
        let mut hits = Vec::new();
        for _ in 0..50 {
            hits = find_by_argv(&want);
            if !hits.is_empty() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let hit = hits.iter().find(|p| p.pid == child.id() as i32).copied();
        child.kill().unwrap();
        child.wait().unwrap();
        let hit = hit.expect("the child is found by argv");
        // /proc start times have clock-tick resolution.
        assert!(hit.started >= before - 0.02, "{} vs {before}", hit.started);
        assert!(!alive(hit.pid));
        assert!(find_by_argv(&argv).is_empty());
    }
}
