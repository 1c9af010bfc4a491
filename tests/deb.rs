//! The Debian package: `cargo deb` (cargo-deb, installed by scripts/test.sh)
//! packs the binary this test run built, and dpkg installs it into a clean
//! root of its own (a dpkg database and nothing else, so nothing on this
//! host changes). Checked there: the control file, every file in its place,
//! the maintainer scripts, the user the sysusers file creates, the
//! installed unit by `systemd-analyze verify`, and the installed binary's
//! `--version` with this checkout's revision.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e} (scripts/test.sh installs it)"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn manifest_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The .deb of the binary this test run built (the dev profile: no second
/// build in release).
fn build_deb(out: &Path) -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let bin = Path::new(env!("CARGO_BIN_EXE_badgateway_exporter"));
    let profile = bin.parent().unwrap().file_name().unwrap().to_str().unwrap();
    let profile = if profile == "debug" { "dev" } else { profile };
    let said = run(Command::new(cargo)
        .current_dir(manifest_dir())
        .args(["deb", "--no-build", "--profile", profile, "--output"])
        .arg(out));
    let deb = PathBuf::from(
        said.trim()
            .lines()
            .last()
            .expect("cargo deb names the .deb"),
    );
    assert!(deb.exists(), "{}", deb.display());
    deb
}

#[test]
fn the_deb_installs_a_verified_service_and_a_binary_that_knows_its_revision() {
    let dir = common::TempDir::new("deb");
    let deb = build_deb(dir.path());
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(
        deb.file_name().unwrap().to_str().unwrap(),
        format!("badgateway-exporter_{version}_amd64.deb")
    );

    // The control file.
    let control = run(Command::new("dpkg-deb").arg("--field").arg(&deb));
    let field = |name: &str| {
        control
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}: ")))
            .unwrap_or_else(|| panic!("no {name} in\n{control}"))
            .to_string()
    };
    assert_eq!(field("Package"), "badgateway-exporter");
    assert_eq!(field("Version"), version);
    assert_eq!(field("Architecture"), "amd64");
    let depends = field("Depends");
    assert!(depends.contains("libc6"), "{depends}");
    assert!(depends.contains("systemd"), "{depends}");

    // dpkg installs it into a root with an empty database. Its maintainer
    // scripts run here without chroot (that root has no shell) and with
    // DPKG_ROOT set, which they honour as debhelper's do: the user and the
    // enablement go into that root, and nothing is started on this host.
    // The root's database has no libc6 or systemd: --force-depends.
    let root = dir.path().join("root");
    for d in ["var/lib/dpkg/info", "var/lib/dpkg/updates"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::write(root.join("var/lib/dpkg/status"), "").unwrap();
    let host_passwd = std::fs::read_to_string("/etc/passwd").unwrap();
    let dpkg = |args: &[&str]| {
        run(Command::new("dpkg")
            .arg(format!("--root={}", root.display()))
            .args(["--force-script-chrootless", "--force-depends"])
            .args(args))
    };
    dpkg(&["--install", deb.to_str().unwrap()]);
    let status = dpkg(&["--status", "badgateway-exporter"]);
    assert!(status.contains("Status: install ok installed"), "{status}");
    let listed = dpkg(&["--listfiles", "badgateway-exporter"]);
    let mut want = vec![
        "/usr/bin/badgateway_exporter".to_string(),
        "/lib/systemd/system/badgateway_exporter.service".into(),
        "/usr/lib/sysusers.d/badgateway_exporter.conf".into(),
        "/etc/default/badgateway_exporter".into(),
        "/usr/share/badgateway-exporter/dashboards/provisioning/dashboards.yml".into(),
        "/usr/share/badgateway-exporter/dashboards/provisioning/datasource.yml".into(),
        "/usr/share/doc/badgateway-exporter/copyright".into(),
    ];
    // Every rule file and dashboard of this checkout, read now.
    for (from, to) in [("alerts", "alerts"), ("dashboards", "dashboards")] {
        for e in std::fs::read_dir(manifest_dir().join(from)).unwrap() {
            let name = e.unwrap().file_name().into_string().unwrap();
            if name.ends_with(".yml") || name.ends_with(".json") {
                want.push(format!("/usr/share/badgateway-exporter/{to}/{name}"));
            }
        }
    }
    for f in &want {
        assert!(listed.lines().any(|l| l == f), "{f} not in\n{listed}");
        assert!(root.join(&f[1..]).is_file(), "{f} not installed");
    }
    // Installed as shipped.
    for (shipped, installed) in [
        (
            "deploy/systemd/badgateway_exporter.service",
            "lib/systemd/system/badgateway_exporter.service",
        ),
        (
            "deploy/systemd/badgateway_exporter.env",
            "etc/default/badgateway_exporter",
        ),
        (
            "alerts/alerts.yml",
            "usr/share/badgateway-exporter/alerts/alerts.yml",
        ),
    ] {
        assert_eq!(
            std::fs::read(manifest_dir().join(shipped)).unwrap(),
            std::fs::read(root.join(installed)).unwrap(),
            "{installed}"
        );
    }
    // The environment file is a conffile: an admin's edits survive upgrades.
    let info = root.join("var/lib/dpkg/info");
    let conffiles = std::fs::read_to_string(info.join("badgateway-exporter.conffiles")).unwrap();
    assert!(
        conffiles
            .lines()
            .any(|l| l == "/etc/default/badgateway_exporter"),
        "{conffiles}"
    );

    // postinst created the user there (and not on this host), and enabled
    // the unit; the other scripts are valid sh and stop, then forget it.
    let passwd = std::fs::read_to_string(root.join("etc/passwd")).unwrap();
    assert!(
        passwd
            .lines()
            .any(|l| l.starts_with("badgateway_exporter:") && l.ends_with(":/usr/sbin/nologin")),
        "{passwd}"
    );
    assert_eq!(std::fs::read_to_string("/etc/passwd").unwrap(), host_passwd);
    let wants = root.join("etc/systemd/system/multi-user.target.wants/badgateway_exporter.service");
    assert_eq!(
        std::fs::read_link(&wants).unwrap_or_else(|e| panic!("{}: {e}", wants.display())),
        Path::new("/lib/systemd/system/badgateway_exporter.service")
    );
    for (script, says) in [
        (
            "postinst",
            "deb-systemd-invoke start badgateway_exporter.service",
        ),
        (
            "prerm",
            "deb-systemd-invoke stop badgateway_exporter.service",
        ),
        (
            "postrm",
            "deb-systemd-helper purge badgateway_exporter.service",
        ),
    ] {
        let p = info.join(format!("badgateway-exporter.{script}"));
        let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{script}: {e}"));
        run(Command::new("sh").arg("-n").arg(&p));
        assert!(text.contains(says), "{script} should run {says}:\n{text}");
    }

    // The installed unit verifies. systemd-analyze wants the binary at
    // ExecStart and the host's targets: a copy whose ExecStart is the
    // installed binary's path in that root, and nothing else changed.
    let installed_bin = root.join("usr/bin/badgateway_exporter");
    let unit_text =
        std::fs::read_to_string(root.join("lib/systemd/system/badgateway_exporter.service"))
            .unwrap();
    assert!(
        unit_text.contains("\nExecStart=/usr/bin/badgateway_exporter "),
        "{unit_text}"
    );
    let unit = dir.path().join("badgateway_exporter.service");
    std::fs::write(
        &unit,
        unit_text.replace(
            "ExecStart=/usr/bin/badgateway_exporter ",
            &format!("ExecStart={} ", installed_bin.display()),
        ),
    )
    .unwrap();
    common::systemd_analyze_verify(&unit);

    // The installed binary runs, and says this checkout's revision.
    let said = run(Command::new(&installed_bin).arg("--version"));
    let revision = run(Command::new("git")
        .current_dir(manifest_dir())
        .args(["rev-parse", "HEAD"]));
    assert!(
        said.starts_with(&format!("badgateway_exporter, version {version} ")),
        "{said}"
    );
    assert!(
        said.contains(&format!("revision: {})", revision.trim())),
        "{said}"
    );

    // Purged: its files and its enablement go; the root's database forgets it.
    dpkg(&["--purge", "badgateway-exporter"]);
    assert!(!installed_bin.exists());
    assert!(!root.join("etc/default/badgateway_exporter").exists());
    assert!(
        std::fs::symlink_metadata(&wants).is_err(),
        "still enabled after purge"
    );
}
