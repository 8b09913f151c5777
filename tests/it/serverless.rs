//! The serverless mode: the three Lambda functions' handlers fed real event payloads
//! (`tests/it/events/`), and the whole flow against LocalStack S3 and SQS, a real Redis and a
//! stand-in API Gateway Management API.

use std::collections::HashMap;
use std::time::Duration;

use lambda_http::request::LambdaRequest;
use lambda_http::{Adapter, Context, LambdaEvent, Service};
use screenrec::app::Core;
use screenrec::config::Config;
use screenrec::serverless::aws_lambda_events::apigw::{
    ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest,
};
use screenrec::serverless::merge::MergeEvent;
use screenrec::serverless::{MergeFunction, WsFunction};
use serde_json::{Value, json};

use crate::common::apigw::ManagementApi;
use crate::common::fixtures::Recording;
use crate::common::media::{assert_matches_reference, reference};
use crate::common::receiver::{Receiver, SECRET};
use crate::common::{new_bucket, redis_url, s3_endpoints, unique};

fn event(name: &str) -> Value {
    let path = format!("{}/tests/it/events/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap()
}

/// The api function: the router behind `lambda_http`'s adapter, exactly as `lambda_http::run`
/// drives it.
struct Api(Adapter<'static, axum::response::Response, axum::Router>);

impl Api {
    fn new(core: &Core) -> Self {
        Self(Adapter::from(core.router()))
    }

    /// An HTTP API (payload 2.0) event for `method path` with a JSON body; the answer's
    /// status and JSON body.
    async fn call(
        &mut self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut e = event("http-v2.json");
        e["rawPath"] = json!(path);
        e["requestContext"]["http"]["method"] = json!(method);
        e["requestContext"]["http"]["path"] = json!(path);
        if let Some(t) = token {
            e["headers"]["authorization"] = json!(format!("Bearer {t}"));
        }
        if let Some(b) = body {
            e["headers"]["content-type"] = json!("application/json");
            e["body"] = json!(b.to_string());
        }
        let request: LambdaRequest = serde_json::from_value(e).unwrap();
        let response = self
            .0
            .call(LambdaEvent::new(request, Context::default()))
            .await
            .unwrap();
        let out = serde_json::to_value(response).unwrap();
        let status = out["statusCode"].as_u64().unwrap() as u16;
        let text = out["body"].as_str().unwrap_or_default();
        (status, serde_json::from_str(text).unwrap_or(json!(text)))
    }

    /// `POST /recordings` through the function: the new recording's id and upload token.
    async fn create(&mut self, mime_type: &str) -> (String, String) {
        let (status, created) = self
            .call(
                "POST",
                "/recordings",
                None,
                Some(json!({ "mimeType": mime_type })),
            )
            .await;
        assert_eq!(status, 201, "{created}");
        let field = |k: &str| created[k].as_str().unwrap().to_owned();
        (field("recordingId"), field("uploadToken"))
    }
}

fn ws_event(name: &str, connection: &str) -> Value {
    let mut e = event(name);
    e["requestContext"]["connectionId"] = json!(connection);
    e
}

async fn ws_call(ws: &WsFunction, e: Value) -> ApiGatewayProxyResponse {
    let request: ApiGatewayWebsocketProxyRequest = serde_json::from_value(e).unwrap();
    ws.handle(request).await
}

async fn connect(ws: &WsFunction, connection: &str, id: &str, token: &str) -> i64 {
    let mut e = ws_event("ws-connect.json", connection);
    e["queryStringParameters"] = json!({ "recordingId": id, "token": token });
    e["multiValueQueryStringParameters"] = json!({ "recordingId": [id], "token": [token] });
    ws_call(ws, e).await.status_code
}

async fn message(ws: &WsFunction, connection: &str, body: Value) -> i64 {
    let mut e = ws_event("ws-message.json", connection);
    e["body"] = json!(body.to_string());
    ws_call(ws, e).await.status_code
}

/// An SQS event holding the messages SQS handed out, as the event source mapping builds it.
fn sqs_event(messages: &[aws_sdk_sqs::types::Message]) -> MergeEvent {
    let template = event("sqs.json")["Records"][0].clone();
    let records: Vec<Value> = messages
        .iter()
        .map(|m| {
            let mut r = template.clone();
            r["messageId"] = json!(m.message_id());
            r["receiptHandle"] = json!(m.receipt_handle());
            r["body"] = json!(m.body());
            r["attributes"]["ApproximateReceiveCount"] = json!(
                m.attributes()
                    .and_then(|a| a.get(
                        &aws_sdk_sqs::types::MessageSystemAttributeName::ApproximateReceiveCount
                    ))
                    .cloned()
                    .unwrap_or_else(|| "1".into())
            );
            r
        })
        .collect();
    serde_json::from_value(json!({ "Records": records })).unwrap()
}

/// Configuration of the serverless deployment against the test services.
struct Deployment {
    config: Config,
    sqs: aws_sdk_sqs::Client,
    queue_url: String,
    /// With a receiver: the webhook queue.
    webhook_queue_url: Option<String>,
    api: ManagementApi,
}

/// A new queue in LocalStack SQS.
async fn new_queue(sqs: &aws_sdk_sqs::Client, name: &str) -> String {
    sqs.create_queue()
        .queue_name(unique(name))
        .send()
        .await
        .unwrap_or_else(|e| {
            panic!(
                "CreateQueue: {}",
                aws_sdk_sqs::error::DisplayErrorContext(e)
            )
        })
        .queue_url
        .unwrap()
}

impl Deployment {
    async fn start() -> Option<Self> {
        Self::start_with(None).await
    }

    /// With `receiver`: webhooks to it, through their own queue.
    async fn start_with(receiver: Option<&Receiver>) -> Option<Self> {
        let redis = redis_url()?;
        let localstack = s3_endpoints()
            .into_iter()
            .find(|(n, _)| n == "localstack")?
            .1;
        let api = ManagementApi::spawn().await;
        let sdk = screenrec::aws::sdk_config(Some("us-east-1")).await;
        let sqs = aws_sdk_sqs::Client::from_conf(
            aws_sdk_sqs::config::Builder::from(&sdk)
                .endpoint_url(&localstack)
                .build(),
        );
        let queue_url = new_queue(&sqs, "merge").await;
        let mut vars: HashMap<&str, String> = HashMap::from([
            ("STORAGE", "s3".into()),
            ("S3_BUCKET", new_bucket(&localstack).await),
            ("S3_ENDPOINT", localstack.clone()),
            ("S3_FORCE_PATH_STYLE", "true".into()),
            ("REDIS_URL", redis),
            ("REDIS_PREFIX", format!("{}:", unique("sls"))),
            ("MERGE_QUEUE_URL", queue_url.clone()),
            ("SQS_ENDPOINT", localstack),
            ("APIGW_MANAGEMENT_ENDPOINT", api.endpoint.clone()),
            (
                "MERGE_WORK_DIR",
                std::env::temp_dir()
                    .join(unique("sls-work"))
                    .display()
                    .to_string(),
            ),
            ("AWS_REGION", "us-east-1".into()),
            // Faster than any browser sends: not what these tests are about.
            ("RATE_LIMIT_REQUESTS_PER_SEC", "0".into()),
        ]);
        let mut webhook_queue_url = None;
        if let Some(receiver) = receiver {
            let url = new_queue(&sqs, "webhooks").await;
            vars.extend([
                ("WEBHOOK_QUEUE_URL", url.clone()),
                ("WEBHOOK_URL", receiver.url.clone()),
                ("WEBHOOK_SECRET", SECRET.into()),
                ("WEBHOOK_ALLOW_PRIVATE", "true".into()),
                ("WEBHOOK_RETRY_MIN_MS", "1000".into()),
            ]);
            webhook_queue_url = Some(url);
        }
        let config = Config::from_lookup(|k| vars.get(k).cloned()).unwrap();
        Some(Self {
            config,
            sqs,
            queue_url,
            webhook_queue_url,
            api,
        })
    }

    /// One function's process: its own connections, as each Lambda has.
    async fn function(&self) -> Core {
        Core::connect(&self.config).await.unwrap()
    }

    /// Wait for the merge job that stop sent.
    async fn receive_job(&self) -> MergeEvent {
        self.receive(&self.queue_url).await
    }

    /// Wait for messages in `queue_url`, as the event source mapping hands them out.
    async fn receive(&self, queue_url: &str) -> MergeEvent {
        for _ in 0..20 {
            let received = self
                .sqs
                .receive_message()
                .queue_url(queue_url)
                .wait_time_seconds(1)
                .message_system_attribute_names(
                    aws_sdk_sqs::types::MessageSystemAttributeName::ApproximateReceiveCount,
                )
                .send()
                .await
                .unwrap();
            if !received.messages().is_empty() {
                return sqs_event(received.messages());
            }
        }
        panic!("no message in {queue_url}");
    }
}

/// Handler tests with no emulator: the api function on the embedded adapters answers HTTP API
/// events, including errors as 4xx JSON.
#[tokio::test]
async fn the_api_function_answers_http_api_events() {
    let dir = tempfile::tempdir().unwrap();
    let vars: HashMap<&str, String> =
        HashMap::from([("STORAGE_DIR", dir.path().display().to_string())]);
    let core = Core::connect(&Config::from_lookup(|k| vars.get(k).cloned()).unwrap())
        .await
        .unwrap();
    let mut api = Api::new(&core);
    let (id, token) = api.create("video/webm").await;
    let (id, token) = (id.as_str(), token.as_str());
    let (status, view) = api
        .call("GET", &format!("/recordings/{id}"), Some(token), None)
        .await;
    assert_eq!(
        (status, view["status"].as_str()),
        (200, Some("recording")),
        "{view}"
    );
    let (status, grant) = api
        .call(
            "POST",
            &format!("/recordings/{id}/chunks"),
            Some(token),
            Some(json!({ "seq": 0, "size": 1 })),
        )
        .await;
    assert_eq!(status, 200, "{grant}");
    assert!(
        grant["uploadUrl"]
            .as_str()
            .unwrap()
            .contains("/files/chunks/"),
        "{grant}"
    );
    for (method, path, token, code, want) in [
        (
            "GET",
            format!("/recordings/{id}"),
            Some("wrong"),
            "invalid_token",
            401,
        ),
        (
            "GET",
            "/recordings/not-an-id".into(),
            Some(token),
            "invalid_recording_id",
            400,
        ),
        (
            "POST",
            format!("/recordings/{id}/stop"),
            Some(token),
            "unsupported_content_type",
            415,
        ),
        ("GET", "/nowhere".into(), None, "not_found", 404),
    ] {
        let (status, body) = api.call(method, &path, token, None).await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (want, Some(code)),
            "{path}: {body}"
        );
    }
}

/// The ws function's routes: `$connect` checks the token, `$default` subscribes and replays,
/// `$disconnect` forgets the connection.
#[tokio::test]
async fn the_ws_function_handles_connect_messages_and_disconnect() {
    let Some(d) = Deployment::start().await else {
        return;
    };
    let (api_core, ws_core) = (d.function().await, d.function().await);
    let mut api = Api::new(&api_core);
    let ws = WsFunction::new(ws_core.recordings.clone(), ws_core.gateway.clone().unwrap());
    let (id, token) = api.create("video/webm").await;
    let (id, token) = (id.as_str(), token.as_str());

    assert_eq!(connect(&ws, "bad=", id, "not-the-token").await, 401);
    assert_eq!(connect(&ws, "bad=", "../etc", token).await, 400);
    let mut anonymous = ws_event("ws-connect.json", "anon=");
    anonymous["queryStringParameters"] = json!({});
    anonymous["multiValueQueryStringParameters"] = json!({});
    assert_eq!(ws_call(&ws, anonymous).await.status_code, 400);

    assert_eq!(connect(&ws, "c1=", id, token).await, 200);
    assert_eq!(
        message(
            &ws,
            "c1=",
            json!({ "type": "subscribe", "recordingId": id, "requestId": 7 })
        )
        .await,
        200
    );
    let subscribed = d
        .api
        .wait_for("c1=", Duration::from_secs(5), |m| m["type"] == "subscribed")
        .await;
    assert_eq!(subscribed["requestId"], 7);
    d.api
        .wait_for("c1=", Duration::from_secs(5), |m| {
            m["type"] == "recordingState"
        })
        .await;

    // Events published by another function reach the connection.
    let (status, _) = api
        .call(
            "PUT",
            &format!("/recordings/{id}/chunks/0"),
            Some(token),
            None,
        )
        .await;
    assert_eq!(status, 400, "an empty chunk is refused");
    message(&ws, "c1=", json!({ "type": "status", "recordingId": id })).await;
    let status = d
        .api
        .wait_for("c1=", Duration::from_secs(5), |m| m["type"] == "status")
        .await;
    assert_eq!(status["recording"]["status"], "recording");

    // Bad messages get error frames, never a failed route.
    for (body, code) in [
        (json!("not an object"), "invalid_json"),
        (
            json!({ "type": "stop", "recordingId": id, "chunkCount": 1 }),
            "unsupported_message",
        ),
        (
            json!({ "type": "status", "recordingId": screenrec::domain::RecordingId::generate().as_str() }),
            "missing_token",
        ),
    ] {
        assert_eq!(message(&ws, "c1=", body.clone()).await, 200);
        let error = d
            .api
            .wait_for("c1=", Duration::from_secs(5), |m| {
                m["error"]["code"] == code
            })
            .await;
        assert_eq!(error["type"], "error", "{body}: {error}");
    }

    // A reconnect with the last version replays what came after it.
    assert_eq!(connect(&ws, "c2=", id, token).await, 200);
    message(
        &ws,
        "c2=",
        json!({ "type": "subscribe", "recordingId": id, "lastVersion": 0 }),
    )
    .await;
    d.api
        .wait_for("c2=", Duration::from_secs(5), |m| {
            m["type"] == "recordingState"
        })
        .await;

    let gateway = ws_core.gateway.clone().unwrap();
    let rid = screenrec::domain::RecordingId::parse(id).unwrap();
    assert_eq!(
        ws_call(&ws, ws_event("ws-disconnect.json", "c1="))
            .await
            .status_code,
        200
    );
    assert_eq!(gateway.followers(&rid).await.unwrap(), ["c2="]);
}

/// The whole serverless flow: create through the api function, chunks by presigned PUT to
/// LocalStack S3, stop through the api function sends the job to LocalStack SQS, the merge
/// function merges it with the bundled ffmpeg, the ws function's subscriber hears
/// `recordingReady`, and its presigned GET downloads a valid video.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serverless_flow_end_to_end() {
    let Some(d) = Deployment::start().await else {
        return;
    };
    let (api_core, ws_core, merge_core) =
        (d.function().await, d.function().await, d.function().await);
    let mut api = Api::new(&api_core);
    let ws = WsFunction::new(ws_core.recordings.clone(), ws_core.gateway.clone().unwrap());
    let merge = MergeFunction::new(
        merge_core.merger().unwrap(),
        merge_core.sweeper(),
        merge_core.webhooks(),
    );
    let fixture = Recording::load("vp8-opus-ts1000");
    let http = reqwest::Client::new();

    let (id, token) = api.create(&fixture.mime_type).await;
    let (id, token) = (id.as_str(), token.as_str());
    assert_eq!(connect(&ws, "viewer=", id, token).await, 200);
    message(
        &ws,
        "viewer=",
        json!({ "type": "subscribe", "recordingId": id }),
    )
    .await;

    for (seq, chunk) in fixture.chunks.iter().enumerate() {
        let (status, grant) = api
            .call(
                "POST",
                &format!("/recordings/{id}/chunks"),
                Some(token),
                Some(json!({ "seq": seq, "size": chunk.len() })),
            )
            .await;
        assert_eq!(status, 200, "{grant}");
        let url = grant["uploadUrl"].as_str().unwrap();
        assert!(
            url.starts_with("http://127.0.0.1"),
            "a LocalStack URL: {url}"
        );
        let put = http.put(url).body(chunk.clone()).send().await.unwrap();
        assert!(
            put.status().is_success(),
            "PUT to LocalStack: {}",
            put.status()
        );
        let (status, done) = api
            .call(
                "POST",
                &format!("/recordings/{id}/chunks/{seq}/complete"),
                Some(token),
                None,
            )
            .await;
        assert_eq!(status, 200, "{done}");
    }
    let (status, stopped) = api
        .call(
            "POST",
            &format!("/recordings/{id}/stop"),
            Some(token),
            Some(json!({ "chunkCount": fixture.chunks.len() })),
        )
        .await;
    assert_eq!(status, 202, "{stopped}");

    let job = d.receive_job().await;
    let response = merge.handle(job).await.unwrap().unwrap();
    assert!(response.batch_item_failures.is_empty(), "{response:?}");

    let ready = d
        .api
        .wait_for("viewer=", Duration::from_secs(10), |m| {
            m["type"] == "recordingReady"
        })
        .await;
    let saved: Vec<u64> = d
        .api
        .messages("viewer=")
        .iter()
        .filter(|m| m["type"] == "chunkSaved")
        .map(|m| m["index"].as_u64().unwrap())
        .collect();
    assert_eq!(saved.len(), fixture.chunks.len(), "a chunkSaved per chunk");
    let url = ready["downloadUrl"].as_str().unwrap();
    let video = http.get(url).send().await.unwrap();
    assert_eq!(video.status(), 200);
    let dir = tempfile::tempdir().unwrap();
    let out = dir
        .path()
        .join(format!("output.{}", ready["container"].as_str().unwrap()));
    std::fs::write(&out, video.bytes().await.unwrap()).unwrap();
    assert_matches_reference(&out, &reference(&fixture, dir.path()), "serverless");

    // A job delivered again (SQS is at-least-once) does nothing.
    let again = MergeEvent::Job(screenrec::queue::MergeJob {
        recording_id: id.into(),
    });
    assert!(merge.handle(again).await.unwrap().is_none());
}

/// Webhooks when serverless: the api function's create queues the delivery in SQS, and the
/// merge function, handed the message, makes the attempt; a failed one is a new message,
/// delayed by the backoff, whose attempt carries the same `webhook-id`.
#[tokio::test]
async fn serverless_webhooks_wait_in_sqs_for_the_merge_function() {
    let receiver = Receiver::start(1);
    let Some(d) = Deployment::start_with(Some(&receiver)).await else {
        return;
    };
    let webhooks = d.webhook_queue_url.clone().unwrap();
    let (api_core, merge_core) = (d.function().await, d.function().await);
    let mut api = Api::new(&api_core);
    let merge = MergeFunction::new(
        merge_core.merger().unwrap(),
        merge_core.sweeper(),
        merge_core.webhooks(),
    );
    let (id, _) = api.create("video/webm").await;
    for attempt in 1..=2 {
        let response = merge.handle(d.receive(&webhooks).await).await.unwrap();
        assert!(response.unwrap().batch_item_failures.is_empty());
        receiver
            .until(Duration::from_secs(5), |r| r.len() == attempt)
            .await;
    }
    let requests = receiver.requests();
    let statuses: Vec<&Value> = requests.iter().map(|r| &r["status"]).collect();
    assert_eq!(statuses, [500, 204], "{requests:#?}");
    assert_eq!(requests[0]["id"], requests[1]["id"]);
    assert!(requests.iter().all(|r| r["verified"] == true));
    let event = &requests[1]["event"];
    assert_eq!(event["type"], "recording.created");
    assert_eq!(event["data"]["recordingId"], id.as_str());
}
