use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use screenrec::merge::{Ffmpeg, LocalChunks, merge};
use serde_json::json;
use tokio::net::TcpListener;

/// Backend for browser screen recording: chunked MediaRecorder ingest into object storage,
/// ffmpeg merge, presigned downloads.
#[derive(Parser)]
#[command(name = "screenrec", version, arg_required_else_help = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP + WebSocket server, its merge workers, sweeper and webhook deliveries
    ///
    /// Configured from the environment (every variable below; .env.example has them too).
    /// With none set: local directory storage in ./data and in-process coordination, on
    /// 127.0.0.1:8080.
    Serve,
    /// Merge local chunk files with the service's engine
    ///
    /// A file's index is the last number in its name (chunk-000006.webm is 6). Prints one
    /// JSON object describing the output; exits 1 naming the problem when the chunks cannot
    /// be merged whole.
    Merge {
        /// Merge what can be merged of damaged or missing chunks, and list what was left
        /// out (the report's lost field)
        #[arg(long)]
        salvage: bool,
        /// Where the output goes
        #[arg(long, value_name = "DIR")]
        out_dir: PathBuf,
        /// mp4: an MP4 for every browser (H.264 remuxed; VP8, VP9, AV1 need --transcode);
        /// native: the recording's own container
        #[arg(long, value_name = "FORMAT", default_value = "native")]
        output: String,
        /// With --output mp4: re-encode VP8, VP9 or AV1 video to H.264, and its audio to AAC
        #[arg(long)]
        transcode: bool,
        /// With --output mp4: aac converts Opus audio; copy keeps it
        #[arg(long, value_name = "CODEC", default_value = "copy")]
        audio: String,
        #[arg(required = true, value_name = "CHUNK_FILE")]
        files: Vec<PathBuf>,
    },
    /// Print a new API key for TENANT and the entry to add to API_KEYS
    ///
    /// Give the key to that app's backend; only its SHA-256 is configured.
    Keygen { tenant: String },
    /// Check the configuration, the storage (a put, get and delete), Redis and ffmpeg
    ///
    /// One line each; exits 1 if any check fails.
    Doctor,
    /// The stored recordings, for operators (read from the store, as configured)
    Recordings {
        #[command(subcommand)]
        command: RecordingsCommand,
    },
}

#[derive(Subcommand)]
enum RecordingsCommand {
    /// A tenant's recordings (or one owner's), newest first, one JSON object per line
    List {
        #[arg(long, default_value = screenrec::domain::Tenant::DEFAULT)]
        tenant: String,
        /// Only this owner's (a JWT's sub, or the owner named at create)
        #[arg(long)]
        owner: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// Where the previous page ended (its last line's nextCursor)
        #[arg(long)]
        cursor: Option<String>,
    },
    /// One recording's status, as GET /recordings/{id} answers it
    Show { id: String },
    /// Delete a recording: every object and all coordination state (idempotent)
    Delete { id: String },
}

fn main() -> ExitCode {
    screenrec::runtime::run(cli())
}

async fn cli() -> ExitCode {
    let command = Cli::command().mut_subcommand("serve", |serve| {
        serve.after_help(screenrec::config::doc::help())
    });
    let cli = match Cli::from_arg_matches(&command.get_matches()) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    let result = match cli.command {
        Command::Serve => serve().await,
        Command::Merge {
            salvage,
            out_dir,
            output,
            transcode,
            audio,
            files,
        } => {
            let asked = (output.as_str(), transcode, audio.as_str());
            merge_files(salvage, &out_dir, asked, &files).await
        }
        Command::Keygen { tenant } => keygen(&tenant),
        Command::Doctor => doctor().await,
        Command::Recordings { command } => recordings(command).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn keygen(tenant: &str) -> anyhow::Result<()> {
    let tenant = screenrec::domain::Tenant::parse(tenant).map_err(code_context)?;
    let (key, entry) = screenrec::auth::generate_api_key(&tenant);
    println!("API key (give it to the app's backend; it is not stored anywhere):\n{key}\n");
    println!("Add to API_KEYS (comma-separated):\n{entry}");
    Ok(())
}

async fn serve() -> anyhow::Result<()> {
    let config = screenrec::config::Config::from_env().context("invalid configuration")?;
    screenrec::telemetry::init(config.log_format);
    if matches!(config.auth, screenrec::auth::AuthConfig::None) && !config.bind.ip().is_loopback() {
        tracing::warn!(
            bind = %config.bind,
            "AUTH_MODE=none on an address other machines can reach: anyone who reaches it can record, list and delete; set AUTH_MODE=api-key or jwt"
        );
    }
    let app = screenrec::app::build(&config).await?;
    let listener = TcpListener::bind(config.bind)
        .await
        .with_context(|| format!("binding {}", config.bind))?;
    app.run(
        listener,
        config.merge.workers,
        config.shutdown_grace,
        shutdown_signal(),
    )
    .await?;
    Ok(())
}

async fn merge_files(
    salvage: bool,
    out_dir: &Path,
    (output, transcode, audio): (&str, bool, &str),
    files: &[PathBuf],
) -> anyhow::Result<()> {
    let asked = screenrec::domain::OutputFormat::parse(Some(output), Some(transcode), Some(audio))
        .map_err(code_context)?;
    let ffmpeg = Ffmpeg::locate(
        std::env::var_os("FFMPEG_PATH")
            .map(PathBuf::from)
            .as_deref(),
    )?;
    let source = LocalChunks::from_paths(files, salvage).map_err(code_context)?;
    std::fs::create_dir_all(out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let work = tempfile::Builder::new()
        .prefix(".merge-")
        .tempdir_in(out_dir)
        .context("creating a work directory")?;
    let merged = merge(&ffmpeg, &source, work.path(), salvage, asked, &|_| {})
        .await
        .map_err(code_context)?;
    let output = out_dir.join(merged.path.file_name().expect("output has a name"));
    std::fs::rename(&merged.path, &output)
        .with_context(|| format!("moving the output to {}", output.display()))?;
    let mut report = serde_json::to_value(&merged.info)?;
    report["output"] = json!(output.display().to_string());
    println!("{report}");
    Ok(())
}

/// Every check, one line each; an error if any failed.
async fn doctor() -> anyhow::Result<()> {
    let config = match screenrec::config::Config::from_env() {
        Ok(config) => config,
        Err(e) => {
            println!("FAIL  configuration: {e}");
            anyhow::bail!("the configuration is not valid");
        }
    };
    println!("ok    configuration: valid");
    let checks = screenrec::doctor::run(&config).await;
    for check in &checks {
        println!("{check}");
    }
    let failed = checks
        .iter()
        .filter(|c| c.verdict == screenrec::doctor::Verdict::Fail)
        .count();
    anyhow::ensure!(failed == 0, "{failed} check(s) failed");
    Ok(())
}

async fn recordings(command: RecordingsCommand) -> anyhow::Result<()> {
    use screenrec::domain::{Owner, RecordingId, Subject, Tenant};
    let config = screenrec::config::Config::from_env().context("invalid configuration")?;
    let core = screenrec::app::Core::connect(&config).await?;
    let recordings = &core.recordings;
    match command {
        RecordingsCommand::List {
            tenant,
            owner,
            limit,
            cursor,
        } => {
            let caller = Owner {
                tenant: Tenant::parse(&tenant).map_err(code_context)?,
                subject: owner
                    .as_deref()
                    .map(Subject::parse)
                    .transpose()
                    .map_err(code_context)?,
            };
            let page = recordings
                .list(&caller, limit, cursor.as_deref())
                .await
                .map_err(code_context)?;
            for recording in &page.recordings {
                println!("{}", serde_json::to_string(recording)?);
            }
            if let Some(next) = page.next_cursor {
                println!("{}", json!({ "nextCursor": next }));
            }
        }
        RecordingsCommand::Show { id } => {
            let id = RecordingId::parse(&id).map_err(code_context)?;
            let view = recordings.status(&id).await.map_err(code_context)?;
            println!("{}", serde_json::to_string_pretty(&view)?);
        }
        RecordingsCommand::Delete { id } => {
            let id = RecordingId::parse(&id).map_err(code_context)?;
            match recordings.records().meta(&id).await.map_err(code_context)? {
                Some(meta) => {
                    recordings
                        .delete(&id, &meta.owner)
                        .await
                        .map_err(code_context)?;
                    println!("deleted {id}");
                }
                None => println!("{id} is not there (already deleted?)"),
            }
        }
    }
    Ok(())
}

/// Keep the library error's stable code in the message.
fn code_context(e: screenrec::Error) -> anyhow::Error {
    anyhow::anyhow!("{}: {e}", e.code())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutdown signal received");
}
