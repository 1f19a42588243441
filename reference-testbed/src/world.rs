//! The testbed's world: sites, nodes, their resources and load over time, and the paths between them.
//!
//! The default world is the real PlanetLab of about 2010 (`reference-testbed/data/`, see the PROVENANCE files there): 684
//! nodes with their PLC node ids, hostnames, sites and bandwidth caps. What the data lacks is derived by fixed
//! rules, all deterministic given the seed:
//!
//! - **Sites** get `site_id`s 1, 2, … in the order they first appear in `nodes.csv` (the 16 sites listed
//!   without nodes are left out).
//! - **Addresses** come from the benchmarking range 198.18.0.0/15, never routable and never contacted: site `s`
//!   owns the block `198.18.0.0 + 16·s`, and its `k`-th node (0-based, file order) gets `+ k + 1`.
//! - **Link class**, from the hostname, as Emulab's portal did: *DSL* if a label of the hostname contains `dsl`;
//!   else *international* if the top-level domain is a country code other than `us` and `ca`; else *Internet2*
//!   for North American academic sites (`.edu`, `.ca`); else *commodity* (`.com`, `.net`, `.org`, `.us`, …).
//! - **Resources and load**: cores, memory and disk drawn per node; a base load from a log-normal (median 0.6,
//!   so a few nodes sit above 3), a daily cycle and noise; disk use mostly 20–75%, with 5% of nodes above 90%.
//! - **Paths**: the RTT matrix of `planetlab-rtt-490` is joined to nodes by a synthetic rule (the matrix has no
//!   names): the 490 nodes with the lowest node ids, in node-id order, take matrix rows 0…489. The other 194
//!   nodes are unmeasured, as with real sensors. The two matrix slices give time variation (a 6-hour cycle
//!   between them). Bandwidth is the smaller of the two ends' caps and a TCP throughput model (Mathis et al.:
//!   `MSS/RTT · 1.22/√loss`); loss is small and grows with RTT (and on DSL). 2% of measured pairs are stale
//!   (measured 6 to 72 hours ago).
//!
//! [`World::generate`] makes worlds of any size with the same distributions (site sizes, domains, DSL share),
//! placing sites on a map by region so that RTTs come from distances; 3% of its pairs are unmeasured.

use super::random;
use rand::Rng;
use rand_distr::{Distribution, LogNormal};
use std::net::Ipv4Addr;

const NODES_CSV: &str = include_str!("../data/planetlab-nodes-2010-sfa/nodes.csv");
const RTT_SLICE_1: &str = include_str!("../data/planetlab-rtt-490/PlanetLabData_1");
const RTT_SLICE_2: &str = include_str!("../data/planetlab-rtt-490/PlanetLabData_2");

pub use model::topology::LinkClass;

/// The access capacity assumed when a node has no published cap, in kbit/s.
fn default_capacity_kbps(class: LinkClass) -> f64 {
    match class {
        LinkClass::Internet2 => 1_000_000.0,
        LinkClass::Commodity | LinkClass::International => 100_000.0,
        LinkClass::Dsl => 1_500.0,
    }
}

/// The link-class rule (see the module documentation).
pub fn link_class(hostname: &str) -> LinkClass {
    let hostname = hostname.to_ascii_lowercase();
    let labels: Vec<&str> = hostname.split('.').collect();
    let tld = labels.last().copied().unwrap_or("");
    if labels.iter().any(|l| l.contains("dsl")) {
        LinkClass::Dsl
    } else if tld.len() == 2 && tld != "us" && tld != "ca" {
        LinkClass::International
    } else if tld == "edu" || tld == "ca" {
        LinkClass::Internet2
    } else {
        LinkClass::Commodity
    }
}

/// The country a hostname's top-level domain names, if it names one (`.edu` and friends mean the US).
pub fn country(hostname: &str) -> Option<String> {
    let tld = hostname.rsplit('.').next()?.to_ascii_lowercase();
    match tld.as_str() {
        "edu" | "gov" | "mil" | "us" => Some("us".to_owned()),
        t if t.len() == 2 => Some(if t == "uk" { "gb".to_owned() } else { t.to_owned() }),
        _ => None,
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Site {
    pub site_id: i32,
    pub login_base: String,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// Portolan-independent, stable position in the world; the testbed's public ids may change, this never.
    pub index: usize,
    pub node_id: i32,
    pub hostname: String,
    /// Index into [`World::sites`].
    pub site: usize,
    pub ip: Ipv4Addr,
    pub link_class: LinkClass,
    pub country: Option<String>,
    pub bw_limit_kbps: Option<u32>,
    pub cpu_cores: u32,
    pub memory_mb: u32,
    pub disk_gb: u32,
    /// The node's SSH host key (OpenSSH public form), published as PLC did in `ssh_rsa_key`.
    pub host_key: String,
    /// The seed of the host key's private half, for the simulated slivers' SSH endpoints.
    pub host_key_seed: [u8; 32],
    base_load: f64,
    disk_used: f64,
    phase: f64,
}

/// One path measurement, as a sensor reports it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PathSample {
    pub latency_ms: f64,
    pub bandwidth_kbps: f64,
    pub loss: f64,
    /// Unix seconds of the measurement (old ones are stale).
    pub measured_at: f64,
}

/// A node's load at one moment.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LoadSample {
    /// Unix load average (1 minute).
    pub load: f64,
    /// Fraction of memory in use.
    pub memory_used: f64,
    /// Fraction of the disk that is free.
    pub disk_free: f64,
    /// Outbound traffic, kbit/s.
    pub net_kbps: f64,
}

#[derive(Debug, Clone)]
enum Paths {
    /// Two RTT slices (row-major, n×n, ms) and each node's row, if measured.
    Matrix { n: usize, slices: [Vec<f32>; 2], row_of: Vec<Option<usize>> },
    /// Map positions (degrees) per site and an access delay per node (ms).
    Map { site_position: Vec<(f64, f64)>, access_ms: Vec<f64> },
}

#[derive(Debug, Clone)]
pub struct World {
    pub seed: u64,
    pub sites: Vec<Site>,
    pub nodes: Vec<Node>,
    paths: Paths,
}

const HOUR: f64 = 3600.0;
/// 2010-02-09, when the node list was taken: the default moment of exported worlds.
pub const DATA_DATE: f64 = 1_265_673_600.0;

impl World {
    /// The real PlanetLab world (684 nodes at 258 sites with nodes) with attributes derived from `seed`.
    pub fn planetlab(seed: u64) -> Self {
        let (sites, raw) = planetlab_listing();
        let nodes = build_nodes(seed, &sites, raw);
        let mut by_id: Vec<usize> = (0..nodes.len()).collect();
        by_id.sort_by_key(|&i| nodes[i].node_id);
        let n = 490;
        let mut row_of = vec![None; nodes.len()];
        for (row, &i) in by_id.iter().take(n).enumerate() {
            row_of[i] = Some(row);
        }
        let slices = [parse_matrix(RTT_SLICE_1, n), parse_matrix(RTT_SLICE_2, n)];
        World { seed, sites, nodes, paths: Paths::Matrix { n, slices, row_of } }
    }

    /// A generated world of `node_count` nodes with the real world's distributions.
    pub fn generate(node_count: usize, seed: u64) -> Self {
        // The real listing's distributions (only the listing: no keys, no matrices).
        let (real_sites, real_nodes) = planetlab_listing();
        let mut site_sizes: Vec<usize> = vec![0; real_sites.len()];
        for (_, _, site, _) in &real_nodes {
            site_sizes[*site] += 1;
        }
        let domains: Vec<String> = real_nodes
            .iter()
            .map(|(_, host, _, _)| host.rsplit('.').next().unwrap_or("edu").to_owned())
            .collect();
        let mut rng = random::stream(seed, "generate", &[node_count as u64]);
        let (mut sites, mut raw, mut site_position) = (Vec::new(), Vec::new(), Vec::new());
        while raw.len() < node_count {
            let s = sites.len();
            let login_base = format!("gen{s:05}");
            let tld = &domains[rng.random_range(0..domains.len())];
            sites.push(Site {
                site_id: s as i32 + 1,
                login_base: login_base.clone(),
                name: format!("Site {s}"),
            });
            site_position.push(region_position(tld, &mut rng));
            let size = site_sizes[rng.random_range(0..site_sizes.len())].min(node_count - raw.len()).min(15);
            for k in 0..size {
                let dsl = if rng.random_bool(4.0 / 684.0) { "-dsl" } else { "" };
                let hostname = format!("planetlab{}{dsl}.{login_base}.example.{tld}", k + 1);
                let node_id = 100_000 + raw.len() as i32;
                raw.push((node_id, hostname, s, None));
            }
        }
        let nodes = build_nodes(seed, &sites, raw);
        let access_ms = nodes
            .iter()
            .map(|n| {
                let base = 0.2 + 4.8 * random::unit(seed, "access", &[n.index as u64]);
                if n.link_class == LinkClass::Dsl { base + 15.0 } else { base }
            })
            .collect();
        World { seed, sites, nodes, paths: Paths::Map { site_position, access_ms } }
    }

    /// Whether the pair has sensor data at all.
    pub fn measured(&self, a: usize, b: usize) -> bool {
        match &self.paths {
            Paths::Matrix { row_of, .. } => row_of[a].is_some() && row_of[b].is_some(),
            Paths::Map { .. } => {
                let (x, y) = (a.min(b) as u64, a.max(b) as u64);
                random::unit(self.seed, "unmeasured", &[x, y]) >= 0.03
            }
        }
    }

    /// The path between nodes `a` and `b` as a sensor reports it at time `t`; `None` when unmeasured.
    pub fn path(&self, a: usize, b: usize, t: f64) -> Option<PathSample> {
        if a == b || !self.measured(a, b) {
            return None;
        }
        let latency_ms = self.rtt_ms(a, b, t)?;
        let (x, y) = (a.min(b) as u64, a.max(b) as u64);
        let (na, nb) = (&self.nodes[a], &self.nodes[b]);
        let dsl = na.link_class == LinkClass::Dsl || nb.link_class == LinkClass::Dsl;
        let jitter = random::unit(self.seed, "loss", &[x, y]);
        let loss =
            (0.0005 + 0.002 * latency_ms / 300.0 + 0.001 * jitter + if dsl { 0.005 } else { 0.0 }).min(0.05);
        let mathis_kbps = 1460.0 * 8.0 / (latency_ms.max(0.1) / 1000.0) * 1.22 / loss.sqrt() / 1000.0;
        let bandwidth_kbps = capacity(na).min(capacity(nb)).min(mathis_kbps);
        let age = if random::unit(self.seed, "stale", &[x, y]) < 0.02 {
            6.0 * HOUR + 66.0 * HOUR * random::unit(self.seed, "stale-age", &[x, y])
        } else {
            900.0 * random::unit(self.seed, "age", &[x, y, (t / 900.0) as u64])
        };
        Some(PathSample { latency_ms, bandwidth_kbps, loss, measured_at: t - age })
    }

    fn rtt_ms(&self, a: usize, b: usize, t: f64) -> Option<f64> {
        match &self.paths {
            Paths::Matrix { n, slices, row_of } => {
                let (ra, rb) = (row_of[a]?, row_of[b]?);
                let w = 0.5 - 0.5 * (2.0 * std::f64::consts::PI * t / (6.0 * HOUR)).cos();
                let (s1, s2) = (f64::from(slices[0][ra * n + rb]), f64::from(slices[1][ra * n + rb]));
                Some(s1 * (1.0 - w) + s2 * w)
            }
            Paths::Map { site_position, access_ms } => {
                let (na, nb) = (&self.nodes[a], &self.nodes[b]);
                let (x, y) = (a.min(b) as u64, a.max(b) as u64);
                if na.site == nb.site {
                    return Some(0.1 + 0.4 * random::unit(self.seed, "lan", &[x, y]));
                }
                let km = great_circle_km(site_position[na.site], site_position[nb.site]);
                let inflation = 1.3 + 0.5 * random::unit(self.seed, "inflation", &[x, y]);
                let daily = 1.0 + 0.05 * (2.0 * std::f64::consts::PI * t / (24.0 * HOUR)).sin();
                Some((2.0 * km / 200.0 * inflation + access_ms[a] + access_ms[b]) * daily)
            }
        }
    }

    /// Node `i`'s load at time `t` (seconds).
    pub fn load(&self, i: usize, t: f64) -> LoadSample {
        let node = &self.nodes[i];
        let bucket = (t / 300.0).floor() as u64;
        let noise = random::unit(self.seed, "load-noise", &[i as u64, bucket]) - 0.5;
        let daily = (2.0 * std::f64::consts::PI * t / (24.0 * HOUR) + node.phase).sin();
        let load = (node.base_load * (1.0 + 0.35 * daily) * (1.0 + 0.3 * noise)).max(0.0);
        let weekly = (2.0 * std::f64::consts::PI * t / (7.0 * 24.0 * HOUR) + node.phase).sin();
        let disk_free = (1.0 - node.disk_used - 0.01 * weekly).clamp(0.0, 1.0);
        let memory_used = (0.25 + 0.45 * (load / 4.0).min(1.0) + 0.1 * noise).clamp(0.05, 0.99);
        let net_kbps = capacity(node).min(100_000.0) * 0.02 * (1.0 + load) * (1.0 + noise);
        LoadSample { load, memory_used, disk_free, net_kbps }
    }
}

impl World {
    /// The world as the mapper's `--world` input at time `t`: every node with its load then, and every measured
    /// path of the real world (generated worlds export nodes only: their pairs are too many for a file; the
    /// sensor feed serves them). Node ids are the testbed's node ids.
    pub fn to_map_world_at(&self, t: f64) -> model::world::MapWorld {
        use model::world::{CandidateNode, MapWorld, MeasuredPath};
        let nodes = self
            .nodes
            .iter()
            .map(|n| {
                let load = self.load(n.index, t);
                CandidateNode {
                    id: n.node_id as u64,
                    hostname: n.hostname.clone(),
                    site: self.sites[n.site].login_base.clone(),
                    link_class: n.link_class,
                    load: Some(load.load),
                    memory_free_mb: Some(f64::from(n.memory_mb) * (1.0 - load.memory_used)),
                    disk_free_pct: Some(load.disk_free * 100.0),
                    reliability: 1.0,
                    recent_failures: 0,
                    metric_age_s: Some(300.0 * random::unit(self.seed, "metric-age", &[n.index as u64])),
                }
            })
            .collect();
        let mut paths = Vec::new();
        if matches!(self.paths, Paths::Matrix { .. }) {
            for a in 0..self.nodes.len() {
                for b in a + 1..self.nodes.len() {
                    if let Some(p) = self.path(a, b, t) {
                        paths.push(MeasuredPath {
                            a: self.nodes[a].node_id as u64,
                            b: self.nodes[b].node_id as u64,
                            latency_ms: p.latency_ms,
                            bandwidth_kbps: p.bandwidth_kbps,
                            loss: p.loss,
                            age_s: t - p.measured_at,
                        });
                    }
                }
            }
        }
        MapWorld { nodes, paths }
    }

    /// [`Self::to_map_world_at`] the data's date.
    pub fn to_map_world(&self) -> model::world::MapWorld {
        self.to_map_world_at(DATA_DATE)
    }
}

/// A node as listed before its attributes are derived: node id, hostname, site index, bandwidth cap.
type RawNode = (i32, String, usize, Option<u32>);

/// Sites and nodes of the shipped `nodes.csv`; sites numbered in order of first appearance.
fn planetlab_listing() -> (Vec<Site>, Vec<RawNode>) {
    let mut sites: Vec<Site> = Vec::new();
    let mut raw = Vec::new();
    let mut reader = csv::Reader::from_reader(NODES_CSV.as_bytes());
    for record in reader.records() {
        let r = record.expect("the shipped nodes.csv is well formed");
        let login_base = r[2].to_owned();
        let site = match sites.iter().position(|s| s.login_base == login_base) {
            Some(i) => i,
            None => {
                sites.push(Site { site_id: sites.len() as i32 + 1, login_base, name: r[3].to_owned() });
                sites.len() - 1
            }
        };
        let node_id: i32 = r[0].parse().expect("numeric node_id");
        raw.push((node_id, r[1].to_owned(), site, r[5].parse::<u32>().ok()));
    }
    (sites, raw)
}

fn capacity(node: &Node) -> f64 {
    node.bw_limit_kbps.map_or_else(|| default_capacity_kbps(node.link_class), f64::from)
}

fn build_nodes(seed: u64, sites: &[Site], raw: Vec<RawNode>) -> Vec<Node> {
    let load = LogNormal::new(0.6f64.ln(), 0.9).expect("valid log-normal");
    let mut per_site = vec![0u32; sites.len()];
    raw.into_iter()
        .enumerate()
        .map(|(index, (node_id, hostname, site, bw_limit_kbps))| {
            let mut rng = random::stream(seed, "node", &[index as u64]);
            let k = per_site[site];
            per_site[site] += 1;
            let ip = Ipv4Addr::from(
                u32::from(Ipv4Addr::new(198, 18, 0, 0)) + 16 * sites[site].site_id as u32 + k + 1,
            );
            let disk_used = match rng.random_range(0..100) {
                0..=84 => rng.random_range(0.2..0.75),
                85..=94 => rng.random_range(0.75..0.9),
                _ => rng.random_range(0.9..0.99),
            };
            let host_key_seed: [u8; 32] = rng.random();
            Node {
                index,
                node_id,
                link_class: link_class(&hostname),
                country: country(&hostname),
                host_key: host_key(&host_key_seed, &hostname),
                hostname,
                site,
                ip,
                bw_limit_kbps,
                cpu_cores: [2, 4, 4, 8][rng.random_range(0..4)],
                memory_mb: [2048, 4096, 4096, 8192][rng.random_range(0..4)],
                disk_gb: [80, 160, 250, 500][rng.random_range(0..4)],
                host_key_seed,
                base_load: load.sample(&mut rng),
                disk_used,
                phase: rng.random_range(0.0..std::f64::consts::TAU),
            }
        })
        .collect()
}

fn host_key(seed: &[u8; 32], hostname: &str) -> String {
    let pair = ssh_key::private::Ed25519Keypair::from_seed(seed);
    let mut key = ssh_key::PublicKey::from(pair.public);
    key.set_comment(format!("root@{hostname}"));
    key.to_openssh().expect("an ed25519 key always encodes")
}

fn parse_matrix(text: &str, n: usize) -> Vec<f32> {
    let values: Vec<f32> = text
        .split_ascii_whitespace()
        .map(|v| v.parse().expect("the shipped RTT matrix holds numbers"))
        .collect();
    assert_eq!(values.len(), n * n, "RTT matrix is {n}×{n}");
    values
}

/// A position for a site under a top-level domain: a box per region, a uniform draw inside it.
fn region_position(tld: &str, rng: &mut impl Rng) -> (f64, f64) {
    let (lat, lon) = match tld {
        "edu" | "com" | "org" | "net" | "us" | "gov" | "ca" => ((28.0, 50.0), (-124.0, -70.0)),
        "jp" | "kr" | "cn" | "tw" | "hk" | "sg" | "in" | "th" => ((1.0, 45.0), (100.0, 142.0)),
        "br" | "ar" | "cl" | "uy" | "ve" => ((-35.0, -3.0), (-70.0, -35.0)),
        "au" | "nz" => ((-45.0, -12.0), (115.0, 178.0)),
        "il" | "tr" | "ir" | "jo" => ((29.0, 41.0), (29.0, 52.0)),
        "ru" => ((50.0, 60.0), (30.0, 90.0)),
        _ => ((36.0, 60.0), (-9.0, 30.0)),
    };
    (rng.random_range(lat.0..lat.1), rng.random_range(lon.0..lon.1))
}

fn great_circle_km(a: (f64, f64), b: (f64, f64)) -> f64 {
    let (la, lb) = (a.0.to_radians(), b.0.to_radians());
    let dlat = lb - la;
    let dlon = (b.1 - a.1).to_radians();
    let h = (dlat / 2.0).sin().powi(2) + la.cos() * lb.cos() * (dlon / 2.0).sin().powi(2);
    2.0 * 6371.0 * h.sqrt().asin()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_real_world_is_planetlab() {
        let world = World::planetlab(1);
        assert_eq!(world.nodes.len(), 684);
        assert_eq!(world.sites.len(), 258);
        let node = world.nodes.iter().find(|n| n.hostname == "planetlab1.williams.edu").unwrap();
        assert_eq!(node.node_id, 10858);
        assert_eq!(world.sites[node.site].login_base, "williams");
        assert_eq!(node.link_class, LinkClass::Internet2);
        assert!(node.ip.octets()[..2] == [198, 18] || node.ip.octets()[..2] == [198, 19]);
        let dsl: Vec<_> = world.nodes.iter().filter(|n| n.link_class == LinkClass::Dsl).collect();
        assert_eq!(dsl.len(), 4);
        assert_eq!(
            world
                .nodes
                .iter()
                .filter(|n| world.nodes.iter().any(|m| m.index != n.index && m.ip == n.ip))
                .count(),
            0
        );
        assert!(node.host_key.starts_with("ssh-ed25519 "));
    }

    #[test]
    fn exports_what_the_mapper_accepts() {
        let exported = World::planetlab(1).to_map_world();
        exported.validate().unwrap();
        assert_eq!(exported.nodes.len(), 684);
        let measured = 490 * 489 / 2;
        assert_eq!(exported.paths.len(), measured);
        let generated = World::generate(500, 1).to_map_world();
        generated.validate().unwrap();
        assert!(generated.paths.is_empty());
    }

    #[test]
    fn link_classes_follow_the_hostname_rule() {
        assert_eq!(link_class("planetlab3-dsl.cs.cornell.edu"), LinkClass::Dsl);
        assert_eq!(link_class("146-179.surfsnel.dsl.internl.net"), LinkClass::Dsl);
        assert_eq!(link_class("planetlab1.wiwi.hu-berlin.de"), LinkClass::International);
        assert_eq!(link_class("planetlab1.cs.ubc.ca"), LinkClass::Internet2);
        assert_eq!(link_class("pl1.example.com"), LinkClass::Commodity);
        assert_eq!(link_class("node.lab.us"), LinkClass::Commodity);
    }

    #[test]
    fn paths_are_measured_for_490_nodes_and_vary_in_time() {
        let world = World::planetlab(1);
        let measured: Vec<usize> =
            (0..world.nodes.len()).filter(|&i| world.measured(i, (i + 1) % 684)).collect();
        assert!(!measured.is_empty());
        let with_rows = (0..world.nodes.len())
            .filter(|&i| world.path(i, if i == 0 { 1 } else { 0 }, 0.0).is_some())
            .count();
        assert!((480..=490).contains(&with_rows), "{with_rows}");
        let (a, b) = (measured[0], (measured[0] + 1) % 684);
        let p0 = world.path(a, b, 0.0).unwrap();
        let p3 = world.path(a, b, 3.0 * HOUR).unwrap();
        assert!(p0.latency_ms > 0.0 && p0.loss > 0.0 && p0.loss <= 0.05 && p0.bandwidth_kbps > 0.0);
        assert_ne!(p0.latency_ms, p3.latency_ms, "two slices give time variation");
        assert_eq!(world.path(a, b, 0.0), world.path(b, a, 0.0), "paths are symmetric");
    }

    #[test]
    fn loads_spread_realistically() {
        let world = World::planetlab(1);
        let loads: Vec<LoadSample> = (0..world.nodes.len()).map(|i| world.load(i, 1.0e9)).collect();
        let overloaded = loads.iter().filter(|l| l.load > 3.0).count();
        let full = loads.iter().filter(|l| l.disk_free < 0.1).count();
        assert!((5..=100).contains(&overloaded), "{overloaded} overloaded nodes");
        assert!((5..=80).contains(&full), "{full} nearly full disks");
    }

    #[test]
    fn same_seed_same_world() {
        let (a, b, c) = (World::generate(2000, 9), World::generate(2000, 9), World::generate(2000, 10));
        assert_eq!(a.nodes, b.nodes);
        assert_eq!(a.path(3, 1500, 100.0), b.path(3, 1500, 100.0));
        assert_ne!(a.nodes, c.nodes);
        assert_eq!(World::planetlab(4).nodes, World::planetlab(4).nodes);
        assert_ne!(World::planetlab(4).load(0, 0.0), World::planetlab(5).load(0, 0.0));
    }

    #[test]
    fn generated_worlds_have_the_asked_size_and_sane_paths() {
        let world = World::generate(10_000, 3);
        assert_eq!(world.nodes.len(), 10_000);
        assert!(world.sites.len() > 2_000);
        let mut latencies: Vec<f64> =
            (1..2000).filter_map(|b| world.path(0, b * 5, 0.0)).map(|p| p.latency_ms).collect();
        latencies.sort_by(f64::total_cmp);
        let median = latencies[latencies.len() / 2];
        assert!((10.0..400.0).contains(&median), "median RTT {median}");
        let unmeasured = (1..2000).filter(|&b| world.path(0, b * 5, 0.0).is_none()).count();
        assert!((10..150).contains(&unmeasured), "{unmeasured}");
    }
}
