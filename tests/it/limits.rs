//! Rate limits shared by every instance: a client sending at five times the limit, spread over
//! three instances on one Redis, gets the limit (and its burst) accepted, within 10%, and
//! `429` with `Retry-After` for the rest. The client address comes from `X-Forwarded-For` only
//! when the peer is a trusted proxy.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::common::process::Cluster;
use crate::common::{Client, backends, spawn_app_with};

/// Send `per_sec` requests a second for `secs` seconds, made by `request(n)`, round robin
/// over the client's instances; how many were accepted, how many refused with 429 (each with
/// its Retry-After), and how long the sending took.
async fn offer<F, Fut>(per_sec: u64, secs: u64, request: F) -> (u64, u64, Duration)
where
    F: Fn(u64) -> Fut,
    Fut: std::future::Future<Output = reqwest::Response> + Send + 'static,
{
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / per_sec));
    let started = Instant::now();
    let mut sent = Vec::new();
    for n in 0..per_sec * secs {
        tick.tick().await;
        // Sent now, at its tick, not when the answers are read.
        sent.push(tokio::spawn(request(n)));
    }
    let elapsed = started.elapsed();
    let (mut accepted, mut refused) = (0, 0);
    for res in futures::future::join_all(sent).await {
        let res = res.unwrap();
        match res.status().as_u16() {
            429 => {
                let wait: u64 = res.headers()["retry-after"]
                    .to_str()
                    .unwrap()
                    .parse()
                    .unwrap();
                assert!(wait >= 1, "Retry-After {wait}");
                let body: serde_json::Value = res.json().await.unwrap();
                assert_eq!(body["error"]["code"], "rate_limited", "{body}");
                refused += 1;
            }
            s if s < 300 => accepted += 1,
            s => panic!("unexpected {s}: {}", res.text().await.unwrap()),
        }
    }
    (accepted, refused, elapsed)
}

fn within_ten_percent(what: &str, accepted: u64, expected: f64) {
    let off = (accepted as f64 - expected).abs() / expected;
    assert!(
        off <= 0.10,
        "{what}: {accepted} accepted, {expected:.0} expected ({:.0}% off)",
        off * 100.0
    );
    eprintln!("{what}: {accepted} accepted, {expected:.1} expected");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_instances_share_one_limit() {
    let Some(cluster) = Cluster::start(
        3,
        &[
            ("RATE_LIMIT_REQUESTS_PER_SEC", "20"),
            ("RATE_LIMIT_CREATES_PER_MIN", "600"),
        ],
    )
    .await
    else {
        eprintln!("Redis and LocalStack not configured; skipped");
        return;
    };
    let client = cluster.client();
    let http = &client.http;
    // One recording, asked for its status at 100/s over three instances for 5 s: 20/s.
    let rec = client.create("video/webm").await;
    let (accepted, refused, elapsed) = offer(100, 5, |n| {
        let url = format!("{}/recordings/{}", client.base(n as usize), rec.id);
        let req = http.get(url).bearer_auth(&rec.token).send();
        async move { req.await.unwrap() }
    })
    .await;
    // The steady rate over the time taken, the burst (2), and the create's own request.
    let expected = 20.0 * elapsed.as_secs_f64() + 2.0 - 1.0;
    within_ten_percent("status requests for one recording", accepted, expected);
    assert!(refused > 0);

    // Creates at 50/s against 600/min (10/s, burst 60) for 4 s.
    let (accepted, _, elapsed) = offer(50, 4, |n| {
        let req = http
            .post(format!("{}/recordings", client.base(n as usize)))
            .json(&json!({ "mimeType": "video/webm" }))
            .send();
        async move { req.await.unwrap() }
    })
    .await;
    // The first create above used one.
    let expected = 10.0 * elapsed.as_secs_f64() + 60.0 - 1.0;
    within_ten_percent("creates", accepted, expected);
}

#[tokio::test]
async fn the_client_address_is_believed_from_trusted_proxies_only() {
    let keys =
        "acme=".to_owned() + &hex::encode(<sha2::Sha256 as sha2::Digest>::digest(b"srk_key"));
    for trusted in ["", "127.0.0.1"] {
        let app = spawn_app_with(
            &backends()[0],
            &[
                ("AUTH_MODE", "api-key"),
                ("API_KEYS", &keys),
                ("RATE_LIMIT_CREATES_PER_MIN", "10"),
                ("TRUSTED_PROXIES", trusted),
            ],
        )
        .await;
        let client: Client = app.client();
        let mut refused = 0;
        // Each create by another owner, each "from" another address: only the address limit
        // (burst 1) can refuse, and only when the header is not believed.
        for n in 0..5 {
            let res = client
                .http
                .post(format!("{}/recordings", app.base))
                .bearer_auth("srk_key")
                .header("x-forwarded-for", format!("198.51.100.{n}"))
                .json(&json!({ "mimeType": "video/webm", "owner": format!("user-{n}") }))
                .send()
                .await
                .unwrap();
            match res.status().as_u16() {
                201 => {}
                429 => refused += 1,
                s => panic!("{s}"),
            }
        }
        if trusted.is_empty() {
            assert_eq!(refused, 4, "the header was believed from an untrusted peer");
        } else {
            assert_eq!(refused, 0, "the trusted proxy's header was not believed");
        }
    }
}
