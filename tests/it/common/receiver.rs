//! A webhook receiver for the tests: a Python process on a loopback port that checks every
//! delivery with the reference Standard Webhooks library (`tests/webhooks/receiver.py`, the
//! `standardwebhooks` package from PyPI), not with screenrec's own code.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// The test receiver: a Python process on a loopback port.
pub struct Receiver {
    pub url: String,
    log: std::path::PathBuf,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Receiver {
    /// Start one that answers 500 to the first `fail_first` attempts of each `webhook-id`.
    pub fn start(fail_first: u32) -> Self {
        let python = std::env::var("SCREENREC_TEST_PYTHON").unwrap_or_else(|_| {
            panic!("SCREENREC_TEST_PYTHON must be set: run the suite through scripts/test")
        });
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("deliveries.jsonl");
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/webhooks/receiver.py");
        let mut child = Command::new(python)
            .arg(script)
            .arg(SECRET)
            .arg(&log)
            .arg("--fail-first")
            .arg(fail_first.to_string())
            .stdout(Stdio::piped())
            .spawn()
            .expect("starting the webhook receiver");
        let mut port = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut port)
            .unwrap();
        let port: u16 = port.trim().parse().expect("the receiver's port");
        Self {
            url: format!("http://127.0.0.1:{port}/hooks"),
            log,
            child,
            _dir: dir,
        }
    }

    /// The configuration that sends webhooks here.
    pub fn vars(&self) -> [(&'static str, &str); 3] {
        [
            ("WEBHOOK_URL", &self.url),
            ("WEBHOOK_SECRET", SECRET),
            ("WEBHOOK_ALLOW_PRIVATE", "true"),
        ]
    }

    /// Every request it has had, in order.
    pub fn requests(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// Wait (at most `within`) until `done` holds of the requests, and return them.
    pub async fn until(&self, within: Duration, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let deadline = Instant::now() + within;
        loop {
            let requests = self.requests();
            if done(&requests) {
                return requests;
            }
            assert!(
                Instant::now() < deadline,
                "not delivered within {within:?}: {requests:#?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
