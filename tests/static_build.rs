//! The tarball of scripts/build-static.sh (run by scripts/test.sh before
//! the tests, since it is a release build for another target): a binary
//! with no program interpreter (static, musl), of this checkout's revision,
//! that serves /metrics, beside the shipped unit, alerts and dashboards.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

fn manifest_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Whether an ELF file has a PT_INTERP program header (asks for ld.so).
fn has_interpreter(elf: &[u8]) -> bool {
    assert_eq!(&elf[..4], b"\x7fELF");
    assert_eq!(elf[4], 2, "64-bit");
    let u16_at = |o: usize| u16::from_le_bytes([elf[o], elf[o + 1]]) as usize;
    let phoff = u64::from_le_bytes(elf[0x20..0x28].try_into().unwrap()) as usize;
    let (phentsize, phnum) = (u16_at(0x36), u16_at(0x38));
    (0..phnum).any(|i| {
        let at = phoff + i * phentsize;
        u32::from_le_bytes(elf[at..at + 4].try_into().unwrap()) == 3
    })
}

#[test]
fn the_static_tarball_runs_anywhere_and_ships_the_files() {
    // target/, from where this test run's own binary is.
    let target = Path::new(env!("CARGO_BIN_EXE_badgateway_exporter"))
        .ancestors()
        .nth(2)
        .unwrap()
        .to_path_buf();
    let name = format!(
        "badgateway_exporter-{}.linux-amd64",
        env!("CARGO_PKG_VERSION")
    );
    let tarball = target.join(format!("{name}.tar.gz"));
    assert!(
        tarball.exists(),
        "{} is missing: run scripts/build-static.sh (scripts/test.sh does)",
        tarball.display()
    );
    let dir = TempDir::new("static");
    run(Command::new("tar")
        .arg("-xzf")
        .arg(&tarball)
        .arg("-C")
        .arg(dir.path()));
    let root = dir.path().join(&name);
    let bin = root.join("badgateway_exporter");

    assert!(
        !has_interpreter(&std::fs::read(&bin).unwrap()),
        "dynamically linked"
    );
    assert!(has_interpreter(
        &std::fs::read(env!("CARGO_BIN_EXE_badgateway_exporter")).unwrap()
    ));

    let said = run(Command::new(&bin).arg("--version"));
    let head = run(Command::new("git")
        .current_dir(manifest_dir())
        .args(["rev-parse", "HEAD"]));
    assert!(
        said.contains(&format!("revision: {})", head.trim())),
        "{said}: stale, run scripts/build-static.sh"
    );

    // The shipped files, as they are in this checkout.
    let mut shipped: Vec<(PathBuf, PathBuf)> = Vec::new();
    for f in ["service", "env", "sysusers"] {
        let file = format!("badgateway_exporter.{f}");
        shipped.push((
            manifest_dir().join("deploy/systemd").join(&file),
            root.join("systemd").join(&file),
        ));
    }
    for (dir, ext) in [
        ("alerts", "yml"),
        ("dashboards", "json"),
        ("dashboards/provisioning", "yml"),
    ] {
        for f in shipped::files(dir, ext) {
            let to = root.join(dir).join(f.file_name().unwrap());
            shipped.push((f, to));
        }
    }
    for (from, to) in &shipped {
        let got = std::fs::read(to).unwrap_or_else(|e| panic!("{}: {e}", to.display()));
        assert!(
            got == std::fs::read(from).unwrap(),
            "{} differs: run scripts/build-static.sh",
            to.display()
        );
    }

    // It serves.
    let addr = format!("127.0.0.1:{}", free_port());
    let _p = spawn(
        "static exporter",
        Command::new(&bin)
            .arg(format!("--web.listen-address={addr}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    wait_for(
        Duration::from_secs(20),
        "the static binary's /metrics",
        || {
            matches!(
                http_get(&addr, "/metrics", Duration::from_secs(2)),
                Ok((200, body)) if body.contains("badgateway_exporter_build_info{")
            )
        },
    );
}
