//! Build script: records the source revision a loadgen was built from (`RR_GIT_REVISION`), which
//! every report carries. `GIT_REVISION` in the build's environment wins (container builds have
//! no `.git`); otherwise `git describe --always --dirty`; `unknown` when neither answers.

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn main() {
    println!("cargo:rerun-if-env-changed=GIT_REVISION");
    let rev = std::env::var("GIT_REVISION")
        .ok()
        .filter(|v| !v.is_empty())
        .or_else(|| git(&["describe", "--always", "--dirty", "--abbrev=12"]))
        .unwrap_or_else(|| "unknown".into());
    // a new commit (HEAD or the branch it names moves) or a change to the index rebuilds this
    if let Some(dir) = git(&["rev-parse", "--absolute-git-dir"]) {
        for f in ["HEAD", "index"] {
            println!("cargo:rerun-if-changed={dir}/{f}");
        }
    }
    // the branch HEAD names lives in the common dir (a worktree's git dir holds only HEAD)
    let common =
        git(&["rev-parse", "--git-common-dir"]).and_then(|d| std::fs::canonicalize(d).ok());
    if let (Some(common), Some(r)) = (common, git(&["symbolic-ref", "-q", "HEAD"])) {
        println!("cargo:rerun-if-changed={}/{r}", common.display());
    }
    println!("cargo:rustc-env=RR_GIT_REVISION={rev}");
}
