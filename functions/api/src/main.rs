//! The HTTP API function: the same axum router as `screenrec serve`, under `lambda_http`.
//! Chunks go by presigned PUT (API Gateway caps request bodies); stop sends the merge job to
//! SQS.

use screenrec::app::Jobs;

fn main() -> Result<(), lambda_http::Error> {
    screenrec::runtime::run(function())
}

async fn function() -> Result<(), lambda_http::Error> {
    let core = screenrec::serverless::start().await?;
    if !matches!(core.jobs, Jobs::External) {
        return Err(
            "MERGE_QUEUE_URL is required: merge jobs go to the merge function's queue".into(),
        );
    }
    lambda_http::run(core.router()).await
}
