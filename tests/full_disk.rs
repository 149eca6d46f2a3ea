//! Real full disks (issue 11): small tmpfs mounts for the state dir, the manifests dir, or
//! both, filled to every free-space size from 0 to a few blocks; the real binary runs
//! `snapshot`, `set` and `restore` there. Each run ends in exit 0, 3 or 7 (never 2 "bad input"
//! for an OS error, never a panic's 101, never a signal); an exit 7 names the errno and says
//! what is on disk; the manifest holds its before or its after content (the after content only
//! where the run said so); and once the space is freed the tool works: `recover` and `verify`
//! exit 0, a clean `set` commits, and `show --at now` gives what is on disk.
//!
//! Also: a 1 KiB-block ext4 image for the state dir (item 7: SQLite's memory-mapped `-shm`
//! file used to SIGBUS there), and stderr/stdout that cannot be written (item 6), with the real
//! `/dev/full` and a closed pipe.
//!
//! Mounting needs root; without it (or when `mount` fails) each test prints "SKIPPED: ..." and
//! passes, unless KUBEHARDEN_REQUIRE_MOUNT=1, where it fails.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_kubeharden");
const APISERVER: &str = "kube-apiserver.yaml";
/// Free-space sizes tried, in blocks.
const FREE_BLOCKS: [u64; 10] = [0, 1, 2, 3, 4, 5, 6, 8, 12, 16];

fn apiserver() -> Vec<u8> {
    fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data/manifests/kubeadm-v1.30.14")
            .join(APISERVER),
    )
    .expect("the kubeadm kube-apiserver manifest")
}

/// Skip (printing why) or, under KUBEHARDEN_REQUIRE_MOUNT=1, fail.
fn skip(why: &str) {
    if std::env::var("KUBEHARDEN_REQUIRE_MOUNT").is_ok_and(|v| v == "1") {
        panic!("KUBEHARDEN_REQUIRE_MOUNT=1 but {why}");
    }
    eprintln!("SKIPPED: {why}");
}

/// A mounted file system, unmounted when dropped.
struct Mount {
    at: PathBuf,
    loop_image: Option<PathBuf>,
}

impl Mount {
    fn tmpfs(at: &Path, size: &str) -> Result<Mount, String> {
        if !nix::unistd::geteuid().is_root() {
            return Err("not root: cannot mount a small tmpfs".into());
        }
        fs::create_dir_all(at).map_err(|e| e.to_string())?;
        let out = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0755"),
                "tmpfs",
            ])
            .arg(at)
            .output()
            .map_err(|e| format!("running mount: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "mount -t tmpfs failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(Mount {
            at: at.to_path_buf(),
            loop_image: None,
        })
    }

    /// An ext4 file system with 1 KiB blocks in a loop-mounted image of `kib` KiB.
    fn ext4_1k(at: &Path, image: &Path, kib: u64) -> Result<Mount, String> {
        if !nix::unistd::geteuid().is_root() {
            return Err("not root: cannot loop-mount an ext4 image".into());
        }
        fs::File::create(image)
            .and_then(|f| f.set_len(kib * 1024))
            .map_err(|e| e.to_string())?;
        let mkfs = Command::new("mkfs.ext4")
            .args(["-q", "-F", "-b", "1024", "-m", "0"])
            .arg(image)
            .output()
            .map_err(|e| format!("running mkfs.ext4: {e}"))?;
        if !mkfs.status.success() {
            return Err(format!(
                "mkfs.ext4 failed: {}",
                String::from_utf8_lossy(&mkfs.stderr).trim()
            ));
        }
        fs::create_dir_all(at).map_err(|e| e.to_string())?;
        let out = Command::new("mount")
            .args(["-o", "loop"])
            .arg(image)
            .arg(at)
            .output()
            .map_err(|e| format!("running mount: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "mount -o loop of an ext4 image failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(Mount {
            at: at.to_path_buf(),
            loop_image: Some(image.to_path_buf()),
        })
    }

    fn block(&self) -> u64 {
        nix::sys::statvfs::statvfs(&self.at)
            .map(|s| s.fragment_size())
            .unwrap_or(4096)
    }

    fn available(&self) -> u64 {
        let s = nix::sys::statvfs::statvfs(&self.at).expect("statvfs");
        s.blocks_available() * s.fragment_size()
    }

    /// Fill the file system until `free` bytes are left (a filler file of real blocks).
    fn fill_to(&self, free: u64) {
        let filler = self.at.join("filler");
        let _ = fs::remove_file(&filler);
        let mut f = fs::File::create(&filler).expect("filler");
        let chunk = vec![0x5a_u8; self.block() as usize];
        while self.available() > free {
            let want = (self.available() - free).min(chunk.len() as u64) as usize;
            if f.write_all(&chunk[..want])
                .and_then(|()| f.sync_all())
                .is_err()
            {
                break;
            }
        }
    }

    fn free_all(&self) {
        let _ = fs::remove_file(self.at.join("filler"));
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let ok = Command::new("umount")
            .arg(&self.at)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            let _ = Command::new("umount").arg("-l").arg(&self.at).status();
        }
        if let Some(img) = &self.loop_image {
            let _ = fs::remove_file(img);
        }
    }
}

/// Where state and manifests live in one case.
struct Node {
    state: PathBuf,
    manifests: PathBuf,
}

impl Node {
    fn manifest(&self) -> PathBuf {
        self.manifests.join(APISERVER)
    }

    fn read(&self) -> Vec<u8> {
        fs::read(self.manifest()).expect("the manifest reads")
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.args(args)
            .arg("--state-dir")
            .arg(&self.state)
            .arg("--manifests-dir")
            .arg(&self.manifests)
            .env_remove("KUBEHARDEN_CRASH_AT")
            .stdin(Stdio::null());
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("running kubeharden")
    }

    fn ok(&self, args: &[&str]) -> Output {
        let out = self.run(args);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", describe(&out));
        out
    }
}

fn describe(out: &Output) -> String {
    format!(
        "status {:?} (signal {:?})\nstdout: {}\nstderr: {}",
        out.status.code(),
        out.status.signal(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[derive(Debug, Clone, Copy)]
enum Layout {
    State,
    Manifests,
    Both,
}

/// Runs that warned about the catalog (a write it could not take), over all cases.
static CATALOG_WARNINGS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// One command on the full disk: the exit code and the manifest's content are what an I/O
/// error may give. Returns the exit code.
fn check_run(node: &Node, args: &[&str], label: &str, bad: &mut Vec<String>) -> i32 {
    let before = node.read();
    let out = node.run(args);
    let label = format!("{label} {args:?}");
    let Some(code) = out.status.code() else {
        bad.push(format!("{label}: killed by a signal: {}", describe(&out)));
        return -1;
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    if stderr.contains("catalog (derived index, rebuilt from the journal)") {
        CATALOG_WARNINGS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // A catalog that cannot be written is a warning, never the run's failure.
        if code != 0 && !stderr.contains("kubeharden: warning: catalog") {
            bad.push(format!("{label}: the catalog decided the run: {stderr}"));
        }
    }
    if !matches!(code, 0 | 3 | 7) {
        bad.push(format!("{label}: exit {code}: {}", describe(&out)));
    }
    if code == 7 {
        let errno = ["(ENOSPC)", "(EIO)", "(EDQUOT)", "(EFBIG)"]
            .iter()
            .any(|e| stderr.contains(e));
        let says = [
            "no manifest was changed",
            "holds its before content",
            "holds the new content",
        ]
        .iter()
        .any(|s| stderr.contains(s));
        if !errno || !says {
            bad.push(format!(
                "{label}: exit 7 must name the errno and say what is on disk: {stderr}"
            ));
        }
    }
    let now = node.read();
    let changed = now != before;
    let said_new = stderr.contains("holds the new content");
    if changed && code != 0 && !(code == 7 && said_new) {
        bad.push(format!(
            "{label}: exit {code} but the manifest changed: {stderr}"
        ));
    }
    code
}

/// After the space is freed: the tool works and history ends at what is on disk.
fn check_usable(node: &Node, label: &str, bad: &mut Vec<String>) {
    for args in [&["recover"][..], &["verify"][..]] {
        let out = node.run(args);
        if out.status.code() != Some(0) {
            bad.push(format!(
                "{label}: {args:?} after freeing space: {}",
                describe(&out)
            ));
            return;
        }
    }
    let out = node.run(&[
        "set",
        APISERVER,
        "--flag",
        "audit-log-maxage=17",
        "--no-health-gate",
    ]);
    if out.status.code() != Some(0) {
        bad.push(format!(
            "{label}: a clean set after freeing space: {}",
            describe(&out)
        ));
    }
    // (An outside edit that the full disk kept `snapshot` from recording is recorded by this
    // set's observation first.)
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let out = node.run(&["show", APISERVER, "--at", &now]);
    if out.status.code() != Some(0) || out.stdout != node.read() {
        bad.push(format!(
            "{label}: show --at now is not what is on disk: {}",
            describe(&out)
        ));
    }
}

fn one_case(
    layout: Layout,
    free_blocks: u64,
    bad: &mut Vec<String>,
    codes: &mut BTreeMap<i32, usize>,
) -> Result<(), String> {
    let root = tempfile::tempdir().map_err(|e| e.to_string())?;
    let mnt = Mount::tmpfs(&root.path().join("mnt"), "2m")?;
    let on = |small: bool, name: &str| {
        if small {
            mnt.at.join(name)
        } else {
            root.path().join(name)
        }
    };
    let node = Node {
        state: on(matches!(layout, Layout::State | Layout::Both), "state"),
        manifests: on(
            matches!(layout, Layout::Manifests | Layout::Both),
            "manifests",
        ),
    };
    fs::create_dir_all(&node.manifests).map_err(|e| e.to_string())?;
    fs::write(node.manifest(), apiserver()).map_err(|e| e.to_string())?;
    fs::set_permissions(node.manifest(), fs::Permissions::from_mode(0o600))
        .map_err(|e| e.to_string())?;
    node.ok(&["snapshot"]);
    node.ok(&[
        "set",
        APISERVER,
        "--flag",
        "profiling=false",
        "--no-health-gate",
    ]);
    // An outside edit for `snapshot` to record on the full disk.
    let mut edited = node.read();
    edited.extend_from_slice(b"# edited by hand\n");
    fs::write(node.manifest(), &edited).map_err(|e| e.to_string())?;

    let free = free_blocks * mnt.block();
    let label = format!("{layout:?}, {free_blocks} block(s) free");
    mnt.fill_to(free);
    for args in [
        &["snapshot"][..],
        &[
            "set",
            APISERVER,
            "--flag",
            "anonymous-auth=false",
            "--no-health-gate",
        ],
        &["restore", APISERVER, "--version", "1", "--no-health-gate"],
        &["history", APISERVER],
    ] {
        *codes
            .entry(check_run(&node, args, &label, bad))
            .or_default() += 1;
    }
    mnt.free_all();
    check_usable(&node, &label, bad);
    Ok(())
}

fn full_disk_loop(layout: Layout) {
    let mut bad = Vec::new();
    let mut codes = BTreeMap::new();
    let mut cases = 0;
    for free in FREE_BLOCKS {
        if let Err(why) = one_case(layout, free, &mut bad, &mut codes) {
            return skip(&why);
        }
        cases += 1;
    }
    eprintln!(
        "full_disk {layout:?}: {cases} free-space sizes x 4 commands, exit codes {codes:?}, {} \
         violation(s); catalog warnings so far (all layouts) {}",
        bad.len(),
        CATALOG_WARNINGS.load(std::sync::atomic::Ordering::Relaxed)
    );
    // The sizes reach both ends: some runs fail on the full disk, some fit.
    assert!(
        codes.contains_key(&7) && codes.contains_key(&0),
        "{codes:?}"
    );
    assert!(
        bad.is_empty(),
        "{} violation(s):\n{}",
        bad.len(),
        bad.iter().take(10).cloned().collect::<Vec<_>>().join("\n")
    );
}

#[test]
fn full_disk_state_dir() {
    full_disk_loop(Layout::State);
}

#[test]
fn full_disk_manifests_dir() {
    full_disk_loop(Layout::Manifests);
}

#[test]
fn full_disk_state_and_manifests_on_one_fs() {
    full_disk_loop(Layout::Both);
}

#[test]
fn item7_state_dir_on_a_full_1k_block_ext4_never_gets_a_signal() {
    let root = tempfile::tempdir().unwrap();
    let mnt = match Mount::ext4_1k(&root.path().join("ext4"), &root.path().join("img"), 2048) {
        Ok(m) => m,
        Err(why) => return skip(&why),
    };
    let mut bad = Vec::new();
    for free_blocks in [0, 1, 2, 3, 4, 6, 8, 12, 16, 24, 32] {
        let node = Node {
            state: mnt.at.join(format!("state-{free_blocks}")),
            manifests: root.path().join(format!("manifests-{free_blocks}")),
        };
        fs::create_dir_all(&node.manifests).unwrap();
        fs::write(node.manifest(), apiserver()).unwrap();
        mnt.free_all();
        node.ok(&["snapshot"]);
        let label = format!("ext4 1 KiB blocks, {free_blocks} block(s) free");
        mnt.fill_to(free_blocks * mnt.block());
        check_run(
            &node,
            &[
                "set",
                APISERVER,
                "--flag",
                "profiling=false",
                "--no-health-gate",
            ],
            &label,
            &mut bad,
        );
        check_run(&node, &["history", APISERVER], &label, &mut bad);
        mnt.free_all();
        check_usable(&node, &label, &mut bad);
        let _ = fs::remove_dir_all(&node.state);
    }
    eprintln!(
        "ext4 1 KiB blocks: 11 free-space sizes, {} violation(s)",
        bad.len()
    );
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

/// A node with a committed change, in a plain temp dir.
fn plain_node(root: &Path) -> Node {
    let node = Node {
        state: root.join("state"),
        manifests: root.join("manifests"),
    };
    fs::create_dir_all(&node.manifests).unwrap();
    fs::write(node.manifest(), apiserver()).unwrap();
    node.ok(&[
        "set",
        APISERVER,
        "--flag",
        "profiling=false",
        "--no-health-gate",
    ]);
    node
}

fn dev_full() -> Option<fs::File> {
    match fs::OpenOptions::new().write(true).open("/dev/full") {
        Ok(f) => Some(f),
        Err(e) => {
            skip(&format!("/dev/full: {e}"));
            None
        }
    }
}

#[test]
fn item6_stderr_on_dev_full_keeps_the_exit_code() {
    let root = tempfile::tempdir().unwrap();
    let node = plain_node(root.path());
    let Some(full) = dev_full() else { return };
    // Exit 2 (a bad flag value) with its message to a full stderr: still 2, no panic.
    let out = node
        .cmd(&["set", APISERVER, "--flag", "=oops", "--no-health-gate"])
        .stderr(full.try_clone().unwrap())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    // Exit 5 (lock busy) said to a full stderr.
    let lock = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(node.state.join("lock"))
        .unwrap();
    lock.lock().unwrap();
    let out = node
        .cmd(&["snapshot", "--lock-timeout", "0"])
        .stderr(full.try_clone().unwrap())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(5), "{}", describe(&out));
    drop(lock);
    // A read-only command and its warnings with both streams full.
    let out = node
        .cmd(&["history", APISERVER, "-o", "json"])
        .stdout(full.try_clone().unwrap())
        .stderr(full.try_clone().unwrap())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    // A change whose stdout and stderr are full still commits, with exit 0.
    let out = node
        .cmd(&[
            "set",
            APISERVER,
            "--flag",
            "anonymous-auth=false",
            "--no-health-gate",
        ])
        .stdout(full.try_clone().unwrap())
        .stderr(full)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert!(String::from_utf8_lossy(&node.read()).contains("--anonymous-auth=false"));
}

#[test]
fn item6_io_error_exit_7_survives_a_full_stderr() {
    let root = tempfile::tempdir().unwrap();
    let mnt = match Mount::tmpfs(&root.path().join("mnt"), "1m") {
        Ok(m) => m,
        Err(why) => return skip(&why),
    };
    let Some(full) = dev_full() else { return };
    let node = Node {
        state: mnt.at.join("state"),
        manifests: root.path().join("manifests"),
    };
    fs::create_dir_all(&node.manifests).unwrap();
    fs::write(node.manifest(), apiserver()).unwrap();
    mnt.fill_to(0);
    let out = node.cmd(&["snapshot"]).stderr(full).output().unwrap();
    assert_eq!(out.status.code(), Some(7), "{}", describe(&out));
    // The same with a readable stderr: the message names the errno and what changed.
    let out = node.run(&["snapshot"]);
    assert_eq!(out.status.code(), Some(7), "{}", describe(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("(ENOSPC)"), "{stderr}");
    assert!(stderr.contains("no manifest was changed"), "{stderr}");
    assert!(
        stderr.contains(&*mnt.at.to_string_lossy()),
        "names the file: {stderr}"
    );
}

#[test]
fn item6_closed_pipe_keeps_the_exit_code() {
    let root = tempfile::tempdir().unwrap();
    let node = plain_node(root.path());
    for args in [
        &["history", APISERVER][..],
        &["show", APISERVER, "--version", "1"][..],
    ] {
        let mut child = node
            .cmd(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // The reader goes away before anything is read.
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", describe(&out));
    }
}

#[test]
fn item9_io_error_in_a_manifests_dir_is_exit_7_not_2() {
    let root = tempfile::tempdir().unwrap();
    let mnt = match Mount::tmpfs(&root.path().join("mnt"), "1m") {
        Ok(m) => m,
        Err(why) => return skip(&why),
    };
    let node = Node {
        state: root.path().join("state"),
        manifests: mnt.at.join("manifests"),
    };
    fs::create_dir_all(&node.manifests).unwrap();
    fs::write(node.manifest(), apiserver()).unwrap();
    node.ok(&["snapshot"]);
    let before = node.read();
    mnt.fill_to(0);
    let out = node.run(&[
        "set",
        APISERVER,
        "--flag",
        "profiling=false",
        "--no-health-gate",
    ]);
    assert_eq!(out.status.code(), Some(7), "{}", describe(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("(ENOSPC)"), "{stderr}");
    assert!(
        stderr.contains("holds its before content") && stderr.contains("rolled back"),
        "says the before content is back: {stderr}"
    );
    assert_eq!(node.read(), before);
    mnt.free_all();
    node.ok(&["verify"]);
    node.ok(&[
        "set",
        APISERVER,
        "--flag",
        "profiling=false",
        "--no-health-gate",
    ]);
}

/// `println!`/`eprintln!` panic when their stream cannot be written: the sources use
/// `cli::output::{say, warn, print_out}` instead (item 6). Keeps new code from bringing them
/// back.
#[test]
fn item6_no_panicking_print_macros_in_the_sources() {
    fn walk(dir: &Path, found: &mut Vec<String>) {
        for e in fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, found);
            } else if p.extension().is_some_and(|x| x == "rs") {
                let text = fs::read_to_string(&p).unwrap();
                for (n, line) in text.lines().enumerate() {
                    let code = line.trim_start();
                    if code.starts_with("//") {
                        continue;
                    }
                    if ["println!(", "eprintln!(", "print!(", "eprint!("]
                        .iter()
                        .any(|m| code.contains(m))
                    {
                        found.push(format!("{}:{}: {code}", p.display(), n + 1));
                    }
                }
            }
        }
    }
    let mut found = Vec::new();
    walk(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        &mut found,
    );
    assert!(
        found.is_empty(),
        "panicking print macros:\n{}",
        found.join("\n")
    );
}
