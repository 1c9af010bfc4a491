//! The rule files of alerts/ and the dashboards of dashboards/, read as the
//! tests need them: rules with their expressions, every PromQL query of
//! every dashboard, and the metric selectors inside an expression.

use std::path::{Path, PathBuf};

use promql_parser::label::MatchOp;
use promql_parser::parser::{self, Expr};
use serde_json::Value;

/// Metrics and labels that the alerts, the runbook and the dashboards use
/// and the code does not export yet: the exit reasons, heartbeats, listen
/// queue and worker CPU of issue 9, the 502 causes of issue 10 and the
/// exporter's own cost of issue 12. Each entry is a metric and the labels
/// of it that are still missing (all of them for a new metric).
///
/// tests/lint.rs allows exactly these and fails for an entry the code has
/// come to export, so that the list empties as the issues land; the
/// pipeline test only parses the dashboard queries that use them.
pub const NOT_YET_EXPORTED: &[(&str, &[&str])] = &[];

/// Where each alert's `runbook_url` points, before `#anchor`: the one
/// `# runbook_url base:` line of alerts/alerts.yml (tools/runbook_urls.py).
pub fn runbook_base() -> String {
    let text = std::fs::read_to_string(repo_path("alerts/alerts.yml")).unwrap();
    let bases: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# runbook_url base: "))
        .collect();
    assert_eq!(bases.len(), 1, "alerts.yml: one '# runbook_url base:' line");
    bases[0].trim().to_string()
}

/// Metrics the rules read that Prometheus itself writes, not the exporter.
pub const PROMETHEUS_OWN: &[(&str, &[&str])] = &[("up", &["job", "instance"])];

pub fn repo_path(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// Files of `dir` (relative to the repository) whose names end in `ext`.
pub fn files(dir: &str, ext: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(repo_path(dir))
        .unwrap_or_else(|e| panic!("reading {dir}: {e}"))
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file() && p.to_string_lossy().ends_with(ext))
        .collect();
    v.sort();
    v
}

pub fn read_yaml(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_norway::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

pub fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The rule files Prometheus loads: alerts/*.yml (the promtool tests live
/// in alerts/tests/).
pub fn rule_files() -> Vec<PathBuf> {
    files("alerts", ".yml")
}

#[derive(Debug, Clone)]
pub struct Rule {
    pub file: String,
    pub group: String,
    /// The alert's name, or None for a recording rule.
    pub alert: Option<String>,
    pub record: Option<String>,
    pub expr: String,
    pub value: Value,
}

impl Rule {
    pub fn annotation(&self, key: &str) -> Option<&str> {
        self.value["annotations"][key].as_str()
    }
    pub fn label(&self, key: &str) -> Option<&str> {
        self.value["labels"][key].as_str()
    }
}

/// Every rule of every group of every rule file.
pub fn rules() -> Vec<Rule> {
    let mut out = Vec::new();
    for path in rule_files() {
        let file = path.file_name().unwrap().to_string_lossy().into_owned();
        let doc = read_yaml(&path);
        for g in doc["groups"].as_array().expect("groups") {
            let group = g["name"].as_str().expect("group name").to_string();
            for r in g["rules"].as_array().expect("rules") {
                out.push(Rule {
                    file: file.clone(),
                    group: group.clone(),
                    alert: r["alert"].as_str().map(str::to_string),
                    record: r["record"].as_str().map(str::to_string),
                    expr: r["expr"].as_str().expect("expr").to_string(),
                    value: r.clone(),
                });
            }
        }
    }
    out
}

pub fn alerts() -> Vec<Rule> {
    rules().into_iter().filter(|r| r.alert.is_some()).collect()
}

/// One PromQL query of a dashboard, as written (with Grafana's variables).
#[derive(Debug, Clone)]
pub struct Query {
    pub dashboard: String,
    /// The panel's title, or "annotation NAME" / "variable NAME".
    pub panel: String,
    pub panel_type: String,
    pub expr: String,
    pub instant: bool,
}

pub fn dashboards() -> Vec<(PathBuf, Value)> {
    files("dashboards", ".json")
        .into_iter()
        .map(|p| {
            let v = read_json(&p);
            (p, v)
        })
        .collect()
}

/// Panels of a dashboard, those inside collapsed rows included.
pub fn panels(d: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for p in d["panels"].as_array().into_iter().flatten() {
        out.push(p);
        for inner in p["panels"].as_array().into_iter().flatten() {
            out.push(inner);
        }
    }
    out
}

/// Every query of a dashboard: panel targets, annotations, and the metric
/// selector of each `label_values()` variable.
pub fn queries(d: &Value) -> Vec<Query> {
    let title = d["title"].as_str().unwrap_or("?").to_string();
    let mut out = Vec::new();
    for p in panels(d) {
        for t in p["targets"].as_array().into_iter().flatten() {
            out.push(Query {
                dashboard: title.clone(),
                panel: p["title"].as_str().unwrap_or("?").to_string(),
                panel_type: p["type"].as_str().unwrap_or("?").to_string(),
                expr: t["expr"].as_str().expect("target expr").to_string(),
                instant: t["instant"].as_bool().unwrap_or(false),
            });
        }
    }
    for a in d["annotations"]["list"].as_array().into_iter().flatten() {
        if let Some(e) = a["expr"].as_str() {
            out.push(Query {
                dashboard: title.clone(),
                panel: format!("annotation {}", a["name"].as_str().unwrap_or("?")),
                panel_type: "annotation".into(),
                expr: e.to_string(),
                instant: false,
            });
        }
    }
    for v in d["templating"]["list"].as_array().into_iter().flatten() {
        if v["type"] == "query" {
            let q = v["query"].as_str().expect("variable query as a string");
            out.push(Query {
                dashboard: title.clone(),
                panel: format!("variable {}", v["name"].as_str().unwrap_or("?")),
                panel_type: "variable".into(),
                expr: label_values_selector(q)
                    .unwrap_or_else(|| panic!("variable query is not label_values(): {q}")),
                instant: true,
            });
        }
    }
    out
}

/// The series selector of `label_values(SELECTOR, label)`.
pub fn label_values_selector(q: &str) -> Option<String> {
    let inner = q.trim().strip_prefix("label_values(")?.strip_suffix(')')?;
    let (sel, label) = inner.rsplit_once(',')?;
    (!label.trim().is_empty()).then(|| sel.trim().to_string())
}

/// Grafana's variables replaced by values, as Grafana would send the query.
pub fn substitute(expr: &str, vars: &[(&str, &str)]) -> String {
    let mut s = expr.to_string();
    // Longest names first: $__rate_interval before $__range, $pool before $p.
    let mut vars = vars.to_vec();
    vars.sort_by_key(|(k, _)| std::cmp::Reverse(k.len()));
    for (k, v) in vars {
        s = s
            .replace(&format!("${{{k}}}"), v)
            .replace(&format!("${k}"), v);
    }
    s
}

pub fn parse(expr: &str) -> Result<Expr, String> {
    parser::parse(expr)
}

/// A metric selector found in an expression, with the path of nodes above it.
#[derive(Debug, Clone)]
pub struct Selector {
    pub metric: String,
    /// (label, op, value) with op one of = != =~ !~.
    pub matchers: Vec<(String, &'static str, String)>,
    /// The range when the selector is a range vector.
    pub range: Option<std::time::Duration>,
    /// The function the range vector is an argument of, if any.
    pub range_function: Option<String>,
}

/// Every vector or range selector of `expr`.
pub fn selectors(expr: &Expr) -> Vec<Selector> {
    let mut out = Vec::new();
    walk(expr, None, &mut out);
    out
}

fn selector(vs: &promql_parser::parser::VectorSelector) -> Selector {
    let mut metric = vs.name.clone().unwrap_or_default();
    let mut matchers = Vec::new();
    for m in &vs.matchers.matchers {
        let op = match m.op {
            MatchOp::Equal => "=",
            MatchOp::NotEqual => "!=",
            MatchOp::Re(_) => "=~",
            MatchOp::NotRe(_) => "!~",
        };
        if m.name == "__name__" && op == "=" {
            metric = m.value.clone();
        } else {
            matchers.push((m.name.clone(), op, m.value.clone()));
        }
    }
    Selector {
        metric,
        matchers,
        range: None,
        range_function: None,
    }
}

fn walk(e: &Expr, call: Option<&str>, out: &mut Vec<Selector>) {
    match e {
        Expr::Aggregate(a) => {
            walk(&a.expr, None, out);
            if let Some(p) = &a.param {
                walk(p, None, out);
            }
        }
        Expr::Unary(u) => walk(&u.expr, None, out),
        Expr::Binary(b) => {
            walk(&b.lhs, None, out);
            walk(&b.rhs, None, out);
        }
        Expr::Paren(p) => walk(&p.expr, None, out),
        Expr::Subquery(s) => walk(&s.expr, None, out),
        Expr::VectorSelector(vs) => out.push(selector(vs)),
        Expr::MatrixSelector(ms) => {
            let mut s = selector(&ms.vs);
            s.range = Some(ms.range);
            s.range_function = call.map(str::to_string);
            out.push(s);
        }
        Expr::Call(c) => {
            for a in &c.args.args {
                walk(a, Some(c.func.name), out);
            }
        }
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::Extension(_) => {}
    }
}

/// The labels the code exports for `sample` (a family's exposed name, or a
/// histogram's `_bucket`/`_sum`/`_count`), or None if it exports no such
/// sample. `job` and `instance` are Prometheus's, `le` a bucket's.
pub fn exported_labels(sample: &str) -> Option<Vec<String>> {
    use badgateway_exporter::metrics::{all, Kind};
    for d in all() {
        let name = d.exposed_name();
        let mut labels: Vec<String> = d.labels.iter().map(|l| l.to_string()).collect();
        labels.extend(["job".to_string(), "instance".to_string()]);
        if sample == name && d.kind != Kind::Histogram {
            return Some(labels);
        }
        if d.kind == Kind::Histogram {
            if sample == format!("{name}_bucket") {
                labels.push("le".into());
                return Some(labels);
            }
            if sample == format!("{name}_sum") || sample == format!("{name}_count") {
                return Some(labels);
            }
        }
    }
    None
}

/// The labels of `metric` that NOT_YET_EXPORTED lists, if it lists it.
pub fn not_yet_exported(metric: &str) -> Option<&'static [&'static str]> {
    NOT_YET_EXPORTED
        .iter()
        .find(|(m, _)| *m == metric)
        .map(|(_, l)| *l)
}

/// Whether `s` needs a metric or label from NOT_YET_EXPORTED.
pub fn needs_future(s: &Selector) -> bool {
    match not_yet_exported(&s.metric) {
        None => false,
        Some(missing) => {
            exported_labels(&s.metric).is_none()
                || s.matchers
                    .iter()
                    .any(|(l, _, _)| missing.contains(&l.as_str()))
        }
    }
}
