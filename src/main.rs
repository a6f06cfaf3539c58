//! The `oneinbox-edge` binary: `serve` (default), `check`, `reload`, `keys create|list|revoke`.

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
    /// Validate a configuration file, then make the edge running from it re-read it (SIGHUP) and say
    /// what it applied.
    Reload {
        #[arg(long, default_value = "config/edge.toml")]
        config: PathBuf,
        /// Seconds to wait for the edge's answer.
        #[arg(long, default_value_t = 10)]
        wait_s: u64,
    },
    /// A media worker process; the edge starts these itself (`media.workers`).
    #[command(hide = true)]
    MediaWorker,
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
    /// List API keys (id, account, name, prefix, created); keys themselves are never shown again.
    List {
        #[arg(long, default_value = "config/edge.toml")]
        config: PathBuf,
        /// Only this account's keys.
        #[arg(long)]
        account: Option<String>,
    },
    /// Revoke an API key by id (`key_…`); it stops working at once.
    Revoke {
        #[arg(long, default_value = "config/edge.toml")]
        config: PathBuf,
        /// The key's id, as `keys list` shows it.
        id: String,
        /// Refuse unless the key belongs to this account.
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
                    "{}: ok (sip udp {}, tcp {}, tls {}, api {}, store {}, {} carrier(s))",
                    config.display(),
                    c.sip.udp.map_or("off".into(), |a| a.to_string()),
                    c.sip.tcp.map_or("off".into(), |a| a.to_string()),
                    c.sip.tls.map_or("off".into(), |a| a.to_string()),
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
            pregrow_fd_table();
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(cfg.runtime_workers())
                .enable_all()
                .build()
                .context("starting the tokio runtime")?;
            rt.block_on(async {
                // Registered before the edge starts: a SIGTERM during start-up is not lost.
                let mut signals = server::StopSignals::new();
                let edge = server::start(cfg).await?;
                signals.recv().await;
                let timeout = edge.drain_timeout();
                tracing::info!(
                    timeout_s = timeout.as_secs(),
                    "stop signal: draining (a second SIGTERM or SIGINT ends the calls at once)"
                );
                edge.drain_until(timeout, signals.recv()).await;
                anyhow::Ok(())
            })?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Reload { config, wait_s } => {
            // The same validation as `check`: a bad file is reported here and the edge is not disturbed.
            let cfg = match Config::load(&config) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("{e}");
                    return Ok(ExitCode::from(2));
                }
            };
            let report = server::reload::signal_running_edge(&cfg, std::time::Duration::from_secs(wait_s))?;
            if !report.applied {
                eprintln!(
                    "{}: not applied, the running configuration stays: {}",
                    config.display(),
                    report.error.as_deref().unwrap_or("(no reason given)")
                );
                return Ok(ExitCode::FAILURE);
            }
            println!(
                "{}: applied (configuration generation {})",
                config.display(),
                report.generation
            );
            if !report.needs_restart.is_empty() {
                println!("needs a restart, not applied: {}", report.needs_restart.join(", "));
            }
            if let Some(e) = &report.tls_error {
                println!("TLS certificate not re-read (the one in use stays): {e}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::MediaWorker => {
            // Warnings and errors only, on standard error, which the edge's own goes to as well.
            logging::init(LogFormat::Auto, "warn");
            edge_media::run_media_worker().context("media worker")?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Keys {
            command: KeysCommand::Create { config, name, account },
        } => {
            let (cfg, rt) = cli_setup(&config)?;
            let (account_id, key) = rt.block_on(server::create_api_key(&cfg, account.as_deref(), &name))?;
            println!("account: {account_id}");
            println!("name: {name}");
            println!("{key}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Keys {
            command: KeysCommand::List { config, account },
        } => {
            let (cfg, rt) = cli_setup(&config)?;
            let keys = rt.block_on(server::list_api_keys(&cfg, account.as_deref()))?;
            println!("id\taccount\tprefix\tcreated_at\tname");
            for k in keys {
                let prefix = k.prefix.map_or_else(|| "-".to_owned(), |p| format!("{p}…"));
                let created = edge_store::time::rfc3339(k.created_at);
                println!(
                    "{}\t{}\t{prefix}\t{created}\t{}",
                    k.id,
                    k.account_id,
                    k.name.escape_debug()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Keys {
            command: KeysCommand::Revoke { config, id, account },
        } => {
            let (cfg, rt) = cli_setup(&config)?;
            rt.block_on(server::revoke_api_key(&cfg, account.as_deref(), &id))?;
            println!("revoked {id}");
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Raises the soft open-files limit to the hard one. Every anchored call holds four sockets (two RTP/RTCP
/// pairs) and the media socket cache more; the usual soft default of 1,024 would cap the edge at a couple
/// of hundred calls while the hard limit (often 524,288 under systemd) allows far more.
/// What every `keys` subcommand needs: the config, quiet logging and a one-thread runtime.
fn cli_setup(config: &std::path::Path) -> anyhow::Result<(Config, tokio::runtime::Runtime)> {
    let cfg = Config::load(config)?;
    logging::init(cfg.log_format, "warn");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    Ok((cfg, rt))
}

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

/// File descriptors the kernel's table is grown to hold at start, at most (the open-files limit caps it).
const FD_TABLE_PREGROW: u64 = 65_536;

/// Grows the process's file-descriptor table once, before any call. The kernel doubles the table as
/// descriptors are opened and, in a multi-threaded process, waits for an RCU grace period each time: under
/// load every anchored call opens four sockets, and each doubling (256, 512, ... 8,192 descriptors) froze
/// the engine thread for 7-11 ms at 2,000 calls/s (seen on the wire as the p99.9 of INVITE forwarding).
/// Duplicating a descriptor to a high number and closing it leaves the table at that size (the kernel never
/// shrinks it): about 8 bytes per slot, 512 KiB for 65,536.
fn pregrow_fd_table() {
    use std::os::fd::AsFd;
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile).current;
    let Some(top) = limit.unwrap_or(FD_TABLE_PREGROW).min(FD_TABLE_PREGROW).checked_sub(1) else {
        return;
    };
    let Ok(top) = i32::try_from(top) else { return };
    match rustix::io::fcntl_dupfd_cloexec(std::io::stderr().as_fd(), top) {
        Ok(fd) => drop(fd),
        Err(e) => tracing::debug!(error = %e, descriptors = top + 1, "file-descriptor table not grown in advance"),
    }
}

#[cfg(test)]
mod tests {
    /// Slots in this process's file-descriptor table (`FDSize` in /proc/self/status).
    fn fd_table_size() -> u64 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("FDSize:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    }

    /// After start the table already holds as many descriptors as the edge may open (up to 65,536), so no
    /// socket opened under load makes the kernel grow it (and wait for an RCU grace period).
    #[test]
    fn fd_table_is_grown_before_calls() {
        let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile).current;
        let want = limit.unwrap_or(super::FD_TABLE_PREGROW).min(super::FD_TABLE_PREGROW);
        let before = fd_table_size();
        assert!(before > 0, "FDSize not readable");
        super::pregrow_fd_table();
        let after = fd_table_size();
        assert!(
            after >= want,
            "FDSize {after} after growing (was {before}), want at least {want}"
        );
    }
}
