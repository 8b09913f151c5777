use anyhow::Context;
use tokio::net::TcpListener;

const USAGE: &str = "\
screenrec: backend for browser screen recording

USAGE:
    screenrec serve     Run the HTTP + WebSocket server, configured from the environment
                        (see .env.example). With no configuration: local directory storage
                        in ./data and in-process coordination on 127.0.0.1:8080.
    screenrec help      Show this text
";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("serve") => serve().await,
        Some("help" | "-h" | "--help") | None => {
            print!("{USAGE}");
            Ok(())
        }
        Some(other) => {
            eprint!("unknown command {other:?}\n\n{USAGE}");
            std::process::exit(2);
        }
    }
}

async fn serve() -> anyhow::Result<()> {
    let config = screenrec::config::Config::from_env().context("invalid configuration")?;
    screenrec::telemetry::init(config.log_format);
    let app = screenrec::app::build(&config).await?;
    let listener = TcpListener::bind(config.bind)
        .await
        .with_context(|| format!("binding {}", config.bind))?;
    // Merge workers arrive with the merge engine; until then jobs wait in the channel.
    let _merge_jobs = app.merge_jobs;
    screenrec::app::serve(listener, app.router, shutdown_signal()).await?;
    Ok(())
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
    tracing::info!("shutting down");
}
