#!/usr/bin/env python3
"""Writes the Grafana dashboards in dashboards/ from the panel lists below.

Edit this file, run it, commit both: tests/lint.rs fails when the JSON in
dashboards/ is not what this script writes, and lints the JSON against the
conventions of grafana/dashboard-linter. Usage:

    tools/gen_dashboards.py            # rewrite dashboards/*.json
    tools/gen_dashboards.py --check    # exit 1 if they differ
"""
import json
import pathlib
import sys

DS = {"type": "prometheus", "uid": "$datasource"}
DS_DESCRIPTION = "The Prometheus that scrapes the exporters and loads the rules in alerts/."
# The panel plugins' names, for __requires.
PANEL_NAMES = {
    "bargauge": "Bar gauge",
    "heatmap": "Heatmap",
    "stat": "Stat",
    "table": "Table",
    "timeseries": "Time series",
}
JI = 'job=~"$job", instance=~"$instance"'
JIP = JI + ', pool=~"$pool"'
# The pool behind each nginx upstream (a recording rule of alerts/, kept for
# an hour after the pool's master went away): joins nginx series to pools.
RATE = "[$__rate_interval]"
POOL_OF = (
    "* on (job, instance, log, upstream) group_left (pool) "
    "badgateway:upstream_pool:last1h{" + JIP + "}"
)


# A stat panel: the last value of each series, coloured, with its name.
STAT = {
    "colorMode": "background",
    "graphMode": "none",
    "textMode": "value_and_name",
    "reduceOptions": {"calcs": ["lastNotNull"], "values": False},
}


def sel(metric, extra="", pool=True):
    m = JIP if pool else JI
    return metric + "{" + m + (", " + extra if extra else "") + "}"


class Board:
    def __init__(self, uid, title, description, tags):
        self.uid, self.title, self.description, self.tags = uid, title, description, tags
        self.panels, self.annotations = [], []
        self.y = 0
        self.x = 0
        self.row_h = 0
        self.next_id = 1

    def _place(self, w, h):
        if self.x + w > 24:
            self.x = 0
            self.y += self.row_h
            self.row_h = 0
        pos = {"h": h, "w": w, "x": self.x, "y": self.y}
        self.x += w
        self.row_h = max(self.row_h, h)
        return pos

    def row(self, title, description):
        if self.x:
            self.y += self.row_h
            self.x, self.row_h = 0, 0
        self.panels.append(
            {
                "id": self._id(),
                "type": "row",
                "title": title,
                "description": description,
                "collapsed": False,
                "gridPos": {"h": 1, "w": 24, "x": 0, "y": self.y},
                "panels": [],
            }
        )
        self.y += 1

    def _id(self):
        i = self.next_id
        self.next_id += 1
        return i

    def panel(self, kind, title, description, unit, targets, w=12, h=8, stack=False,
              options=None, instant=False, fmt=None):
        p = {
            "id": self._id(),
            "type": kind,
            "title": title,
            "description": description,
            "datasource": DS,
            "gridPos": self._place(w, h),
            "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
            "options": options or {},
            "targets": [],
        }
        if kind == "timeseries":
            p["fieldConfig"]["defaults"]["custom"] = {
                "drawStyle": "line",
                "fillOpacity": 30 if stack else 0,
                "stacking": {"mode": "normal" if stack else "none", "group": "A"},
                "showPoints": "never",
            }
            p["options"] = options or {
                "legend": {"displayMode": "table", "placement": "right", "calcs": ["max", "lastNotNull"]},
                "tooltip": {"mode": "multi", "sort": "desc"},
            }
        for i, (expr, legend) in enumerate(targets):
            t = {
                "datasource": DS,
                "expr": expr,
                "legendFormat": legend,
                "refId": chr(ord("A") + i),
            }
            if instant:
                t["instant"] = True
                t["range"] = False
            else:
                t["range"] = True
            if fmt:
                t["format"] = fmt
            p["targets"].append(t)
        self.panels.append(p)

    def annotation(self, name, description, expr, title, text, color):
        self.annotations.append(
            {
                "name": name,
                "description": description,
                "datasource": DS,
                "enable": True,
                "hide": False,
                "iconColor": color,
                "expr": expr,
                "step": "$__interval",
                "titleFormat": title,
                "textFormat": text,
                "useValueForTime": False,
            }
        )

    def json(self):
        def var(name, query):
            return {
                "name": name,
                "label": name.capitalize(),
                "description": f"Matches the `{name}` label; All is any value.",
                "type": "query",
                "datasource": DS,
                "query": query,
                "definition": query,
                "refresh": 2,
                "multi": True,
                "includeAll": True,
                "allValue": ".+",
                "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
                "options": [],
                "regex": "",
                "sort": 1,
                "hide": 0,
            }

        return {
            # For import (Dashboards > Import, or grafana.com): Grafana asks
            # for a Prometheus and writes its uid where ${DS_PROMETHEUS} is,
            # the datasource variable's default. Provisioned from files the
            # name stays unresolved and the variable starts on the default
            # Prometheus; panels always query $datasource.
            "__inputs": [
                {
                    "name": "DS_PROMETHEUS",
                    "label": "Prometheus",
                    "description": DS_DESCRIPTION,
                    "type": "datasource",
                    "pluginId": "prometheus",
                    "pluginName": "Prometheus",
                }
            ],
            "__requires": [
                {"type": "grafana", "id": "grafana", "name": "Grafana", "version": "10.4.0"},
                {"type": "datasource", "id": "prometheus", "name": "Prometheus", "version": "1.0.0"},
            ]
            + [
                {"type": "panel", "id": t, "name": PANEL_NAMES[t], "version": ""}
                for t in sorted({p["type"] for p in self.panels if p["type"] != "row"})
            ],
            "uid": self.uid,
            "title": self.title,
            "description": self.description,
            "tags": self.tags,
            "editable": False,
            "graphTooltip": 1,
            "schemaVersion": 39,
            "version": 1,
            "refresh": "30s",
            "time": {"from": "now-3h", "to": "now"},
            "timezone": "",
            "links": [],
            "annotations": {"list": self.annotations},
            "templating": {
                "list": [
                    {
                        "name": "datasource",
                        "label": "Data source",
                        "description": DS_DESCRIPTION,
                        "type": "datasource",
                        "query": "prometheus",
                        "current": {"selected": False, "text": "${DS_PROMETHEUS}", "value": "${DS_PROMETHEUS}"},
                        "options": [],
                        "regex": "",
                        "refresh": 1,
                        "hide": 0,
                    },
                    var("job", "label_values(badgateway_exporter_build_info, job)"),
                    var("instance", 'label_values(badgateway_exporter_build_info{job=~"$job"}, instance)'),
                    var("pool", 'label_values(badgateway_pool_up{job=~"$job", instance=~"$instance"}, pool)'),
                ]
            },
            "panels": self.panels,
        }


def overview():
    b = Board(
        "badgateway-overview",
        "badgateway / Overview",
        "The 502 checklist top to bottom: is it happening, why, the workers, "
        "memory, nginx, and the exporter itself. Needs the rules in alerts/ "
        "(badgateway:upstream_pool:last1h ties nginx upstreams to pools).",
        ["badgateway", "nginx", "gunicorn"],
    )
    b.annotation(
        "OOM kills",
        "A worker of the pool was OOM-killed by the kernel.",
        "sum by (instance, pool) (increase(" + sel("badgateway_oom_kills_total") + RATE + ")) > 0",
        "OOM kill",
        "{{pool}} on {{instance}}",
        "red",
    )
    b.annotation(
        "Worker exits",
        "Workers left the pool, by reason.",
        "sum by (instance, pool, reason) (increase(" + sel("badgateway_worker_exits_total") + RATE + ")) > 0",
        "Worker exit",
        "{{pool}} on {{instance}}: {{reason}}",
        "orange",
    )

    b.row("Is it happening", "Users get 502s and 504s, and the first signs of why.")
    b.panel(
        "timeseries",
        "502 and 504 responses by pool",
        "Requests nginx answered 502 Bad Gateway or 504 Gateway Timeout, per second, "
        "by the pool behind the upstream (\"-\": no pool).",
        "reqps",
        [(
            "sum by (instance, pool, status) (rate("
            + sel("badgateway_nginx_responses_total", 'status=~"502|504"', pool=False)
            + RATE + ") " + POOL_OF + ")",
            "{{status}} {{pool}} on {{instance}}",
        )],
        w=12,
    )
    b.panel(
        "bargauge",
        "Failed requests by cause, time range",
        "502s and 504s in the dashboard's time range, by the cause the exporter found "
        "(worker_oom_killed, worker_timeout, pool_down, backlog_full, ...).",
        "short",
        [("sum by (cause) (increase(" + sel("badgateway_failed_requests_total") + "[$__range]))", "{{cause}}")],
        w=6,
        instant=True,
        options={"orientation": "horizontal", "displayMode": "gradient",
                 "reduceOptions": {"calcs": ["lastNotNull"], "values": False}},
    )
    b.panel(
        "stat",
        "OOM kills, time range",
        "Processes the kernel OOM-killed in the dashboard's time range: pools' workers, "
        "and everything on the selected hosts.",
        "short",
        [
            ("sum(increase(" + sel("badgateway_oom_kills_total", 'pool!="-"') + "[$__range]))", "pool workers"),
            ("sum(increase(" + sel("badgateway_kernel_oom_kills_total", pool=False) + "[$__range]))", "whole host"),
        ],
        w=6,
        h=4,
        instant=True,
        options=STAT,
    )
    b.panel(
        "stat",
        "Pools up",
        "1 while the pool's master process is found, 0 when it is gone (BadGatewayPoolDown).",
        "bool_on_off",
        [("max by (instance, pool) (" + sel("badgateway_pool_up") + ")", "{{pool}} on {{instance}}")],
        w=3,
        h=4,
        instant=True,
        options=STAT,
    )
    b.panel(
        "stat",
        "MemAvailable",
        "The share of each host's memory the kernel can still give without swapping.",
        "percentunit",
        [(
            "min by (instance) (" + sel("badgateway_host_memory_available_bytes", pool=False)
            + " / " + sel("badgateway_host_memory_total_bytes", pool=False) + ")",
            "{{instance}}",
        )],
        w=3,
        h=4,
        instant=True,
        options={"colorMode": "value", "graphMode": "area", "textMode": "value_and_name",
                 "reduceOptions": {"calcs": ["lastNotNull"], "values": False}},
    )

    b.row("Why", "The failures split by cause, with OOM kills and worker exits as annotations.")
    b.panel(
        "timeseries",
        "Failed requests by cause",
        "502s and 504s per second by the cause the exporter joined them to, stacked. "
        "OOM kills (red) and worker exits (orange) are annotations.",
        "reqps",
        [(
            "sum by (pool, cause) (rate(" + sel("badgateway_failed_requests_total") + RATE + "))",
            "{{cause}} ({{pool}})",
        )],
        stack=True,
    )
    b.panel(
        "timeseries",
        "Upstream failures by reason",
        "nginx's own reason for each failed upstream attempt, from its error log, stacked: "
        "premature_close = a worker died mid-request, connection_refused/socket_missing = "
        "nobody listens, backlog_full = the listen queue overflowed, timeout = 504.",
        "reqps",
        [(
            "sum by (pool, reason) (rate("
            + sel("badgateway_nginx_upstream_failures_total", pool=False) + RATE + ") " + POOL_OF + ")",
            "{{reason}} ({{pool}})",
        )],
        stack=True,
    )

    b.row("Workers", "Each worker by slot: memory, exits, heartbeats, file descriptors, CPU.")
    b.panel(
        "timeseries",
        "Worker PSS per slot",
        "Proportional memory of each worker. Recycling (max_requests) shows as a sawtooth: "
        "growth, then a drop when the slot's worker is replaced; an OOM kill is a drop "
        "with a red annotation.",
        "bytes",
        [("max by (instance, pool, slot) (" + sel("badgateway_worker_memory_bytes", 'type="pss"') + ")",
          "{{pool}}/{{slot}} on {{instance}}")],
    )
    b.panel(
        "timeseries",
        "Worker RSS per slot",
        "Resident memory of each worker, shared pages counted in full.",
        "bytes",
        [("max by (instance, pool, slot) (" + sel("badgateway_worker_memory_bytes", 'type="rss"') + ")",
          "{{pool}}/{{slot}} on {{instance}}")],
    )
    b.panel(
        "timeseries",
        "Worker exits by reason",
        "Workers leaving the pool per second, by why they ended: max_requests and reload "
        "are planned, the rest cost requests.",
        "short",
        [("sum by (pool, reason) (rate(" + sel("badgateway_worker_exits_total") + RATE + "))",
          "{{reason}} ({{pool}})")],
        w=8,
        stack=True,
    )
    b.panel(
        "timeseries",
        "Worker heartbeat age",
        "Seconds since each worker last sent its master a heartbeat; it climbs for a stuck "
        "worker until Gunicorn's --timeout kills it.",
        "s",
        [("max by (instance, pool, slot) (" + sel("badgateway_worker_heartbeat_age_seconds") + ")",
          "{{pool}}/{{slot}} on {{instance}}")],
        w=8,
    )
    b.panel(
        "timeseries",
        "Workers",
        "Live workers of each pool.",
        "short",
        [("sum by (instance, pool) (" + sel("badgateway_pool_workers") + ")", "{{pool}} on {{instance}}")],
        w=8,
    )
    b.panel(
        "timeseries",
        "Worker open files, share of the limit",
        "Open file descriptors of each worker over its soft limit; at 100% accept and "
        "connect fail with EMFILE.",
        "percentunit",
        [("max by (instance, pool, slot) (" + sel("badgateway_worker_open_fds")
          + " / " + sel("badgateway_worker_max_fds") + ")", "{{pool}}/{{slot}} on {{instance}}")],
        w=8,
    )
    b.panel(
        "timeseries",
        "Worker CPU",
        "CPU time of each worker per second (1 = one core); a CPU-bound worker misses "
        "heartbeats and times out.",
        "percentunit",
        [("sum by (instance, pool, slot) (rate(" + sel("badgateway_worker_cpu_seconds_total") + RATE + "))",
          "{{pool}}/{{slot}} on {{instance}}")],
        w=8,
    )
    b.panel(
        "timeseries",
        "Listen queue",
        "Connections waiting for a worker on each listening socket: peak since the last "
        "cycle, and the backlog limit. At the limit, nginx gets EAGAIN and answers 502.",
        "short",
        [
            ("max by (instance, pool, listener) (" + sel("badgateway_pool_listen_queue_peak") + ")",
             "peak {{pool}} {{listener}}"),
            ("max by (instance, pool, listener) (" + sel("badgateway_pool_listen_queue_limit") + ")",
             "limit {{pool}} {{listener}}"),
        ],
        w=8,
    )

    b.row("Memory", "Host and cgroup memory, and memory pressure.")
    b.panel(
        "timeseries",
        "Pool cgroup memory and limit",
        "Memory charged to each pool's memory cgroup and its limit; the kernel OOM-kills "
        "inside the cgroup at the limit.",
        "bytes",
        [
            ("max by (instance, pool) (" + sel("badgateway_pool_cgroup_memory_bytes") + ")", "used {{pool}} on {{instance}}"),
            ("max by (instance, pool) (" + sel("badgateway_pool_cgroup_memory_limit_bytes") + ")", "limit {{pool}} on {{instance}}"),
        ],
        w=8,
    )
    b.panel(
        "timeseries",
        "Pool memory by type",
        "Master plus workers: RSS, PSS, USS and swap.",
        "bytes",
        [("sum by (instance, pool, type) (" + sel("badgateway_pool_memory_bytes") + ")", "{{type}} {{pool}} on {{instance}}")],
        w=8,
    )
    b.panel(
        "timeseries",
        "Host memory",
        "MemAvailable and MemTotal of each host, and free swap.",
        "bytes",
        [
            ("max by (instance) (" + sel("badgateway_host_memory_available_bytes", pool=False) + ")", "available {{instance}}"),
            ("max by (instance) (" + sel("badgateway_host_memory_total_bytes", pool=False) + ")", "total {{instance}}"),
            ("max by (instance) (" + sel("badgateway_host_swap_free_bytes", pool=False) + ")", "swap free {{instance}}"),
        ],
        w=8,
    )
    b.panel(
        "timeseries",
        "Memory pressure (PSI)",
        "Share of time at least one task (some) or every task (full) was stalled waiting "
        "for memory.",
        "percentunit",
        [("max by (instance, kind) (rate(" + sel("badgateway_memory_pressure_stalled_seconds_total", pool=False) + RATE + "))",
          "{{kind}} {{instance}}")],
        w=8,
    )
    b.panel(
        "timeseries",
        "OOM kills",
        "Kills per second: each pool's workers (kernel log, pool \"-\" = no known pool) and "
        "the host's total (vmstat).",
        "short",
        [
            ("sum by (instance, pool) (rate(" + sel("badgateway_oom_kills_total") + RATE + "))", "{{pool}} on {{instance}}"),
            ("sum by (instance) (rate(" + sel("badgateway_kernel_oom_kills_total", pool=False) + RATE + "))", "host {{instance}}"),
        ],
        w=8,
    )
    b.panel(
        "timeseries",
        "cgroup memory events",
        "cgroup v2 memory.events of each pool's cgroup per second: high (throttled), max "
        "(hit the limit), oom, oom_kill. Empty on cgroup v1.",
        "short",
        [("sum by (instance, pool, event) (rate(" + sel("badgateway_pool_cgroup_memory_events_total") + RATE + "))",
          "{{event}} {{pool}} on {{instance}}")],
        w=8,
    )

    b.row("nginx", "What nginx saw of each upstream: failures, attempts, latency.")
    b.panel(
        "timeseries",
        "Upstream failures by reason and phase",
        "Failed attempts per second from nginx's error log, by reason and the phase it "
        "failed in (connect, send_request, read_header, read_body).",
        "reqps",
        [("sum by (reason, phase) (rate(" + sel("badgateway_nginx_upstream_failures_total", pool=False) + RATE + ") " + POOL_OF + ")",
          "{{reason}} in {{phase}}")],
        w=8,
    )
    b.panel(
        "timeseries",
        "Upstream attempts by status",
        "Every attempt nginx made, by the status it got (\"-\": none); a request retried "
        "on another server counts once per attempt.",
        "reqps",
        [("sum by (pool, status) (rate(" + sel("badgateway_nginx_upstream_attempts_total", pool=False) + RATE + ") " + POOL_OF + ")",
          "{{status}} ({{pool}})")],
        w=8,
    )
    b.panel(
        "timeseries",
        "5xx sent by the backend",
        "5xx answers the application itself sent (a response header arrived), as opposed "
        "to those nginx generated when the upstream failed.",
        "reqps",
        [("sum by (pool, status) (rate(" + sel("badgateway_nginx_upstream_backend_errors_total", pool=False) + RATE + ") " + POOL_OF + ")",
          "{{status}} ({{pool}})")],
        w=8,
    )
    b.panel(
        "heatmap",
        "Response time",
        "nginx's $request_time for requests to the selected pools, as a heatmap of the "
        "histogram buckets.",
        "s",
        [("sum by (le) (rate(" + sel("badgateway_nginx_response_seconds_bucket", pool=False) + RATE + ") " + POOL_OF + ")",
          "{{le}}")],
        fmt="heatmap",
        options={"calculate": False, "yAxis": {"unit": "s"}, "cellGap": 1,
                 "color": {"mode": "scheme", "scheme": "Oranges"}},
    )
    b.panel(
        "timeseries",
        "Upstream response time",
        "Median and 99th percentile of each attempt's $upstream_response_time.",
        "s",
        [
            ("histogram_quantile(0.5, sum by (pool, le) (rate(" + sel("badgateway_nginx_upstream_response_seconds_bucket", pool=False) + RATE + ") " + POOL_OF + "))",
             "p50 {{pool}}"),
            ("histogram_quantile(0.99, sum by (pool, le) (rate(" + sel("badgateway_nginx_upstream_response_seconds_bucket", pool=False) + RATE + ") " + POOL_OF + "))",
             "p99 {{pool}}"),
        ],
    )

    b.row("Exporter", "The exporter's own health: its sources, collectors, logs and cost.")
    b.panel(
        "stat",
        "Sources up",
        "Each source the exporter reads: 0 means its evidence is missing and the alerts "
        "built on it cannot fire.",
        "bool_on_off",
        [("min by (instance, source) (" + sel("badgateway_source_up", pool=False) + ")", "{{source}} on {{instance}}")],
        w=8,
        instant=True,
        options=STAT,
    )
    b.panel(
        "timeseries",
        "Collector CPU per cycle",
        "CPU time each collector uses per cycle.",
        "s",
        [("sum by (instance, collector) (rate(" + sel("badgateway_collector_cpu_seconds_total", pool=False) + RATE
          + ")) / sum by (instance, collector) (rate(" + sel("badgateway_collector_cycles_total", pool=False) + RATE + "))",
          "{{collector}} on {{instance}}")],
        w=8,
    )
    b.panel(
        "timeseries",
        "Collector errors",
        "Values the collectors could not read, per second; each is skipped.",
        "short",
        [("sum by (instance, collector) (rate(" + sel("badgateway_collector_errors_total", pool=False) + RATE + "))",
          "{{collector}} on {{instance}}")],
        w=8,
    )
    b.panel(
        "timeseries",
        "Log lines and parse errors",
        "nginx log lines read per second, and those that did not parse, by reason.",
        "short",
        [
            ("sum by (instance, log, file) (rate(" + sel("badgateway_log_lines_total", pool=False) + RATE + "))", "{{file}} {{log}} on {{instance}}"),
            ("sum by (instance, log, reason) (rate(" + sel("badgateway_log_parse_errors_total", pool=False) + RATE + "))", "error {{reason}} {{log}} on {{instance}}"),
        ],
        w=8,
    )
    b.panel(
        "timeseries",
        "Log lag",
        "Bytes written to each nginx log and not yet read.",
        "bytes",
        [("max by (instance, log) (" + sel("badgateway_log_lag_bytes", pool=False) + ")", "{{log}} on {{instance}}")],
        w=8,
    )
    b.panel(
        "timeseries",
        "Exporter memory and CPU",
        "The exporter's own resident memory; it must stay small on a host short of memory.",
        "bytes",
        [("max by (instance) (" + sel("badgateway_exporter_resident_memory_bytes", pool=False) + ")", "RSS {{instance}}")],
        w=8,
    )
    return b


def fleet():
    b = Board(
        "badgateway-fleet",
        "badgateway / Fleet",
        "Many hosts behind one Prometheus: pools and hosts ranked by 502s and OOM kills "
        "over the dashboard's time range. Needs the rules in alerts/.",
        ["badgateway", "nginx", "gunicorn"],
    )
    table = {"showHeader": True, "cellHeight": "sm", "sortBy": [{"displayName": "Value", "desc": True}]}
    b.row("Rankings", "The pools and hosts with the most failures in the time range.")
    b.panel(
        "table",
        "Pools by 502s",
        "502 Bad Gateway answers in the time range, per pool and host, most first.",
        "short",
        [("topk(20, sum by (instance, pool) (increase("
          + sel("badgateway_nginx_responses_total", 'status="502"', pool=False) + "[$__range]) " + POOL_OF + ") > 0)",
          "{{pool}} on {{instance}}")],
        instant=True,
        fmt="table",
        options=table,
    )
    b.panel(
        "table",
        "Pools by OOM kills",
        "Workers the kernel OOM-killed in the time range, per pool and host, most first.",
        "short",
        [("topk(20, sum by (instance, pool) (increase(" + sel("badgateway_oom_kills_total", 'pool!="-"') + "[$__range])) > 0)",
          "{{pool}} on {{instance}}")],
        instant=True,
        fmt="table",
        options=table,
    )
    b.panel(
        "table",
        "Hosts by OOM kills",
        "Every OOM kill on each host in the time range (vmstat), most first.",
        "short",
        [("topk(20, sum by (instance) (increase(" + sel("badgateway_kernel_oom_kills_total", pool=False) + "[$__range])) > 0)",
          "{{instance}}")],
        instant=True,
        fmt="table",
        options=table,
    )
    b.panel(
        "table",
        "Pools by failed requests and cause",
        "502s and 504s in the time range by pool, host and cause, most first.",
        "short",
        [("topk(20, sum by (instance, pool, cause) (increase(" + sel("badgateway_failed_requests_total") + "[$__range])) > 0)",
          "{{cause}} {{pool}} on {{instance}}")],
        instant=True,
        fmt="table",
        options=table,
    )
    b.row("Now", "Pools down and hosts short of memory at this moment, and the worst 502 shares over time.")
    b.panel(
        "table",
        "Pools down",
        "Pools whose master process is gone now (BadGatewayPoolDown).",
        "none",
        [("max by (instance, pool) (" + sel("badgateway_pool_up") + ") == 0", "{{pool}} on {{instance}}")],
        w=8,
        instant=True,
        fmt="table",
        options=table,
    )
    b.panel(
        "table",
        "Hosts by MemAvailable",
        "The ten hosts with the smallest share of available memory.",
        "percentunit",
        [("bottomk(10, min by (instance) (" + sel("badgateway_host_memory_available_bytes", pool=False)
          + " / " + sel("badgateway_host_memory_total_bytes", pool=False) + "))", "{{instance}}")],
        w=8,
        instant=True,
        fmt="table",
        options={"showHeader": True, "cellHeight": "sm", "sortBy": [{"displayName": "Value", "desc": False}]},
    )
    b.panel(
        "timeseries",
        "502 share, worst pools",
        "The ten pools with the highest share of 502 answers.",
        "percentunit",
        [("topk(10, sum by (instance, pool) (rate("
          + sel("badgateway_nginx_responses_total", 'status="502"', pool=False) + RATE + ") " + POOL_OF + ") / "
          + "sum by (instance, pool) (rate(" + sel("badgateway_nginx_responses_total", pool=False) + RATE + ") " + POOL_OF + "))",
          "{{pool}} on {{instance}}")],
        w=8,
    )
    return b


def main():
    root = pathlib.Path(__file__).resolve().parent.parent / "dashboards"
    check = "--check" in sys.argv[1:]
    stale = []
    for board in (overview(), fleet()):
        path = root / (board.uid + ".json")
        text = json.dumps(board.json(), indent=2, ensure_ascii=False) + "\n"
        if check:
            if not path.exists() or path.read_text() != text:
                stale.append(str(path))
        else:
            path.write_text(text)
    if stale:
        print("not what tools/gen_dashboards.py writes: " + ", ".join(stale), file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
