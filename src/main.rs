use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use screenrec::merge::{Ffmpeg, LocalChunks, merge};
use serde_json::json;
use tokio::net::TcpListener;

const USAGE: &str = "\
screenrec: backend for browser screen recording

USAGE:
    screenrec serve
        Run the HTTP + WebSocket server and its merge workers, configured from the
        environment (see .env.example). With no configuration: local directory storage
        in ./data and in-process coordination on 127.0.0.1:8080.

    screenrec merge [--salvage] --out-dir DIR CHUNK_FILE...
        Merge local chunk files with the service's engine. A file's index is the last
        number in its name (chunk-000006.webm is 6). Prints one JSON object describing
        the output; exits 1 naming the problem when the chunks cannot be merged whole.
        With --salvage, merges what can be merged of damaged or missing chunks and
        lists what it left out (its lost field).

    screenrec keygen TENANT
        Print a new API key for TENANT (give it to that app's backend) and the
        entry to add to API_KEYS (only the key's SHA-256 is configured).

    screenrec help
        Show this text
";

fn main() -> ExitCode {
    screenrec::runtime::run(cli())
}

async fn cli() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("serve") => serve().await,
        Some("merge") => merge_files(&args[1..]).await,
        Some("keygen") => keygen(&args[1..]),
        Some("help" | "-h" | "--help") | None => {
            print!("{USAGE}");
            Ok(())
        }
        Some(other) => {
            eprint!("unknown command {other:?}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn keygen(args: &[String]) -> anyhow::Result<()> {
    let [tenant] = args else {
        anyhow::bail!("usage: screenrec keygen TENANT");
    };
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

async fn merge_files(args: &[String]) -> anyhow::Result<()> {
    let mut out_dir = None;
    let mut salvage = false;
    let mut files = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--out-dir" => out_dir = it.next().map(PathBuf::from),
            "--salvage" => salvage = true,
            flag if flag.starts_with("--") => anyhow::bail!("unknown option {flag}\n\n{USAGE}"),
            file => files.push(PathBuf::from(file)),
        }
    }
    let out_dir = out_dir.context("--out-dir DIR is required")?;
    anyhow::ensure!(!files.is_empty(), "no chunk files given\n\n{USAGE}");
    let ffmpeg = Ffmpeg::locate(
        std::env::var_os("FFMPEG_PATH")
            .map(PathBuf::from)
            .as_deref(),
    )?;
    let source = LocalChunks::from_paths(&files, salvage).map_err(code_context)?;
    std::fs::create_dir_all(&out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let work = tempfile::Builder::new()
        .prefix(".merge-")
        .tempdir_in(&out_dir)
        .context("creating a work directory")?;
    let merged = merge(&ffmpeg, &source, work.path(), salvage, &|_| {})
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
