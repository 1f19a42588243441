//! `portolan testbed …`: run the reference testbed alone, or export its world for the mapper; and the
//! in-process testbed that `portolan serve` starts when no testbed URL is configured.
//!
//! The slivers' SSH endpoints ([`crate::ssh`]) are off unless asked for: `--ssh-listen 0.0.0.0:2222` serves
//! every simulated sliver there (node `i` at 127.64.0.0 + i + 1, port 2222; `GetNodeTags` then publishes
//! each node's `ssh_endpoint`), and `--sshd-node` hands a node to a real `sshd` (repeatable):
//!
//! ```text
//! --sshd-node HOSTNAME,addr=IP:PORT,host-key=FILE.pub,authorized-keys=FILE[,login=USER]
//! ```
//!
//! `host-key` is the `sshd`'s public host key file (one OpenSSH line), `authorized-keys` the file its
//! `AuthorizedKeysFile` names (the testbed rewrites it), `login` the one Unix user it accepts, when the login
//! is not the slice's name. [`serve_ssh_on`] does the same for the embedded testbed.

use crate::{Settings, Testbed, clock::Clock, parse_admin, profile::Profile, world::World};
use anyhow::Context;
use std::{net::SocketAddr, path::PathBuf, sync::Arc};

#[derive(clap::Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct TestbedArgs {
    #[command(subcommand)]
    pub command: Option<TestbedCommand>,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:3001")]
    pub listen: SocketAddr,
    /// A shipped profile (`mild`, `paper`, `harsh`) or a profile TOML file.
    #[arg(long, default_value = "mild")]
    pub profile: String,
    /// The seed every random choice derives from.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Testbed seconds per real second (360: an hour in ten seconds).
    #[arg(long, default_value_t = 1.0)]
    pub time_scale: f64,
    /// An admin account, `EMAIL:PASSWORD` (may be repeated).
    #[arg(long = "admin", value_name = "EMAIL:PASSWORD")]
    pub admins: Vec<String>,
    /// Serve the simulated slivers' SSH endpoints here (bind 0.0.0.0: each node has its own 127.64.x.y
    /// address on this port). Default: no SSH endpoints.
    #[arg(long, value_name = "ADDR:PORT")]
    pub ssh_listen: Option<SocketAddr>,
    /// Back a node with a real sshd (may be repeated; see the module documentation).
    #[arg(
        long = "sshd-node",
        value_name = "HOSTNAME,addr=IP:PORT,host-key=FILE.pub,authorized-keys=FILE[,login=USER]"
    )]
    pub sshd_nodes: Vec<String>,
}

/// One `--sshd-node`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshdNode {
    pub hostname: String,
    pub addr: SocketAddr,
    pub host_key: PathBuf,
    pub authorized_keys: PathBuf,
    pub login: Option<String>,
}

/// Parses `HOSTNAME,addr=IP:PORT,host-key=FILE.pub,authorized-keys=FILE[,login=USER]`.
pub fn parse_sshd_node(text: &str) -> Result<SshdNode, String> {
    let mut parts = text.split(',');
    let hostname = parts.next().filter(|h| !h.is_empty() && !h.contains('=')).ok_or_else(|| {
        format!("--sshd-node {text:?}: expected HOSTNAME,addr=IP:PORT,host-key=FILE,authorized-keys=FILE")
    })?;
    let (mut addr, mut host_key, mut authorized_keys, mut login) = (None, None, None, None);
    for part in parts {
        let (key, value) = part
            .split_once('=')
            .ok_or_else(|| format!("--sshd-node {hostname}: {part:?} is not KEY=VALUE"))?;
        match key {
            "addr" => {
                addr = Some(
                    value.parse::<SocketAddr>().map_err(|e| format!("--sshd-node {hostname}: addr: {e}"))?,
                )
            }
            "host-key" => host_key = Some(PathBuf::from(value)),
            "authorized-keys" => authorized_keys = Some(PathBuf::from(value)),
            "login" => login = Some(value.to_owned()),
            other => return Err(format!("--sshd-node {hostname}: unknown {other:?}")),
        }
    }
    let missing = |what: &str| format!("--sshd-node {hostname}: {what}= is missing");
    Ok(SshdNode {
        hostname: hostname.to_owned(),
        addr: addr.ok_or_else(|| missing("addr"))?,
        host_key: host_key.ok_or_else(|| missing("host-key"))?,
        authorized_keys: authorized_keys.ok_or_else(|| missing("authorized-keys"))?,
        login,
    })
}

/// Hands the `--sshd-node` nodes to their sshds.
fn back_with_sshds(tb: &Arc<Testbed>, nodes: &[String]) -> anyhow::Result<()> {
    for text in nodes {
        let node = parse_sshd_node(text).map_err(anyhow::Error::msg)?;
        let key = std::fs::read_to_string(&node.host_key)
            .with_context(|| format!("cannot read the host key {}", node.host_key.display()))?;
        tb.back_with_sshd(&node.hostname, &key, node.addr, node.login.as_deref(), node.authorized_keys)
            .map_err(anyhow::Error::msg)?;
    }
    Ok(())
}

/// Serves `testbed`'s simulated SSH endpoints on `listen` (bind `0.0.0.0:<port>`; port 0 picks one) in the
/// background, until the process ends; answers the address bound.
pub async fn serve_ssh_on(testbed: &Arc<Testbed>, listen: SocketAddr) -> anyhow::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen for SSH on {listen}"))?;
    let bound = listener.local_addr()?;
    let testbed = testbed.clone();
    tokio::spawn(async move {
        if let Err(e) = testbed.serve_ssh(listener, std::future::pending()).await {
            tracing::error!("reference testbed: the SSH endpoints stopped: {e}");
        }
    });
    tracing::info!("reference testbed: slivers' SSH endpoints on port {}", bound.port());
    Ok(bound)
}

#[derive(clap::Subcommand, Debug)]
pub enum TestbedCommand {
    /// Print the world the testbed presents as the mapper's `--world` JSON.
    ExportWorld {
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// A generated world of this many nodes instead of the real PlanetLab one.
        #[arg(long)]
        nodes: Option<usize>,
        /// Testbed time (Unix seconds) of the loads and paths; default: the data's date, 2010-02-09.
        #[arg(long)]
        at: Option<f64>,
    },
}

fn settings(profile: &str, seed: u64, time_scale: f64, admins: &[String]) -> anyhow::Result<Settings> {
    let profile = Profile::load(profile).map_err(anyhow::Error::msg)?;
    anyhow::ensure!(time_scale > 0.0 && time_scale.is_finite(), "--time-scale must be a positive number");
    let admins =
        admins.iter().map(|a| parse_admin(a).map_err(anyhow::Error::msg)).collect::<Result<_, _>>()?;
    Ok(Settings { seed, profile, clock: Clock::scaled(crate::clock::system_now(), time_scale), admins })
}

pub async fn run(args: TestbedArgs) -> anyhow::Result<()> {
    if let Some(TestbedCommand::ExportWorld { seed, nodes, at }) = args.command {
        let world = match nodes {
            Some(n) => World::generate(n, seed),
            None => World::planetlab(seed),
        };
        let exported = world.to_map_world_at(at.unwrap_or(crate::world::DATA_DATE));
        println!("{}", serde_json::to_string(&exported)?);
        return Ok(());
    }
    let tb = Testbed::new(settings(&args.profile, args.seed, args.time_scale, &args.admins)?);
    back_with_sshds(&tb, &args.sshd_nodes)?;
    if let Some(listen) = args.ssh_listen {
        serve_ssh_on(&tb, listen).await?;
    }
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {} (--listen)", args.listen))?;
    tracing::info!(
        nodes = tb.world.nodes.len(),
        profile = %args.profile,
        seed = args.seed,
        "reference testbed: PLCAPI at http://{}/PLCAPI/",
        listener.local_addr()?
    );
    crate::serve(tb, listener, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await?;
    Ok(())
}

/// The in-process testbed of `portolan serve`: the portal starts it when no testbed URL is configured. Its
/// admin account is the portal's own, with a password made at start and never logged.
pub struct Embedded {
    pub testbed: Arc<Testbed>,
    pub url: String,
    pub admin: (String, String),
}

/// Starts a testbed with `profile`, `seed` and `time_scale` on `listen`, with a fresh admin account.
pub async fn embedded(
    profile: &str,
    seed: u64,
    time_scale: f64,
    listen: SocketAddr,
) -> anyhow::Result<Embedded> {
    let password = {
        use rand::RngCore;
        let mut bytes = [0u8; 18];
        rand::rng().fill_bytes(&mut bytes);
        hex::encode(bytes)
    };
    let admin = ("portolan@portolan.local".to_owned(), password);
    let mut settings = settings(profile, seed, time_scale, &[])?;
    settings.admins.push(admin.clone());
    let testbed = Testbed::new(settings);
    let listener =
        tokio::net::TcpListener::bind(listen).await.with_context(|| format!("cannot listen on {listen}"))?;
    let url = format!("http://{}/PLCAPI/", listener.local_addr()?);
    tokio::spawn(crate::serve(testbed.clone(), listener, std::future::pending()));
    tracing::info!(nodes = testbed.world.nodes.len(), "reference testbed running in-process at {url}");
    Ok(Embedded { testbed, url, admin })
}
