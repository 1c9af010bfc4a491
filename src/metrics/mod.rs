//! The metric families, the product's API, and their encoding: one file
//! per source, each beside its table.
//!
//! Every exported family is declared once in a [`define_metrics!`] table;
//! an encoder can only write families declared there, and a test checks
//! that docs/metrics.md documents each of them. The encoders are plain
//! functions of what a source published; the snapshot calls them.
//!
//! [`Encoder`] writes each sample in the two formats scrapers ask for at
//! once: Prometheus' text format 0.0.4 (the default) and OpenMetrics 1.0
//! (for an `Accept` header that asks for it). They differ in small things:
//! a counter's HELP and TYPE name (`x_total` in text, `x` in OpenMetrics)
//! and the closing `# EOF`.

pub mod app_log;
pub mod exporter;
pub mod kernel;
pub mod nginx;
pub mod pools;
pub mod process;
pub mod rules;
pub mod server_status;

use std::fmt::{self, Write as _};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Gauge,
    Counter,
    Histogram,
}

/// One metric family: the product's API.
#[derive(Debug)]
pub struct MetricDef {
    /// The name without the `_total` suffix that OpenMetrics adds to counters.
    pub name: &'static str,
    pub kind: Kind,
    pub help: &'static str,
    pub labels: &'static [&'static str],
}

impl MetricDef {
    /// The sample name a user queries.
    pub fn exposed_name(&self) -> String {
        match self.kind {
            Kind::Counter => format!("{}_total", self.name),
            _ => self.name.to_string(),
        }
    }
}

/// Declare metric families and a table of them, one line each:
/// `IDENT: Kind, "name", ["label", ...], "help";`
macro_rules! define_metrics {
    ($table:ident; $( $id:ident : $kind:ident, $name:literal, [$($label:literal),*], $help:literal; )*) => {
        $( pub static $id: $crate::metrics::MetricDef = $crate::metrics::MetricDef {
            name: $name, kind: $crate::metrics::Kind::$kind, help: $help, labels: &[$($label),*],
        }; )*
        pub static $table: &[&$crate::metrics::MetricDef] = &[$(&$id),*];
    };
}
pub(crate) use define_metrics;

/// Every family the exporter can write, from every source.
pub fn all() -> impl Iterator<Item = &'static MetricDef> {
    exporter::METRICS
        .iter()
        .chain(pools::METRICS)
        .chain(kernel::METRICS)
        .chain(nginx::METRICS)
        .chain(rules::METRICS)
        .chain(app_log::METRICS)
        .chain(process::METRICS)
        .chain(server_status::METRICS)
        .copied()
}

/// A sample value, written the way both formats read it.
pub trait Value {
    fn write_to(&self, out: &mut String);
}

macro_rules! int_value {
    ($($t:ty),*) => {$(
        impl Value for $t {
            fn write_to(&self, out: &mut String) {
                let _ = write!(out, "{self}");
            }
        }
    )*};
}
int_value!(u64, i64, u32, i32, usize);

impl Value for f64 {
    fn write_to(&self, out: &mut String) {
        if self.is_nan() {
            out.push_str("NaN");
        } else if self.is_infinite() {
            out.push_str(if *self > 0.0 { "+Inf" } else { "-Inf" });
        } else {
            let _ = write!(out, "{self}");
        }
    }
}

/// Both expositions of one scrape, written side by side.
#[derive(Debug, Default)]
pub struct Encoder {
    text: String,
    openmetrics: String,
}

impl Encoder {
    pub fn with_capacity(bytes: usize) -> Encoder {
        Encoder {
            text: String::with_capacity(bytes),
            openmetrics: String::with_capacity(bytes),
        }
    }

    /// (text format 0.0.4, OpenMetrics 1.0).
    pub fn finish(mut self) -> (String, String) {
        self.openmetrics.push_str("# EOF\n");
        (self.text, self.openmetrics)
    }
}

/// Writes samples of one family, pairing values with the declared labels.
pub struct Family<'a> {
    enc: &'a mut Encoder,
    def: &'static MetricDef,
    /// `name{labels` of the sample being written, without the closing
    /// brace: shared by both formats.
    scratch: String,
}

impl Family<'_> {
    /// `suffix` goes after the family's name (`_total`, `_bucket`), `extra`
    /// is a label before the declared ones (`le`).
    fn sample(
        &mut self,
        suffix: &str,
        extra: Option<(&str, &str)>,
        labels: &[&str],
        v: &dyn Value,
    ) -> fmt::Result {
        debug_assert_eq!(labels.len(), self.def.labels.len(), "{}", self.def.name);
        let s = &mut self.scratch;
        s.clear();
        s.push_str(self.def.name);
        s.push_str(suffix);
        let pairs = extra
            .into_iter()
            .chain(self.def.labels.iter().copied().zip(labels.iter().copied()));
        let mut first = true;
        for (k, val) in pairs {
            s.push(if first { '{' } else { ',' });
            first = false;
            s.push_str(k);
            s.push_str("=\"");
            escape_label(val, s);
            s.push('"');
        }
        if !first {
            s.push('}');
        }
        s.push(' ');
        v.write_to(s);
        s.push('\n');
        self.enc.text.push_str(s);
        self.enc.openmetrics.push_str(s);
        Ok(())
    }

    pub fn gauge(&mut self, labels: &[&str], v: impl Value) -> fmt::Result {
        self.sample("", None, labels, &v)
    }

    pub fn counter(&mut self, labels: &[&str], v: impl Value) -> fmt::Result {
        self.sample("_total", None, labels, &v)
    }

    /// `buckets` are (upper bound, count in that bucket alone), ending
    /// with +Inf; they are written cumulative.
    pub fn histogram(
        &mut self,
        labels: &[&str],
        sum: f64,
        count: u64,
        buckets: &[(f64, u64)],
    ) -> fmt::Result {
        let mut le = String::new();
        let mut acc = 0;
        for (bound, n) in buckets {
            acc += n;
            le.clear();
            bound.write_to(&mut le);
            self.sample("_bucket", Some(("le", &le)), labels, &acc)?;
        }
        self.sample("_sum", None, labels, &sum)?;
        self.sample("_count", None, labels, &count)
    }
}

/// `\`, `"` and newlines escaped, as both formats want label values.
fn escape_label(v: &str, out: &mut String) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// `\` and newlines escaped, as HELP texts want.
fn escape_help(v: &str, out: &mut String) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// Write one family: its HELP and TYPE, then whatever samples `f` writes.
pub fn family(
    enc: &mut Encoder,
    def: &'static MetricDef,
    f: impl FnOnce(&mut Family<'_>) -> fmt::Result,
) -> fmt::Result {
    let ty = match def.kind {
        Kind::Gauge => "gauge",
        Kind::Counter => "counter",
        Kind::Histogram => "histogram",
    };
    // The text format names a counter's family by its samples' name;
    // OpenMetrics by the name without `_total`.
    for (out, name) in [
        (&mut enc.text, def.exposed_name()),
        (&mut enc.openmetrics, def.name.to_string()),
    ] {
        let _ = write!(out, "# HELP {name} ");
        escape_help(def.help, out);
        let _ = writeln!(out, "\n# TYPE {name} {ty}");
    }
    f(&mut Family {
        enc,
        def,
        scratch: String::with_capacity(128),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    define_metrics! { TEST_METRICS;
        UP: Gauge, "badgateway_test_up", [], "Up.";
        HITS: Counter, "badgateway_test_hits", ["pool"], "Hits, with a \\ and\na newline.";
        SECONDS: Histogram, "badgateway_test_seconds", ["pool"], "Seconds.";
    }

    #[test]
    fn both_formats_at_once() {
        let mut enc = Encoder::default();
        family(&mut enc, &UP, |f| f.gauge(&[], 1)).unwrap();
        family(&mut enc, &HITS, |f| f.counter(&["a\"b\\c\nd"], 2.5)).unwrap();
        family(&mut enc, &SECONDS, |f| {
            f.histogram(&["x"], 1.5, 3, &[(0.5, 1), (1.0, 0), (f64::INFINITY, 2)])
        })
        .unwrap();
        let (text, om) = enc.finish();
        assert_eq!(
            text,
            concat!(
                "# HELP badgateway_test_up Up.\n",
                "# TYPE badgateway_test_up gauge\n",
                "badgateway_test_up 1\n",
                "# HELP badgateway_test_hits_total Hits, with a \\\\ and\\na newline.\n",
                "# TYPE badgateway_test_hits_total counter\n",
                "badgateway_test_hits_total{pool=\"a\\\"b\\\\c\\nd\"} 2.5\n",
                "# HELP badgateway_test_seconds Seconds.\n",
                "# TYPE badgateway_test_seconds histogram\n",
                "badgateway_test_seconds_bucket{le=\"0.5\",pool=\"x\"} 1\n",
                "badgateway_test_seconds_bucket{le=\"1\",pool=\"x\"} 1\n",
                "badgateway_test_seconds_bucket{le=\"+Inf\",pool=\"x\"} 3\n",
                "badgateway_test_seconds_sum{pool=\"x\"} 1.5\n",
                "badgateway_test_seconds_count{pool=\"x\"} 3\n",
            )
        );
        assert!(om.starts_with("# HELP badgateway_test_up Up.\n"));
        assert!(om.contains("# TYPE badgateway_test_hits counter\nbadgateway_test_hits_total{"));
        assert!(om.ends_with("badgateway_test_seconds_count{pool=\"x\"} 3\n# EOF\n"));
        assert_eq!(TEST_METRICS.len(), 3);
    }
}
