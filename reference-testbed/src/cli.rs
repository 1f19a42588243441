//! `portolan testbed …`: run the reference testbed alone, or export its world for the mapper; and the
//! in-process testbed that `portolan serve` starts when no testbed URL is configured.

use crate::{Settings, Testbed, clock::Clock, parse_admin, profile::Profile, world::World};
use anyhow::Context;
use std::{net::SocketAddr, sync::Arc};

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
