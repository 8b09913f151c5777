//! The serverless transports: API Gateway WebSocket routes ([`ws`]) and merge jobs from SQS or an
//! asynchronous invoke ([`merge`]). Each takes an AWS event and returns the function's answer;
//! the Lambda runtime around them lives in `functions/`, and the HTTP API needs nothing here
//! (the same axum router runs under `lambda_http`).

pub mod merge;
pub mod ws;

pub use self::merge::MergeFunction;
pub use self::ws::WsFunction;

pub use aws_lambda_events;

use crate::app::Core;
use crate::config::Config;

/// What a function's start can fail with (the Lambda runtime's error type).
pub type StartError = Box<dyn std::error::Error + Send + Sync>;

/// The start of every function: configuration from the environment, logs, the adapters.
pub async fn start() -> std::result::Result<Core, StartError> {
    let config = Config::from_env()?;
    crate::telemetry::init(config.log_format);
    Ok(Core::connect(&config).await?)
}
