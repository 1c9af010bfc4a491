//! The metric families, the product's API, and their encoding: one file
//! per source, each beside its table.
//!
//! Every exported family is declared once in a [`define_metrics!`] table;
//! an encoder can only write families declared there, and a test checks
//! that docs/metrics.md documents each of them. The encoders are plain
//! functions of what a source published; the snapshot calls them.

pub mod app_log;
pub mod exporter;
pub mod kernel;
pub mod nginx;
pub mod pools;
pub mod rules;

use std::collections::HashMap;
use std::fmt;

use prometheus_client::encoding::{
    DescriptorEncoder, EncodeCounterValue, EncodeGaugeValue, MetricEncoder,
};
use prometheus_client::metrics::exemplar::Exemplar;
use prometheus_client::metrics::MetricType;

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
        .copied()
}

/// Writes samples of one family, pairing values with the declared labels.
pub struct Family<'a> {
    enc: MetricEncoder<'a>,
    def: &'static MetricDef,
}

impl Family<'_> {
    fn labels<'v>(&self, values: &[&'v str]) -> Vec<(&'static str, &'v str)> {
        debug_assert_eq!(values.len(), self.def.labels.len(), "{}", self.def.name);
        self.def
            .labels
            .iter()
            .copied()
            .zip(values.iter().copied())
            .collect()
    }

    pub fn gauge(&mut self, labels: &[&str], v: impl EncodeGaugeValue) -> fmt::Result {
        let l = self.labels(labels);
        self.enc.encode_family(&l)?.encode_gauge(&v)
    }

    pub fn counter(&mut self, labels: &[&str], v: impl EncodeCounterValue) -> fmt::Result {
        let l = self.labels(labels);
        self.enc
            .encode_family(&l)?
            .encode_counter::<Vec<(String, String)>, _, f64>(&v, None)
    }

    /// `buckets` are (upper bound, count in that bucket alone), ending
    /// with +Inf; prometheus-client's encoder makes them cumulative.
    pub fn histogram(
        &mut self,
        labels: &[&str],
        sum: f64,
        count: u64,
        buckets: &[(f64, u64)],
    ) -> fmt::Result {
        let l = self.labels(labels);
        self.enc.encode_family(&l)?.encode_histogram(
            sum,
            count,
            buckets,
            None::<&HashMap<usize, Exemplar<Vec<(String, String)>, f64>>>,
        )
    }
}

/// Write one family: its descriptor, then whatever samples `f` writes.
pub fn family(
    enc: &mut DescriptorEncoder,
    def: &'static MetricDef,
    f: impl FnOnce(&mut Family<'_>) -> fmt::Result,
) -> fmt::Result {
    let ty = match def.kind {
        Kind::Gauge => MetricType::Gauge,
        Kind::Counter => MetricType::Counter,
        Kind::Histogram => MetricType::Histogram,
    };
    let enc = enc.encode_descriptor(def.name, def.help, None, ty)?;
    f(&mut Family { enc, def })
}
