//! The testbed as discovery last read it: the node listing (pool counts, filters, paging), one node's page,
//! and the sites. Every signed-in user sees them.
//!
//! The listing's filters and page live in the URL (`/nodes?class=dsl&q=mit&offset=50`): a link or a reload
//! shows the same listing, and without JavaScript the filter form is a plain GET form. Once hydrated, every
//! change of a filter updates the URL (and so the listing) at once.
//!
//! Above the listing, the pools' counts over the last week; on a node's page, its liveness (pool history,
//! next check, service sliver, availability, MTBF, set-up success) and its metrics over the last day. The
//! charts are SVG drawn on the server ([`super::chart`]), so they show without JavaScript.

use super::chart::{Line, Plot};
use super::widgets::{Listing, LoadError, Table, percent, seconds, when};
use crate::error::AppError;
use crate::nodes::{
    IdentityEvent, MetricPoint, NodeDetail, NodeLiveness, NodeMetrics, NodePage, NodeQuery, NodeView,
    PathView, PoolCount, PoolCountsPoint, PoolEventView, SiteView, SliverView, get_node, get_node_liveness,
    get_node_metrics, list_nodes, list_sites, pool_counts_history,
};
use crate::topology::LinkClass;
use chrono::TimeDelta;
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::{
    NavigateOptions,
    components::Form,
    hooks::{use_navigate, use_params_map, use_query_map},
    params::ParamsMap,
};

/// Nodes per page of the listing.
const PAGE: u64 = 50;

/// The pools, in the order the counts are shown.
const POOLS: [&str; 5] = ["new", "free", "down", "gone", "held"];

/// The listing's query as the URL gives it (empty values are no filter).
fn query_of(params: &ParamsMap) -> NodeQuery {
    let text = |key: &str| params.get(key).filter(|v| !v.trim().is_empty());
    NodeQuery {
        site: text("site"),
        class: text("class"),
        pool: text("pool"),
        q: text("q"),
        offset: params.get("offset").and_then(|o| o.parse().ok()).filter(|o| *o > 0),
        limit: Some(PAGE),
    }
}

/// The URL of the listing for `query`.
fn href(query: &NodeQuery) -> String {
    let mut params = ParamsMap::new();
    for (key, value) in
        [("site", &query.site), ("class", &query.class), ("pool", &query.pool), ("q", &query.q)]
    {
        if let Some(value) = value {
            params.insert(key, value.clone());
        }
    }
    if let Some(offset) = query.offset.filter(|o| *o > 0) {
        params.insert("offset", offset.to_string());
    }
    format!("/nodes{}", params.to_query_string())
}

#[component]
pub fn NodesPage() -> impl IntoView {
    let params = use_query_map();
    let query = Memo::new(move |_| query_of(&params.read()));
    let page = Resource::new(move || query.get(), list_nodes);
    let sites = Resource::new(|| (), |_| list_sites());
    let history = Resource::new(|| (), |_| pool_counts_history());
    // The filters stay outside the listing's `Transition`: re-made with every answer, the search box would
    // lose its focus at each keystroke.
    view! {
        <Title text="Nodes · Portolan"/>
        <section class="card">
            <h1>"Nodes"</h1>
            <Transition fallback=|| view! { <p>"Loading…"</p> }>
                {move || Suspend::new(async move {
                    page.await.ok().map(|page| view! { <PoolCounts pools=page.pools query/> })
                })}
            </Transition>
            <Transition fallback=|| ()>
                {move || Suspend::new(async move {
                    history.await.ok().filter(|points| points.len() >= 2).map(pool_history_plot)
                })}
            </Transition>
            <Filters query sites/>
            <Transition fallback=|| ()>
                {move || Suspend::new(async move {
                    match page.await {
                        Ok(page) => view! { <NodeList page query/> }.into_any(),
                        Err(error) => view! { <LoadError error/> }.into_any(),
                    }
                })}
            </Transition>
        </section>
    }
}

/// Nodes per pool among those the other filters match; each links to the listing of that pool (or, when
/// that pool is the filter already, back to all pools).
#[component]
fn PoolCounts(pools: Vec<PoolCount>, query: Memo<NodeQuery>) -> impl IntoView {
    let current = query.get_untracked();
    view! {
        <ul class="pools" data-testid="pool-counts">
            {POOLS.iter().map(|pool| {
                let count = pools.iter().find(|p| p.pool == *pool).map_or(0, |p| p.count);
                let chosen = current.pool.as_deref() == Some(*pool);
                let target = NodeQuery {
                    pool: (!chosen).then(|| (*pool).to_owned()),
                    offset: None,
                    ..current.clone()
                };
                view! {
                    <li class:chosen=chosen>
                        <a href=href(&target) data-testid=format!("pool-{pool}") data-count=count>
                            <span class="count">{count}</span> " " {*pool}
                        </a>
                    </li>
                }
            }).collect_view()}
        </ul>
    }
}

/// How many nodes a point counts in one pool.
type PoolCountOf = fn(&PoolCountsPoint) -> u32;

/// The pools drawn over time. `gone` is left out: it only grows, and would flatten the pools that matter.
const POOLS_DRAWN: [(&str, PoolCountOf); 4] =
    [("free", |p| p.free), ("down", |p| p.down), ("new", |p| p.new), ("held", |p| p.held)];

/// How many nodes were in each pool over the last week (`points`: at least two, oldest first).
fn pool_history_plot(points: Vec<PoolCountsPoint>) -> impl IntoView {
    let (from, to) = match (points.first(), points.last()) {
        (Some(first), Some(last)) => (first.at, last.at),
        _ => return ().into_any(),
    };
    let lines = POOLS_DRAWN
        .iter()
        .map(|&(pool, count)| Line {
            label: pool,
            class: pool,
            samples: points.iter().map(|p| (p.at, Some(f64::from(count(p))))).collect(),
        })
        .collect();
    view! {
        <figure class="pool-history">
            <Plot title="Nodes per pool, last week" unit="" lines from to max_gap=None from_zero=true
                test_id="pool-history-plot"/>
            <figcaption class="muted">"Times in UTC."</figcaption>
        </figure>
    }
    .into_any()
}

/// Changes one filter of the listing: navigates to the listing with it (from the first page), replacing the
/// URL rather than pushing one for each keystroke.
type SetFilter = std::sync::Arc<dyn Fn(fn(&mut NodeQuery, Option<String>), String) + Send + Sync>;

/// The filters: a GET form (so it works without JavaScript); once hydrated, each change navigates at once.
#[component]
fn Filters(query: Memo<NodeQuery>, sites: Resource<Result<Vec<SiteView>, AppError>>) -> impl IntoView {
    let navigate = use_navigate();
    let set: SetFilter = std::sync::Arc::new(move |change, value: String| {
        let mut next = query.get_untracked();
        change(&mut next, Some(value).filter(|v| !v.trim().is_empty()));
        next.offset = None;
        navigate(&href(&next), NavigateOptions { replace: true, scroll: false, ..Default::default() });
    });
    let classes = LinkClass::ALL.iter().map(|c| c.as_str().to_owned()).collect::<Vec<_>>();
    let pools = POOLS.map(str::to_owned).to_vec();
    let (by_class, by_pool, by_text) = (set.clone(), set.clone(), set.clone());
    let initial_q = query.get_untracked().q.unwrap_or_default();
    view! {
        <Form method="GET" action="/nodes" attr:class="filters" attr:data-testid="filters">
            <SiteFilter query sites set/>
            <Choice label="Link class" name="class" test_id="filter-class" choices=classes
                chosen=Signal::derive(move || query.get().class)
                on_change=move |v| by_class(|q, v| q.class = v, v)/>
            <Choice label="Pool" name="pool" test_id="filter-pool" choices=pools
                chosen=Signal::derive(move || query.get().pool)
                on_change=move |v| by_pool(|q, v| q.pool = v, v)/>
            <label>"Search"
                <input type="search" name="q" data-testid="filter-q" placeholder="hostname or IP"
                    maxlength="256" value=initial_q
                    on:input=move |ev| by_text(|q, v| q.q = v, event_target_value(&ev))/>
            </label>
            <button type="submit">"Filter"</button>
        </Form>
    }
}

/// A `<select>` of `choices` after "any" (the empty value), showing `chosen`.
#[component]
fn Choice(
    label: &'static str,
    name: &'static str,
    test_id: &'static str,
    choices: Vec<String>,
    #[prop(into)] chosen: Signal<Option<String>>,
    on_change: impl Fn(String) + Send + Sync + 'static,
) -> impl IntoView {
    view! {
        <label>{label}
            <select name=name data-testid=test_id
                prop:value=move || chosen.get().unwrap_or_default()
                on:change=move |ev| on_change(event_target_value(&ev))>
                <option value="">"any"</option>
                {choices.into_iter().map(|c| {
                    let selected = {
                        let c = c.clone();
                        move || chosen.get().as_ref() == Some(&c)
                    };
                    let text = c.clone();
                    view! { <option value=c selected=selected>{text}</option> }
                }).collect_view()}
            </select>
        </label>
    }
}

/// The site filter, once the sites have loaded.
#[component]
fn SiteFilter(
    query: Memo<NodeQuery>,
    sites: Resource<Result<Vec<SiteView>, AppError>>,
    set: SetFilter,
) -> impl IntoView {
    view! {
        <Transition fallback=|| ()>
            {move || {
                let set = set.clone();
                Suspend::new(async move {
                    let names = sites.await.unwrap_or_default().into_iter().map(|s| s.login_base).collect();
                    view! {
                        <Choice label="Site" name="site" test_id="filter-site" choices=names
                            chosen=Signal::derive(move || query.get().site)
                            on_change=move |v| set(|q, v| q.site = v, v)/>
                    }
                })
            }}
        </Transition>
    }
}

/// The page of nodes, with how many match and links to the pages before and after.
#[component]
fn NodeList(page: NodePage, query: Memo<NodeQuery>) -> impl IntoView {
    let current = query.get_untracked();
    let offset = current.offset.unwrap_or(0);
    let shown = page.nodes.len() as u64;
    let total = page.total;
    let previous =
        (offset > 0).then(|| NodeQuery { offset: Some(offset.saturating_sub(PAGE)), ..current.clone() });
    let next = (offset + shown < total).then(|| NodeQuery { offset: Some(offset + PAGE), ..current.clone() });
    let range =
        if shown == 0 { String::new() } else { format!(", showing {}–{}", offset + 1, offset + shown) };
    view! {
        <p class="muted" data-testid="node-total" data-total=total>{format!("{total} nodes match{range}")}</p>
        <Table
            items=page.nodes
            empty="No nodes match."
            test_id="nodes"
            columns=&["Hostname", "Site", "Link class", "Pool", "Last seen"]
            row=node_row
        />
        <p class="paging">
            {previous.map(|q| view! { <a href=href(&q) data-testid="previous-page">"← Previous"</a> })}
            " "
            {next.map(|q| view! { <a href=href(&q) data-testid="next-page">"Next →"</a> })}
        </p>
    }
}

fn node_row(n: NodeView) -> impl IntoView {
    let site = href(&NodeQuery { site: Some(n.site.clone()), ..Default::default() });
    view! {
        <tr>
            <td><a href=format!("/nodes/{}", n.id)>{n.hostname}</a></td>
            <td><a href=site>{n.site}</a></td>
            <td>{n.link_class}</td>
            <td>{n.pool}</td>
            <td class="at">{when(n.last_seen)}</td>
        </tr>
    }
}

#[component]
pub fn NodePage() -> impl IntoView {
    let params = use_params_map();
    let id = move || params.read().get("id").and_then(|id| id.parse::<i64>().ok());
    let detail = Resource::new(id, |id| async move {
        match id {
            Some(id) => get_node(id).await,
            None => Err(AppError::not_found("node")),
        }
    });
    // Made here with the detail, not inside its Suspend (a resource made while a Suspend resolves gets
    // another id in the browser than on the server, and hydration fails).
    let liveness = Resource::new(id, |id| async move {
        match id {
            Some(id) => get_node_liveness(id).await,
            None => Err(AppError::not_found("node")),
        }
    });
    let metrics = Resource::new(id, |id| async move {
        match id {
            Some(id) => get_node_metrics(id).await,
            None => Err(AppError::not_found("node")),
        }
    });
    view! {
        <Transition fallback=|| view! { <p>"Loading…"</p> }>
            {move || Suspend::new(async move {
                match detail.await {
                    Ok(detail) => view! { <Node detail liveness metrics/> }.into_any(),
                    Err(error) => view! { <LoadError error/> }.into_any(),
                }
            })}
        </Transition>
    }
}

/// "unknown" for a metric no one has reported.
fn metric(value: Option<f64>, unit: &str) -> String {
    value.map_or_else(|| "unknown".to_owned(), |v| format!("{v}{unit}"))
}

#[component]
fn Node(
    detail: NodeDetail,
    liveness: Resource<Result<NodeLiveness, AppError>>,
    metrics: Resource<Result<NodeMetrics, AppError>>,
) -> impl IntoView {
    let NodeDetail { node, tags, identity, experiments, paths, .. } = detail.clone();
    let tags: Vec<(String, String)> = tags.into_iter().collect();
    let site = href(&NodeQuery { site: Some(node.site.clone()), ..Default::default() });
    let or_dash = |v: Option<String>| v.unwrap_or_else(|| "—".to_owned());
    view! {
        <Title text=format!("{} · Portolan", node.hostname)/>
        <section class="card">
            <h1>{node.hostname.clone()}</h1>
            <table class="attributes" data-testid="attributes">
                <tbody>
                    <tr><th>"Site"</th><td><a href=site>{node.site.clone()}</a></td></tr>
                    <tr><th>"Link class"</th><td>{node.link_class.clone()}</td></tr>
                    <tr><th>"Pool"</th><td data-testid="node-pool">{node.pool.clone()}</td></tr>
                    <tr><th>"IP"</th><td>{or_dash(node.ip.clone())}</td></tr>
                    <tr><th>"Testbed id"</th><td>{or_dash(node.testbed_id.map(|i| i.to_string()))}</td></tr>
                    <tr><th>"Boot state"</th><td>{node.boot_state.clone()}</td></tr>
                    <tr><th>"Country"</th><td>{or_dash(node.country.clone())}</td></tr>
                    <tr><th>"First seen"</th><td>{when(node.first_seen)}</td></tr>
                    <tr><th>"Last seen"</th><td>{when(node.last_seen)}</td></tr>
                    <tr><th>"Host key"</th><td><code class="wrap">{or_dash(detail.host_key.clone())}</code></td></tr>
                </tbody>
            </table>
        </section>
        <Liveness liveness/>
        <MetricsChart metrics/>
        <div class="columns">
            <Metrics detail/>
            <section class="card">
                <h2>"Tags"</h2>
                <Table
                    items=tags
                    empty="No tags."
                    test_id="tags"
                    columns=&["Tag", "Value"]
                    row=|(k, v): (String, String)| view! { <tr><td>{k}</td><td>{v}</td></tr> }
                />
            </section>
        </div>
        <section class="card">
            <h2>"Experiments using it"</h2>
            <ul class="plain" data-testid="experiments">
                {experiments.is_empty().then(|| view! { <li class="muted">"none"</li> })}
                {experiments.into_iter().map(|e| view! { <li>{e}</li> }).collect_view()}
            </ul>
        </section>
        <section class="card">
            <h2>"Identity history"</h2>
            <Table
                items=identity
                empty="No events."
                test_id="identity"
                columns=&["Kind", "When", "Old → new", "Score", "Detail"]
                row=identity_row
            />
        </section>
        <section class="card">
            <h2>"Nearest paths"</h2>
            <Table
                items=paths
                empty="No measured paths."
                test_id="paths"
                columns=&["Peer", "Latency", "Bandwidth", "Loss", "Measured"]
                row=path_row
            />
        </section>
    }
}

#[component]
fn Metrics(detail: NodeDetail) -> impl IntoView {
    view! {
        <section class="card">
            <h2>"Metrics"</h2>
            <table class="attributes" data-testid="metrics">
                <tbody>
                    <tr><th>"Load"</th><td>{metric(detail.load, "")}</td></tr>
                    <tr><th>"Free memory"</th><td>{metric(detail.memory_free_mb, " MB")}</td></tr>
                    <tr><th>"Free disk"</th><td>{metric(detail.disk_free_pct, " %")}</td></tr>
                    <tr><th>"Measured"</th><td>{detail.metrics_at.map_or_else(|| "unknown".to_owned(), when)}</td></tr>
                    <tr><th>"Reliability"</th><td>{format!("{:.2}", detail.reliability)}</td></tr>
                    <tr><th>"Recent failures"</th><td>{detail.recent_failures}</td></tr>
                </tbody>
            </table>
        </section>
    }
}

/// The node's liveness, once loaded.
#[component]
fn Liveness(liveness: Resource<Result<NodeLiveness, AppError>>) -> impl IntoView {
    view! {
        <Transition fallback=|| view! { <section class="card"><p>"Loading…"</p></section> }>
            {move || Suspend::new(async move {
                match liveness.await {
                    Ok(liveness) => view! { <LivenessCard liveness/> }.into_any(),
                    Err(error) => view! {
                        <section class="card"><h2>"Liveness"</h2><LoadError error/></section>
                    }.into_any(),
                }
            })}
        </Transition>
    }
}

/// Mean time between failures over the week, or why there is none.
fn mtbf(mtbf_s: Option<f64>, failures: u32) -> String {
    match mtbf_s {
        Some(s) => {
            format!("{} ({failures} failure{})", seconds(Some(s)), if failures == 1 { "" } else { "s" })
        }
        None => "no failure this week".to_owned(),
    }
}

/// Where the node stands with liveness: its pool and next check, its record, its service sliver and its
/// pool history (newest first).
#[component]
fn LivenessCard(liveness: NodeLiveness) -> impl IntoView {
    let NodeLiveness { pool, check_failures, next_check_at, service_sliver, lifetime, pool_history, .. } =
        liveness;
    let success = format!(
        "{}/{} ({})",
        lifetime.successes,
        lifetime.attempts,
        percent(
            (lifetime.attempts > 0).then(|| f64::from(lifetime.successes) / f64::from(lifetime.attempts))
        )
    );
    view! {
        <section class="card" data-testid="liveness">
            <h2>"Liveness"</h2>
            <div class="columns">
                <table class="attributes" data-testid="lifetime">
                    <tbody>
                        <tr><th>"Pool"</th><td>{pool}</td></tr>
                        <tr><th>"Next check"</th>
                            <td data-testid="next-check">{next_check_at.map_or_else(|| "not scheduled".to_owned(), when)}</td></tr>
                        <tr><th>"Consecutive failures"</th><td data-testid="check-failures">{check_failures}</td></tr>
                        <tr><th>"Available, last day"</th>
                            <td data-testid="availability-day">{percent(lifetime.availability_day)}</td></tr>
                        <tr><th>"Available, last week"</th>
                            <td data-testid="availability-week">{percent(lifetime.availability_week)}</td></tr>
                        <tr><th>"MTBF, last week"</th>
                            <td data-testid="mtbf">{mtbf(lifetime.mtbf_s, lifetime.failures_week)}</td></tr>
                        <tr><th>"Set-up success"</th><td data-testid="setup-success">{success}</td></tr>
                    </tbody>
                </table>
                <ServiceSliver sliver=service_sliver/>
            </div>
            <h3>"Pool history"</h3>
            <Table
                items=pool_history
                empty="No pool changes yet."
                test_id="pool-history"
                columns=&["When", "From → to", "Why"]
                row=pool_event_row
            />
        </section>
    }
}

/// The node's service sliver: how far its bring-up got, whether it heartbeats, and its last error.
#[component]
fn ServiceSliver(sliver: Option<SliverView>) -> impl IntoView {
    let Some(s) = sliver else {
        return view! { <p class="muted" data-testid="service-sliver">"No service sliver yet."</p> }
            .into_any();
    };
    let or_dash = |at: Option<chrono::DateTime<chrono::Utc>>| at.map_or_else(|| "—".to_owned(), when);
    let error = match s.last_error {
        Some(message) => {
            let context: Vec<String> = [s.error_step.map(|step| format!("at {step}")), s.error_class]
                .into_iter()
                .flatten()
                .collect();
            let context =
                if context.is_empty() { String::new() } else { format!(" ({})", context.join(", ")) };
            view! { <span class="error">{message}</span>{context} }.into_any()
        }
        None => "none".into_any(),
    };
    view! {
        <table class="attributes" data-testid="service-sliver">
            <tbody>
                <tr><th>"Service sliver"</th><td>{s.slice}</td></tr>
                <tr><th>"Step"</th><td data-testid="sliver-step">{s.step}</td></tr>
                <tr><th>"Health"</th><td data-testid="sliver-health">{s.health}</td></tr>
                <tr><th>"Up since"</th><td>{or_dash(s.up_at)}</td></tr>
                <tr><th>"Last heartbeat"</th><td>{or_dash(s.last_heartbeat_at)}</td></tr>
                <tr><th>"Heartbeats"</th><td data-testid="heartbeats">{s.heartbeats}</td></tr>
                <tr><th>"Last error"</th><td data-testid="sliver-error">{error}</td></tr>
            </tbody>
        </table>
    }
    .into_any()
}

fn pool_event_row(e: PoolEventView) -> impl IntoView {
    view! {
        <tr>
            <td class="at">{when(e.at)}</td>
            <td>{format!("{} → {}", e.from, e.to)}</td>
            <td>{e.reason}</td>
        </tr>
    }
}

/// One of the metrics charted on a node's page.
struct MetricPlot {
    title: &'static str,
    unit: &'static str,
    /// Its CSS class (colour) and the end of its plot's `data-testid`.
    class: &'static str,
    value: fn(&MetricPoint) -> Option<f64>,
}

const METRIC_PLOTS: [MetricPlot; 5] = [
    MetricPlot { title: "CPU load", unit: "1 min", class: "load", value: |p| p.load },
    MetricPlot { title: "Free memory", unit: "MB", class: "memory", value: |p| p.memory_free_mb },
    MetricPlot { title: "Free disk", unit: "%", class: "disk", value: |p| p.disk_free_pct },
    MetricPlot { title: "Network in", unit: "B/s", class: "rx", value: |p| p.net_rx_bps },
    MetricPlot { title: "Network out", unit: "B/s", class: "tx", value: |p| p.net_tx_bps },
];

/// The node's metrics over the last day, once loaded.
#[component]
fn MetricsChart(metrics: Resource<Result<NodeMetrics, AppError>>) -> impl IntoView {
    view! {
        <section class="card">
            <h2>"The last day"</h2>
            <Transition fallback=|| view! { <p>"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match metrics.await {
                        Ok(metrics) => metric_plots(metrics).into_any(),
                        Err(error) => view! { <LoadError error/> }.into_any(),
                    }
                })}
            </Transition>
        </section>
    }
}

/// One small plot per metric, each on its own scale, over the same day; a gap where nothing was reported.
fn metric_plots(metrics: NodeMetrics) -> impl IntoView {
    let NodeMetrics { since, until, points } = metrics;
    if points.is_empty() {
        return view! {
            <p class="muted" data-testid="no-metrics">"No metrics yet: the node's service sliver has not reported any."</p>
        }
        .into_any();
    }
    // Buckets are a minute wide (coarser where older ones were folded): more than three widths between two
    // is a stretch without heartbeats.
    let widest = points.iter().map(|p| p.width_s).max().unwrap_or(60).max(60);
    let max_gap = Some(TimeDelta::seconds(3 * i64::from(widest)));
    let plots = METRIC_PLOTS
        .iter()
        .map(|&MetricPlot { title, unit, class, value }| {
            let line =
                Line { label: title, class, samples: points.iter().map(|p| (p.at, value(p))).collect() };
            view! {
                <Plot title unit lines=vec![line] from=since to=until max_gap from_zero=false
                    test_id=format!("plot-{class}")/>
            }
        })
        .collect_view();
    view! {
        <div class="charts" data-testid="metrics-chart">{plots}</div>
        <p class="muted">"Means per minute of the service sliver's heartbeats; times in UTC; a gap: nothing reported."</p>
    }
    .into_any()
}

/// A JSON object of identifying attributes as `key=value, …` ("—" when empty).
fn attributes(value: &serde_json::Value) -> String {
    let shown = match value {
        serde_json::Value::Object(map) => map
            .iter()
            .map(|(k, v)| match v {
                serde_json::Value::String(s) => format!("{k}={s}"),
                other => format!("{k}={other}"),
            })
            .collect::<Vec<_>>()
            .join(", "),
        serde_json::Value::Null => String::new(),
        other => other.to_string(),
    };
    if shown.is_empty() { "—".to_owned() } else { shown }
}

fn identity_row(e: IdentityEvent) -> impl IntoView {
    view! {
        <tr>
            <td>{e.kind}</td>
            <td class="at">{when(e.at)}</td>
            <td class="change">{attributes(&e.old)} " → " {attributes(&e.new)}</td>
            <td>{e.score.map_or_else(|| "—".to_owned(), |s| s.to_string())}</td>
            <td>{e.detail}</td>
        </tr>
    }
}

fn path_row(p: PathView) -> impl IntoView {
    view! {
        <tr>
            <td><a href=format!("/nodes/{}", p.peer_id)>{p.peer_hostname}</a></td>
            <td>{format!("{:.1} ms", p.latency_ms)}</td>
            <td>{format!("{:.0} kbit/s", p.bandwidth_kbps)}</td>
            <td>{format!("{:.1} %", p.loss * 100.0)}</td>
            <td class="at">{when(p.measured_at)}</td>
        </tr>
    }
}

#[component]
pub fn SitesPage() -> impl IntoView {
    let sites = Resource::new(|| (), |_| list_sites());
    view! {
        <Title text="Sites · Portolan"/>
        <section class="card">
            <h1>"Sites"</h1>
            <Listing
                items=sites
                empty="No sites yet: discovery has not read the testbed."
                test_id="sites"
                columns=&["Site", "Name", "Listed", "Nodes", "Allocatable"]
                row=|s: SiteView| {
                    let nodes = href(&NodeQuery { site: Some(s.login_base.clone()), ..Default::default() });
                    view! {
                        <tr>
                            <td><a href=nodes>{s.login_base}</a></td>
                            <td>{s.name}</td>
                            <td>{if s.present { "yes" } else { "no" }}</td>
                            <td>{s.nodes}</td>
                            <td>{s.allocatable}</td>
                        </tr>
                    }
                }
            />
        </section>
    }
}

// The router escapes URLs with the browser's functions unless built for the server.
#[cfg(all(test, feature = "ssr"))]
mod tests {
    use super::*;

    #[test]
    fn the_listing_url_holds_its_filters_and_page() {
        let params: ParamsMap =
            [("class", "dsl"), ("q", "planet lab"), ("site", " "), ("offset", "50"), ("pool", "")]
                .into_iter()
                .collect();
        let query = query_of(&params);
        assert_eq!(query.class.as_deref(), Some("dsl"));
        assert_eq!(query.q.as_deref(), Some("planet lab"));
        assert_eq!((&query.site, &query.pool), (&None, &None), "empty values are no filter");
        assert_eq!((query.offset, query.limit), (Some(50), Some(PAGE)));
        let url = href(&NodeQuery { site: Some("mit".into()), ..query.clone() });
        assert!(url.starts_with("/nodes?"), "{url}");
        for part in ["class=dsl", "site=mit", "offset=50"] {
            assert!(url.contains(part), "{part} in {url}");
        }
        assert!(!url.contains("limit"), "the page size is not in the URL: {url}");
        assert!(!url.contains("planet lab"), "the search text is escaped: {url}");
        assert_eq!(href(&NodeQuery { offset: Some(0), ..Default::default() }), "/nodes");
    }
}
