//! The metric reference in docs/metrics.md stays true to the code.

use std::collections::BTreeSet;

fn documented() -> BTreeSet<String> {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/metrics.md"))
        .expect("docs/metrics.md exists");
    text.lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split('`').next())
        .filter(|n| n.starts_with("badgateway_") || n.starts_with("process_"))
        .map(str::to_string)
        .collect()
}

#[test]
fn every_exported_metric_is_documented() {
    let docs = documented();
    let missing: Vec<String> = badgateway_exporter::metrics::all()
        .map(|d| d.exposed_name())
        .filter(|n| !docs.contains(n))
        .collect();
    assert!(missing.is_empty(), "not in docs/metrics.md: {missing:?}");
}

#[test]
fn docs_list_no_metric_the_code_does_not_write() {
    let code: BTreeSet<String> = badgateway_exporter::metrics::all()
        .map(|d| d.exposed_name())
        .collect();
    let stale: Vec<String> = documented()
        .into_iter()
        .filter(|n| !code.contains(n))
        .collect();
    assert!(stale.is_empty(), "documented but not exported: {stale:?}");
}

#[test]
fn names_are_prefixed_and_unique() {
    let mut seen = BTreeSet::new();
    // The one exception: the client libraries' standard process families,
    // whose names dashboards for any exporter use.
    let standard = badgateway_exporter::metrics::process::METRICS;
    for d in badgateway_exporter::metrics::all() {
        assert!(
            d.name.starts_with("badgateway_")
                || (d.name.starts_with("process_") && standard.iter().any(|s| s.name == d.name)),
            "{}",
            d.name
        );
        assert!(seen.insert(d.name), "declared twice: {}", d.name);
        assert!(!d.labels.contains(&"pid"), "{} has a pid label", d.name);
    }
}
