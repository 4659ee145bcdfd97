//! The state machine graph, laid out on the server from the ASL definition
//! and drawn as SVG: states in layers by longest path from `StartAt`, each
//! layer ordered by its parents' positions; `Catch` edges dashed. An
//! execution's path is overlaid from its history: states taken, the state
//! that failed, retries counted on their state, time spent per state.

use certops_asl::{EventType, HistoryEvent};
use maud::{html, Markup};
use serde::Serialize;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap, HashSet};

/// One transition of the definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edge {
    /// From state.
    pub from: String,
    /// To state.
    pub to: String,
    /// Whether it is a `Catch` transition.
    pub catch: bool,
}

/// The definition as a graph.
#[derive(Debug, Clone)]
pub struct Definition {
    /// The first state.
    pub start: String,
    /// States in definition order with their `Type`.
    pub states: Vec<(String, String)>,
    /// Every transition.
    pub edges: Vec<Edge>,
}

impl Definition {
    /// Reads the states and transitions of an ASL document (top level only).
    pub fn parse(asl: &str) -> Result<Definition, String> {
        let v: Value = serde_json::from_str(asl).map_err(|e| e.to_string())?;
        let start = v["StartAt"].as_str().ok_or("no StartAt")?.to_string();
        let states_obj = v["States"].as_object().ok_or("no States")?;
        let mut states = Vec::new();
        let mut edges = Vec::new();
        for (name, s) in states_obj {
            states.push((name.clone(), s["Type"].as_str().unwrap_or("?").to_string()));
            let mut add = |to: Option<&str>, catch: bool| {
                if let Some(to) = to {
                    let e = Edge {
                        from: name.clone(),
                        to: to.to_string(),
                        catch,
                    };
                    if !edges.contains(&e) {
                        edges.push(e);
                    }
                }
            };
            add(s["Next"].as_str(), false);
            add(s["Default"].as_str(), false);
            for c in s["Choices"].as_array().into_iter().flatten() {
                add(c["Next"].as_str(), false);
            }
            for c in s["Catch"].as_array().into_iter().flatten() {
                add(c["Next"].as_str(), true);
            }
        }
        Ok(Definition {
            start,
            states,
            edges,
        })
    }
}

/// A positioned state.
#[derive(Debug, Clone, Serialize)]
pub struct Node {
    /// State name.
    pub name: String,
    /// ASL type.
    pub kind: String,
    /// Centre x.
    pub x: f64,
    /// Top y.
    pub y: f64,
}

/// Box size and spacing.
const W: f64 = 164.0;
const H: f64 = 34.0;
const GAP_X: f64 = 24.0;
const GAP_Y: f64 = 36.0;
const MARGIN: f64 = 16.0;

/// The layout: positioned nodes and the drawing's size.
#[derive(Debug, Clone)]
pub struct Layout {
    /// Nodes by name.
    pub nodes: BTreeMap<String, Node>,
    /// Width.
    pub width: f64,
    /// Height.
    pub height: f64,
}

/// Lays the definition out top to bottom.
pub fn layout(def: &Definition) -> Layout {
    let index: HashMap<&str, usize> = def
        .states
        .iter()
        .enumerate()
        .map(|(i, (n, _))| (n.as_str(), i))
        .collect();
    // Drop edges that close a cycle (found by DFS from the start), so layering terminates.
    let mut forward: Vec<&Edge> = Vec::new();
    let mut on_stack = HashSet::new();
    let mut done = HashSet::new();
    fn dfs<'a>(
        n: &'a str,
        def: &'a Definition,
        on_stack: &mut HashSet<&'a str>,
        done: &mut HashSet<&'a str>,
        forward: &mut Vec<&'a Edge>,
    ) {
        on_stack.insert(n);
        for e in def.edges.iter().filter(|e| e.from == n) {
            if on_stack.contains(e.to.as_str()) {
                continue;
            }
            forward.push(e);
            if !done.contains(e.to.as_str()) {
                dfs(&e.to, def, on_stack, done, forward);
            }
        }
        on_stack.remove(n);
        done.insert(n);
    }
    dfs(&def.start, def, &mut on_stack, &mut done, &mut forward);
    // Longest-path layers.
    let mut layer: HashMap<&str, usize> = HashMap::new();
    layer.insert(def.start.as_str(), 0);
    for _ in 0..def.states.len() {
        let mut changed = false;
        for e in &forward {
            let l = layer.get(e.from.as_str()).copied().unwrap_or(0) + 1;
            if layer.get(e.to.as_str()).is_none_or(|cur| *cur < l) {
                layer.insert(e.to.as_str(), l);
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    let max_layer = layer.values().copied().max().unwrap_or(0);
    let mut rows: Vec<Vec<&str>> = vec![Vec::new(); max_layer + 2];
    for (name, _) in &def.states {
        // Unreachable states go to an extra last row.
        let l = layer.get(name.as_str()).copied().unwrap_or(max_layer + 1);
        rows[l].push(name.as_str());
    }
    // Order each row by the mean position of its parents (one downward pass).
    let mut pos: HashMap<&str, f64> = HashMap::new();
    for row in rows.iter_mut() {
        let key = |n: &str| -> f64 {
            let parents: Vec<f64> = forward
                .iter()
                .filter(|e| e.to == n)
                .filter_map(|e| pos.get(e.from.as_str()).copied())
                .collect();
            if parents.is_empty() {
                index.get(n).copied().unwrap_or(0) as f64
            } else {
                parents.iter().sum::<f64>() / parents.len() as f64
            }
        };
        let mut keyed: Vec<(f64, usize, &str)> =
            row.iter().map(|n| (key(n), index[n], *n)).collect();
        keyed.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        *row = keyed.iter().map(|k| k.2).collect();
        for (i, n) in row.iter().enumerate() {
            pos.insert(n, i as f64 - (row.len() as f64 - 1.0) / 2.0);
        }
    }
    let widest = rows.iter().map(Vec::len).max().unwrap_or(1).max(1);
    let width = widest as f64 * (W + GAP_X) - GAP_X + 2.0 * MARGIN;
    let mut nodes = BTreeMap::new();
    let mut y = MARGIN;
    let mut used_rows = 0;
    for row in rows.iter().filter(|r| !r.is_empty()) {
        for (i, n) in row.iter().enumerate() {
            let offset = i as f64 - (row.len() as f64 - 1.0) / 2.0;
            let kind = def.states[index[n]].1.clone();
            nodes.insert(
                n.to_string(),
                Node {
                    name: n.to_string(),
                    kind,
                    x: width / 2.0 + offset * (W + GAP_X),
                    y,
                },
            );
        }
        y += H + GAP_Y;
        used_rows += 1;
    }
    let height = used_rows as f64 * (H + GAP_Y) - GAP_Y + 2.0 * MARGIN;
    Layout {
        nodes,
        width,
        height,
    }
}

/// What an execution did in one state.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StateRun {
    /// State name.
    pub name: String,
    /// Times entered.
    pub entered: u32,
    /// Task attempts beyond the first of each visit.
    pub retries: u32,
    /// Whether its last attempt failed (caught or ending the execution).
    pub failed: bool,
    /// The error of its last failed attempt.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Time spent in it, ms (until exit, the next state, or now).
    pub duration_ms: i64,
    /// Whether the execution is in it now.
    pub current: bool,
}

/// The path an execution took, from its history.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PathTaken {
    /// Per state, in first-entered order.
    pub states: Vec<StateRun>,
    /// Transitions taken (from, to).
    pub transitions: Vec<(String, String)>,
}

impl PathTaken {
    /// The run of a state, if taken.
    pub fn state(&self, name: &str) -> Option<&StateRun> {
        self.states.iter().find(|s| s.name == name)
    }
}

/// Reads the path from history events. `now_ms` closes the running state's duration.
pub fn path_taken(events: &[HistoryEvent], running: bool, now_ms: i64) -> PathTaken {
    let mut order: Vec<String> = Vec::new();
    let mut runs: HashMap<String, StateRun> = HashMap::new();
    let mut transitions = Vec::new();
    let mut current: Option<(String, i64)> = None;
    let mut attempts_in_visit = 0u32;
    let close = |runs: &mut HashMap<String, StateRun>, cur: &Option<(String, i64)>, at: i64| {
        if let Some((name, since)) = cur {
            if let Some(r) = runs.get_mut(name) {
                r.duration_ms += (at - since).max(0);
            }
        }
    };
    for e in events {
        let d = e.details_value().unwrap_or(Value::Null);
        let kind = e.kind.as_str();
        if kind.ends_with("StateEntered") {
            let name = d["name"].as_str().unwrap_or_default().to_string();
            close(&mut runs, &current, e.timestamp_ms);
            if let Some((prev, _)) = &current {
                transitions.push((prev.clone(), name.clone()));
            }
            if !runs.contains_key(&name) {
                order.push(name.clone());
            }
            let r = runs.entry(name.clone()).or_insert_with(|| StateRun {
                name: name.clone(),
                ..StateRun::default()
            });
            r.entered += 1;
            r.failed = false;
            attempts_in_visit = 0;
            current = Some((name, e.timestamp_ms));
        } else if kind.ends_with("StateExited") {
            close(&mut runs, &current, e.timestamp_ms);
            current = current.map(|(n, _)| (n, e.timestamp_ms));
            if let Some((n, _)) = &current {
                // Exited: no more time accrues until the next state.
                let name = n.clone();
                current = Some((name, i64::MAX));
            }
        } else if matches!(
            e.kind,
            EventType::LambdaFunctionScheduled | EventType::TaskScheduled
        ) {
            attempts_in_visit += 1;
            if let Some((n, _)) = &current {
                if let Some(r) = runs.get_mut(n) {
                    if attempts_in_visit > 1 {
                        r.retries += 1;
                    }
                    r.failed = false;
                }
            }
        } else if matches!(
            e.kind,
            EventType::LambdaFunctionFailed
                | EventType::LambdaFunctionTimedOut
                | EventType::TaskFailed
                | EventType::TaskTimedOut
        ) {
            if let Some((n, _)) = &current {
                if let Some(r) = runs.get_mut(n) {
                    r.failed = true;
                    r.error = d["error"].as_str().map(str::to_string);
                }
            }
        }
    }
    if let Some((name, since)) = &current {
        if *since != i64::MAX && running {
            if let Some(r) = runs.get_mut(name) {
                r.duration_ms += (now_ms - since).max(0);
                r.current = true;
            }
        }
    }
    // A retried attempt that later succeeded is not a failure; the flag is reset on
    // each schedule, so only a final failed attempt stays marked.
    let states = order.into_iter().filter_map(|n| runs.remove(&n)).collect();
    PathTaken {
        states,
        transitions,
    }
}

/// The graph with the path overlaid, as inline SVG.
pub fn svg(def: &Definition, layout: &Layout, path: &PathTaken) -> Markup {
    let taken: HashSet<(&str, &str)> = path
        .transitions
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    html! {
        svg class="graph" xmlns="http://www.w3.org/2000/svg" role="img"
            aria-label="State machine graph"
            viewBox={"0 0 " (layout.width.round()) " " (layout.height.round())}
            width=(layout.width.round()) height=(layout.height.round()) {
            defs {
                marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="9" markerHeight="9" markerUnits="userSpaceOnUse" orient="auto-start-reverse" {
                    path d="M 0 0 L 10 5 L 0 10 z" class="arrowhead" {}
                }
                marker id="arrow-taken" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="9" markerHeight="9" markerUnits="userSpaceOnUse" orient="auto-start-reverse" {
                    path d="M 0 0 L 10 5 L 0 10 z" class="arrowhead taken" {}
                }
            }
            @for e in &def.edges {
                @if let (Some(a), Some(b)) = (layout.nodes.get(&e.from), layout.nodes.get(&e.to)) {
                    @let is_taken = taken.contains(&(e.from.as_str(), e.to.as_str()));
                    @let (x1, y1) = (a.x, a.y + H);
                    @let (x2, y2) = if b.y > a.y { (b.x, b.y) } else { (b.x + W / 2.0, b.y + H / 2.0) };
                    @let dy = ((y2 - y1) / 2.0).max(20.0);
                    path class={"edge" @if e.catch {" catch"} @if is_taken {" taken"}}
                        data-from=(e.from) data-to=(e.to)
                        d={"M " (fmt(x1)) " " (fmt(y1)) " C " (fmt(x1)) " " (fmt(y1 + dy)) ", " (fmt(x2)) " " (fmt(y2 - dy)) ", " (fmt(x2)) " " (fmt(y2))}
                        marker-end={"url(#" (if is_taken {"arrow-taken"} else {"arrow"}) ")"} {}
                }
            }
            @for n in layout.nodes.values() {
                @let run = path.state(&n.name);
                @let cls = node_class(n, run);
                g class=(cls) data-state=(n.name) tabindex="0" {
                    title { (n.name) " (" (n.kind) ")"
                        @if let Some(r) = run {
                            " — entered " (r.entered) "×, " (r.duration_ms) " ms"
                            @if r.retries > 0 { ", " (r.retries) " retries" }
                            @if let Some(err) = &r.error { @if r.failed { ", failed: " (err) } }
                        }
                    }
                    rect x=(fmt(n.x - W / 2.0)) y=(fmt(n.y)) width=(W) height=(H) rx="6" {}
                    text x=(fmt(n.x)) y=(fmt(n.y + H / 2.0 + 4.0)) text-anchor="middle" { (n.name) }
                    @if let Some(r) = run {
                        @if r.retries > 0 {
                            g class="retries" {
                                circle cx=(fmt(n.x + W / 2.0 - 2.0)) cy=(fmt(n.y + 2.0)) r="10" {}
                                text x=(fmt(n.x + W / 2.0 - 2.0)) y=(fmt(n.y + 6.0)) text-anchor="middle" { "↻" (r.retries) }
                            }
                        }
                        @if r.failed {
                            text class="badge" x=(fmt(n.x - W / 2.0 + 4.0)) y=(fmt(n.y - 3.0)) { "✕ " (r.error.clone().unwrap_or_else(|| "failed".into())) }
                        }
                    }
                }
            }
        }
    }
}

fn node_class(n: &Node, run: Option<&StateRun>) -> String {
    let mut cls = format!("node type-{}", n.kind.to_lowercase());
    if let Some(r) = run {
        cls.push_str(" taken");
        if r.failed {
            cls.push_str(" failed");
        }
        if r.current {
            cls.push_str(" current");
        }
    }
    cls
}

fn fmt(v: f64) -> String {
    format!("{v:.1}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_renewal_definition_lays_out_every_state_without_overlap() {
        let def = Definition::parse(certops_embedded::stack::DEFINITION).unwrap();
        let l = layout(&def);
        assert_eq!(l.nodes.len(), def.states.len());
        let nodes: Vec<&Node> = l.nodes.values().collect();
        for (i, a) in nodes.iter().enumerate() {
            for b in &nodes[i + 1..] {
                let apart = (a.x - b.x).abs() >= W || (a.y - b.y).abs() >= H;
                assert!(apart, "{} overlaps {}", a.name, b.name);
            }
        }
        // Every forward transition goes down the page.
        assert!(l.nodes["Validate"].y < l.nodes["Route"].y);
        assert!(l.nodes["Verify"].y < l.nodes["Rollback"].y);
        assert!(l.nodes["Renew"].y < l.nodes["Deploy"].y);
    }
}
