//! The unattended node (issue 8), the parts that run without a VM: `recover` and `snapshot`
//! with nothing to do write nothing and fsync nothing (the recover timer runs every 30 s, the
//! drift unit on every change of the manifests dir, kubeharden's own writes included); the
//! completion scripts, man pages and `--version` the packages rely on; `systemd-analyze verify`
//! of the units. The boot itself is tests/vm/run-vm-test.sh.

mod common;

use clap::CommandFactory;
use common::{Node, APISERVER, BIN};
use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Whether a missing tool fails the test instead of skipping it (CI installs them).
fn required() -> bool {
    std::env::var_os("CI").is_some()
}

fn have(tool: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// Skip (saying why) or, under CI, fail when `tool` is missing.
fn need(tool: &str, test: &str) -> bool {
    if have(tool) {
        return true;
    }
    assert!(
        !required(),
        "{test}: {tool} is missing (CI must install it)"
    );
    eprintln!("SKIPPED: {test}: {tool} is not installed");
    false
}

/// Every file under `dir`: (bytes, mtime in ns), by path relative to `dir`.
fn tree(dir: &Path) -> BTreeMap<PathBuf, (Vec<u8>, i128)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let m = std::fs::symlink_metadata(&p).unwrap();
            if m.is_dir() {
                stack.push(p.clone());
            }
            let bytes = if m.is_file() {
                std::fs::read(&p).unwrap()
            } else {
                Vec::new()
            };
            let mtime = m.mtime() as i128 * 1_000_000_000 + m.mtime_nsec() as i128;
            out.insert(p.strip_prefix(dir).unwrap().to_path_buf(), (bytes, mtime));
        }
    }
    out
}

/// SQLite's shared-memory WAL index (`catalog.sqlite-shm`, a memory map rebuilt by every first
/// opener from the WAL, never fsynced) holds no data: it must exist in both trees, its bytes
/// and mtime are not compared. (With the catalog in exclusive locking mode there is no -shm.)
fn is_shm(p: &Path) -> bool {
    p.to_string_lossy().ends_with("-shm")
}

fn assert_tree_unchanged(
    before: &BTreeMap<PathBuf, (Vec<u8>, i128)>,
    after: &BTreeMap<PathBuf, (Vec<u8>, i128)>,
    what: &str,
) {
    let names = |t: &BTreeMap<PathBuf, (Vec<u8>, i128)>| t.keys().cloned().collect::<Vec<_>>();
    assert_eq!(
        names(before),
        names(after),
        "{what}: files in the state dir"
    );
    for (p, (bytes, mtime)) in before {
        if is_shm(p) {
            continue;
        }
        let (b2, m2) = &after[p];
        assert!(bytes == b2, "{what}: {} changed its bytes", p.display());
        assert_eq!(mtime, m2, "{what}: {} was written (mtime)", p.display());
    }
}

/// `kubeharden ARGS` under strace: (exit code, stdout, number of fsync-family calls).
fn run_counting_syncs(node: &Node, args: &[&str]) -> (i32, String, usize) {
    let trace = node.root.path().join("strace.out");
    let (cmd, _) = node.command(args, &[]);
    let mut s = Command::new("strace");
    s.args([
        "-f",
        "-qq",
        "-e",
        "trace=fsync,fdatasync,sync_file_range,syncfs,sync",
    ])
    .arg("-o")
    .arg(&trace)
    .arg(BIN)
    .args(cmd.get_args())
    .current_dir(node.root.path());
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => s.env(k, v),
            None => s.env_remove(k),
        };
    }
    let out = s.output().expect("running strace");
    let calls = std::fs::read_to_string(&trace).unwrap_or_default();
    let syncs = calls
        .lines()
        .filter(|l| l.contains("sync") && !l.contains("+++"))
        .count();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        syncs,
    )
}

/// What the recover timer and the drift unit do all day: with nothing to do, nothing is
/// written (same bytes, same mtimes in the state dir) and nothing fsynced; one line printed.
#[test]
fn noop_recover_and_snapshot_write_and_sync_nothing() {
    let node = Node::new();
    node.ok(&["snapshot"]);
    // A real transaction first, so the catalog and its WAL have seen writes; kubeharden's own
    // write must then be "nothing new" to the drift unit's snapshot.
    node.ok(&[
        "set",
        APISERVER,
        "--flag",
        "profiling=false",
        "--no-health-gate",
    ]);
    // The first command after a change stores, once, the digest of the journal prefix it
    // checked (one catalog page, so later starts need not decode it again); the journal and
    // the objects stay as they are.
    let journal = tree(&node.state.join("journal"));
    let objects = tree(&node.state.join("objects"));
    let first = node.ok(&["recover", "--lock-timeout", "0"]).stdout_text();
    assert_eq!(first, "nothing to recover\n");
    assert_tree_unchanged(
        &journal,
        &tree(&node.state.join("journal")),
        "first recover",
    );
    assert_tree_unchanged(
        &objects,
        &tree(&node.state.join("objects")),
        "first recover",
    );
    let strace = need(
        "strace",
        "noop_recover_and_snapshot_write_and_sync_nothing (fsync count)",
    );
    for round in 0..2 {
        for args in [
            vec!["recover", "--lock-timeout", "0"],
            vec![
                "snapshot",
                "--lock-timeout",
                "0",
                "--reason",
                "changed outside kubeharden",
            ],
        ] {
            let what = format!("{} (round {round})", args.join(" "));
            let before = tree(&node.state);
            let stdout = if strace {
                let (code, stdout, syncs) = run_counting_syncs(&node, &args);
                assert_eq!(code, 0, "{what}: exit code; stdout {stdout}");
                assert_eq!(syncs, 0, "{what}: fsync-family calls");
                stdout
            } else {
                node.ok(&args).stdout_text()
            };
            assert_tree_unchanged(&before, &tree(&node.state), &what);
            assert_eq!(
                stdout.lines().count(),
                1,
                "{what}: one line, got {stdout:?}"
            );
            let expected = if args[0] == "recover" {
                "nothing to recover"
            } else {
                "nothing new"
            };
            assert!(stdout.starts_with(expected), "{what}: {stdout:?}");
        }
    }
    // The same command still records a change from outside: the no-op path is not blind.
    node.append_line(APISERVER, "# edited by hand");
    let out = node
        .ok(&["snapshot", "--lock-timeout", "0", "--reason", "by hand"])
        .stdout_text();
    assert!(
        out.contains("external") && out.contains("(by hand)"),
        "hand edit not recorded with its reason: {out}"
    );
}

/// The drift unit's snapshot runs with --lock-timeout 0: while a kubeharden holds the lock it
/// exits 5 at once (the unit counts 5 as success) and changes nothing.
#[test]
fn snapshot_with_lock_timeout_zero_exits_5_while_locked() {
    let node = Node::new();
    node.ok(&["snapshot"]);
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(node.state.join("lock"))
        .unwrap();
    // Held until the end of the test, as a live kubeharden would hold it.
    let _lock = nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock)
        .map_err(|(_, e)| e)
        .unwrap();
    let before = tree(&node.state);
    node.append_line(APISERVER, "# edited while locked");
    for args in [
        ["snapshot", "--lock-timeout", "0"],
        ["recover", "--lock-timeout", "0"],
    ] {
        let t = std::time::Instant::now();
        node.run(&args).expect_code(5);
        assert!(t.elapsed().as_secs() < 20, "{args:?} waited for the lock");
    }
    assert_tree_unchanged(&before, &tree(&node.state), "while locked");
}

#[test]
fn completion_scripts_cover_every_subcommand() {
    let visible: Vec<String> = kubeharden::cli::args::Cli::command()
        .get_subcommands()
        .filter(|s| !s.is_hide_set())
        .map(|s| s.get_name().to_string())
        .collect();
    assert!(visible.iter().any(|s| s == "recover"));
    for shell in ["bash", "zsh", "fish"] {
        let out = Command::new(BIN)
            .args(["completion", shell])
            .output()
            .unwrap();
        assert!(out.status.success(), "completion {shell}: {out:?}");
        let script = String::from_utf8(out.stdout).unwrap();
        for sub in &visible {
            assert!(
                script.contains(sub.as_str()),
                "completion {shell} lacks {sub}"
            );
        }
        assert!(
            !script.contains("kubeharden man"),
            "{shell}: the hidden man command leaked"
        );
        // The script must at least parse in its shell.
        if have(shell) {
            let check = Command::new(shell)
                .arg(if shell == "fish" {
                    "--no-execute"
                } else {
                    "-n"
                })
                .arg("-c")
                .arg(&script)
                .output()
                .unwrap();
            assert!(
                check.status.success(),
                "{shell} rejects its completion script: {check:?}"
            );
        } else {
            eprintln!("SKIPPED: syntax check of the {shell} completion: {shell} is not installed");
        }
    }
    let bad = Command::new(BIN)
        .args(["completion", "tcsh"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2), "unknown shell is a usage error");
}

#[test]
fn man_pages_one_per_subcommand() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .arg("man")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    // kubeharden(1), and kubeharden-A(1), kubeharden-A-B(1) for every visible (sub)subcommand.
    fn pages(cmd: &clap::Command, prefix: &str, out: &mut Vec<String>) {
        out.push(format!("{prefix}.1"));
        for s in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
            pages(s, &format!("{prefix}-{}", s.get_name()), out);
        }
    }
    let mut want = Vec::new();
    pages(
        &kubeharden::cli::args::Cli::command(),
        "kubeharden",
        &mut want,
    );
    want.sort();
    let mut got: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    got.sort();
    assert_eq!(got, want);
    let page = std::fs::read_to_string(dir.path().join("kubeharden-recover.1")).unwrap();
    assert!(
        page.starts_with(".ie") || page.contains(".TH"),
        "not roff: {page:.200}"
    );
    assert!(
        page.contains("lock\\-timeout"),
        "global options missing from the page"
    );
    if have("man") {
        let render = Command::new("man")
            .arg("-l")
            .arg(dir.path().join("kubeharden.1"))
            .env("MANPAGER", "cat")
            .output()
            .unwrap();
        assert!(render.status.success(), "man -l: {render:?}");
    }
}

#[test]
fn version_names_the_git_commit() {
    let out = Command::new(BIN).arg("--version").output().unwrap();
    assert!(out.status.success());
    let v = String::from_utf8(out.stdout).unwrap();
    assert!(
        v.starts_with(&format!("kubeharden {}", env!("CARGO_PKG_VERSION"))),
        "{v}"
    );
    let head = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output();
    match head {
        Ok(h) if h.status.success() => {
            let commit = String::from_utf8(h.stdout).unwrap();
            assert!(v.contains(&format!("git {}", commit.trim())), "{v}");
        }
        _ => eprintln!("SKIPPED: version_names_the_git_commit: not a git checkout here"),
    }
}

/// `systemd-analyze verify` on every unit in dist/systemd, with /usr/bin/kubeharden pointed
/// at the binary under test (the packaged copy is checked inside the VM test).
#[test]
fn systemd_units_verify() {
    if !need("systemd-analyze", "systemd_units_verify") {
        return;
    }
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("dist/systemd");
    let dir = tempfile::tempdir().unwrap();
    let mut units = Vec::new();
    for e in std::fs::read_dir(&src).unwrap() {
        let p = e.unwrap().path();
        let text = std::fs::read_to_string(&p).unwrap();
        let name = p.file_name().unwrap().to_owned();
        std::fs::write(
            dir.path().join(&name),
            text.replace("/usr/bin/kubeharden", BIN),
        )
        .unwrap();
        units.push(dir.path().join(name));
    }
    units.sort();
    assert_eq!(units.len(), 4, "{units:?}");
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .args(&units)
        .output()
        .unwrap();
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "systemd-analyze verify: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
