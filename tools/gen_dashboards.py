#!/usr/bin/env python3
"""Writes the Grafana dashboards in dashboards/ with Grafana's own SDK.

The panels are built with the typed builders of grafana-foundation-sdk
(PyPI), so a misspelt option or a wrong type fails here, not in Grafana.
scripts/test.sh installs the pinned version into target/dashboard-venv.
Edit this file, run it, commit both: tests/lint.rs fails when the JSON in
dashboards/ is not what this script writes. Usage:

    target/dashboard-venv/bin/python tools/gen_dashboards.py          # rewrite dashboards/*.json
    target/dashboard-venv/bin/python tools/gen_dashboards.py --check  # exit 1 if they differ
"""
import json
import pathlib
import sys

try:
    from grafana_foundation_sdk.builders import bargauge, common, dashboard, prometheus, stat, table, timeseries
    from grafana_foundation_sdk.cog.encoder import JSONEncoder
    from grafana_foundation_sdk.models import common as cm
    from grafana_foundation_sdk.models import dashboard as dm
    from grafana_foundation_sdk.models import prometheus as pm
except ImportError as e:
    sys.exit(
        f"{e}: grafana-foundation-sdk is missing; run scripts/test.sh, which installs it into "
        "target/dashboard-venv, and run this script with target/dashboard-venv/bin/python"
    )

# The import placeholder: Grafana's "Import dashboard" asks for a Prometheus
# and writes its uid wherever this appears. A provisioned copy keeps the
# text, which matches no data source, so the variable falls back to the
# default one.
DS_INPUT = "DS_PROMETHEUS"
# The Grafana release whose dashboard schema the pinned SDK writes.
GRAFANA_VERSION = "11.6.0"
# The panel plugins' names, for __requires.
PANEL_NAMES = {"bargauge": "Bar gauge", "stat": "Stat", "table": "Table", "timeseries": "Time series"}
DS = dm.DataSourceRef(type_val="prometheus", uid="$datasource")
JI = 'job=~"$job", instance=~"$instance"'
JIP = JI + ', pool=~"$pool"'
RATE = "[$__rate_interval]"
RANGE = "[$__range]"
# The pool behind each nginx upstream (a recording rule of alerts/, kept for
# an hour after the pool's master went away): joins nginx series to pools.
POOL_OF = (
    " * on (job, instance, log, upstream) group_left (pool) "
    "badgateway:upstream_pool:last1h{" + JIP + "}"
)
TAGS = ["badgateway", "nginx", "gunicorn"]


def sel(metric, extra="", pool=True):
    m = JIP if pool else JI
    return metric + "{" + m + (", " + extra if extra else "") + "}"


def query(expr, legend, ref, instant=False, fmt=None):
    q = prometheus.Dataquery().expr(expr).legend_format(legend).ref_id(ref).datasource(DS)
    q = q.instant() if instant else q.range()
    if fmt:
        q = q.format(fmt)
    return q


class Board:
    """A dashboard builder that numbers panels and gives each its queries."""

    def __init__(self, uid, title, description, other):
        self.uid = uid
        self.next_id = 1
        self.row = None
        self.b = (
            dashboard.Dashboard(title)
            .uid(uid)
            .description(description)
            .tags(TAGS)
            .readonly()
            .tooltip(dm.DashboardCursorSync.CROSSHAIR)
            .time("now-3h", "now")
            .timezone("")
            .refresh("30s")
            .version(1)
            .link(
                dashboard.DashboardLink(other[1])
                .type(dm.DashboardLinkType.LINK)
                .url("/d/" + other[0])
                .tooltip(other[2])
                .icon("dashboard")
                .include_vars(True)
                .keep_time(True)
            )
            .with_variable(
                dashboard.DatasourceVariable("datasource")
                .label("Data source")
                .description("The Prometheus that scrapes the exporters and loads the rules in alerts/.")
                .type("prometheus")
                .current(dm.VariableOption(selected=False, text="${" + DS_INPUT + "}", value="${" + DS_INPUT + "}"))
            )
            .with_variable(self._var("job", "label_values(badgateway_exporter_build_info, job)"))
            .with_variable(self._var("instance", 'label_values(badgateway_exporter_build_info{job=~"$job"}, instance)'))
            .with_variable(self._var("pool", 'label_values(badgateway_pool_up{job=~"$job", instance=~"$instance"}, pool)'))
        )

    @staticmethod
    def _var(name, q):
        return (
            dashboard.QueryVariable(name)
            .label(name.capitalize())
            .description(f"Matches the `{name}` label; All is any value.")
            .datasource(DS)
            .query(q)
            .refresh(dm.VariableRefresh.ON_TIME_RANGE_CHANGED)
            .multi(True)
            .include_all(True)
            .all_value(".+")
            .current(dm.VariableOption(selected=True, text=["All"], value=["$__all"]))
            .sort(dm.VariableSort.ALPHABETICAL_ASC)
        )

    def _id(self):
        i = self.next_id
        self.next_id += 1
        return i

    def section(self, title):
        self.b.with_row(dashboard.Row(title).id(self._id()))

    def add(self, panel, title, description, unit, targets, w=12, h=8, instant=False, fmt=None):
        panel = panel.id(self._id()).title(title).description(description).datasource(DS).unit(unit).span(w).height(h)
        for i, (expr, legend) in enumerate(targets):
            panel = panel.with_target(query(expr, legend, chr(ord("A") + i), instant, fmt))
        self.b.with_panel(panel)
        return panel

    def annotation(self, name, expr, color):
        self.b.annotation(
            dashboard.AnnotationQuery().name(name).datasource(DS).expr(expr).icon_color(color).enable(True).hide(False)
        )

    def json(self):
        board = json.loads(json.dumps(self.b.build(), cls=JSONEncoder))
        # What Grafana's export writes, for "Import dashboard": the SDK's
        # model has no field for these.
        head = {
            "__inputs": [
                {
                    "name": DS_INPUT,
                    "label": "Prometheus",
                    "description": "The Prometheus that scrapes the exporters and loads the rules in alerts/.",
                    "type": "datasource",
                    "pluginId": "prometheus",
                    "pluginName": "Prometheus",
                }
            ],
            "__requires": [
                {"type": "grafana", "id": "grafana", "name": "Grafana", "version": GRAFANA_VERSION},
                {"type": "datasource", "id": "prometheus", "name": "Prometheus", "version": "1.0.0"},
            ]
            + [
                {"type": "panel", "id": k, "name": PANEL_NAMES[k], "version": ""}
                for k in sorted({p["type"] for p in board["panels"] if p["type"] != "row"})
            ],
        }
        return {**head, **board}


def lines(stack=False):
    """A time series panel: a table legend with the max and last values."""
    p = (
        timeseries.Panel()
        .line_width(1)
        .show_points(cm.VisibilityMode.NEVER)
        .legend(
            common.VizLegendOptions()
            .display_mode(cm.LegendDisplayMode.TABLE)
            .placement(cm.LegendPlacement.RIGHT)
            .show_legend(True)
            .calcs(["max", "lastNotNull"])
        )
        .tooltip(common.VizTooltipOptions().mode(cm.TooltipDisplayMode.MULTI).sort(cm.SortOrder.DESCENDING))
    )
    if stack:
        p = p.fill_opacity(30).stacking(common.StackingConfig().mode(cm.StackingMode.NORMAL).group("A"))
    return p


def last_value(color=cm.BigValueColorMode.BACKGROUND):
    """A stat panel: the last value of each series, coloured, with its name."""
    return (
        stat.Panel()
        .color_mode(color)
        .graph_mode(cm.BigValueGraphMode.NONE)
        .text_mode(cm.BigValueTextMode.VALUE_AND_NAME)
        .reduce_options(common.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
    )


def bars():
    return (
        bargauge.Panel()
        .orientation(cm.VizOrientation.HORIZONTAL)
        .display_mode(cm.BarGaugeDisplayMode.GRADIENT)
        .reduce_options(common.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
    )


def ranked(desc=True, drill=True):
    t = (
        table.Panel()
        .show_header(True)
        .cell_height(cm.TableCellHeight.SM)
        .sort_by([common.TableSortByFieldState().display_name("Value").desc(desc)])
    )
    if drill:
        t = t.data_links(
            [
                dashboard.DashboardLink("This pool in the overview")
                .url(
                    "/d/badgateway-overview?var-instance=${__data.fields.instance}"
                    "&var-pool=${__data.fields.pool}&${__url_time_range}&${datasource:queryparam}"
                )
            ]
        )
    return t


def overview():
    b = Board(
        "badgateway-overview",
        "badgateway / Overview",
        "The 502 checklist top to bottom: are users getting 502s and why; which pool "
        "and which workers ended and why; memory per slot against the limit and the "
        "trend to the next kill; the recovery numbers. Needs the rules in alerts/ "
        "(badgateway:upstream_pool:last1h ties nginx upstreams to pools).",
        ("badgateway-fleet", "Fleet", "Every host and pool ranked by 502s and OOM kills"),
    )
    b.annotation(
        "OOM kills",
        "sum by (instance, pool) (increase(" + sel("badgateway_oom_kills_total") + RATE + ")) > 0",
        "red",
    )
    b.annotation(
        "Worker exits",
        "sum by (instance, pool, reason) (increase(" + sel("badgateway_worker_exits_total") + RATE + ")) > 0",
        "orange",
    )

    b.section("1. Are users getting 502s and 504s, and why")
    b.add(
        last_value(),
        "Failed requests, time range",
        "502 Bad Gateway and 504 Gateway Timeout answers nginx gave for the selected pools "
        "in the dashboard's time range.",
        "short",
        [(
            "sum by (status) (increase("
            + sel("badgateway_nginx_responses_total", 'status=~"502|504"', pool=False)
            + RANGE + ")" + POOL_OF + ")",
            "{{status}}",
        )],
        w=4,
        instant=True,
    )
    b.add(
        lines(),
        "502 and 504 responses by pool",
        "Requests nginx answered 502 or 504, per second, by the pool behind the upstream.",
        "reqps",
        [(
            "sum by (instance, pool, status) (rate("
            + sel("badgateway_nginx_responses_total", 'status=~"502|504"', pool=False)
            + RATE + ")" + POOL_OF + ")",
            "{{status}} {{pool}} on {{instance}}",
        )],
        w=10,
    )
    b.add(
        lines(stack=True),
        "Failed requests by cause",
        "502s and 504s per second by the cause the exporter joined them to, stacked: "
        "worker_oom_killed, worker_timeout, pool_down, backlog_full, ... OOM kills (red) "
        "and worker exits (orange) are annotations.",
        "reqps",
        [("sum by (pool, cause) (rate(" + sel("badgateway_failed_requests_total") + RATE + "))", "{{cause}} ({{pool}})")],
        w=10,
    )
    b.add(
        bars(),
        "Failed requests by cause, time range",
        "502s and 504s in the dashboard's time range by cause, largest first: the "
        "first thing to fix.",
        "short",
        [("sort_desc(sum by (cause) (increase(" + sel("badgateway_failed_requests_total") + RANGE + ")) > 0)", "{{cause}}")],
        instant=True,
    )
    b.add(
        lines(stack=True),
        "Upstream failures by reason",
        "nginx's own reason for each failed upstream attempt, from its error log: "
        "premature_close = a worker died mid-request, connection_refused/socket_missing = "
        "nobody listens, backlog_full = the listen queue overflowed, timeout = 504.",
        "reqps",
        [(
            "sum by (pool, reason) (rate("
            + sel("badgateway_nginx_upstream_failures_total", pool=False) + RATE + ")" + POOL_OF + ")",
            "{{reason}} ({{pool}})",
        )],
    )

    b.section("2. Which pool and which workers ended, and why")
    b.add(
        last_value(),
        "Pools up",
        "1 while the pool's master process is found, 0 when it is gone (the pool is down).",
        "bool_on_off",
        [("max by (instance, pool) (" + sel("badgateway_pool_up") + ")", "{{pool}} on {{instance}}")],
        w=4,
        instant=True,
    )
    b.add(
        lines(stack=True),
        "Worker exits by reason",
        "Workers leaving the pool per second, by why they ended: max_requests and reload "
        "are planned, the rest cost requests.",
        "short",
        [("sum by (pool, reason) (rate(" + sel("badgateway_worker_exits_total") + RATE + "))", "{{reason}} ({{pool}})")],
        w=10,
    )
    b.add(
        lines(),
        "OOM kills",
        "Kills per second: each pool's workers (kernel log; pool \"-\" = no known pool) "
        "and the host's total (vmstat).",
        "short",
        [
            ("sum by (instance, pool) (rate(" + sel("badgateway_oom_kills_total") + RATE + "))", "{{pool}} on {{instance}}"),
            ("sum by (instance) (rate(" + sel("badgateway_kernel_oom_kills_total", pool=False) + RATE + "))", "host {{instance}}"),
        ],
        w=10,
    )
    b.add(
        ranked(drill=False),
        "Workers that ended, time range",
        "Exits in the dashboard's time range by pool, host and reason, most first.",
        "short",
        [(
            "sum by (instance, pool, reason) (increase(" + sel("badgateway_worker_exits_total") + RANGE + ")) > 0",
            "{{reason}} {{pool}} on {{instance}}",
        )],
        instant=True,
        fmt=pm.PromQueryFormat.TABLE,
    )
    b.add(
        lines(),
        "Worker heartbeat age",
        "Seconds since each worker last sent its master a heartbeat; it climbs for a stuck "
        "worker until Gunicorn's --timeout kills it (reason timeout).",
        "s",
        [("max by (instance, pool, slot) (" + sel("badgateway_worker_heartbeat_age_seconds") + ")", "{{pool}}/{{slot}} on {{instance}}")],
    )

    b.section("3. Memory per slot against the limit, and the trend to the next kill")
    limit = "instance_pool:badgateway_pool_memory_limit:bytes{" + JIP + "}"
    workers = "sum by (job, instance, pool) (" + sel("badgateway_pool_workers") + ")"
    share = "(max by (job, instance, pool) (" + limit + ") / " + workers + ")"
    pss = "sum by (job, instance, pool) (" + sel("badgateway_pool_memory_bytes", 'type="pss"') + ")"
    b.add(
        lines(),
        "Worker PSS per slot, share of its part of the limit",
        "Proportional memory of each worker over its part of the pool's limit (the "
        "cgroup's limit, or the pool's memory plus the host's MemAvailable, divided by "
        "the live workers). Near 100% the pool is about to be OOM-killed; recycling "
        "(max_requests) shows as a sawtooth under it, an OOM kill as a drop with a red "
        "annotation.",
        "percentunit",
        [(
            "max by (job, instance, pool, slot) (" + sel("badgateway_worker_memory_bytes", 'type="pss"') + ")"
            " / on (job, instance, pool) group_left () " + share,
            "{{pool}}/{{slot}} on {{instance}}",
        )],
    )
    b.add(
        lines(),
        "Pool memory, share of the limit",
        "Master plus workers (PSS) over the limit the alerts use "
        "(instance_pool:badgateway_pool_memory_limit:bytes), and the memory charged to "
        "the pool's cgroup over the cgroup's limit, which is what the kernel kills at.",
        "percentunit",
        [
            (pss + " / on (job, instance, pool) max by (job, instance, pool) (" + limit + ")", "PSS {{pool}} on {{instance}}"),
            (
                "max by (job, instance, pool) (" + sel("badgateway_pool_cgroup_memory_bytes") + ")"
                " / max by (job, instance, pool) (" + sel("badgateway_pool_cgroup_memory_limit_bytes") + ")",
                "cgroup {{pool}} on {{instance}}",
            ),
        ],
    )
    b.add(
        # Logarithmic: a pool limited by the host is days away while one
        # in a small cgroup is minutes away.
        lines().scale_distribution(common.ScaleDistributionConfig().type(cm.ScaleDistribution.LOG).log(10)),
        "Time to the limit at the current growth",
        "How long until the pool's PSS reaches its limit if it keeps growing as over the "
        "last rate interval (a logarithmic axis); no line while it does not grow. Minutes "
        "here mean the next OOM kill is minutes away.",
        "s",
        [(
            "(max by (job, instance, pool) (" + limit + ") - " + pss + ") / ("
            "sum by (job, instance, pool) (deriv(" + sel("badgateway_pool_memory_bytes", 'type="pss"') + RATE + ")) > 0)",
            "{{pool}} on {{instance}}",
        )],
    )
    b.add(
        lines(),
        "Host memory available",
        "The share of each host's memory the kernel can still give without swapping; it "
        "is the limit of a pool that has no cgroup limit.",
        "percentunit",
        [(
            "min by (instance) (" + sel("badgateway_host_memory_available_bytes", pool=False)
            + " / " + sel("badgateway_host_memory_total_bytes", pool=False) + ")",
            "{{instance}}",
        )],
    )

    b.section("4. Recovery numbers")
    b.add(
        bars(),
        "Add RAM: the limit against what the pool needs",
        "As `badgateway_exporter diagnose` reckons it: the pool's limit, its memory now, "
        "and its live workers times the last OOM victim's size (what it needs for every "
        "worker to be that large). Needed above the limit: give the pool more memory, or "
        "recycle workers sooner.",
        "bytes",
        [
            ("max by (instance, pool) (" + limit + ")", "limit {{pool}}"),
            (pss, "now {{pool}}"),
            (
                "sum by (job, instance, pool) (" + sel("badgateway_oom_kill_victim_memory_bytes") + ") * " + workers,
                "needed {{pool}}",
            ),
        ],
        w=8,
        instant=True,
    )
    b.add(
        lines(),
        "Recycle workers: growth per request",
        "Bytes the growing workers of each pool add per request served. Their share of the "
        "limit, less a fresh worker's size, divided by this is how many requests a worker "
        "can serve: set --max-requests (with --max-requests-jitter) below it.",
        "bytes",
        [(
            "sum by (job, instance, pool) (deriv(" + sel("badgateway_worker_memory_bytes", 'type="pss"') + RATE + ") > 0) / "
            "sum by (job, instance, pool) (rate(" + sel("badgateway_nginx_responses_total", pool=False) + RATE + ")" + POOL_OF + ")",
            "{{pool}} on {{instance}}",
        )],
        w=8,
    )
    b.add(
        lines(),
        "Backlog: listen queue against its limit",
        "Connections waiting for a worker on each listening socket (peak over the sampling "
        "window) and the backlog; at the limit nginx gets EAGAIN and answers 502 "
        "(backlog_full): raise --backlog and net.core.somaxconn, or add workers.",
        "short",
        [
            ("max by (instance, pool, listener) (" + sel("badgateway_pool_listen_queue_peak") + ")", "peak {{pool}} {{listener}}"),
            ("max by (instance, pool, listener) (" + sel("badgateway_pool_listen_queue_limit") + ")", "limit {{pool}} {{listener}}"),
        ],
        w=8,
    )
    b.add(
        last_value(),
        "Sources up",
        "Each source the exporter reads: 0 means its evidence is missing, the causes above "
        "fall back to other, and the alerts built on it cannot fire.",
        "bool_on_off",
        [("min by (instance, source) (" + sel("badgateway_source_up", pool=False) + ")", "{{source}} on {{instance}}")],
        w=24,
        h=5,
        instant=True,
    )
    return b


def fleet():
    b = Board(
        "badgateway-fleet",
        "badgateway / Fleet",
        "Many hosts behind one Prometheus: pools and hosts ranked by 502s and OOM kills "
        "over the dashboard's time range; a pool's row opens it in the overview. Needs "
        "the rules in alerts/.",
        ("badgateway-overview", "Overview", "The 502 checklist for the selected pools"),
    )
    tbl = pm.PromQueryFormat.TABLE
    b.section("Rankings")
    b.add(
        ranked(),
        "Pools by 502s",
        "502 Bad Gateway answers in the time range, per pool and host, most first.",
        "short",
        [(
            "topk(20, sum by (instance, pool) (increase("
            + sel("badgateway_nginx_responses_total", 'status="502"', pool=False) + RANGE + ")" + POOL_OF + ") > 0)",
            "{{pool}} on {{instance}}",
        )],
        instant=True,
        fmt=tbl,
    )
    b.add(
        ranked(),
        "Pools by OOM kills",
        "Workers the kernel OOM-killed in the time range, per pool and host, most first.",
        "short",
        [(
            "topk(20, sum by (instance, pool) (increase(" + sel("badgateway_oom_kills_total", 'pool!="-"') + RANGE + ")) > 0)",
            "{{pool}} on {{instance}}",
        )],
        instant=True,
        fmt=tbl,
    )
    b.add(
        ranked(drill=False),
        "Hosts by OOM kills",
        "Every OOM kill on each host in the time range (vmstat), most first.",
        "short",
        [(
            "topk(20, sum by (instance) (increase(" + sel("badgateway_kernel_oom_kills_total", pool=False) + RANGE + ")) > 0)",
            "{{instance}}",
        )],
        instant=True,
        fmt=tbl,
    )
    b.add(
        ranked(),
        "Pools by failed requests and cause",
        "502s and 504s in the time range by pool, host and cause, most first.",
        "short",
        [(
            "topk(20, sum by (instance, pool, cause) (increase(" + sel("badgateway_failed_requests_total") + RANGE + ")) > 0)",
            "{{cause}} {{pool}} on {{instance}}",
        )],
        instant=True,
        fmt=tbl,
    )
    b.section("Now")
    b.add(
        ranked(),
        "Pools down",
        "Pools whose master process is gone now.",
        "none",
        [("max by (instance, pool) (" + sel("badgateway_pool_up") + ") == 0", "{{pool}} on {{instance}}")],
        w=8,
        instant=True,
        fmt=tbl,
    )
    b.add(
        ranked(desc=False, drill=False),
        "Hosts by MemAvailable",
        "The ten hosts with the smallest share of available memory.",
        "percentunit",
        [(
            "bottomk(10, min by (instance) (" + sel("badgateway_host_memory_available_bytes", pool=False)
            + " / " + sel("badgateway_host_memory_total_bytes", pool=False) + "))",
            "{{instance}}",
        )],
        w=8,
        instant=True,
        fmt=tbl,
    )
    b.add(
        lines(),
        "502 share, worst pools",
        "The ten pools with the highest share of 502 answers.",
        "percentunit",
        [(
            "topk(10, sum by (instance, pool) (rate("
            + sel("badgateway_nginx_responses_total", 'status="502"', pool=False) + RATE + ")" + POOL_OF + ") / "
            + "sum by (instance, pool) (rate(" + sel("badgateway_nginx_responses_total", pool=False) + RATE + ")" + POOL_OF + "))",
            "{{pool}} on {{instance}}",
        )],
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
