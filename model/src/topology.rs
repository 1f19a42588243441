//! Experiment topologies: what a researcher asks for, before it is mapped onto testbed nodes.
//!
//! These types are meant to be shared by the browser (the topology editor, a later issue, will validate as
//! you type) and the server (the REST API and the mapper validate again, since nothing from a client is
//! trusted); today the mapper, the testbed's export and the benchmarks use them. They therefore use only `serde` and the
//! shared error type, and compile for wasm32. [`Topology::validate`] rejects everything the mapper could not
//! interpret: duplicate names, dangling or self links, negative or absurd values and oversized requests, each
//! with the path of the offending field (`nodes[2].name`, `links[3].latency.tolerance`) and a message that
//! names the element, so a 400 answer says exactly what to fix.

use crate::error::{AppError, AppResult};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};

/// Most virtual nodes one experiment may ask for.
pub const MAX_NODES: usize = 5_000;
/// Most virtual links one experiment may ask for.
pub const MAX_LINKS: usize = 20_000;
/// Longest virtual node name; names become host names and directory names on slivers.
pub const MAX_NAME_LEN: usize = 63;
/// Highest latency one may ask for (ms): a minute is not a wide-area path any more.
pub const MAX_LATENCY_MS: f64 = 60_000.0;
/// Highest bandwidth one may ask for (kbps): 100 Gbit/s.
pub const MAX_BANDWIDTH_KBPS: f64 = 100_000_000.0;
/// Highest weight of an objective term; weights are relative, so this only catches nonsense.
pub const MAX_WEIGHT: f64 = 1_000.0;
const MAX_SOFTWARE_ITEMS: usize = 64;
const MAX_SOFTWARE_LEN: usize = 1_024;
const MAX_STARTUP_LEN: usize = 4_096;
const MAX_FIXED_LEN: usize = 255;

/// A requested experiment topology: virtual nodes, the virtual links between them, and experiment options.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Topology {
    pub nodes: Vec<VirtualNode>,
    #[serde(default)]
    pub links: Vec<VirtualLink>,
    #[serde(default)]
    pub options: ExperimentOptions,
}

/// How a testbed node reaches the wide-area network, as the testbed classifies it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkClass {
    Internet2,
    Commodity,
    International,
    Dsl,
}

impl LinkClass {
    pub const ALL: [LinkClass; 4] = [Self::Internet2, Self::Commodity, Self::International, Self::Dsl];

    /// Its name as JSON, node tags and sensors spell it (a test keeps it equal to serde's).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Internet2 => "internet2",
            Self::Commodity => "commodity",
            Self::International => "international",
            Self::Dsl => "dsl",
        }
    }
}

/// Which testbed nodes a virtual node may be placed on.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeType {
    /// Any node that passes admission.
    #[default]
    Any,
    Internet2,
    Commodity,
    International,
    Dsl,
    /// A node at the named site (its `login_base`, e.g. `princeton`).
    Site(String),
}

impl NodeType {
    /// Whether a node of `class` at `site` satisfies this type.
    pub fn admits(&self, class: LinkClass, site: &str) -> bool {
        match self {
            NodeType::Any => true,
            NodeType::Internet2 => class == LinkClass::Internet2,
            NodeType::Commodity => class == LinkClass::Commodity,
            NodeType::International => class == LinkClass::International,
            NodeType::Dsl => class == LinkClass::Dsl,
            NodeType::Site(wanted) => wanted == site,
        }
    }

    /// A short label for messages: `any`, `DSL`, `site princeton`.
    pub fn label(&self) -> String {
        match self {
            NodeType::Any => "any".into(),
            NodeType::Internet2 => "Internet2".into(),
            NodeType::Commodity => "commodity".into(),
            NodeType::International => "international".into(),
            NodeType::Dsl => "DSL".into(),
            NodeType::Site(site) => format!("site {site}"),
        }
    }
}

/// What happens to the experiment when this node's sliver cannot be set up.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureAction {
    /// The experiment fails (and everything is released).
    #[default]
    Fatal,
    /// The experiment goes on without this node.
    Nonfatal,
}

/// One virtual node of the experiment.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VirtualNode {
    pub name: String,
    #[serde(default)]
    pub node_type: NodeType,
    /// A testbed node this virtual node must go to: its hostname or its numeric id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fixed: Option<String>,
    #[serde(default)]
    pub failure_action: FailureAction,
    /// Software to install on the sliver (package names or tarball URLs); used by provisioning.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub software: Vec<String>,
    /// A command run on the sliver once it is set up; used by provisioning.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub startup: Option<String>,
}

/// A wanted value and how far the matched path may be from it. An absent target means "don't care".
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Target {
    pub value: f64,
    /// The largest acceptable |matched − value|, in the unit of `value`.
    #[serde(default)]
    pub tolerance: f64,
}

impl Target {
    pub fn admits(&self, matched: f64) -> bool {
        (matched - self.value).abs() <= self.tolerance + 1e-9
    }
}

/// Relative weights of a link's deviations in the mapper's objective.
/// A missing weight is 1 (the `Default`).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LinkWeights {
    pub latency: f64,
    pub bandwidth: f64,
    pub loss: f64,
}

impl Default for LinkWeights {
    fn default() -> Self {
        Self { latency: 1.0, bandwidth: 1.0, loss: 1.0 }
    }
}

/// A virtual link between two virtual nodes, matched to the measured path between their testbed nodes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VirtualLink {
    pub a: String,
    pub b: String,
    /// Round-trip latency in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency: Option<Target>,
    /// Bandwidth in kbit/s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bandwidth: Option<Target>,
    /// Loss rate as a fraction (0 to 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss: Option<Target>,
    #[serde(default)]
    pub weights: LinkWeights,
}

impl VirtualLink {
    /// Whether any of latency, bandwidth or loss is asked for (otherwise any node pair will do).
    pub fn has_targets(&self) -> bool {
        self.latency.is_some() || self.bandwidth.is_some() || self.loss.is_some()
    }
}

/// Experiment-level placement options.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExperimentOptions {
    /// At most one node per site (the same as `max_nodes_per_site: 1`).
    #[serde(default)]
    pub one_node_per_site: bool,
    /// Place the (single) virtual node on every node that passes admission and matches its type.
    #[serde(default)]
    pub all_available_nodes: bool,
    /// A hard cap on nodes at one site.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_nodes_per_site: Option<u32>,
}

impl ExperimentOptions {
    /// The effective hard cap per site, if any.
    pub fn site_cap(&self) -> Option<u32> {
        if self.one_node_per_site { Some(1) } else { self.max_nodes_per_site }
    }
}

impl Topology {
    /// Checks everything the mapper relies on; the error names the offending field and element.
    pub fn validate(&self) -> AppResult<()> {
        if self.nodes.is_empty() {
            return Err(AppError::invalid("nodes", "a topology needs at least one node"));
        }
        if self.nodes.len() > MAX_NODES {
            let msg = format!("{} nodes requested; at most {MAX_NODES} are allowed", self.nodes.len());
            return Err(AppError::invalid("nodes", msg));
        }
        if self.links.len() > MAX_LINKS {
            let msg = format!("{} links requested; at most {MAX_LINKS} are allowed", self.links.len());
            return Err(AppError::invalid("links", msg));
        }
        self.validate_nodes()?;
        self.validate_links()?;
        self.validate_options()
    }

    fn validate_nodes(&self) -> AppResult<()> {
        let mut names = HashMap::new();
        let mut fixed = HashMap::new();
        for (i, node) in self.nodes.iter().enumerate() {
            node.validate(i)?;
            if let Some(first) = names.insert(node.name.as_str(), i) {
                let msg = format!("node name {:?} is used twice (nodes[{first}] and nodes[{i}])", node.name);
                return Err(AppError::invalid(&format!("nodes[{i}].name"), msg));
            }
            if let Some(host) = &node.fixed
                && let Some(first) = fixed.insert(host.as_str(), i)
            {
                let msg = format!(
                    "nodes {:?} and {:?} are both fixed to {host:?}; a testbed node holds one sliver per experiment",
                    self.nodes[first].name, node.name
                );
                return Err(AppError::invalid(&format!("nodes[{i}].fixed"), msg));
            }
        }
        Ok(())
    }

    fn validate_links(&self) -> AppResult<()> {
        let names: HashSet<&str> = self.nodes.iter().map(|n| n.name.as_str()).collect();
        let mut pairs = HashMap::new();
        for (i, link) in self.links.iter().enumerate() {
            link.validate(i, &names)?;
            let key = if link.a < link.b { (&link.a, &link.b) } else { (&link.b, &link.a) };
            if let Some(first) = pairs.insert(key, i) {
                let msg = format!(
                    "link {}–{} duplicates links[{first}]; one link per node pair (both map to the same path)",
                    link.a, link.b
                );
                return Err(AppError::invalid(&format!("links[{i}]"), msg));
            }
        }
        Ok(())
    }

    fn validate_options(&self) -> AppResult<()> {
        let opts = &self.options;
        if opts.max_nodes_per_site == Some(0) {
            return Err(AppError::invalid("options.max_nodes_per_site", "must be at least 1"));
        }
        if opts.one_node_per_site && opts.max_nodes_per_site.is_some_and(|m| m > 1) {
            let msg = "one_node_per_site contradicts max_nodes_per_site above 1; set only one of them";
            return Err(AppError::invalid("options.max_nodes_per_site", msg));
        }
        if opts.all_available_nodes && (self.nodes.len() != 1 || !self.links.is_empty()) {
            let msg =
                "all_available_nodes takes exactly one node (the template for every sliver) and no links";
            return Err(AppError::invalid("options.all_available_nodes", msg));
        }
        if opts.all_available_nodes && self.nodes[0].fixed.is_some() {
            let msg = "all_available_nodes cannot be combined with a fixed node";
            return Err(AppError::invalid("nodes[0].fixed", msg));
        }
        Ok(())
    }
}

impl VirtualNode {
    fn validate(&self, i: usize) -> AppResult<()> {
        let field = |f: &str| format!("nodes[{i}].{f}");
        check_name(&self.name).map_err(|m| AppError::invalid(&field("name"), m))?;
        if let NodeType::Site(site) = &self.node_type {
            check_site(site)
                .map_err(|m| AppError::invalid(&field("node_type"), format!("node {}: {m}", self.name)))?;
        }
        if let Some(fixed) = &self.fixed {
            let bad = fixed.is_empty()
                || fixed.len() > MAX_FIXED_LEN
                || fixed.chars().any(|c| c.is_whitespace() || c.is_control());
            if bad {
                let msg = format!(
                    "node {}: fixed must be a hostname or node id (1–{MAX_FIXED_LEN} characters, no spaces)",
                    self.name
                );
                return Err(AppError::invalid(&field("fixed"), msg));
            }
        }
        self.validate_software(i)
    }

    fn validate_software(&self, i: usize) -> AppResult<()> {
        if self.software.len() > MAX_SOFTWARE_ITEMS {
            let msg = format!("node {}: at most {MAX_SOFTWARE_ITEMS} software items", self.name);
            return Err(AppError::invalid(&format!("nodes[{i}].software"), msg));
        }
        for (k, item) in self.software.iter().enumerate() {
            if item.is_empty() || item.len() > MAX_SOFTWARE_LEN || item.chars().any(char::is_control) {
                let msg = format!(
                    "node {}: a software item must be 1–{MAX_SOFTWARE_LEN} characters without control characters",
                    self.name
                );
                return Err(AppError::invalid(&format!("nodes[{i}].software[{k}]"), msg));
            }
        }
        if let Some(cmd) = &self.startup
            && (cmd.len() > MAX_STARTUP_LEN || cmd.contains('\0'))
        {
            let msg =
                format!("node {}: the startup command must be at most {MAX_STARTUP_LEN} bytes", self.name);
            return Err(AppError::invalid(&format!("nodes[{i}].startup"), msg));
        }
        Ok(())
    }
}

impl VirtualLink {
    fn validate(&self, i: usize, names: &HashSet<&str>) -> AppResult<()> {
        for (end, name) in [("a", &self.a), ("b", &self.b)] {
            if !names.contains(name.as_str()) {
                let msg =
                    format!("link {}–{} names node {name:?}, which is not in the topology", self.a, self.b);
                return Err(AppError::invalid(&format!("links[{i}].{end}"), msg));
            }
        }
        if self.a == self.b {
            let msg = format!("link {}–{} connects a node to itself", self.a, self.b);
            return Err(AppError::invalid(&format!("links[{i}].b"), msg));
        }
        let what = format!("link {}–{}", self.a, self.b);
        check_target(&self.latency, (0.0, MAX_LATENCY_MS), &format!("links[{i}].latency"), &what, "ms")?;
        check_target(
            &self.bandwidth,
            (f64::MIN_POSITIVE, MAX_BANDWIDTH_KBPS),
            &format!("links[{i}].bandwidth"),
            &what,
            "kbps",
        )?;
        check_target(&self.loss, (0.0, 1.0), &format!("links[{i}].loss"), &what, "(a fraction)")?;
        for (name, w) in [
            ("latency", self.weights.latency),
            ("bandwidth", self.weights.bandwidth),
            ("loss", self.weights.loss),
        ] {
            if !(0.0..=MAX_WEIGHT).contains(&w) {
                let msg = format!("{what}: the {name} weight must be between 0 and {MAX_WEIGHT}, not {w}");
                return Err(AppError::invalid(&format!("links[{i}].weights.{name}"), msg));
            }
        }
        Ok(())
    }
}

/// `range` bounds the value; the tolerance must be non-negative and no larger than the range's top.
fn check_target(
    target: &Option<Target>,
    (low, high): (f64, f64),
    field: &str,
    what: &str,
    unit: &str,
) -> AppResult<()> {
    let Some(t) = target else { return Ok(()) };
    if !(t.value.is_finite() && t.value >= low && t.value <= high) {
        let lo = if low > 0.0 { "above 0".to_owned() } else { format!("at least {low}") };
        let msg = format!("{what}: the value must be {lo} and at most {high} {unit}, not {}", t.value);
        return Err(AppError::invalid(&format!("{field}.value"), msg));
    }
    if !(t.tolerance.is_finite() && (0.0..=high).contains(&t.tolerance)) {
        let msg = format!("{what}: the tolerance must be between 0 and {high} {unit}, not {}", t.tolerance);
        return Err(AppError::invalid(&format!("{field}.tolerance"), msg));
    }
    Ok(())
}

/// Names reach slivers (host names, paths, shell commands), so only a safe alphabet is allowed.
fn check_name(name: &str) -> Result<(), String> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return Err(format!("node name {name:?} must be 1–{MAX_NAME_LEN} characters"));
    }
    if !name.starts_with(|c: char| c.is_ascii_alphanumeric()) || !name.chars().all(ok_char) {
        return Err(format!(
            "node name {name:?} may hold only letters, digits, '-' and '_', and must start with a letter or digit"
        ));
    }
    Ok(())
}

fn check_site(site: &str) -> Result<(), String> {
    let ok_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_';
    if site.is_empty() || site.len() > 64 || !site.chars().all(ok_char) {
        return Err(format!("site {site:?} is not a site login base (lowercase letters, digits, '-', '_')"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str) -> VirtualNode {
        VirtualNode {
            name: name.into(),
            node_type: NodeType::Any,
            fixed: None,
            failure_action: FailureAction::Fatal,
            software: vec![],
            startup: None,
        }
    }

    fn link(a: &str, b: &str) -> VirtualLink {
        VirtualLink {
            a: a.into(),
            b: b.into(),
            latency: Some(Target { value: 50.0, tolerance: 5.0 }),
            bandwidth: None,
            loss: None,
            weights: LinkWeights::default(),
        }
    }

    fn topo() -> Topology {
        Topology {
            nodes: vec![node("a"), node("b"), node("c")],
            links: vec![link("a", "b"), link("b", "c")],
            options: ExperimentOptions::default(),
        }
    }

    fn field_of(t: &Topology) -> String {
        t.validate().expect_err("must be rejected").field.expect("names a field")
    }

    #[test]
    fn a_sound_topology_passes() {
        topo().validate().unwrap();
    }

    #[test]
    fn link_class_names_are_serde_names() {
        for class in LinkClass::ALL {
            assert_eq!(serde_json::to_string(&class).unwrap(), format!("\"{}\"", class.as_str()));
        }
    }

    #[test]
    fn parses_the_documented_json() {
        let json = r#"{
            "nodes": [{"name": "a", "node_type": "dsl"}, {"name": "b", "node_type": {"site": "princeton"},
                       "fixed": "planetlab1.cs.princeton.edu", "failure_action": "nonfatal"}],
            "links": [{"a": "a", "b": "b", "latency": {"value": 50, "tolerance": 5},
                       "bandwidth": {"value": 1000, "tolerance": 500}, "weights": {"latency": 2}}],
            "options": {"max_nodes_per_site": 2}
        }"#;
        let t: Topology = serde_json::from_str(json).unwrap();
        t.validate().unwrap();
        assert_eq!(t.nodes[0].node_type, NodeType::Dsl);
        assert_eq!(t.nodes[1].node_type, NodeType::Site("princeton".into()));
        assert_eq!(t.links[0].weights.latency, 2.0);
        assert_eq!(t.links[0].weights.loss, 1.0);
        assert_eq!(t.options.site_cap(), Some(2));
        assert!(serde_json::from_str::<Topology>(r#"{"nodes": [], "extra": 1}"#).is_err());
    }

    #[test]
    fn rejects_duplicate_node_names() {
        let mut t = topo();
        t.nodes[2].name = "a".into();
        assert_eq!(field_of(&t), "nodes[2].name");
        assert!(t.validate().unwrap_err().message.contains("\"a\""));
    }

    #[test]
    fn rejects_dangling_and_self_links() {
        let mut t = topo();
        t.links[1].b = "zz".into();
        assert_eq!(field_of(&t), "links[1].b");
        let mut t = topo();
        t.links[0].b = "a".into();
        assert_eq!(field_of(&t), "links[0].b");
        assert!(t.validate().unwrap_err().message.contains("a–a"));
    }

    #[test]
    fn rejects_duplicate_links_either_way_round() {
        let mut t = topo();
        t.links.push(link("b", "a"));
        assert_eq!(field_of(&t), "links[2]");
    }

    #[test]
    fn rejects_negative_and_absurd_values() {
        let mut t = topo();
        t.links[1].latency = Some(Target { value: -1.0, tolerance: 0.0 });
        assert_eq!(field_of(&t), "links[1].latency.value");
        assert!(t.validate().unwrap_err().message.contains("link b–c"));
        t.links[1].latency = Some(Target { value: 10.0, tolerance: f64::NAN });
        assert_eq!(field_of(&t), "links[1].latency.tolerance");
        t.links[1].latency = None;
        t.links[1].loss = Some(Target { value: 1.5, tolerance: 0.0 });
        assert_eq!(field_of(&t), "links[1].loss.value");
        t.links[1].loss = None;
        t.links[1].bandwidth = Some(Target { value: 0.0, tolerance: 0.0 });
        assert_eq!(field_of(&t), "links[1].bandwidth.value");
        t.links[1].bandwidth = None;
        t.links[1].weights.loss = -2.0;
        assert_eq!(field_of(&t), "links[1].weights.loss");
    }

    #[test]
    fn rejects_unsafe_names_and_sites() {
        let mut t = topo();
        t.nodes[1].name = "b; rm -rf /".into();
        assert_eq!(field_of(&t), "nodes[1].name");
        let mut t = topo();
        t.nodes[0].node_type = NodeType::Site("Prince ton".into());
        assert_eq!(field_of(&t), "nodes[0].node_type");
        let mut t = topo();
        t.nodes[0].fixed = Some(String::new());
        assert_eq!(field_of(&t), "nodes[0].fixed");
    }

    #[test]
    fn rejects_two_nodes_fixed_to_one_host() {
        let mut t = topo();
        t.nodes[0].fixed = Some("h1".into());
        t.nodes[2].fixed = Some("h1".into());
        assert_eq!(field_of(&t), "nodes[2].fixed");
    }

    #[test]
    fn rejects_oversized_topologies() {
        let t = Topology {
            nodes: (0..=MAX_NODES).map(|i| node(&format!("n{i}"))).collect(),
            links: vec![],
            options: ExperimentOptions::default(),
        };
        assert_eq!(field_of(&t), "nodes");
        let empty = Topology { nodes: vec![], links: vec![], options: ExperimentOptions::default() };
        assert_eq!(field_of(&empty), "nodes");
    }

    #[test]
    fn rejects_contradictory_options() {
        let mut t = topo();
        t.options.max_nodes_per_site = Some(0);
        assert_eq!(field_of(&t), "options.max_nodes_per_site");
        t.options.max_nodes_per_site = Some(3);
        t.options.one_node_per_site = true;
        assert_eq!(field_of(&t), "options.max_nodes_per_site");
        let mut t = topo();
        t.options.all_available_nodes = true;
        assert_eq!(field_of(&t), "options.all_available_nodes");
    }

    #[test]
    fn node_types_admit_the_right_nodes() {
        assert!(NodeType::Any.admits(LinkClass::Dsl, "x"));
        assert!(NodeType::Dsl.admits(LinkClass::Dsl, "x"));
        assert!(!NodeType::Internet2.admits(LinkClass::Commodity, "x"));
        assert!(NodeType::Site("x".into()).admits(LinkClass::Commodity, "x"));
        assert!(!NodeType::Site("x".into()).admits(LinkClass::Commodity, "y"));
    }
}
