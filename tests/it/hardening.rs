//! The HTTP layer's own guards: CORS from `CORS_ALLOWED_ORIGINS` (every route's preflight
//! answered, a stranger given no `Access-Control-Allow-Origin`), header and body bounds, the
//! request deadline (WebSockets left out), and the security headers.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::{Rec, backends, spawn_app_with};
use crate::ws_client::Ws;

const ROUTES: &[(&str, &str)] = &[
    ("POST", "/recordings"),
    ("GET", "/recordings"),
    ("GET", "/recordings/01m8pt9m250m2ga1850m2ga185"),
    ("DELETE", "/recordings/01m8pt9m250m2ga1850m2ga185"),
    ("POST", "/recordings/01m8pt9m250m2ga1850m2ga185/chunks"),
    ("PUT", "/recordings/01m8pt9m250m2ga1850m2ga185/chunks/0"),
    (
        "POST",
        "/recordings/01m8pt9m250m2ga1850m2ga185/chunks/0/complete",
    ),
    ("POST", "/recordings/01m8pt9m250m2ga1850m2ga185/stop"),
    ("POST", "/recordings/01m8pt9m250m2ga1850m2ga185/merge"),
    ("GET", "/recordings/01m8pt9m250m2ga1850m2ga185/download"),
    ("GET", "/recordings/01m8pt9m250m2ga1850m2ga185/poster"),
    ("PUT", "/files/chunks/01m8pt9m250m2ga1850m2ga185/00000000"),
    ("GET", "/openapi.json"),
    ("GET", "/metrics"),
];

async fn preflight(base: &str, path: &str, method: &str, origin: &str) -> reqwest::Response {
    reqwest::Client::new()
        .request(Method::OPTIONS, format!("{base}{path}"))
        .header("origin", origin)
        .header("access-control-request-method", method)
        .header(
            "access-control-request-headers",
            "authorization, content-type",
        )
        .send()
        .await
        .unwrap()
}

/// `request` (`METHOD path`) to the recording `rec`, declaring `length` bytes of body and
/// sending only `sent`: the answer, which must come within 10 s without the rest.
async fn partly_sent(base: &str, request: &str, rec: &Rec, length: usize, sent: &[u8]) -> String {
    let mut conn = tokio::net::TcpStream::connect(base.trim_start_matches("http://"))
        .await
        .unwrap();
    let head = format!(
        "{request} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n",
        rec.token
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    conn.write_all(sent).await.unwrap();
    let mut answer = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(10), conn.read(&mut answer))
        .await
        .expect("answered without the rest of the body")
        .unwrap();
    String::from_utf8_lossy(&answer[..n]).into_owned()
}

#[tokio::test]
async fn cors_admits_the_listed_origins_only_on_every_route() {
    let backend = &backends()[0];
    let allowed = "https://app.example";
    let listed = spawn_app_with(backend, &[("CORS_ALLOWED_ORIGINS", allowed)]).await;
    let unset = spawn_app_with(backend, &[]).await;
    for (method, path) in ROUTES {
        let res = preflight(&listed.base, path, method, allowed).await;
        assert!(
            res.status().is_success(),
            "{method} {path}: {}",
            res.status()
        );
        assert_eq!(
            res.headers()["access-control-allow-origin"],
            allowed,
            "{method} {path}"
        );
        let methods = res.headers()["access-control-allow-methods"]
            .to_str()
            .unwrap();
        assert!(methods.contains(method), "{method} {path}: {methods}");
        for (base, origin) in [
            (&listed.base, "https://evil.example"),
            (&unset.base, allowed),
        ] {
            let res = preflight(base, path, method, origin).await;
            assert!(
                res.status().is_success(),
                "{method} {path}: {}",
                res.status()
            );
            assert!(
                res.headers().get("access-control-allow-origin").is_none(),
                "{method} {path} from {origin}: {:?}",
                res.headers()
            );
        }
    }
    // The answers themselves carry it too, for the listed origin only.
    let http = reqwest::Client::new();
    for (origin, expected) in [(allowed, Some(allowed)), ("https://evil.example", None)] {
        let res = http
            .post(format!("{}/recordings", listed.base))
            .header("origin", origin)
            .json(&json!({"mimeType": "video/webm"}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 201);
        assert_eq!(
            res.headers()
                .get("access-control-allow-origin")
                .map(|v| v.to_str().unwrap()),
            expected
        );
    }
}

#[tokio::test]
async fn oversized_headers_and_bodies_are_refused_before_they_are_read() {
    let app = spawn_app_with(&backends()[0], &[]).await;
    let client = app.client();
    let http = reqwest::Client::new();
    let mut many = http.get(format!("{}/healthz", app.base));
    for i in 0..70 {
        many = many.header(format!("x-filler-{i}"), "1");
    }
    let res = many.send().await.unwrap();
    assert_eq!(res.status(), 431);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "headers_too_large");
    let res = http
        .get(format!("{}/healthz", app.base))
        .header("x-big", "x".repeat(17 * 1024))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 431);

    // A body declared larger than any chunk is refused before a byte of it is read.
    let rec = client.create("video/webm").await;
    let big = 64 * 1024 * 1024;
    let put = format!("PUT /recordings/{}/chunks/0", rec.id);
    let answer = partly_sent(&app.base, &put, &rec, big, b"").await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("chunk_too_large"), "{answer}");
    // Any other body, likewise.
    let stop = format!("POST /recordings/{}/stop", rec.id);
    let answer = partly_sent(&app.base, &stop, &rec, big, b"").await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("body_too_large"), "{answer}");
}

#[tokio::test]
async fn a_slow_body_times_out_and_a_websocket_does_not() {
    let app = spawn_app_with(&backends()[0], &[("REQUEST_TIMEOUT_SECS", "1")]).await;
    let client = app.client();
    let rec = client.create("video/webm").await;
    let mut socket = Ws::connect(&client.ws_url(0)).await;
    let put = format!("PUT /recordings/{}/chunks/0", rec.id);
    let answer = partly_sent(&app.base, &put, &rec, 1000, b"0123456789").await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("request_timeout"), "{answer}");
    // Nothing of it was stored.
    assert_eq!(client.status(0, &rec).await["chunksReceived"], 0);
    // The socket opened before is still served, well past the deadline.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let reply = socket
        .call(json!({"type": "auth", "recordingId": rec.id, "token": rec.token}))
        .await;
    assert_eq!(reply["type"], "authorized", "{reply}");
}

#[tokio::test]
async fn answers_carry_the_security_headers() {
    let app = spawn_app_with(&backends()[0], &[]).await;
    let http = reqwest::Client::new();
    for path in ["/", "/web/app.js", "/healthz", "/recordings/bad"] {
        let res = http
            .get(format!("{}{path}", app.base))
            .send()
            .await
            .unwrap();
        let h = res.headers();
        assert_eq!(h["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(h["referrer-policy"], "no-referrer", "{path}");
        assert_eq!(h["x-frame-options"], "DENY", "{path}");
    }
    let page = http.get(format!("{}/", app.base)).send().await.unwrap();
    let csp = page.headers()["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    let file = http
        .get(format!(
            "{}/files/chunks/01m8pt9m250m2ga1850m2ga185/00000000",
            app.base
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(
        file.headers()["content-security-policy"],
        "default-src 'none'; sandbox"
    );
}
