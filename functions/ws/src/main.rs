//! The WebSocket API function: `$connect`, `$disconnect` and `$default`.
#![recursion_limit = "256"]

use std::sync::Arc;

use lambda_runtime::{LambdaEvent, service_fn};
use screenrec::serverless::WsFunction;
use screenrec::serverless::aws_lambda_events::apigw::ApiGatewayWebsocketProxyRequest;

fn main() -> Result<(), lambda_runtime::Error> {
    screenrec::runtime::run(function())
}

async fn function() -> Result<(), lambda_runtime::Error> {
    let core = screenrec::serverless::start().await?;
    let gateway = core
        .gateway
        .clone()
        .ok_or("APIGW_MANAGEMENT_ENDPOINT is required: events go out through it")?;
    let function = Arc::new(WsFunction::new(core.recordings.clone(), gateway));
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<ApiGatewayWebsocketProxyRequest>| {
            let function = function.clone();
            async move { Ok::<_, lambda_runtime::Error>(function.handle(event.payload).await) }
        },
    ))
    .await
}
