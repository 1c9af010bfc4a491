//! The shipped rules through Prometheus's own tools: `promtool check rules`
//! on alerts/*.yml, `promtool test rules` on the unit tests in
//! alerts/tests/, and `amtool check-config` on the example Alertmanager
//! configuration. scripts/test.sh installs both (Debian's prometheus and
//! prometheus-alertmanager); a missing tool fails the test. And the two
//! tools that write parts of alerts/: every runbook_url from one base
//! (tools/runbook_urls.py), the promtool tests from recorded series
//! (tools/record_alert_series.py).

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::shipped::{files, repo_path, rule_files};

fn tool(name: &str) -> PathBuf {
    let p = PathBuf::from("/usr/bin").join(name);
    assert!(
        p.exists(),
        "{name} is not installed at {}: run scripts/test.sh, which installs it",
        p.display()
    );
    p
}

fn run(cmd: &mut Command) -> String {
    let out = cmd
        .current_dir(repo_path(""))
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{cmd:?} failed:\n{text}");
    text
}

#[test]
fn promtool_checks_every_rule_file() {
    let files = rule_files();
    assert!(files.len() >= 3, "rule files: {files:?}");
    let out = run(Command::new(tool("promtool"))
        .arg("check")
        .arg("rules")
        .args(&files));
    assert_eq!(
        out.matches("SUCCESS").count(),
        files.len(),
        "one SUCCESS per file:\n{out}"
    );
}

#[test]
fn promtool_unit_tests_pass() {
    let tests = files("alerts/tests", ".test.yml");
    assert!(!tests.is_empty(), "no promtool tests in alerts/tests");
    let out = run(Command::new(tool("promtool"))
        .arg("test")
        .arg("rules")
        .args(&tests));
    assert!(!out.contains("FAILED"), "{out}");
    assert_eq!(out.matches("SUCCESS").count(), tests.len(), "{out}");
}

#[test]
fn amtool_accepts_the_example_alertmanager_config() {
    let out = run(Command::new(tool("amtool"))
        .arg("check-config")
        .arg("deploy/alertmanager/alertmanager.yml"));
    assert!(out.contains("SUCCESS"), "{out}");
}

fn python_check(args: &[&str]) {
    let out = run(Command::new("python3").args(args));
    assert!(!out.contains("Traceback"), "{out}");
}

#[test]
fn every_runbook_url_comes_from_the_one_base() {
    python_check(&["tools/runbook_urls.py", "--check"]);
}

#[test]
fn the_promtool_tests_are_what_the_specs_and_recordings_give() {
    python_check(&["tools/record_alert_series.py", "compose", "--check"]);
}
