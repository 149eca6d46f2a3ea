//! Build script: `kubeharden --version` names the git commit it was built from, when built
//! from a checkout. Without git (a crates.io tarball, a source package) the version is just the
//! crate's: nothing here may fail the build.

use std::process::Command;

fn main() {
    let commit = git(&["rev-parse", "--short=12", "HEAD"]);
    // No "modified" mark: this script reruns only when HEAD moves, so it could not keep one
    // up to date with edits of the work tree.
    let version = match commit {
        Some(c) => format!("{} (git {c})", env!("CARGO_PKG_VERSION")),
        None => env!("CARGO_PKG_VERSION").to_string(),
    };
    println!("cargo:rustc-env=KUBEHARDEN_VERSION={version}");
    // Rebuild when HEAD moves (a commit, a checkout), also in a `git worktree` where .git is a
    // file; nothing to watch where there is no checkout.
    // logs/HEAD (the reflog) moves with every commit even when the branch ref is packed.
    let mut watch = vec!["HEAD".to_string(), "logs/HEAD".to_string()];
    if let Some(r) = git(&["symbolic-ref", "-q", "HEAD"]) {
        watch.push(r);
    }
    for w in watch {
        if let Some(p) = git(&["rev-parse", "--path-format=absolute", "--git-path", &w]) {
            if std::path::Path::new(&p).exists() {
                println!("cargo:rerun-if-changed={p}");
            }
        }
    }
    println!("cargo:rerun-if-changed=build.rs");
}

/// `git ARGS` in the crate's folder; None when git is missing or this is not a checkout.
fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .args(args)
        .current_dir(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    Some(String::from_utf8_lossy(&out.stdout).trim().to_string())
}
