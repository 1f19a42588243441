//! `portolan`: the one binary. `serve` runs the portal, `migrate` brings the database up to date, `admin`
//! manages accounts from the command line. Settings: see `config.rs` and the README.

use anyhow::Context;
use clap::{Parser, Subcommand};
use server::{config::Config, open_database};
use std::io::BufRead;
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(
    name = "portolan",
    version,
    about = "A portal that lends researchers slices of a wide-area testbed"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the portal (migrates the database first).
    Serve,
    /// Bring the database schema up to date and exit.
    Migrate,
    /// Manage accounts.
    #[command(subcommand)]
    Admin(Admin),
    /// Run the agent (inside a sliver: bring-up installs and starts it). It applies the portal's manifest
    /// and heartbeats until stopped.
    Agent {
        /// The agent's configuration (JSON, written by bring-up: `$HOME/.portolan/agent.json`).
        #[arg(long)]
        config: std::path::PathBuf,
        /// Start in the background (stopping one already running) and return.
        #[arg(long, conflicts_with = "stop")]
        detach: bool,
        /// Stop the agent running in the background.
        #[arg(long)]
        stop: bool,
    },
    /// Run the reference testbed alone (PLCAPI at /PLCAPI/), or export its world.
    Testbed(reference_testbed::cli::TestbedArgs),
    /// Map a topology onto a world with the mapper and print the answer as JSON (formats: see the README).
    Map {
        /// The world: candidate nodes and measured paths (JSON).
        #[arg(long, required_unless_present = "from_db", conflicts_with = "from_db")]
        world: Option<std::path::PathBuf>,
        /// Map onto the live world in the portal's database (its configuration as for `serve`), under the
        /// stored admission thresholds unless `--policy` is given.
        #[arg(long)]
        from_db: bool,
        /// The requested topology (JSON).
        #[arg(long)]
        topology: std::path::PathBuf,
        /// Admission thresholds and objective weights (JSON); defaults when absent.
        #[arg(long)]
        policy: Option<std::path::PathBuf>,
        /// Seconds the solver may spend (default 30).
        #[arg(long)]
        time_limit: Option<f64>,
    },
}

#[derive(Subcommand)]
enum Admin {
    /// Create a user; the password is read from the first line of standard input.
    CreateUser {
        #[arg(long)]
        email: String,
        #[arg(long)]
        name: String,
        /// Make the user an operator (sees and manages everything).
        #[arg(long)]
        operator: bool,
    },
    /// Grant (or with --revoke withdraw) the operator role.
    MakeOperator {
        email: String,
        #[arg(long)]
        revoke: bool,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // The portal's configuration matters to the portal's commands only: `testbed` and `map` take arguments.
    match cli.command {
        Command::Agent { config, detach, stop } => {
            init_tracing("info");
            if detach {
                portolan_agent::daemon::detach(&config)?;
            } else if stop {
                portolan_agent::daemon::stop(&config)?;
            } else {
                portolan_agent::daemon::run_foreground(&config).await?;
            }
            Ok(())
        }
        Command::Testbed(args) => {
            init_tracing("info");
            reference_testbed::cli::run(args).await
        }
        Command::Map { world, from_db, topology, policy, time_limit } => {
            let answer = match world {
                Some(world) if !from_db => {
                    init_tracing("warn");
                    server::commands::map::run(&world, &topology, policy.as_deref(), time_limit)?
                }
                _ => {
                    let config = Config::load()?;
                    init_tracing("warn");
                    let db = open_database(&config).await?;
                    server::commands::map::run_from_db(&db, &topology, policy.as_deref(), time_limit).await?
                }
            };
            println!("{answer}");
            Ok(())
        }
        Command::Serve => serve(portal_config()?).await,
        Command::Migrate => {
            open_database(&portal_config()?).await?;
            tracing::info!("database is up to date");
            Ok(())
        }
        Command::Admin(admin) => run_admin(portal_config()?, admin).await,
    }
}

/// The portal's configuration (and logging as it says).
fn portal_config() -> anyhow::Result<Config> {
    let config = Config::load()?;
    init_tracing(&config.log);
    Ok(config)
}

/// Logs to stderr with `filter` (a tracing filter; `RUST_LOG` is not read, the portal uses `PORTOLAN_LOG`).
fn init_tracing(filter: &str) {
    tracing_subscriber::fmt().with_writer(std::io::stderr).with_env_filter(EnvFilter::new(filter)).init();
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let db = open_database(&config).await?;
    // Kept alive for the portal's lifetime; its address and admin account are the portal's testbed.
    let testbed = server::commands::embedded_testbed(&config).await?;
    let endpoint = match (&testbed, &config.testbed_url) {
        (Some(tb), _) => Some(portolan_core::testbed::Endpoint {
            url: tb.url.clone(),
            username: tb.admin.0.clone(),
            password: tb.admin.1.clone(),
        }),
        (None, Some(url)) => {
            tracing::info!(%url, "PORTOLAN_TESTBED_URL is set: the embedded testbed is not started");
            Some(portolan_core::testbed::Endpoint {
                url: url.clone(),
                username: config.testbed_user.clone().unwrap_or_default(),
                password: config.testbed_password.clone().map(|s| s.0).unwrap_or_default(),
            })
        }
        (None, None) => None,
    };
    let client = endpoint.map(|e| server::testbed_client(&config, e)).transpose()?;
    let state = server::app_state(&config, db, client);
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {} (PORTOLAN_LISTEN)", config.listen))?;
    let shutdown = shutdown_signal();
    tracing::info!("Portolan listening on http://{}", listener.local_addr()?);
    server::serve_state(&config, state, listener, shutdown).await
}

/// Completes on Ctrl-C or SIGTERM (how systemd, Docker and Kubernetes stop a service; unhandled, it
/// killed the process with requests in flight). The handlers are installed here, at once, not when the
/// future is first polled: a signal between "listening" and the accept loop's start is not lost either.
fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    let signals = {
        use tokio::signal::unix::{SignalKind, signal};
        [SignalKind::interrupt(), SignalKind::terminate()].map(|kind| {
            signal(kind).map_err(|e| tracing::error!(error = %e, ?kind, "cannot listen for a signal")).ok()
        })
    };
    async move {
        #[cfg(unix)]
        {
            let [interrupt, terminate] = signals;
            let wait = |signal: Option<tokio::signal::unix::Signal>| async move {
                match signal {
                    Some(mut signal) => {
                        signal.recv().await;
                    }
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = wait(interrupt) => {}
                () = wait(terminate) => {}
            }
        }
        #[cfg(not(unix))]
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for Ctrl-C; stopping");
        }
        tracing::info!("shutting down");
    }
}

async fn run_admin(config: Config, admin: Admin) -> anyhow::Result<()> {
    let db = open_database(&config).await?;
    let clock = portolan_core::clock::Clock::real();
    let user = match admin {
        Admin::CreateUser { email, name, operator } => {
            let mut password = String::new();
            std::io::stdin()
                .lock()
                .read_line(&mut password)
                .context("cannot read the password from stdin")?;
            let password = password.trim_end_matches(['\r', '\n']);
            portolan_core::accounts::create_user(&db, &clock, &email, &name, password, operator).await?
        }
        Admin::MakeOperator { email, revoke } => {
            portolan_core::accounts::set_operator(&db, &clock, &email, !revoke).await?
        }
    };
    println!("{} <{}> operator={}", user.name, user.email, user.is_operator);
    Ok(())
}
