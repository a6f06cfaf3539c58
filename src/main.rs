//! The `oneinbox-edge` binary: `serve` (default), `check`, `keys create`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use oneinbox_edge::config::{Config, LogFormat};
use oneinbox_edge::{logging, server};

#[derive(Parser)]
#[command(
    name = "oneinbox-edge",
    version,
    about = "SIP edge: carrier calls to AI voice agents"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the edge (SIP listeners and the REST API).
    Serve {
        #[arg(long, default_value = "config/edge.toml")]
        config: PathBuf,
        /// Log JSON lines whatever the terminal.
        #[arg(long)]
        log_json: bool,
    },
    /// Validate a configuration file and say what is wrong (key and line).
    Check {
        #[arg(long, default_value = "config/edge.toml")]
        config: PathBuf,
    },
    /// API keys.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Create an API key; it is printed once, as the last line of standard output.
    Create {
        #[arg(long, default_value = "config/edge.toml")]
        config: PathBuf,
        #[arg(long)]
        name: String,
        /// Account to add the key to; a new account when left out.
        #[arg(long)]
        account: Option<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let command = cli.command.unwrap_or(Command::Serve {
        config: PathBuf::from("config/edge.toml"),
        log_json: false,
    });
    match run(command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("oneinbox-edge: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Check { config } => match Config::load(&config) {
            Ok(c) => {
                println!(
                    "{}: ok (sip udp {}, tcp {}, api {}, store {}, {} carrier(s))",
                    config.display(),
                    c.sip.udp.map_or("off".into(), |a| a.to_string()),
                    c.sip.tcp.map_or("off".into(), |a| a.to_string()),
                    c.api_listen.map_or("off".into(), |a| a.to_string()),
                    c.database_url.as_deref().unwrap_or("embedded SQLite"),
                    c.carriers.len()
                );
                Ok(ExitCode::SUCCESS)
            }
            Err(e) => {
                eprintln!("{e}");
                Ok(ExitCode::from(2))
            }
        },
        Command::Serve { config, log_json } => {
            let mut cfg = Config::load(&config)?;
            if log_json {
                cfg.log_format = LogFormat::Json;
            }
            logging::init(cfg.log_format, &cfg.log_level);
            raise_open_files_limit();
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(cfg.runtime_workers())
                .enable_all()
                .build()
                .context("starting the tokio runtime")?;
            rt.block_on(async {
                let edge = server::start(cfg).await?;
                edge.wait_for_shutdown_signal().await;
                edge.shutdown().await;
                anyhow::Ok(())
            })?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Keys {
            command: KeysCommand::Create { config, name, account },
        } => {
            let cfg = Config::load(&config)?;
            logging::init(cfg.log_format, "warn");
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("starting the tokio runtime")?;
            let (account_id, key) = rt.block_on(server::create_api_key(&cfg, account.as_deref(), &name))?;
            println!("account: {account_id}");
            println!("name: {name}");
            println!("{key}");
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Raises the soft open-files limit to the hard one. Every anchored call holds four sockets (two RTP/RTCP
/// pairs) and the media socket cache more; the usual soft default of 1,024 would cap the edge at a couple
/// of hundred calls while the hard limit (often 524,288 under systemd) allows far more.
fn raise_open_files_limit() {
    use rustix::process::{getrlimit, setrlimit, Resource};
    // `None` is unlimited.
    let show = |n: Option<u64>| n.map_or_else(|| "unlimited".to_owned(), |n| n.to_string());
    let mut limit = getrlimit(Resource::Nofile);
    let (soft, hard) = (limit.current, limit.maximum);
    if soft.is_some() && soft != hard {
        limit.current = hard;
        match setrlimit(Resource::Nofile, limit) {
            Ok(()) => tracing::info!(from = %show(soft), to = %show(hard), "open-files limit raised"),
            Err(e) => tracing::warn!(error = %e, soft = %show(soft), "open-files limit could not be raised"),
        }
    }
    let files = getrlimit(Resource::Nofile).current;
    tracing::info!(
        open_files = %show(files),
        anchored_calls_at_most = %show(files.map(|n| n / 4)),
        "each anchored call holds four sockets"
    );
}
