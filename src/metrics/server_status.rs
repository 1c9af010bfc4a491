//! The families of the servers' status interfaces (uWSGI's stats server,
//! php-fpm's status page, Puma's control app). Written only when a pool
//! names one. Puma's check-in age is not here: it is
//! `badgateway_worker_heartbeat_age_seconds`, the same meaning as
//! Gunicorn's heartbeat (see `pools::server_status::with_heartbeats`).

use std::fmt;

use super::Encoder;

use super::{define_metrics, family};
use crate::pools::server_status::ServerStatuses;

define_metrics! { METRICS;
    WORKER_REQUESTS: Counter, "badgateway_worker_requests", ["pool", "slot"], "Requests served by the worker now in the slot, by the server's own count (uWSGI stats server, php-fpm status page, Puma control app); starts again from 0 when the slot's worker is replaced.";
    WORKER_QUEUED: Gauge, "badgateway_worker_queued_requests", ["pool", "slot"], "Requests the worker accepted that wait for one of its threads (Puma's backlog), at its last check-in.";
    POOL_BUSY: Gauge, "badgateway_pool_busy_workers", ["pool"], "Workers handling a request at the last read of the server's status interface (uWSGI, php-fpm; the exporter's own status request left out).";
    FPM_MAX_CHILDREN: Counter, "badgateway_php_fpm_max_children_reached", ["pool"], "Times php-fpm's pool reached pm.max_children since its master started (status page).";
    FPM_SLOW: Counter, "badgateway_php_fpm_slow_requests", ["pool"], "Requests past php-fpm's request_slowlog_timeout since its master started (status page).";
    UWSGI_HARAKIRIS: Counter, "badgateway_uwsgi_harakiris", ["pool"], "Harakiris of the pool's workers since uWSGI's master started (stats server).";
}

pub fn encode(s: &ServerStatuses, enc: &mut Encoder) -> fmt::Result {
    if !s.configured {
        return Ok(());
    }
    let slots = || {
        s.pools
            .iter()
            .flat_map(|p| p.slots.iter().map(move |w| (p.pool.as_str(), w)))
    };
    family(enc, &WORKER_REQUESTS, |f| {
        slots().try_for_each(|(pool, w)| f.counter(&[pool, &w.slot.to_string()], w.requests))
    })?;
    family(enc, &WORKER_QUEUED, |f| {
        slots().try_for_each(|(pool, w)| match w.queued {
            Some(n) => f.gauge(&[pool, &w.slot.to_string()], n),
            None => Ok(()),
        })
    })?;
    let per_pool = |f: &mut super::Family<'_>, value: fn(&_) -> Option<u64>, counter: bool| {
        s.pools.iter().try_for_each(|p| match value(p) {
            Some(n) if counter => f.counter(&[&p.pool], n),
            Some(n) => f.gauge(&[&p.pool], n),
            None => Ok(()),
        })
    };
    family(enc, &POOL_BUSY, |f| per_pool(f, |p| p.busy, false))?;
    family(enc, &FPM_MAX_CHILDREN, |f| {
        per_pool(f, |p| p.max_children_reached, true)
    })?;
    family(enc, &FPM_SLOW, |f| per_pool(f, |p| p.slow_requests, true))?;
    family(enc, &UWSGI_HARAKIRIS, |f| {
        per_pool(f, |p| p.harakiris, true)
    })
}
