//! Explain: the decision the DNS path makes for one client, step by step.
//!
//! It runs [`select_with`] — the DNS path's own code — with a [`Recorder`] trace
//! and a [`Script`] chance that walks every branch of the selection's random
//! choices (draws by weight, slow-start coins) in turn, each with its exact
//! probability. So every possible answer is listed with the probability DNS gives
//! it, and each target's chance of being in the answer is the sum over those
//! branches. A selection with more than [`MAX_BRANCHES`] branches (many ramping
//! targets at once) is sampled instead, and says so (`estimated`).

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::Serialize;

use super::{
    Bits, Chance, ClientInfo, FULL, Mode, Reason, Selection, Step, Topology, Trace, canonical,
    select_with,
};
use crate::health::Health;
use crate::model::{Locality, Override, Policy, Stickiness};
use crate::snapshot::ServiceEntry;
use crate::timefmt::rfc3339;

/// Past this many branches the probabilities are sampled, not enumerated.
pub const MAX_BRANCHES: usize = 4096;
/// Samples taken when the branches are too many.
const SAMPLES: usize = 20_000;

/// What explain is asked.
#[derive(Debug, Clone)]
pub struct Question {
    /// The query's source address.
    pub client: IpAddr,
    /// The ECS option: address (host bits cleared) and source prefix length.
    pub ecs: Option<(IpAddr, u8)>,
    pub v6: bool,
    /// Unix milliseconds.
    pub now_ms: u64,
}

/// The whole decision, as the API returns it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Explanation {
    pub name: String,
    #[serde(rename = "type")]
    pub qtype: &'static str,
    pub policy: Policy,
    pub client: ClientView,
    /// Normal, Panic, FailOpen or NoData.
    pub mode: Mode,
    pub eligible_targets: u32,
    pub enabled_targets: u32,
    /// Health changed this answer (a target not eligible, panic, fail-open): its TTL
    /// is `degradedTtl`.
    pub degraded: bool,
    /// Every target of the queried family, in the resource's order.
    pub targets: Vec<TargetView>,
    /// Every answer the DNS path may give this client now, most likely first.
    pub outcomes: Vec<OutcomeView>,
    /// True when `outcomes` and the probabilities were sampled (too many branches).
    pub estimated: bool,
    /// One answer, drawn as the DNS path would draw it now.
    pub answer: AnswerView,
    /// The decision in sentences, in order.
    pub steps: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClientView {
    pub address: String,
    /// The ECS option of the question, as `address/source`.
    pub ecs: Option<String>,
    /// The address the policy looks at: the ECS address when there is one.
    pub effective_address: String,
    pub locality: Option<String>,
    /// The `[[topology]]` entry that gives the locality (longest prefix).
    pub topology_entry: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TargetView {
    pub name: String,
    /// The target's fqdn (`null` for an address target): an fqdn target is listed
    /// once per address it resolved to, each with its own health and eligibility.
    pub fqdn: Option<String>,
    pub address: String,
    pub locality: Option<String>,
    pub ratio: u32,
    pub enabled: bool,
    pub health: Health,
    #[serde(rename = "override")]
    pub override_: Option<OverrideView>,
    pub eligible: bool,
    pub reason: Reason,
    /// More about the reason (flap damping holding it out, say), when known.
    pub detail: Option<String>,
    /// A candidate of this answer (eligible, or enabled in panic and fail-open).
    pub candidate: bool,
    pub slow_start: Option<SlowStartView>,
    /// Chance that this target is in the answer.
    pub probability: f64,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OverrideView {
    pub state: &'static str,
    pub reason: String,
    pub expires_at: String,
    pub by: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SlowStartView {
    /// Share of its weight the target gets now, 0.1 to 1.
    pub factor: f64,
    pub healthy_since: String,
    pub remaining_seconds: f64,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OutcomeView {
    pub probability: f64,
    pub step: StepView,
    /// Targets left out of this answer by slow start.
    pub left_out_by_slow_start: Vec<String>,
    /// Target names, in the resource's order (an fqdn target once, however many of
    /// its addresses are in the answer).
    pub targets: Vec<String>,
    pub addresses: Vec<String>,
}

/// The step that decided, with what it refers to.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum StepView {
    RoundRobin,
    Ratio,
    Sticky {
        /// The client's subnet that the hash is of.
        subnet: String,
    },
    Distribute {
        rule: usize,
        from: String,
        pattern: String,
        weight: u32,
    },
    Nearest {
        /// subzone, zone or region.
        level: &'static str,
    },
    Failover {
        rule: usize,
        from: String,
        to: String,
    },
    All {
        /// no topology match, or no candidate nearer than another
        why: &'static str,
    },
    NoData,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AnswerView {
    pub addresses: Vec<String>,
    pub ttl: u32,
    /// The response's ECS scope prefix length (only when the question had ECS).
    pub ecs_scope: Option<u8>,
    /// No address: NOERROR with an empty answer.
    pub no_data: bool,
}

/// What a trace records of one run.
#[derive(Default, Clone)]
pub(super) struct Recorder {
    reasons: Vec<(usize, Reason)>,
    mode: Option<(Mode, u32, u32)>,
    ramps: Vec<(usize, u32)>,
    locality: Option<(Locality, u8)>,
    looked_up: bool,
    left_out: u64,
    step: Option<Step>,
}

impl Trace for Recorder {
    const ENABLED: bool = true;
    fn target(&mut self, i: usize, reason: Reason) {
        self.reasons.push((i, reason));
    }
    fn mode(&mut self, mode: Mode, eligible: u32, enabled: u32) {
        self.mode = Some((mode, eligible, enabled));
    }
    fn ramp(&mut self, i: usize, factor: u32) {
        self.ramps.push((i, factor));
    }
    fn locality(&mut self, m: Option<(&Locality, u8)>) {
        self.looked_up = true;
        self.locality = m.map(|(l, p)| (l.clone(), p));
    }
    fn left_out(&mut self, i: usize) {
        self.left_out |= 1 << i;
    }
    fn step(&mut self, step: Step) {
        self.step = Some(step);
    }
}

/// A chance that follows a script of choices and extends it depth first: run the
/// selection, then [`Script::next`], until it says there is no branch left.
#[derive(Default)]
pub(super) struct Script {
    /// (choice taken, number of choices) at each choice point of the run.
    path: Vec<(usize, usize)>,
    depth: usize,
    prob: f64,
}

impl Script {
    fn start(&mut self) {
        self.depth = 0;
        self.prob = 1.0;
    }

    fn choose(&mut self, n: usize) -> usize {
        let c = if self.depth < self.path.len() {
            self.path[self.depth].0
        } else {
            self.path.push((0, n));
            0
        };
        self.depth += 1;
        c
    }

    /// Moves to the next branch; false when every branch was run.
    fn next(&mut self) -> bool {
        self.path.truncate(self.depth);
        while let Some((c, n)) = self.path.pop() {
            if c + 1 < n {
                self.path.push((c + 1, n));
                return true;
            }
        }
        false
    }
}

impl Chance for Script {
    fn draw(&mut self, set: u64, weight: impl Fn(usize) -> u64) -> Option<usize> {
        let items: Vec<(usize, u64)> = Bits(set)
            .map(|i| (i, weight(i)))
            .filter(|(_, w)| *w > 0)
            .collect();
        let sum: u64 = items.iter().map(|(_, w)| w).sum();
        if items.is_empty() {
            return None;
        }
        let (i, w) = items[self.choose(items.len())];
        self.prob *= w as f64 / sum as f64;
        Some(i)
    }

    fn coin(&mut self, num: u64, den: u64) -> bool {
        let heads = self.choose(2) == 0;
        let p = num as f64 / den as f64;
        self.prob *= if heads { p } else { 1.0 - p };
        heads
    }

    fn rotation(&mut self, _entry: &ServiceEntry) -> usize {
        0
    }
}

/// A random chance that does not advance the service's rotation.
struct Sample(fastrand::Rng);

impl Chance for Sample {
    fn draw(&mut self, set: u64, weight: impl Fn(usize) -> u64) -> Option<usize> {
        self.0.draw(set, weight)
    }
    fn coin(&mut self, num: u64, den: u64) -> bool {
        self.0.coin(num, den)
    }
    fn rotation(&mut self, entry: &ServiceEntry) -> usize {
        entry.rotation.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// One possible answer: the step, the chosen and left-out targets.
type Leaf = (StepKey, u64, u64);

/// `Step` without the parts that do not tell answers apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum StepKey {
    RoundRobin,
    Ratio,
    Sticky,
    Distribute(usize, usize),
    Nearest(u8),
    Failover(usize),
    All(bool),
    NoData,
}

fn key(s: Option<Step>) -> StepKey {
    match s {
        Some(Step::RoundRobin) => StepKey::RoundRobin,
        Some(Step::Ratio) => StepKey::Ratio,
        Some(Step::Sticky { .. }) => StepKey::Sticky,
        Some(Step::Distribute { rule, pattern }) => StepKey::Distribute(rule, pattern),
        Some(Step::Nearest { depth }) => StepKey::Nearest(depth),
        Some(Step::Failover { rule }) => StepKey::Failover(rule),
        Some(Step::All { no_topology }) => StepKey::All(no_topology),
        Some(Step::NoData) | None => StepKey::NoData,
    }
}

/// Explains `entry`'s answer to `q`. `overrides` are the service's overrides (for
/// their reason and expiry); `detail(i, address)` may say more about the address
/// `address` of target `i` of `NameService::targets` (the health module's flap
/// damping holding it out, say).
pub fn explain(
    entry: &ServiceEntry,
    topology: &Topology,
    q: &Question,
    overrides: Option<&crate::model::TargetOverrides>,
    detail: impl Fn(usize, std::net::IpAddr) -> Option<String>,
) -> Explanation {
    let client = match q.ecs {
        Some((addr, source)) if source > 0 => ClientInfo {
            addr,
            ecs_source_prefix: Some(source),
        },
        _ => ClientInfo {
            addr: q.client,
            ecs_source_prefix: None,
        },
    };
    let targets = entry.family(q.v6);
    let mut out = Vec::new();

    // Every branch, or samples if there are too many.
    let mut leaves: BTreeMap<Leaf, f64> = BTreeMap::new();
    let mut script = Script::default();
    let mut first: Option<(Recorder, Selection)> = None;
    let mut runs = 0;
    let mut estimated = false;
    loop {
        script.start();
        let mut rec = Recorder::default();
        let sel = select_with(
            entry,
            q.v6,
            &client,
            topology,
            q.now_ms,
            &mut script,
            &mut rec,
            &mut out,
        );
        *leaves
            .entry((key(rec.step), sel.chosen, rec.left_out))
            .or_default() += script.prob;
        runs += 1;
        if first.is_none() {
            first = Some((rec, sel));
        }
        if !script.next() {
            break;
        }
        if runs == MAX_BRANCHES {
            estimated = true;
            leaves.clear();
            let mut chance = Sample(fastrand::Rng::with_seed(q.now_ms));
            for _ in 0..SAMPLES {
                let mut rec = Recorder::default();
                let sel = select_with(
                    entry,
                    q.v6,
                    &client,
                    topology,
                    q.now_ms,
                    &mut chance,
                    &mut rec,
                    &mut out,
                );
                *leaves
                    .entry((key(rec.step), sel.chosen, rec.left_out))
                    .or_default() += 1.0 / SAMPLES as f64;
            }
            break;
        }
    }
    let (rec, sel) = first.expect("one run at least");

    // One answer as DNS would give it now.
    let mut sample_rec = Recorder::default();
    let sample = select_with(
        entry,
        q.v6,
        &client,
        topology,
        q.now_ms,
        &mut Sample(fastrand::Rng::new()),
        &mut sample_rec,
        &mut out,
    );
    let sample_addrs: Vec<String> = out.iter().map(IpAddr::to_string).collect();

    let (mode, eligible, enabled) = rec.mode.unwrap_or((Mode::NoData, 0, 0));
    let mut probability = vec![0.0; targets.len()];
    for ((_, chosen, _), p) in &leaves {
        for i in Bits(*chosen) {
            probability[i] += p;
        }
    }
    let candidates: u64 = match mode {
        Mode::Normal => rec
            .reasons
            .iter()
            .filter(|(_, r)| r.eligible())
            .fold(0, |m, (i, _)| m | 1 << i),
        Mode::Panic | Mode::FailOpen => rec
            .reasons
            .iter()
            .filter(|(_, r)| r.enabled())
            .fold(0, |m, (i, _)| m | 1 << i),
        Mode::NoData => 0,
    };
    let spec = &entry.spec;
    let names: Vec<&str> = targets
        .iter()
        .map(|t| spec.targets[t.index].name.as_str())
        .collect();
    let target_views: Vec<TargetView> = rec
        .reasons
        .iter()
        .map(|&(i, reason)| {
            let t = &targets[i];
            let st = &spec.targets[t.index];
            let ramp = rec.ramps.iter().find(|(j, _)| *j == i).map(|&(_, f)| {
                let since = t.health_state().healthy_since_ms;
                SlowStartView {
                    factor: round4(f64::from(f) / f64::from(FULL)),
                    healthy_since: rfc3339(since / 1000),
                    remaining_seconds: (since + entry.slow_start.ms).saturating_sub(q.now_ms)
                        as f64
                        / 1000.0,
                }
            });
            let override_ = overrides
                .and_then(|o| o.get(&st.name))
                .filter(|o| o.active(q.now_ms))
                .map(override_view);
            TargetView {
                name: st.name.clone(),
                fqdn: st.fqdn.clone(),
                address: t.address.to_string(),
                locality: st.locality.clone(),
                ratio: st.ratio,
                enabled: st.enabled,
                health: t.health(),
                override_,
                eligible: reason.eligible(),
                reason,
                detail: detail(t.index, t.address),
                candidate: candidates & (1 << i) != 0,
                slow_start: ramp,
                probability: round4(probability[i]),
            }
        })
        .collect();

    let mut outcomes: Vec<OutcomeView> = leaves
        .iter()
        .map(|(&(step, chosen, left_out), &p)| OutcomeView {
            probability: round4(p),
            step: step_view(entry, step, &client),
            left_out_by_slow_start: Bits(left_out).map(|i| names[i].to_string()).collect(),
            targets: {
                // An fqdn target's addresses are adjacent entries: name it once.
                let mut v: Vec<String> = Bits(chosen).map(|i| names[i].to_string()).collect();
                v.dedup();
                v
            },
            addresses: Bits(chosen)
                .map(|i| targets[i].address.to_string())
                .collect(),
        })
        .collect();
    outcomes.sort_by(|a, b| b.probability.total_cmp(&a.probability));

    let ecs_scope = client.ecs_source_prefix.map(|_| {
        let max = if q.ecs.is_some_and(|(a, _)| a.is_ipv4()) {
            32
        } else {
            128
        };
        sample.ecs_scope.min(max)
    });
    let locality_info = topology.lookup(client.addr).map(|(l, p)| {
        let (a, p) = canonical(client.addr, p);
        (l.to_string(), format!("{}/{p}", mask(a, p)))
    });

    let mut steps = Vec::new();
    let via = match q.ecs {
        Some((a, s)) if s > 0 => format!("ECS {a}/{s}"),
        _ => format!("source address {}", q.client),
    };
    steps.push(match &locality_info {
        Some((l, e)) => format!("client {via} is in {l} (topology entry {e})"),
        None => format!("client {via} has no topology entry"),
    });
    if entry.policy != Policy::Locality && locality_info.is_some() {
        steps.push(format!(
            "policy {:?} does not look at the client's locality",
            entry.policy
        ));
    }
    let fam = if q.v6 { "AAAA" } else { "A" };
    // An fqdn target that resolved to several addresses counts once per address.
    let what = if entry.grouped {
        "addresses (an fqdn target's each)"
    } else {
        "targets"
    };
    steps.push(format!(
        "{eligible} of {enabled} enabled {fam} {what} eligible{}",
        if entry.policy == Policy::Ratio {
            " (Ratio: targets with ratio 0 do not count)"
        } else {
            ""
        }
    ));
    for v in &target_views {
        if !v.eligible {
            let why = match &v.override_ {
                Some(o) => format!("{} override until {}: {}", o.state, o.expires_at, o.reason),
                None => format!("{:?}", v.reason),
            };
            let more = v
                .detail
                .as_deref()
                .map(|d| format!(" ({d})"))
                .unwrap_or_default();
            steps.push(format!("{} not eligible: {why}{more}", v.name));
        } else if let Some(o) = &v.override_ {
            steps.push(format!(
                "{} eligible by {} override until {}: {}",
                v.name, o.state, o.expires_at, o.reason
            ));
        }
    }
    match mode {
        Mode::Panic => steps.push(format!(
            "panic: {eligible} of {enabled} eligible is below panicThresholdPercent {}%: every enabled target is a candidate",
            entry.panic_threshold_percent
        )),
        Mode::FailOpen => steps.push(
            "fail-open: no enabled target eligible and allDown is AnswerAll: every enabled target is a candidate".into(),
        ),
        Mode::NoData if enabled == 0 => {
            steps.push(format!("no enabled {fam} target: NODATA"));
        }
        Mode::NoData => {
            steps.push("no enabled target eligible and allDown is NoData: NODATA".into());
        }
        Mode::Normal => {}
    }
    for v in &target_views {
        if let Some(s) = &v.slow_start {
            steps.push(format!(
                "slow start: {} at {:.0}% of its weight (healthy since {}, {:.0} s left of {} s)",
                v.name,
                s.factor * 100.0,
                s.healthy_since,
                s.remaining_seconds,
                spec.slow_start_seconds
            ));
        }
    }
    if entry.policy == Policy::Ratio
        && entry.stickiness == Stickiness::ClientSubnet
        && mode != Mode::NoData
    {
        let StepView::Sticky { subnet } = step_view(entry, StepKey::Sticky, &client) else {
            unreachable!()
        };
        steps.push(format!(
            "stickiness ClientSubnet: the rendezvous hash of {subnet} picks one target by ratio; the ECS scope is its prefix length"
        ));
    }
    for o in &outcomes {
        let what = describe(&o.step);
        let left = if o.left_out_by_slow_start.is_empty() {
            String::new()
        } else {
            format!(
                " (slow start left out {})",
                o.left_out_by_slow_start.join(", ")
            )
        };
        let answer = if o.addresses.is_empty() {
            "NODATA".to_string()
        } else {
            o.addresses.join(", ")
        };
        steps.push(format!(
            "{:.2}%: {what}{left}: {answer}",
            o.probability * 100.0
        ));
    }
    let degraded = eligible != enabled || matches!(mode, Mode::Panic | Mode::FailOpen);
    steps.push(if degraded {
        format!("TTL {} (degradedTtl: health changed this answer)", sel.ttl)
    } else {
        format!("TTL {}", sel.ttl)
    });
    if let Some(s) = ecs_scope {
        steps.push(format!("ECS scope /{s}"));
    }

    Explanation {
        name: spec.name.clone(),
        qtype: fam,
        policy: entry.policy,
        client: ClientView {
            address: q.client.to_string(),
            ecs: q.ecs.map(|(a, s)| format!("{a}/{s}")),
            effective_address: client.addr.to_string(),
            locality: locality_info.as_ref().map(|(l, _)| l.clone()),
            topology_entry: locality_info.map(|(_, e)| e),
        },
        mode,
        eligible_targets: eligible,
        enabled_targets: enabled,
        degraded,
        targets: target_views,
        outcomes,
        estimated,
        answer: AnswerView {
            no_data: sample_addrs.is_empty(),
            addresses: sample_addrs,
            ttl: sample.ttl,
            ecs_scope,
        },
        steps,
    }
}

fn override_view(o: &Override) -> OverrideView {
    OverrideView {
        state: o.state.as_str(),
        reason: o.reason.clone(),
        expires_at: rfc3339(o.expires_at_ms / 1000),
        by: o.by.clone(),
    }
}

fn round4(x: f64) -> f64 {
    (x * 10_000.0).round() / 10_000.0
}

/// `a` with the bits past `prefix` cleared.
fn mask(a: IpAddr, prefix: u8) -> IpAddr {
    match a {
        IpAddr::V4(v) => {
            let m = u32::MAX
                .checked_shl(32 - u32::from(prefix.min(32)))
                .unwrap_or(0);
            IpAddr::V4((u32::from(v) & m).into())
        }
        IpAddr::V6(v) => {
            let m = u128::MAX
                .checked_shl(128 - u32::from(prefix.min(128)))
                .unwrap_or(0);
            IpAddr::V6((u128::from(v) & m).into())
        }
    }
}

fn step_view(entry: &ServiceEntry, step: StepKey, client: &ClientInfo) -> StepView {
    match step {
        StepKey::RoundRobin => StepView::RoundRobin,
        StepKey::Ratio => StepView::Ratio,
        StepKey::Sticky => {
            let (_, prefix) = super::subnet_key(client.addr);
            let (a, p) = canonical(client.addr, prefix);
            StepView::Sticky {
                subnet: format!("{}/{p}", mask(a, p)),
            }
        }
        StepKey::Distribute(r, k) => {
            let rule = &entry.distribute[r];
            StepView::Distribute {
                rule: r,
                from: rule.from.to_string(),
                pattern: rule.to[k].0.to_string(),
                weight: rule.to[k].1,
            }
        }
        StepKey::Nearest(d) => StepView::Nearest {
            level: match d {
                3 => "subzone",
                2 => "zone",
                _ => "region",
            },
        },
        StepKey::Failover(r) => StepView::Failover {
            rule: r,
            from: entry.failover[r].0.clone(),
            to: entry.failover[r].1.clone(),
        },
        StepKey::All(no_topology) => StepView::All {
            why: if no_topology {
                "no topology match"
            } else {
                "no candidate nearer than another"
            },
        },
        StepKey::NoData => StepView::NoData,
    }
}

fn describe(s: &StepView) -> String {
    match s {
        StepView::RoundRobin => "round robin over the candidates".into(),
        StepView::Ratio => "ratio draw".into(),
        StepView::Sticky { subnet } => format!("sticky pick for {subnet}"),
        StepView::Distribute {
            rule,
            from,
            pattern,
            weight,
        } => format!("distribute[{rule}] (from {from}) drew {pattern} (weight {weight})"),
        StepView::Nearest { level } => format!("nearest: same {level}"),
        StepView::Failover { rule, from, to } => {
            format!("failover[{rule}] {from} -> {to}")
        }
        StepView::All { why } => format!("every candidate ({why})"),
        StepView::NoData => "nothing to answer".into(),
    }
}
