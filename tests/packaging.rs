//! The shipped packaging, checked as far as this machine allows: the
//! systemd unit by `systemd-analyze verify` and for its hardening, the
//! Kubernetes manifests and scrape configs parsed and checked for what
//! they must say (the scrape configs by promtool too), the Dockerfile read
//! for its stages, user, port and health check. Docker itself cannot build
//! here.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_norway::Value;

fn repo(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(p)
}

fn read(p: &str) -> String {
    std::fs::read_to_string(repo(p)).unwrap_or_else(|e| panic!("reading {p}: {e}"))
}

fn yaml(p: &str) -> Value {
    serde_norway::from_str(&read(p)).unwrap_or_else(|e| panic!("{p}: {e}"))
}

/// `a.b.0.c` into a YAML value; panics naming the path when absent.
fn at<'a>(v: &'a Value, path: &str) -> &'a Value {
    let mut cur = v;
    for key in path.split('.') {
        cur = match key.parse::<usize>() {
            Ok(i) => cur.get(i),
            Err(_) => cur.get(key),
        }
        .unwrap_or_else(|| panic!("missing {path} (at {key})"));
    }
    cur
}

fn strings(v: &Value) -> Vec<String> {
    v.as_sequence()
        .expect("a list")
        .iter()
        .map(|s| s.as_str().expect("a string").to_string())
        .collect()
}

/// `[Service]` keys of a unit file; repeated keys are joined with spaces.
fn unit_keys(text: &str) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = BTreeMap::new();
    let mut section = String::new();
    for line in text.lines().map(str::trim) {
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        if line.starts_with('[') {
            section = line.to_string();
            continue;
        }
        if section != "[Service]" {
            continue;
        }
        let (k, v) = line.split_once('=').expect("key=value");
        let e = out.entry(k.to_string()).or_default();
        if !e.is_empty() {
            e.push(' ');
        }
        e.push_str(v);
    }
    out
}

/// The binary's flag parser takes `flags` (`--help` stops before running).
fn assert_flags_parse<S: AsRef<std::ffi::OsStr>>(flags: &[S]) {
    let out = Command::new(env!("CARGO_BIN_EXE_badgateway_exporter"))
        .args(flags)
        .arg("--help")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
}

const CAPS: [&str; 4] = [
    "CAP_SYSLOG",
    "CAP_SYS_PTRACE",
    "CAP_DAC_READ_SEARCH",
    "CAP_NET_ADMIN",
];

#[test]
fn systemd_unit_verifies_and_is_hardened() {
    let text = read("deploy/systemd/badgateway_exporter.service");
    // systemd-analyze checks that ExecStart exists: point it at the binary
    // just built, and change nothing else.
    let dir = common::TempDir::new("unit");
    let unit = dir.path().join("badgateway_exporter.service");
    std::fs::write(
        &unit,
        text.replace(
            "/usr/bin/badgateway_exporter",
            env!("CARGO_BIN_EXE_badgateway_exporter"),
        ),
    )
    .unwrap();
    common::systemd_analyze_verify(&unit);

    let k = unit_keys(&text);
    let get = |key: &str| {
        k.get(key)
            .map(String::as_str)
            .unwrap_or_else(|| panic!("the unit sets no {key}"))
    };
    assert_eq!(get("User"), "badgateway_exporter");
    assert!(get("MemoryMax").ends_with('M'));
    assert!(get("OOMScoreAdjust").parse::<i32>().unwrap() < 0);
    assert_eq!(get("ProtectSystem"), "strict");
    assert!(["yes", "read-only", "tmpfs"].contains(&get("ProtectHome")));
    assert_eq!(get("NoNewPrivileges"), "yes");
    assert_eq!(get("PrivateTmp"), "yes");
    assert!(get("ReadOnlyPaths").contains("/var/log"));
    for key in ["CapabilityBoundingSet", "AmbientCapabilities"] {
        let mut got: Vec<&str> = get(key).split_whitespace().collect();
        got.sort();
        let mut want = CAPS.to_vec();
        want.sort();
        assert_eq!(got, want, "{key}");
    }
    // Settings that would hide /dev/kmsg from the kernel source.
    assert!(!k.contains_key("ProtectKernelLogs"));
    assert_ne!(k.get("PrivateDevices").map(String::as_str), Some("yes"));
    assert!(get("DeviceAllow").contains("/dev/kmsg"));

    // The environment file it reads sets the variable ExecStart expands,
    // and the sysusers file creates the user.
    assert!(get("EnvironmentFile").ends_with("/etc/default/badgateway_exporter"));
    assert!(get("ExecStart").contains("$BADGATEWAY_EXPORTER_ARGS"));
    let env = read("deploy/systemd/badgateway_exporter.env");
    let args = env
        .lines()
        .find_map(|l| l.strip_prefix("BADGATEWAY_EXPORTER_ARGS="))
        .expect("the env file sets BADGATEWAY_EXPORTER_ARGS");
    // Its flags are ones the binary takes.
    let flags: Vec<&str> = args.trim_matches('"').split_whitespace().collect();
    assert_flags_parse(&flags);
    assert!(read("deploy/systemd/badgateway_exporter.sysusers")
        .lines()
        .any(|l| l.starts_with("u badgateway_exporter ")));
}

#[test]
fn kubernetes_daemonset_reads_the_host_read_only_with_four_capabilities() {
    let ds = yaml("deploy/kubernetes/daemonset.yaml");
    assert_eq!(at(&ds, "kind").as_str(), Some("DaemonSet"));
    let spec = at(&ds, "spec.template.spec");
    assert_eq!(at(spec, "hostPID").as_bool(), Some(true));
    let c = at(spec, "containers.0");
    let sc = at(c, "securityContext");
    assert_ne!(sc.get("privileged").and_then(Value::as_bool), Some(true));
    assert_eq!(at(sc, "allowPrivilegeEscalation").as_bool(), Some(false));
    assert_eq!(at(sc, "readOnlyRootFilesystem").as_bool(), Some(true));
    assert_eq!(strings(at(sc, "capabilities.drop")), ["ALL"]);
    let mut add = strings(at(sc, "capabilities.add"));
    add.sort();
    let mut want: Vec<String> = CAPS
        .iter()
        .map(|c| c.trim_start_matches("CAP_").to_string())
        .collect();
    want.sort();
    assert_eq!(add, want);
    assert!(at(c, "resources.limits.memory").as_str().is_some());
    assert_eq!(
        at(c, "livenessProbe.httpGet.path").as_str(),
        Some("/healthz")
    );
    assert_eq!(at(c, "ports.0.containerPort").as_u64(), Some(9502));

    // /dev/kmsg and the nginx logs: host paths, mounted read-only.
    let volumes = at(spec, "volumes").as_sequence().unwrap();
    let mounts = at(c, "volumeMounts").as_sequence().unwrap();
    for (host, mount) in [
        ("/dev/kmsg", "/dev/kmsg"),
        ("/var/log/nginx", "/var/log/nginx"),
    ] {
        let vol = volumes
            .iter()
            .find(|v| at(v, "hostPath.path").as_str() == Some(host))
            .unwrap_or_else(|| panic!("no hostPath volume for {host}"));
        let name = at(vol, "name");
        let m = mounts
            .iter()
            .find(|m| at(m, "name") == name)
            .unwrap_or_else(|| panic!("{host} is not mounted"));
        assert_eq!(at(m, "mountPath").as_str(), Some(mount));
        assert_eq!(at(m, "readOnly").as_bool(), Some(true), "{host} read-only");
    }
    // The args it passes are flags the binary takes.
    let args = strings(at(c, "args"));
    assert_flags_parse(&args);
}

#[test]
fn kubernetes_service_and_servicemonitor_select_the_daemonset() {
    let ds = yaml("deploy/kubernetes/daemonset.yaml");
    let svc = yaml("deploy/kubernetes/service.yaml");
    let sm = yaml("deploy/kubernetes/servicemonitor.yaml");
    let pod_labels = at(&ds, "spec.template.metadata.labels");
    assert_eq!(at(&ds, "spec.selector.matchLabels"), pod_labels);
    assert_eq!(at(&svc, "kind").as_str(), Some("Service"));
    assert_eq!(at(&svc, "spec.selector"), pod_labels);
    let port = at(&svc, "spec.ports.0");
    assert_eq!(at(port, "port").as_u64(), Some(9502));
    let container_port = at(&ds, "spec.template.spec.containers.0.ports.0.name");
    assert_eq!(at(port, "targetPort"), container_port);

    assert_eq!(
        at(&sm, "apiVersion").as_str(),
        Some("monitoring.coreos.com/v1")
    );
    assert_eq!(at(&sm, "kind").as_str(), Some("ServiceMonitor"));
    assert_eq!(
        at(&sm, "spec.selector.matchLabels"),
        at(&svc, "metadata.labels")
    );
    assert_eq!(at(&sm, "spec.endpoints.0.port"), at(port, "name"));
    assert_eq!(at(&sm, "spec.endpoints.0.path").as_str(), Some("/metrics"));
    let ns = at(&svc, "metadata.namespace");
    assert_eq!(at(&ds, "metadata.namespace"), ns);
    assert!(strings(at(&sm, "spec.namespaceSelector.matchNames"))
        .contains(&ns.as_str().unwrap().to_string()));
}

#[test]
fn prometheus_scrape_configs_pass_promtool_and_match_the_web_config() {
    for f in ["scrape.yml", "scrape-tls-basic-auth.yml"] {
        let p = repo(&format!("deploy/prometheus/{f}"));
        let out = Command::new("promtool")
            .args(["check", "config"])
            .arg(&p)
            .output()
            .expect("promtool is not installed: run scripts/test.sh, which installs prometheus");
        assert!(
            out.status.success(),
            "{f}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let v = yaml(&format!("deploy/prometheus/{f}"));
        let target = at(&v, "scrape_configs.0.static_configs.0.targets.0");
        assert!(target.as_str().unwrap().ends_with(":9502"), "{f}");
    }
    let tls = yaml("deploy/prometheus/scrape-tls-basic-auth.yml");
    let job = at(&tls, "scrape_configs.0");
    assert_eq!(at(job, "scheme").as_str(), Some("https"));
    let user = at(job, "basic_auth.username").as_str().unwrap().to_string();
    // The exporter's side parses as a web config and has that user.
    let web = badgateway_exporter::web::WebConfig::load(&repo("deploy/prometheus/web-config.yml"))
        .expect("deploy/prometheus/web-config.yml is a valid web config");
    assert!(web.tls.is_some());
    let hash = web.users.get(&user).expect("the scrape config's user");
    assert!(bcrypt::verify("change-me", hash).unwrap());
}

#[test]
fn dockerfile_builds_in_stages_and_runs_unprivileged() {
    let text = read("Dockerfile");
    let instr: Vec<(String, String)> = text
        .replace("\\\n", " ")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (i, rest) = l.split_once(' ').unwrap_or((l, ""));
            (i.to_uppercase(), rest.trim().to_string())
        })
        .collect();
    let of = |name: &str| -> Vec<&str> {
        instr
            .iter()
            .filter(|(i, _)| i == name)
            .map(|(_, r)| r.as_str())
            .collect()
    };
    let froms = of("FROM");
    assert!(froms.len() >= 2, "multi-stage: {froms:?}");
    assert!(froms[0].contains(" AS build"), "{froms:?}");
    // The runtime stage copies the binary from the build stage, and is the
    // last stage: after its FROM come USER, EXPOSE and HEALTHCHECK.
    let last_from = instr.iter().rposition(|(i, _)| i == "FROM").unwrap();
    let runtime = &instr[last_from..];
    let runtime_of = |name: &str| {
        runtime
            .iter()
            .find(|(i, _)| i == name)
            .map(|(_, r)| r.as_str())
            .unwrap_or_else(|| panic!("no {name} in the runtime stage"))
    };
    assert!(runtime_of("COPY").starts_with("--from=build "));
    let user = runtime_of("USER");
    let uid: u32 = user
        .split(':')
        .next()
        .unwrap()
        .parse()
        .expect("numeric uid");
    assert_ne!(uid, 0, "runs as non-root");
    assert_eq!(runtime_of("EXPOSE"), "9502");
    let hc = runtime_of("HEALTHCHECK");
    assert!(hc.contains("\"healthcheck\""), "{hc}");
    assert!(runtime_of("ENTRYPOINT").contains("badgateway_exporter"));
    // What the build copies in is all the build needs, and .dockerignore
    // lets it through.
    let ignore = read(".dockerignore");
    for copied in of("COPY").iter().filter(|c| !c.starts_with("--from")) {
        for src in copied.split_whitespace().rev().skip(1) {
            assert!(repo(src).exists(), "COPY {src}: missing");
            let name = src.trim_end_matches('/');
            assert!(
                ignore
                    .lines()
                    .any(|l| l.trim_end_matches('/') == format!("!{name}")),
                ".dockerignore keeps {src} out"
            );
        }
    }
}
