//! The operators' page: the admission thresholds (with a live "what if" of what they would admit, asked of
//! the server at every change before anything is saved), the identity decisions waiting for an operator,
//! discovery's last runs, the liveness re-test queue (with "re-test now") and the provisioning statistics.
//! Anyone else is told the page is for operators only.

use super::{
    Auth,
    widgets::{ActionError, Listing, LoadError, PleaseLogIn, Table, percent, seconds, when},
};
use crate::error::AppError;
use crate::nodes::{
    AdmissionCounts, AdmissionView, AttemptStats, ClassCount, DecideIdentity, DecisionView, DiscoveryRunView,
    ProvisioningStats, PutAdmission, RetestItem, RetestNode, StepStats, admission_what_if, discovery_runs,
    get_admission, get_provisioning_stats, identity_decisions, retest_queue,
};
use leptos::prelude::*;
use leptos_meta::Title;

/// How many rejection reasons the "what if" panel lists.
const REASONS_SHOWN: usize = 5;

/// How long the thresholds must rest before the "what if" asks the server about them.
const ASK_AFTER: std::time::Duration = std::time::Duration::from_millis(250);

/// Whether the caller is an operator (false for visitors and on error).
async fn is_operator(auth: Auth) -> bool {
    matches!(auth.user.await, Ok(Some(user)) if user.is_operator)
}

/// The thresholds the "what if" counts: `None` for the stored ones, else the fields as last typed (or what is
/// wrong with them).
type Asked = RwSignal<Option<Result<AdmissionView, AppError>>>;

/// The admission part of the page: the stored thresholds, the "what if" of the thresholds being typed, and
/// saving them.
#[derive(Clone, Copy)]
struct Admission {
    stored: Resource<Result<Option<AdmissionView>, AppError>>,
    asked: Asked,
    what_if: Resource<Result<Option<AdmissionCounts>, AppError>>,
    save: ServerAction<PutAdmission>,
}

#[component]
pub fn OperatorsPage() -> impl IntoView {
    let auth = expect_context::<Auth>();
    // Made here, once per page, not inside the Suspends below: a resource made while a Suspend resolves gets
    // another id in the browser than it got on the server, and hydration fails. Nobody but an operator makes
    // the server fetch them.
    let decide = ServerAction::<DecideIdentity>::new();
    let stored = Resource::new(
        || (),
        move |_| async move { if is_operator(auth).await { get_admission().await.map(Some) } else { Ok(None) } },
    );
    let asked: Asked = RwSignal::new(None);
    let what_if = Resource::new(
        move || asked.get(),
        move |asked| async move {
            let thresholds = match asked {
                Some(typed) => typed?,
                None => match stored.await? {
                    Some(stored) => stored,
                    None => return Ok(None),
                },
            };
            admission_what_if(thresholds).await.map(Some)
        },
    );
    let admission = Admission { stored, asked, what_if, save: ServerAction::new() };
    let decisions = Resource::new(
        move || decide.version().get(),
        move |_| async move { if is_operator(auth).await { identity_decisions().await } else { Ok(Vec::new()) } },
    );
    let runs = Resource::new(
        || (),
        move |_| async move { if is_operator(auth).await { discovery_runs().await } else { Ok(Vec::new()) } },
    );
    // The queue is read again after each "re-test now", so the node shows as due at once.
    let retest = ServerAction::<RetestNode>::new();
    let queue = Resource::new(
        move || retest.version().get(),
        move |_| async move { if is_operator(auth).await { retest_queue().await } else { Ok(Vec::new()) } },
    );
    let provisioning = Resource::new(
        || (),
        move |_| async move {
            if is_operator(auth).await { get_provisioning_stats().await.map(Some) } else { Ok(None) }
        },
    );
    view! {
        <Title text="Operators · Portolan"/>
        <Transition fallback=|| view! { <p>"Loading…"</p> }>
            {move || Suspend::new(async move {
                match auth.user.await {
                    Ok(Some(user)) if user.is_operator => view! {
                        <Thresholds admission/>
                        <Decisions decisions decide/>
                        <Runs runs/>
                        <RetestQueue queue retest/>
                        <Provisioning stats=provisioning/>
                    }.into_any(),
                    Ok(Some(_)) => view! {
                        <section class="card" data-testid="operators-only">
                            <h1>"Operators only"</h1>
                            <p>"This page is for the testbed's operators."</p>
                        </section>
                    }.into_any(),
                    Ok(None) => view! { <PleaseLogIn/> }.into_any(),
                    Err(error) => view! { <LoadError error/> }.into_any(),
                }
            })}
        </Transition>
    }
}

#[component]
fn Thresholds(admission: Admission) -> impl IntoView {
    view! {
        <Transition fallback=|| view! { <p>"Loading…"</p> }>
            {move || Suspend::new(async move {
                match admission.stored.await {
                    Ok(Some(stored)) => view! { <AdmissionForm stored admission/> }.into_any(),
                    Ok(None) => ().into_any(),
                    Err(error) => view! { <LoadError error/> }.into_any(),
                }
            })}
        </Transition>
    }
}

/// The thresholds as typed: the text of each number field, and the checkbox.
#[derive(Clone, Copy)]
struct Draft {
    max_load: RwSignal<String>,
    min_disk_free_pct: RwSignal<String>,
    min_memory_free_mb: RwSignal<String>,
    max_metric_age_s: RwSignal<String>,
    max_path_age_s: RwSignal<String>,
    exclude_after_failures: RwSignal<String>,
    allow_untested: RwSignal<bool>,
}

/// A threshold's field: empty is off.
fn optional(field: &str, text: &str) -> Result<Option<f64>, AppError> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    text.parse::<f64>()
        .map(Some)
        .map_err(|_| AppError::invalid(field, format!("{field} must be a number, or empty for off")))
}

impl Draft {
    fn new(stored: &AdmissionView) -> Self {
        let text = |v: Option<f64>| RwSignal::new(v.map(|v| v.to_string()).unwrap_or_default());
        Self {
            max_load: text(stored.max_load),
            min_disk_free_pct: text(stored.min_disk_free_pct),
            min_memory_free_mb: text(stored.min_memory_free_mb),
            max_metric_age_s: text(stored.max_metric_age_s),
            max_path_age_s: text(stored.max_path_age_s),
            exclude_after_failures: RwSignal::new(stored.exclude_after_failures.to_string()),
            allow_untested: RwSignal::new(stored.allow_untested),
        }
    }

    /// The thresholds the fields say (tracked: a change of any field makes it again), or which field is wrong.
    fn thresholds(&self) -> Result<AdmissionView, AppError> {
        let failures = self.exclude_after_failures.get();
        let failures = failures.trim();
        Ok(AdmissionView {
            max_load: optional("max_load", &self.max_load.get())?,
            min_disk_free_pct: optional("min_disk_free_pct", &self.min_disk_free_pct.get())?,
            min_memory_free_mb: optional("min_memory_free_mb", &self.min_memory_free_mb.get())?,
            max_metric_age_s: optional("max_metric_age_s", &self.max_metric_age_s.get())?,
            max_path_age_s: optional("max_path_age_s", &self.max_path_age_s.get())?,
            exclude_after_failures: if failures.is_empty() {
                0
            } else {
                failures.parse().map_err(|_| {
                    AppError::invalid(
                        "exclude_after_failures",
                        "exclude_after_failures must be a whole number ≥ 0 (0: off)",
                    )
                })?
            },
            allow_untested: self.allow_untested.get(),
        })
    }

    fn thresholds_untracked(&self) -> Result<AdmissionView, AppError> {
        untrack(|| self.thresholds())
    }
}

/// The thresholds form and, beside it, what the thresholds as typed would admit.
#[component]
fn AdmissionForm(stored: AdmissionView, admission: Admission) -> impl IntoView {
    let Admission { asked, what_if, save, .. } = admission;
    let draft = Draft::new(&stored);
    // The "what if" follows the fields once they have rested for `ASK_AFTER` (counting reads every node and
    // path, so not at each keystroke). In the browser only: effects do not run on the server, which counts
    // the stored thresholds.
    let timer = StoredValue::new(None::<TimeoutHandle>);
    Effect::new(move |_| {
        let typed = draft.thresholds();
        if let Some(previous) = timer.get_value() {
            previous.clear();
        }
        let stored = stored.clone();
        let later = set_timeout_with_handle(
            move || {
                let counted = asked.get_untracked().unwrap_or(Ok(stored));
                if counted != typed {
                    asked.set(Some(typed));
                }
            },
            ASK_AFTER,
        );
        timer.set_value(later.ok());
    });
    let on_submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        if let Ok(thresholds) = draft.thresholds_untracked() {
            save.dispatch(PutAdmission { thresholds });
        }
    };
    let saved = move || {
        matches!(save.value().get(), Some(Ok(_)))
            .then(|| view! { <p class="hint ok" data-testid="saved">"Saved."</p> })
    };
    view! {
        <div class="columns">
            <section class="card">
                <h2>"Admission thresholds"</h2>
                <p class="muted">"Empty is off. A threshold that is set never admits a node whose metric is unknown."</p>
                <form on:submit=on_submit data-testid="thresholds">
                    <Threshold label="Highest load" name="max_load" value=draft.max_load/>
                    <Threshold label="Least free disk (%)" name="min_disk_free_pct" value=draft.min_disk_free_pct/>
                    <Threshold label="Least free memory (MB)" name="min_memory_free_mb" value=draft.min_memory_free_mb/>
                    <Threshold label="Oldest node metrics (s)" name="max_metric_age_s" value=draft.max_metric_age_s/>
                    <Threshold label="Oldest path measurement (s)" name="max_path_age_s" value=draft.max_path_age_s/>
                    <label>"Exclude after this many recent failures (0: off)"
                        <input type="number" name="exclude_after_failures" min="0" step="1"
                            data-testid="threshold-exclude_after_failures"
                            value=draft.exclude_after_failures.get_untracked() bind:value=draft.exclude_after_failures/>
                    </label>
                    <label class="check">
                        <input type="checkbox" name="allow_untested" data-testid="threshold-allow_untested"
                            checked=draft.allow_untested.get_untracked() bind:checked=draft.allow_untested/>
                        " Lend untested nodes (pool new)"
                    </label>
                    <button type="submit" data-testid="save-thresholds">"Save"</button>
                </form>
                {saved}
                <span data-testid="save-error"><ActionError value=save.value()/></span>
            </section>
            <WhatIf what_if/>
        </div>
    }
}

/// One threshold: a number field, empty for off.
#[component]
fn Threshold(label: &'static str, name: &'static str, value: RwSignal<String>) -> impl IntoView {
    view! {
        <label>{label}
            <input type="number" name=name min="0" step="any" placeholder="off"
                data-testid=format!("threshold-{name}") value=value.get_untracked() bind:value=value/>
        </label>
    }
}

/// Per link class, the candidates and how many pass; the commonest reasons the others fail.
#[component]
fn WhatIf(what_if: Resource<Result<Option<AdmissionCounts>, AppError>>) -> impl IntoView {
    let counting = RwSignal::new(false);
    view! {
        <section class="card" class:stale=counting data-testid="what-if" data-counting=move || counting.get().to_string()>
            <h2>"What if"</h2>
            <p class="muted">"What these thresholds would admit now (nothing is saved)."</p>
            <Transition fallback=|| view! { <p>"Counting…"</p> } set_pending=counting>
                {move || Suspend::new(async move {
                    match what_if.await {
                        Ok(Some(counts)) => view! { <Counts counts/> }.into_any(),
                        Ok(None) => ().into_any(),
                        Err(error) => view! {
                            <p class="error" role="alert" data-testid="what-if-error">{error.message}</p>
                        }.into_any(),
                    }
                })}
            </Transition>
        </section>
    }
}

#[component]
fn Counts(counts: AdmissionCounts) -> impl IntoView {
    let candidates: u64 = counts.classes.iter().map(|c| c.candidates).sum();
    let passing: u64 = counts.classes.iter().map(|c| c.passing).sum();
    let reasons: Vec<_> = counts.rejections.into_iter().take(REASONS_SHOWN).collect();
    view! {
        <table data-testid="what-if-classes">
            <thead><tr><th>"Link class"</th><th>"Candidates"</th><th>"Passing"</th></tr></thead>
            <tbody>
                {counts.classes.into_iter().map(|c: ClassCount| view! {
                    <tr data-testid=format!("what-if-{}", c.class)>
                        <td>{c.class.clone()}</td><td>{c.candidates}</td><td>{c.passing}</td>
                    </tr>
                }).collect_view()}
                <tr class="total">
                    <th>"All"</th>
                    <th data-testid="what-if-candidates">{candidates}</th>
                    <th data-testid="what-if-passing">{passing}</th>
                </tr>
            </tbody>
        </table>
        <p class="muted">{counts.fresh_paths} " fresh measured paths between passing nodes."</p>
        <h3>"Why candidates fail"</h3>
        {reasons.is_empty().then(|| view! { <p class="muted">"None fail."</p> })}
        <ul data-testid="what-if-reasons">
            {reasons.into_iter().map(|(reason, n)| view! { <li>{reason} ": " {n}</li> }).collect_view()}
        </ul>
    }
}

#[component]
fn Decisions(
    decisions: Resource<Result<Vec<DecisionView>, AppError>>,
    decide: ServerAction<DecideIdentity>,
) -> impl IntoView {
    view! {
        <section class="card">
            <h2>"Pending identity decisions"</h2>
            <p class="muted">"A testbed record that may be one of several known nodes: its node is held until you decide."</p>
            <Transition fallback=|| view! { <p>"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match decisions.await {
                        Ok(list) if list.is_empty() => view! {
                            <p class="muted" data-testid="decisions">"No identity decisions are pending."</p>
                        }.into_any(),
                        Ok(list) => view! {
                            <ul class="decisions" data-testid="decisions">
                                {list.into_iter().map(|d| view! { <PendingDecision decision=d decide/> }).collect_view()}
                            </ul>
                        }.into_any(),
                        Err(error) => view! { <LoadError error/> }.into_any(),
                    }
                })}
            </Transition>
            <ActionError value=decide.value()/>
        </section>
    }
}

#[component]
fn PendingDecision(decision: DecisionView, decide: ServerAction<DecideIdentity>) -> impl IntoView {
    let DecisionView { id, node, candidates, reason, created_at } = decision;
    view! {
        <li>
            <p>
                "Held: " <a href=format!("/nodes/{}", node.id)>{node.hostname}</a>
                " (" {node.site} ", " {node.ip.unwrap_or_else(|| "no IP".to_owned())} ") — " {reason}
                <span class="muted">" · " {when(created_at)}</span>
            </p>
            <Table
                items=candidates
                empty="No candidates."
                test_id="candidates"
                columns=&["Candidate", "Score", "Shares", ""]
                row=move |c: crate::nodes::CandidateView| view! {
                    <tr>
                        <td><a href=format!("/nodes/{}", c.node.id)>{c.node.hostname.clone()}</a></td>
                        <td>{c.score}</td>
                        <td>{c.shared.join(", ")}</td>
                        <td>
                            <ActionForm action=decide attr:class="inline">
                                <input type="hidden" name="id" value=id/>
                                <input type="hidden" name="decision" value="accept"/>
                                <input type="hidden" name="node_id" value=c.node.id/>
                                <button type="submit">"Accept " {c.node.hostname}</button>
                            </ActionForm>
                        </td>
                    </tr>
                }
            />
            <ActionForm action=decide>
                <input type="hidden" name="id" value=id/>
                <input type="hidden" name="decision" value="new"/>
                <button type="submit" class="secondary">"New node"</button>
            </ActionForm>
        </li>
    }
}

/// What changed in a run, as `name: count, …`, leaving out the counts that are 0 ("no changes" when all are).
fn run_counts(counts: &serde_json::Value) -> String {
    match counts {
        serde_json::Value::Object(map) => {
            let changed: Vec<String> =
                map.iter().filter(|(_, v)| v.as_u64() != Some(0)).map(|(k, v)| format!("{k}: {v}")).collect();
            if changed.is_empty() { "no changes".to_owned() } else { changed.join(", ") }
        }
        serde_json::Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// A run's duration: milliseconds below a second, else seconds.
fn duration(ms: i64) -> String {
    if ms < 1000 { format!("{ms} ms") } else { format!("{:.1} s", ms as f64 / 1000.0) }
}

#[component]
fn Runs(runs: Resource<Result<Vec<DiscoveryRunView>, AppError>>) -> impl IntoView {
    view! {
        <section class="card">
            <h2>"Discovery's last runs"</h2>
            <Listing
                items=runs
                empty="Discovery has not run yet."
                test_id="runs"
                columns=&["Kind", "Started", "Duration", "Result", "Counts"]
                row=|r: DiscoveryRunView| view! {
                    <tr>
                        <td>{r.kind}</td>
                        <td class="at">{when(r.started_at)}</td>
                        <td class="at">{duration(r.duration_ms)}</td>
                        <td>
                            {match r.error {
                                None if r.ok => view! { <span class="ok">"ok"</span> }.into_any(),
                                error => view! {
                                    <span class="error">{error.unwrap_or_else(|| "failed".to_owned())}</span>
                                }.into_any(),
                            }}
                        </td>
                        <td class="counts">{run_counts(&r.counts)}</td>
                    </tr>
                }
            />
        </section>
    }
}

/// The next liveness checks, soonest first, each with a button that makes it due now.
#[component]
fn RetestQueue(
    queue: Resource<Result<Vec<RetestItem>, AppError>>,
    retest: ServerAction<RetestNode>,
) -> impl IntoView {
    view! {
        <section class="card">
            <h2>"Re-test queue"</h2>
            <p class="muted">"When each node's service sliver is next tested (new and down nodes) or checked (free ones); times in UTC."</p>
            <Listing
                items=queue
                empty="No node is waiting for a check."
                test_id="retest-queue"
                columns=&["Node", "Pool", "Due", "Failures", ""]
                row=move |item: RetestItem| queue_row(item, retest)
            />
            <ActionError value=retest.value()/>
        </section>
    }
}

fn queue_row(item: RetestItem, retest: ServerAction<RetestNode>) -> impl IntoView {
    let RetestItem { node_id, hostname, pool, due_at, check_failures } = item;
    view! {
        <tr data-node=node_id>
            <td><a href=format!("/nodes/{node_id}")>{hostname}</a></td>
            <td>{pool}</td>
            <td class="at" data-testid="due" data-due=due_at.to_rfc3339()>{when(due_at)}</td>
            <td>{check_failures}</td>
            <td>
                <ActionForm action=retest attr:class="inline">
                    <input type="hidden" name="id" value=node_id/>
                    <button type="submit" class="secondary">"Re-test now"</button>
                </ActionForm>
            </td>
        </tr>
    }
}

/// The headings of the tables of [`AttemptStats`]: what the group is, then its figures.
const OVERALL_COLUMNS: &[&str] = &["", "Attempts", "Failures", "Failure rate", "p50", "p95", "p99"];
const GENERATION_COLUMNS: &[&str] =
    &["Generation", "Attempts", "Failures", "Failure rate", "p50", "p95", "p99"];
const SITE_COLUMNS: &[&str] = &["Site", "Attempts", "Failures", "Failure rate", "p50", "p95", "p99"];
const DAY_COLUMNS: &[&str] = &["Day", "Attempts", "Failures", "Failure rate", "p50", "p95", "p99"];

/// The bring-up statistics, once loaded (for operators; `None` for anyone else).
#[component]
fn Provisioning(stats: Resource<Result<Option<ProvisioningStats>, AppError>>) -> impl IntoView {
    view! {
        <section class="card" data-testid="provisioning">
            <h2>"Provisioning"</h2>
            <Transition fallback=|| view! { <p>"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match stats.await {
                        Ok(Some(stats)) => provisioning_tables(stats).into_any(),
                        Ok(None) => ().into_any(),
                        Err(error) => view! { <LoadError error/> }.into_any(),
                    }
                })}
            </Transition>
        </section>
    }
}

fn provisioning_tables(stats: ProvisioningStats) -> impl IntoView {
    let ProvisioningStats { since, overall, steps, by_generation, by_site, by_day } = stats;
    view! {
        <p class="muted">
            "Sliver bring-ups finished since " {when(since)}
            ": durations of those that came up end to end, failure rates of all."
        </p>
        <Table items=vec![overall] empty="" test_id="provisioning-overall" columns=OVERALL_COLUMNS row=stats_row/>
        <h3>"Per step"</h3>
        <Table
            items=steps
            empty="No bring-up yet."
            test_id="provisioning-steps"
            columns=&["Step", "Reached", "Failed there", "Failure rate"]
            row=step_row
        />
        <h3>"Per API generation"</h3>
        <Table items=by_generation empty="No bring-up yet." test_id="provisioning-generations"
            columns=GENERATION_COLUMNS row=stats_row/>
        <h3>"Top sites"</h3>
        <Table items=by_site empty="No bring-up yet." test_id="provisioning-sites"
            columns=SITE_COLUMNS row=stats_row/>
        <h3>"Per day"</h3>
        <Table items=by_day empty="No bring-up yet." test_id="provisioning-days"
            columns=DAY_COLUMNS row=stats_row/>
    }
}

fn stats_row(s: AttemptStats) -> impl IntoView {
    view! {
        <tr>
            <td>{s.group}</td>
            <td>{s.attempts}</td>
            <td>{s.failures}</td>
            <td>{percent(s.failure_rate)}</td>
            <td>{seconds(s.p50_s)}</td>
            <td>{seconds(s.p95_s)}</td>
            <td>{seconds(s.p99_s)}</td>
        </tr>
    }
}

fn step_row(s: StepStats) -> impl IntoView {
    view! {
        <tr>
            <td>{s.step}</td>
            <td>{s.reached}</td>
            <td>{s.failed}</td>
            <td>{percent(s.failure_rate)}</td>
        </tr>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_threshold_is_off_and_a_bad_one_names_its_field() {
        assert_eq!(optional("max_load", " ").unwrap(), None);
        assert_eq!(optional("max_load", "2.5").unwrap(), Some(2.5));
        let err = optional("min_disk_free_pct", "lots").unwrap_err();
        assert_eq!(err.field.as_deref(), Some("min_disk_free_pct"));
    }

    #[test]
    fn run_counts_leave_out_what_did_not_change() {
        let counts = serde_json::json!({ "added": 3, "gone": 0, "updated": 1 });
        assert_eq!(run_counts(&counts), "added: 3, updated: 1");
        assert_eq!(run_counts(&serde_json::json!({ "added": 0 })), "no changes");
        assert_eq!(duration(980), "980 ms");
        assert_eq!(duration(10_675), "10.7 s");
    }
}
