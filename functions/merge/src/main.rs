//! The merge function: merge jobs from the SQS queue (or an asynchronous invoke), merged with
//! the layer's ffmpeg (`/opt/bin/ffmpeg`) in `MERGE_WORK_DIR` (`/tmp`, sized by Terraform);
//! webhook deliveries from theirs; and the sweep, on the EventBridge schedule.

use std::sync::Arc;

use lambda_runtime::{LambdaEvent, service_fn};
use screenrec::serverless::MergeFunction;
use screenrec::serverless::merge::MergeEvent;

fn main() -> Result<(), lambda_runtime::Error> {
    screenrec::runtime::run(function())
}

async fn function() -> Result<(), lambda_runtime::Error> {
    let core = screenrec::serverless::start().await?;
    let function = Arc::new(MergeFunction::new(
        core.merger()?,
        core.sweeper(),
        core.webhooks(),
    ));
    lambda_runtime::run(service_fn(move |event: LambdaEvent<MergeEvent>| {
        let function = function.clone();
        async move { Ok::<_, lambda_runtime::Error>(function.handle(event.payload).await?) }
    }))
    .await
}
