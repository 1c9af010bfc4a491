//! The conventions of the shipped alerts and dashboards, written as tests
//! since the Go linters (mixtool lint, grafana/dashboard-linter) cannot be
//! installed here; and the alerts, runbook and dashboards kept true to the
//! code and to each other.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::shipped::*;

/// What `$__rate_interval` becomes while linting, so a rate's range can be
/// told apart from a literal one.
const RATE_INTERVAL_MAGIC: &str = "7777s";

/// Grafana's units, as grafana/dashboard-linter lists them (the ones a
/// dashboard of ours could use).
const UNITS: &[&str] = &[
    "none",
    "short",
    "percent",
    "percentunit",
    "bytes",
    "decbytes",
    "bits",
    "s",
    "ms",
    "µs",
    "ns",
    "m",
    "h",
    "d",
    "dtdurations",
    "reqps",
    "rps",
    "ops",
    "cps",
    "wps",
    "iops",
    "Bps",
    "binBps",
    "bool",
    "bool_yes_no",
    "bool_on_off",
    "dateTimeAsIso",
    "dateTimeFromNow",
];

fn is_camel_case(s: &str) -> bool {
    s.chars().next().is_some_and(|c| c.is_ascii_uppercase())
        && s.chars().all(|c| c.is_ascii_alphanumeric())
        && s.chars().any(|c| c.is_ascii_lowercase())
}

/// Names recorded by the rule files.
fn recorded() -> BTreeSet<String> {
    rules().into_iter().filter_map(|r| r.record).collect()
}

/// Problems with the metrics and labels `expr` selects: a metric the code
/// does not export (nor NOT_YET_EXPORTED, nor a recording rule), or a label
/// matcher on a label the metric does not have.
fn untrue_selectors(expr: &str, recorded: &BTreeSet<String>) -> Vec<String> {
    let parsed = match parse(expr) {
        Ok(e) => e,
        Err(e) => return vec![format!("does not parse: {e}")],
    };
    let mut out = Vec::new();
    for s in selectors(&parsed) {
        if recorded.contains(&s.metric) {
            continue;
        }
        let mut labels = exported_labels(&s.metric).or_else(|| {
            PROMETHEUS_OWN
                .iter()
                .find(|(m, _)| *m == s.metric)
                .map(|(_, l)| l.iter().map(|l| l.to_string()).collect())
        });
        if let Some(missing) = not_yet_exported(&s.metric) {
            let l = labels.get_or_insert_with(|| vec!["job".into(), "instance".into()]);
            l.extend(missing.iter().map(|m| m.to_string()));
        }
        let Some(labels) = labels else {
            out.push(format!("{} is not exported by the code", s.metric));
            continue;
        };
        for (l, _, _) in &s.matchers {
            if !labels.contains(l) {
                out.push(format!("{} has no label {l}", s.metric));
            }
        }
    }
    out
}

// ---------------------------------------------------------------- alerts

#[test]
fn alerts_follow_the_mixin_conventions() {
    let alerts = alerts();
    assert!(alerts.len() >= 13, "{} alerts", alerts.len());
    let mut errors = Vec::new();
    let mut names = BTreeSet::new();
    for a in &alerts {
        let name = a.alert.as_deref().unwrap();
        let mut err = |m: String| errors.push(format!("{name} ({}): {m}", a.file));
        if !names.insert(name.to_string()) {
            err("defined twice".into());
        }
        if !is_camel_case(name) {
            err("name is not CamelCase".into());
        }
        if name.len() > 40 {
            err(format!("name is {} characters, over 40", name.len()));
        }
        match a.label("severity") {
            Some("critical" | "warning") => {}
            other => err(format!("severity {other:?}, not critical or warning")),
        }
        if !name.starts_with("BadGateway") {
            err("name does not start with the one prefix, BadGateway".into());
        }
        match a.annotation("summary") {
            None => err("no summary".into()),
            Some(s) => {
                if s.contains("{{") {
                    err("summary is templated".into());
                }
                if !s.chars().next().is_some_and(|c| c.is_uppercase()) {
                    err("summary does not start with a capital".into());
                }
                if !s.ends_with('.') {
                    err("summary does not end with a full stop".into());
                }
            }
        }
        match a.annotation("description") {
            Some(d) if d.contains("$value") || d.contains("$labels") => {}
            other => err(format!("description not templated with values: {other:?}")),
        }
        let want = format!("{}#{}", runbook_base(), name.to_lowercase());
        if a.annotation("runbook_url") != Some(want.as_str()) {
            err(format!(
                "runbook_url {:?}, want {want}",
                a.annotation("runbook_url")
            ));
        }
    }
    assert!(errors.is_empty(), "{}", errors.join("\n"));
}

/// The critical alerts alerts/README.md lists under its severity rule:
/// the lines `- CRITICAL: Name` of its "Severity" section.
fn readme_critical_alerts() -> BTreeSet<String> {
    let text = std::fs::read_to_string(repo_path("alerts/README.md")).unwrap();
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("- critical: "))
        .map(|n| n.trim_matches('`').to_string())
        .collect()
}

#[test]
fn severities_follow_the_rule_in_alerts_readme() {
    // Critical pages only for failed requests and pools down or stopped;
    // everything else is a warning (a ticket).
    let listed = readme_critical_alerts();
    assert!(
        !listed.is_empty(),
        "alerts/README.md lists no `- critical: Name` lines"
    );
    let critical: BTreeSet<String> = alerts()
        .into_iter()
        .filter(|a| a.label("severity") == Some("critical"))
        .map(|a| a.alert.unwrap())
        .collect();
    assert_eq!(
        critical, listed,
        "the critical alerts of alerts.yml and those alerts/README.md lists"
    );
    for a in alerts() {
        let name = a.alert.clone().unwrap();
        let sev = a.label("severity").unwrap_or("");
        assert!(
            sev == "warning" || listed.contains(&name),
            "{name}: severity {sev}"
        );
        // What pages is about requests or whole pools, by its name.
        if sev == "critical" {
            assert!(
                name.contains("Burst")
                    || name.starts_with("BadGatewayPool") && !name.contains("Memory"),
                "{name} is critical but neither a failed-request burst nor a pool down or stopped"
            );
        }
    }
}

/// Each threshold's default in thresholds.yml: `vector(V)` without a
/// `pool` label.
fn threshold_defaults() -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    let re = regex::Regex::new(r"^vector\(([0-9.]+)\)$").unwrap();
    for r in rules().into_iter().filter(|r| r.file == "thresholds.yml") {
        if r.label("pool").is_some() {
            continue;
        }
        let name = r.record.clone().unwrap();
        let name = name
            .strip_prefix("badgateway:threshold:")
            .unwrap()
            .to_string();
        let v = re
            .captures(r.expr.trim())
            .unwrap_or_else(|| panic!("{name}: expr {:?} is not vector(NUMBER)", r.expr))[1]
            .parse()
            .unwrap();
        out.insert(name, v);
    }
    out
}

#[test]
fn every_default_agrees_in_thresholds_alerts_readmes_and_runbook() {
    let defaults = threshold_defaults();
    assert!(defaults.len() >= 8, "{defaults:?}");
    let mut errors = Vec::new();

    // alerts.yml: the fallback written after each threshold it reads.
    let fallback = regex::Regex::new(
        r"badgateway:threshold:([a-z_]+)(?:\{[^}]*\})?\s+or\s+on\s*\(\)\s+vector\(([0-9.]+)\)",
    )
    .unwrap();
    let mut with_fallback = BTreeSet::new();
    for a in alerts() {
        let name = a.alert.clone().unwrap();
        let reads: BTreeSet<String> = selectors(&parse(&a.expr).unwrap())
            .iter()
            .filter_map(|s| {
                s.metric
                    .strip_prefix("badgateway:threshold:")
                    .map(str::to_string)
            })
            .collect();
        let mut fell_back = BTreeSet::new();
        for c in fallback.captures_iter(&a.expr) {
            let (t, v): (&str, f64) = (&c[1], c[2].parse().unwrap());
            match defaults.get(t) {
                Some(d) if *d == v => {}
                d => errors.push(format!(
                    "{name}: {t} falls back to {v}, thresholds.yml has {d:?}"
                )),
            }
            fell_back.insert(t.to_string());
            with_fallback.insert(t.to_string());
        }
        for t in reads.difference(&fell_back) {
            errors.push(format!(
                "{name}: reads {t} without a default (`or on () vector(V)`)"
            ));
        }
    }
    for t in defaults.keys() {
        if !with_fallback.contains(t) {
            errors.push(format!("{t}: no alert falls back to it"));
        }
    }

    // alerts/README.md and the runbook: "threshold `NAME`, default V".
    let said = regex::Regex::new(r"threshold\s+`([a-z_]+)`,\s+default\s+([0-9.]+)").unwrap();
    for doc in ["alerts/README.md", "docs/runbook.md"] {
        let text = std::fs::read_to_string(repo_path(doc)).unwrap();
        let mut seen = BTreeSet::new();
        for c in said.captures_iter(&text) {
            let (t, v): (&str, f64) = (&c[1], c[2].parse().unwrap());
            match defaults.get(t) {
                Some(d) if *d == v => {}
                d => errors.push(format!("{doc}: {t} default {v}, thresholds.yml has {d:?}")),
            }
            seen.insert(t.to_string());
        }
        for t in defaults.keys().filter(|t| !seen.contains(*t)) {
            errors.push(format!(
                "{doc}: never gives threshold `{t}` with its default"
            ));
        }
    }

    // README.md: a `record:` of a threshold followed by its `expr:`, with
    // no `labels:` (an override), shows the default.
    let text = std::fs::read_to_string(repo_path("README.md")).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let rec = regex::Regex::new(r"record: badgateway:threshold:([a-z_]+)").unwrap();
    let expr = regex::Regex::new(r"expr: vector\(([0-9.]+)\)").unwrap();
    let mut shown = 0;
    for (i, l) in lines.iter().enumerate() {
        let Some(c) = rec.captures(l) else { continue };
        let override_ = lines[i + 1..].iter().take(3).any(|l| l.contains("labels:"));
        let Some(v) = lines.get(i + 1).and_then(|n| expr.captures(n)) else {
            continue;
        };
        if override_ {
            continue;
        }
        let v: f64 = v[1].parse().unwrap();
        shown += 1;
        if defaults.get(&c[1]) != Some(&v) {
            errors.push(format!(
                "README.md line {}: {} shown as {v}, thresholds.yml has {:?}",
                i + 2,
                &c[1],
                defaults.get(&c[1])
            ));
        }
    }
    assert!(shown > 0, "README.md shows no threshold's default");
    assert!(errors.is_empty(), "{}", errors.join("\n"));
}

#[test]
fn rule_groups_are_small_and_uniquely_named() {
    let mut per_group: BTreeMap<String, usize> = BTreeMap::new();
    for r in rules() {
        *per_group.entry(r.group).or_default() += 1;
    }
    let mut seen = BTreeSet::new();
    for path in rule_files() {
        for g in read_yaml(&path)["groups"].as_array().unwrap() {
            let n = g["name"].as_str().unwrap();
            assert!(seen.insert(n.to_string()), "group {n} defined twice");
            assert!(
                n.starts_with("badgateway-"),
                "group {n} is not prefixed badgateway-"
            );
        }
    }
    for (g, n) in per_group {
        assert!(n <= 20, "group {g} has {n} rules, over 20");
    }
}

#[test]
fn rules_parse_use_no_delta_and_select_what_the_code_exports() {
    let recorded = recorded();
    let mut errors = Vec::new();
    for r in rules() {
        let name = r.alert.clone().or(r.record.clone()).unwrap();
        for e in untrue_selectors(&r.expr, &recorded) {
            errors.push(format!("{name}: {e}"));
        }
        if r.expr.contains("delta(") {
            errors.push(format!(
                "{name}: delta()/idelta() on a counter; use increase() or rate()"
            ));
        }
        // Counters only through rate()/increase(), which carry over resets.
        if let Ok(e) = parse(&r.expr) {
            for s in selectors(&e) {
                if s.metric.ends_with("_total")
                    && s.range.is_some()
                    && !matches!(s.range_function.as_deref(), Some("rate" | "increase"))
                {
                    errors.push(format!(
                        "{name}: {} in {:?}, not rate() or increase()",
                        s.metric, s.range_function
                    ));
                }
            }
        }
    }
    assert!(errors.is_empty(), "{}", errors.join("\n"));
}

#[test]
fn every_threshold_is_defined_once_in_thresholds_yml_and_used() {
    let defined: Vec<String> = rules()
        .into_iter()
        .filter(|r| r.file == "thresholds.yml" && r.label("pool").is_none())
        .map(|r| r.record.expect("thresholds.yml holds recording rules only"))
        .collect();
    let set: BTreeSet<&String> = defined.iter().collect();
    assert_eq!(set.len(), defined.len(), "a threshold defined twice");
    let mut used = BTreeSet::new();
    for r in rules().into_iter().filter(|r| r.file != "thresholds.yml") {
        for s in selectors(&parse(&r.expr).unwrap()) {
            if s.metric.starts_with("badgateway:threshold:") {
                used.insert(s.metric.clone());
            }
        }
    }
    for t in &defined {
        assert!(used.contains(t), "{t} is defined but no alert uses it");
    }
    for t in &used {
        assert!(set.contains(t), "{t} is used but not in thresholds.yml");
    }
}

#[test]
fn every_alert_has_a_firing_and_a_quiet_promtool_test() {
    let mut firing = BTreeSet::new();
    let mut quiet = BTreeSet::new();
    // Firing with alerts.yml loaded alone: no thresholds.yml, no
    // recording.yml.
    let mut firing_alone = BTreeSet::new();
    for path in files("alerts/tests", ".test.yml") {
        let doc = read_yaml(&path);
        let alone = doc["rule_files"] == serde_json::json!(["../alerts.yml"]);
        for t in doc["tests"].as_array().unwrap() {
            for a in t["alert_rule_test"].as_array().into_iter().flatten() {
                let name = a["alertname"].as_str().unwrap().to_string();
                let exp = a["exp_alerts"].as_array().map_or(0, Vec::len);
                if exp > 0 {
                    // Exact annotations, all three.
                    for e in a["exp_alerts"].as_array().unwrap() {
                        for k in ["summary", "description", "runbook_url"] {
                            assert!(
                                e["exp_annotations"][k].is_string(),
                                "{name} in {}: exp_annotations lacks {k}",
                                path.display()
                            );
                        }
                    }
                    if alone {
                        firing_alone.insert(name.clone());
                    }
                    firing.insert(name);
                } else {
                    quiet.insert(name);
                }
            }
        }
    }
    for a in alerts() {
        let name = a.alert.unwrap();
        assert!(firing.contains(&name), "{name} has no firing promtool test");
        assert!(quiet.contains(&name), "{name} has no quiet promtool test");
        let reads_threshold = selectors(&parse(&a.expr).unwrap())
            .iter()
            .any(|s| s.metric.starts_with("badgateway:threshold:"));
        assert!(
            !reads_threshold || firing_alone.contains(&name),
            "{name} reads a threshold and has no firing test with alerts.yml loaded alone"
        );
    }
}

// --------------------------------------------------------------- runbook

/// The runbook's `## Name` sections whose title is one CamelCase word.
fn runbook_sections() -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(repo_path("docs/runbook.md")).unwrap();
    let mut out = BTreeMap::new();
    let mut current: Option<(String, String)> = None;
    for line in text.lines() {
        if let Some(h) = line.strip_prefix("## ") {
            if let Some((n, body)) = current.take() {
                out.insert(n, body);
            }
            if is_camel_case(h.trim()) {
                current = Some((h.trim().to_string(), String::new()));
            }
        } else if let Some((_, body)) = current.as_mut() {
            body.push_str(line);
            body.push('\n');
        }
    }
    if let Some((n, body)) = current {
        out.insert(n, body);
    }
    out
}

#[test]
fn every_alert_has_its_runbook_section_and_every_section_its_alert() {
    let sections = runbook_sections();
    let alerts: BTreeSet<String> = alerts().into_iter().filter_map(|a| a.alert).collect();
    for a in &alerts {
        let body = sections
            .get(a)
            .unwrap_or_else(|| panic!("docs/runbook.md has no section ## {a}"));
        for part in [
            "**What it means.**",
            "**Confirm.**",
            "**Recover",
            "**Escalate",
        ] {
            assert!(body.contains(part), "runbook section {a} lacks {part}");
        }
        assert!(
            body.contains("badgateway_exporter diagnose"),
            "runbook section {a} does not give the diagnose call"
        );
        assert!(
            body.contains("```sh"),
            "runbook section {a} gives no commands"
        );
    }
    for s in sections.keys() {
        assert!(alerts.contains(s), "runbook section ## {s} has no alert");
    }
}

#[test]
fn the_runbook_names_only_metrics_that_exist() {
    let text = std::fs::read_to_string(repo_path("docs/runbook.md")).unwrap();
    let recorded = recorded();
    let re = regex::Regex::new(r"badgateway_[a-z0-9_]+").unwrap();
    for m in re.find_iter(&text).map(|m| m.as_str()) {
        if m == "badgateway_exporter" {
            continue; // the binary and its unit
        }
        assert!(
            exported_labels(m).is_some() || not_yet_exported(m).is_some() || recorded.contains(m),
            "docs/runbook.md names {m}, which nothing exports"
        );
    }
}

#[test]
fn not_yet_exported_lists_only_what_the_code_lacks() {
    for (metric, missing) in NOT_YET_EXPORTED {
        if let Some(labels) = exported_labels(metric) {
            let still: Vec<_> = missing
                .iter()
                .filter(|l| !labels.contains(&l.to_string()))
                .collect();
            assert!(
                !still.is_empty(),
                "{metric} is exported with {missing:?} now: remove it from NOT_YET_EXPORTED in tests/common/shipped.rs"
            );
        }
    }
}

// ------------------------------------------------------------ dashboards

#[test]
fn dashboards_are_what_the_generator_writes() {
    let python = dashboard_python();
    let out = std::process::Command::new(&python)
        .arg(repo_path("tools/gen_dashboards.py"))
        .arg("--check")
        .output()
        .unwrap_or_else(|e| panic!("running {} tools/gen_dashboards.py: {e}", python.display()));
    assert!(
        out.status.success(),
        "{}run tools/gen_dashboards.py and commit its output",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The Python with grafana-foundation-sdk that scripts/test.sh installs
/// under target/ and names in BADGATEWAY_DASHBOARD_PYTHON.
fn dashboard_python() -> std::path::PathBuf {
    let p = std::env::var_os("BADGATEWAY_DASHBOARD_PYTHON")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| repo_path("target/dashboard-venv/bin/python"));
    assert!(
        p.exists(),
        "{} is missing: run scripts/test.sh, which installs grafana-foundation-sdk into target/dashboard-venv",
        p.display()
    );
    p
}

fn lint_expr(expr: &str) -> String {
    substitute(
        expr,
        &[
            ("__rate_interval", RATE_INTERVAL_MAGIC),
            ("__range", "1h"),
            ("__interval", "1m"),
        ],
    )
}

#[test]
fn dashboards_follow_the_dashboard_linter_rules() {
    let boards = dashboards();
    assert!(boards.len() >= 2, "{} dashboards", boards.len());
    let magic = Duration::from_secs(7777);
    let recorded = recorded();
    let mut uids = BTreeSet::new();
    let mut errors = Vec::new();
    for (path, d) in &boards {
        let file = path.file_name().unwrap().to_string_lossy().into_owned();
        let mut err = |m: String| errors.push(format!("{file}: {m}"));
        let uid = d["uid"].as_str().unwrap_or("");
        if uid.is_empty() || !uids.insert(uid.to_string()) {
            err(format!("uid {uid:?} missing or not unique"));
        }
        if d["title"].as_str().unwrap_or("").is_empty() {
            err("no title".into());
        }
        if d["editable"] != false {
            err("editable: it should be false (provisioned from files)".into());
        }

        // Variables: one datasource, and job/instance/pool as the linter wants.
        let vars = d["templating"]["list"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let ds: Vec<_> = vars.iter().filter(|v| v["type"] == "datasource").collect();
        if ds.len() != 1
            || ds[0]["name"] != "datasource"
            || ds[0]["query"] != "prometheus"
            || ds[0]["label"] != "Data source"
        {
            err("needs exactly one datasource variable named datasource (prometheus, \"Data source\")".into());
        }
        for name in ["job", "instance", "pool"] {
            let Some(v) = vars.iter().find(|v| v["name"] == name) else {
                err(format!("no {name} variable"));
                continue;
            };
            let title = format!("{}{}", name[..1].to_uppercase(), &name[1..]);
            if v["type"] != "query"
                || v["datasource"]["uid"] != "$datasource"
                || v["label"] != title.as_str()
                || v["multi"] != true
                || v["includeAll"] != true
                || v["allValue"] != ".+"
            {
                err(format!(
                    "variable {name}: a multi-select query on $datasource labelled {title}, with All = .+"
                ));
            }
        }
        for v in vars.iter().filter(|v| v["type"] == "query") {
            if v["refresh"] != 2 {
                err(format!(
                    "variable {}: refresh on time range change (2)",
                    v["name"]
                ));
            }
        }

        // Panels, each with its own title.
        let mut titles = BTreeSet::new();
        for p in panels(d) {
            if p["type"] != "row" && !titles.insert(p["title"].as_str().unwrap_or("")) {
                err(format!("two panels titled {}", p["title"]));
            }
        }
        for p in panels(d) {
            let title = p["title"].as_str().unwrap_or("");
            let mut perr = |m: String| err(format!("panel {title:?}: {m}"));
            if title.is_empty() {
                perr("no title".into());
            }
            // Grafana's rows have no description; their title says it.
            if p["type"] == "row" {
                continue;
            }
            if p["description"].as_str().unwrap_or("").is_empty() {
                perr("no description".into());
            }
            if p["datasource"]["uid"] != "$datasource" {
                perr("does not use $datasource".into());
            }
            let unit = p["fieldConfig"]["defaults"]["unit"].as_str().unwrap_or("");
            if !UNITS.contains(&unit) {
                perr(format!("no or unknown unit {unit:?}"));
            }
            let targets = p["targets"].as_array().cloned().unwrap_or_default();
            if targets.is_empty() {
                perr("no targets".into());
            }
            for t in &targets {
                if t["datasource"]["uid"] != "$datasource" {
                    perr("a target does not use $datasource".into());
                }
            }
        }

        // Queries: panels, annotations and variables.
        for a in d["annotations"]["list"].as_array().into_iter().flatten() {
            if a["datasource"]["uid"] != "$datasource" {
                err(format!("annotation {}: not on $datasource", a["name"]));
            }
        }
        for q in queries(d) {
            let at = format!("{} {:?}", q.panel_type, q.panel);
            let expr = lint_expr(&q.expr);
            let parsed = match parse(&expr) {
                Ok(p) => p,
                Err(e) => {
                    err(format!("{at}: does not parse: {e}\n{expr}"));
                    continue;
                }
            };
            for e in untrue_selectors(&expr, &recorded) {
                err(format!("{at}: {e}"));
            }
            for s in selectors(&parsed) {
                let has = |l: &str, v: &str| {
                    s.matchers
                        .iter()
                        .any(|(ml, op, mv)| ml == l && *op == "=~" && mv == v)
                };
                if q.panel_type != "variable"
                    && (!has("job", "$job") || !has("instance", "$instance"))
                {
                    err(format!(
                        "{at}: {} lacks job=~\"$job\" and instance=~\"$instance\"",
                        s.metric
                    ));
                }
                let pool_label = exported_labels(&s.metric)
                    .is_some_and(|l| l.contains(&"pool".to_string()))
                    || not_yet_exported(&s.metric).is_some_and(|l| l.contains(&"pool"))
                    || recorded.contains(&s.metric) && s.metric.contains("pool");
                if pool_label && q.panel_type != "variable" && !has("pool", "$pool") {
                    err(format!("{at}: {} lacks pool=~\"$pool\"", s.metric));
                }
                if matches!(s.range_function.as_deref(), Some("rate" | "irate"))
                    && s.range != Some(magic)
                {
                    err(format!(
                        "{at}: rate of {} without $__rate_interval",
                        s.metric
                    ));
                }
                if s.metric.ends_with("_total")
                    && !(s.range.is_some()
                        && matches!(
                            s.range_function.as_deref(),
                            Some("rate" | "irate" | "increase")
                        ))
                    && q.panel_type != "variable"
                {
                    err(format!(
                        "{at}: counter {} not in rate() or increase()",
                        s.metric
                    ));
                }
            }
        }
    }
    assert!(errors.is_empty(), "{}", errors.join("\n"));
}

#[test]
fn the_provisioning_example_points_at_prometheus_and_the_dashboards() {
    let ds = read_yaml(&repo_path("dashboards/provisioning/datasource.yml"));
    assert_eq!(ds["apiVersion"], 1);
    let d = &ds["datasources"][0];
    assert_eq!(d["type"], "prometheus", "{ds}");
    assert!(
        d["url"].as_str().is_some_and(|u| u.starts_with("http")),
        "{ds}"
    );

    let prov = read_yaml(&repo_path("dashboards/provisioning/dashboards.yml"));
    assert_eq!(prov["apiVersion"], 1);
    let p = &prov["providers"][0];
    assert_eq!(p["type"], "file", "{prov}");
    assert!(
        p["options"]["path"]
            .as_str()
            .is_some_and(|x| x.starts_with('/')),
        "{prov}"
    );
}
