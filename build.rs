//! What `badgateway_exporter_build_info` and `--version` say about the
//! build: the git revision and branch, the date and the compiler, as the
//! Go exporters say them.
//!
//! The revision and branch come from `git` when the source is a clone (CI
//! builds from one); without git or `.git` they are "unknown", or what
//! `BADGATEWAY_BUILD_REVISION` and `BADGATEWAY_BUILD_BRANCH` say (for a
//! build from a tarball or in a container that leaves `.git` out). The date
//! is the commit's, or `SOURCE_DATE_EPOCH`'s, never the clock's: the same
//! source builds the same binary.

use std::process::Command;

fn main() {
    for var in [
        "BADGATEWAY_BUILD_REVISION",
        "BADGATEWAY_BUILD_BRANCH",
        "SOURCE_DATE_EPOCH",
    ] {
        println!("cargo:rerun-if-env-changed={var}");
    }
    watch_git_head();
    let revision = from_env("BADGATEWAY_BUILD_REVISION")
        .or_else(|| git(&["rev-parse", "HEAD"]))
        .unwrap_or_else(|| "unknown".into());
    let branch = from_env("BADGATEWAY_BUILD_BRANCH")
        .or_else(|| git(&["rev-parse", "--abbrev-ref", "HEAD"]))
        .unwrap_or_else(|| "unknown".into());
    let epoch = from_env("SOURCE_DATE_EPOCH")
        .or_else(|| git(&["log", "-1", "--format=%ct"]))
        .and_then(|s| s.parse::<i64>().ok());
    let date = epoch.map_or_else(|| "unknown".into(), go_build_date);
    println!("cargo:rustc-env=BADGATEWAY_BUILD_REVISION={revision}");
    println!("cargo:rustc-env=BADGATEWAY_BUILD_BRANCH={branch}");
    println!("cargo:rustc-env=BADGATEWAY_BUILD_DATE={date}");
    println!("cargo:rustc-env=BADGATEWAY_BUILD_RUSTC={}", rustc_version());
}

fn from_env(var: &str) -> Option<String> {
    std::env::var(var).ok().filter(|v| !v.trim().is_empty())
}

/// One line of git's output, run in the package's directory.
fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()?;
    let s = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (out.status.success() && !s.is_empty()).then_some(s)
}

/// Build again when HEAD moves: HEAD itself (a checkout), and the branch's
/// ref (a commit). A worktree's HEAD is not in `.git/HEAD`: git says where.
fn watch_git_head() {
    let mut paths = vec!["HEAD".to_string()];
    if let Some(r) = git(&["symbolic-ref", "-q", "HEAD"]) {
        paths.push(r);
    }
    paths.push("packed-refs".into());
    for p in paths {
        if let Some(path) = git(&["rev-parse", "--git-path", &p]) {
            let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
            // A path that does not exist would make cargo rerun every time.
            if path.exists() {
                println!("cargo:rerun-if-changed={}", path.display());
            }
        }
    }
}

/// `1.85.0` from `rustc 1.85.0 (4d91de4e4 2025-02-17)`.
fn rustc_version() -> String {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    Command::new(rustc)
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.split_whitespace().nth(1).map(str::to_string))
        .unwrap_or_else(|| "unknown".into())
}

/// Seconds since the epoch as the Go exporters print their build date,
/// `20060102-15:04:05`, in UTC.
fn go_build_date(epoch: i64) -> String {
    let (days, secs) = (epoch.div_euclid(86_400), epoch.rem_euclid(86_400));
    // Howard Hinnant's days-to-civil.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}{month:02}{day:02}-{:02}:{:02}:{:02}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}
