//! `/api/v1/timeline`: the status page's hour as JSON, for plotting it
//! elsewhere. Bounded like the history it is made from: sixty minutes, at
//! most `MARKS_CAP` marks, `MAX_POOLS` pools of `MAX_SLOTS` slots.
//! docs/status-page.md describes every field.

use serde::Serialize;

use super::{worker_share, Page};
use crate::diagnose::rfc3339;
use crate::state::history::{Dropped, MINUTES};

/// The version of this document's shape.
pub const SCHEMA: u32 = 1;

#[derive(Serialize)]
pub struct Timeline<'a> {
    pub schema: u32,
    pub generated_at: String,
    pub minute_seconds: u32,
    /// Oldest first.
    pub minutes: Vec<Minute>,
    /// In time order.
    pub marks: Vec<MarkJson<'a>>,
    pub pools: Vec<PoolJson<'a>>,
    pub dropped: DroppedJson,
}

#[derive(Serialize)]
pub struct Minute {
    pub start: String,
    pub start_unix: u64,
    pub failed: Vec<Failed>,
}

#[derive(Serialize)]
pub struct Failed {
    pub status: u16,
    pub cause: &'static str,
    pub count: u32,
}

#[derive(Serialize)]
pub struct MarkJson<'a> {
    pub at: String,
    pub at_unix: f64,
    pub kind: &'static str,
    pub reason: Option<&'static str>,
    pub pool: Option<&'a str>,
    pub pid: i32,
    pub slot: Option<usize>,
    pub memory_bytes: Option<u64>,
    pub request: Option<RequestJson<'a>>,
}

#[derive(Serialize)]
pub struct RequestJson<'a> {
    pub method: &'a str,
    pub path: &'a str,
}

#[derive(Serialize)]
pub struct PoolJson<'a> {
    pub name: &'a str,
    pub worker_share_bytes: Option<u64>,
    pub worker_share_of: Option<&'static str>,
    pub slots: Vec<SlotJson>,
}

#[derive(Serialize)]
pub struct SlotJson {
    pub slot: usize,
    /// The largest PSS of each minute, aligned with `minutes`; `null` for
    /// a minute with no sample.
    pub pss_bytes: Vec<Option<u64>>,
}

#[derive(Serialize)]
pub struct DroppedJson {
    pub marks: u64,
    pub out_of_window: u64,
    pub timeline: u64,
    pub series: u64,
}

impl From<Dropped> for DroppedJson {
    fn from(d: Dropped) -> DroppedJson {
        DroppedJson {
            marks: d.marks,
            out_of_window: d.out_of_window,
            timeline: d.timeline,
            series: d.series,
        }
    }
}

fn unix(t: std::time::SystemTime) -> f64 {
    t.duration_since(std::time::SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

impl Page<'_> {
    pub fn timeline(&self) -> Timeline<'_> {
        let h = self.history;
        Timeline {
            schema: SCHEMA,
            generated_at: rfc3339(self.now),
            minute_seconds: 60,
            minutes: h
                .minutes()
                .map(|b| Minute {
                    start: rfc3339(b.start()),
                    start_unix: unix(b.start()) as u64,
                    failed: b
                        .failed()
                        .map(|(status, cause, count)| Failed {
                            status,
                            cause: cause.as_str(),
                            count,
                        })
                        .collect(),
                })
                .collect(),
            marks: h
                .marks()
                .map(|m| MarkJson {
                    at: rfc3339(m.at),
                    at_unix: unix(m.at),
                    kind: m.kind.as_str(),
                    reason: m.kind.reason().map(|r| r.as_str()),
                    pool: m.pool.as_deref(),
                    pid: m.pid,
                    slot: m.slot,
                    memory_bytes: m.memory_bytes,
                    request: m.request.as_ref().map(|r| RequestJson {
                        method: &r.method,
                        path: &r.path,
                    }),
                })
                .collect(),
            pools: h
                .series()
                .iter()
                .map(|s| {
                    let share = self
                        .pools
                        .pools
                        .iter()
                        .find(|p| *p.name == *s.pool)
                        .and_then(|p| worker_share(p, self.memory));
                    PoolJson {
                        name: &s.pool,
                        worker_share_bytes: share.map(|x| x.0),
                        worker_share_of: share.map(|x| x.1),
                        slots: (0..s.slots())
                            .map(|k| SlotJson {
                                slot: k,
                                pss_bytes: h.slot_pss(s, k),
                            })
                            .filter(|sl| sl.pss_bytes.iter().any(Option::is_some))
                            .collect(),
                    }
                })
                .collect(),
            dropped: h.dropped().into(),
        }
    }

    /// The JSON body.
    pub fn json(&self) -> String {
        debug_assert!(self.history.minutes().count() <= MINUTES);
        serde_json::to_string(&self.timeline()).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }
}
