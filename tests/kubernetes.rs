//! deploy/kubernetes as `kubectl apply -k` sends it: rendered by kustomize
//! (`kubectl kustomize`), validated against Kubernetes' schemas
//! (kubernetes-validate, from PyPI into target/k8s-venv by scripts/test.sh),
//! its PrometheusRule equal to alerts/*.yml as they are now and passing
//! promtool, its dashboard ConfigMaps equal to dashboards/*.json, and a
//! DaemonSet that sees the host: its network, /proc and /sys.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Deserialize;
use serde_norway::Value;

fn repo(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(p)
}

fn output(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e} (scripts/test.sh installs it)"));
    assert!(
        out.status.success(),
        "{cmd:?}:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The objects `kubectl apply -k deploy/kubernetes` would create.
fn rendered() -> (String, Vec<Value>) {
    let text = output(
        Command::new("kubectl")
            .arg("kustomize")
            .arg(repo("deploy/kubernetes")),
    );
    let docs = serde_norway::Deserializer::from_str(&text)
        .map(|d| Value::deserialize(d).expect("kustomize's output is YAML"))
        .filter(|v| !v.is_null())
        .collect();
    (text, docs)
}

fn kind_of(v: &Value) -> &str {
    v["kind"].as_str().unwrap_or("")
}

fn one<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    let found: Vec<&Value> = docs.iter().filter(|d| kind_of(d) == kind).collect();
    assert_eq!(found.len(), 1, "one {kind}");
    found[0]
}

fn files(dir: &str, ext: &str) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(repo(dir))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .collect();
    out.sort();
    out
}

const REGENERATE: &str = "deploy/kubernetes is out of date: run tools/gen_kubernetes.py";

#[test]
fn kustomize_renders_every_object_and_they_validate() {
    let (text, docs) = rendered();
    let mut kinds: Vec<&str> = docs.iter().map(kind_of).collect();
    kinds.sort();
    let dashboards = files("dashboards", "json");
    let mut want = vec!["DaemonSet", "PrometheusRule", "Service", "ServiceMonitor"];
    want.extend(dashboards.iter().map(|_| "ConfigMap"));
    want.sort();
    assert_eq!(kinds, want);
    for d in &docs {
        assert_eq!(
            d["metadata"]["namespace"].as_str(),
            Some("monitoring"),
            "{d:?}"
        );
    }

    // Kubernetes' own schemas, strictly (no field they do not define). The
    // operator's kinds have none there; promtool checks the rules below.
    let validate = repo("target/k8s-venv/bin/kubernetes-validate");
    let dir = tempfile::tempdir().unwrap();
    let all = dir.path().join("all.yaml");
    std::fs::write(&all, &text).unwrap();
    let said = output(Command::new(&validate).arg("--strict").arg(&all));
    for d in docs
        .iter()
        .filter(|d| !kind_of(d).ends_with("Monitor") && kind_of(d) != "PrometheusRule")
    {
        let name = format!(
            "{}/{}",
            kind_of(d).to_lowercase(),
            d["metadata"]["name"].as_str().unwrap()
        );
        assert!(
            said.lines()
                .any(|l| l.contains(&format!("passed for resource {name} "))),
            "{name} not validated:\n{said}"
        );
    }
    assert!(!said.contains("ERROR"), "{said}");
}

#[test]
fn the_prometheusrule_is_alerts_dir_and_passes_promtool() {
    let (_, docs) = rendered();
    let rule = one(&docs, "PrometheusRule");
    assert_eq!(
        rule["apiVersion"].as_str(),
        Some("monitoring.coreos.com/v1")
    );
    // alerts/*.yml as they are now, group by group.
    let mut groups: Vec<Value> = Vec::new();
    for f in files("alerts", "yml") {
        let v: Value = serde_norway::from_str(&std::fs::read_to_string(&f).unwrap()).unwrap();
        groups.extend(v["groups"].as_sequence().expect("groups").iter().cloned());
    }
    assert!(!groups.is_empty());
    let got = rule["spec"]["groups"].as_sequence().expect("spec.groups");
    assert_eq!(got.len(), groups.len(), "{REGENERATE}");
    for (g, w) in got.iter().zip(&groups) {
        assert_eq!(g, w, "group {:?}: {REGENERATE}", w["name"]);
    }
    // What the operator hands Prometheus, checked by promtool.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("rules.yml");
    let mut spec = serde_norway::Mapping::new();
    spec.insert("groups".into(), rule["spec"]["groups"].clone());
    std::fs::write(&file, serde_norway::to_string(&spec).unwrap()).unwrap();
    output(Command::new("promtool").args(["check", "rules"]).arg(&file));
}

#[test]
fn each_dashboard_is_a_configmap_for_the_grafana_sidecar() {
    let (_, docs) = rendered();
    let maps: Vec<&Value> = docs.iter().filter(|d| kind_of(d) == "ConfigMap").collect();
    for f in files("dashboards", "json") {
        let name = f.file_name().unwrap().to_str().unwrap();
        let m = maps
            .iter()
            .find(|m| m["data"].get(name).is_some())
            .unwrap_or_else(|| panic!("no ConfigMap holds {name}: {REGENERATE}"));
        assert_eq!(
            m["metadata"]["labels"]["grafana_dashboard"].as_str(),
            Some("1"),
            "{name}"
        );
        assert_eq!(
            m["data"][name].as_str().unwrap(),
            std::fs::read_to_string(&f).unwrap(),
            "{name}: {REGENERATE}"
        );
    }
}

#[test]
fn the_daemonset_sees_the_host_network_proc_and_sys() {
    let (_, docs) = rendered();
    let ds = one(&docs, "DaemonSet");
    let spec = &ds["spec"]["template"]["spec"];
    assert_eq!(spec["hostPID"].as_bool(), Some(true));
    assert_eq!(spec["hostNetwork"].as_bool(), Some(true));
    assert_eq!(spec["dnsPolicy"].as_str(), Some("ClusterFirstWithHostNet"));
    let c = &spec["containers"][0];
    // A registry path and a tag, never :latest.
    let image = c["image"].as_str().unwrap();
    let (path, tag) = image.rsplit_once(':').expect("a tag");
    assert!(
        path.starts_with("ghcr.io/") && path.ends_with("/badgateway_exporter"),
        "{image}"
    );
    assert_ne!(tag, "latest");
    let args: Vec<&str> = c["args"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    // The host's /proc and /sys, read-only where the flags point.
    for (host, flag) in [("/proc", "--path.procfs"), ("/sys", "--path.sysfs")] {
        let vol = spec["volumes"]
            .as_sequence()
            .unwrap()
            .iter()
            .find(|v| v["hostPath"]["path"].as_str() == Some(host))
            .unwrap_or_else(|| panic!("no hostPath volume of {host}"));
        let mount = c["volumeMounts"]
            .as_sequence()
            .unwrap()
            .iter()
            .find(|m| m["name"] == vol["name"])
            .unwrap_or_else(|| panic!("{host} not mounted"));
        assert_eq!(mount["readOnly"].as_bool(), Some(true), "{host}");
        let at = mount["mountPath"].as_str().unwrap();
        assert!(
            args.contains(&format!("{flag}={at}").as_str()),
            "{flag}={at} in {args:?}"
        );
    }
    // Flags the binary takes.
    let out = Command::new(env!("CARGO_BIN_EXE_badgateway_exporter"))
        .args(&args)
        .arg("--help")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
