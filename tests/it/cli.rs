//! The `screenrec` command as an operator runs it: `serve --help` documents every variable,
//! `doctor` says in one line each what works and what does not, and `recordings` lists, shows
//! and deletes what the store holds.

use std::collections::HashMap;
use std::process::Command;

use crate::common::fixtures::Recording;
use crate::common::upload::{Path, Plan, upload};
use crate::common::{backends, spawn_app, spawn_app_with};

/// Run `screenrec args…` with `env` on top of this process's environment: its exit status
/// and its stdout and stderr.
fn screenrec(args: &[&str], env: &HashMap<String, String>) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_screenrec"))
        .args(args)
        .envs(env)
        .env("RUST_LOG", "off")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn serve_help_lists_every_variable_with_its_default() {
    let (ok, help, _) = screenrec(&["serve", "--help"], &HashMap::new());
    assert!(ok);
    let variables = screenrec::config::doc::variables();
    assert!(variables.len() > 50, "{}", variables.len());
    for v in variables {
        let shown = match v.default {
            Some(d) => format!("{} [default: {d}]", v.name),
            None => format!("{} [unset", v.name),
        };
        assert!(help.contains(&shown), "{shown} not in:\n{help}");
    }
    // No command: the usage, as an error (clap's convention: exit 2).
    let (ok, _, usage) = screenrec(&[], &HashMap::new());
    assert!(!ok);
    for command in ["serve", "merge", "keygen", "doctor", "recordings"] {
        assert!(usage.contains(command), "{usage}");
    }
    let (ok, _, err) = screenrec(&["serv"], &HashMap::new());
    assert!(
        !ok && err.contains("serve"),
        "a typo suggests the command: {err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_passes_on_every_backend_and_names_each_broken_dependency() {
    for backend in backends() {
        let app = spawn_app(&backend).await;
        let (ok, out, err) = screenrec(&["doctor"], &app.env);
        assert!(ok, "{}: {out}{err}", backend.name);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 5, "{out}");
        for line in &lines {
            assert!(
                line.starts_with("ok ") || line.starts_with("warn "),
                "{}: {line}",
                backend.name
            );
        }
    }

    // Each thing broken: one FAIL line naming it, and exit 1.
    let app = spawn_app(backends().last().unwrap()).await;
    let broken = |vars: &[(&str, &str)]| {
        let mut env = app.env.clone();
        for (k, v) in vars {
            env.insert((*k).into(), (*v).into());
        }
        screenrec(&["doctor"], &env)
    };
    let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (
            vec![("MERGE_WORKERS", "many")],
            "FAIL  configuration: MERGE_WORKERS",
        ),
        (
            vec![("REDIS_URL", "redis://127.0.0.1:1/")],
            "FAIL  coordination: coordination_unavailable",
        ),
        (
            vec![("FFMPEG_PATH", "/nonexistent/ffmpeg")],
            "FAIL  ffmpeg: ffmpeg_missing",
        ),
        (
            vec![("STORAGE_DIR", "/proc/screenrec-cannot-write-here")],
            "FAIL  storage:",
        ),
        (
            vec![
                ("WEBHOOK_URL", "http://localhost:9/hooks"),
                ("WEBHOOK_SECRET", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
            ],
            "FAIL  webhooks: http://localhost:9/hooks: localhost resolves to",
        ),
    ];
    for (vars, expected) in cases {
        let (ok, out, _) = broken(&vars);
        assert!(!ok, "{vars:?}: {out}");
        let failed: Vec<&str> = out.lines().filter(|l| l.starts_with("FAIL")).collect();
        assert_eq!(failed.len(), 1, "{vars:?}: one failure: {out}");
        assert!(failed[0].starts_with(expected), "{vars:?}: {out}");
    }
    // A bucket that is not there.
    if let Some(s3) = backends().into_iter().find(|b| b.s3_endpoint.is_some()) {
        let app = spawn_app(&s3).await;
        let mut env = app.env.clone();
        env.insert("S3_BUCKET".into(), "screenrec-no-such-bucket".into());
        let (ok, out, _) = screenrec(&["doctor"], &env);
        assert!(
            !ok && out.contains("FAIL  storage: storage_unavailable"),
            "{out}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_list_show_and_delete_recordings_from_the_store() {
    let fixture = Recording::load("vp8-opus-ts1000");
    for backend in backends().into_iter().filter(|b| b.redis_url.is_some()) {
        let name = &backend.name;
        let app = spawn_app_with(&backend, &[("KEEP_CHUNKS", "false")]).await;
        let client = app.client();
        let rec = client.create(&fixture.mime_type).await;
        upload(
            &client,
            &rec,
            &fixture.chunks,
            Path::Server,
            Plan::default(),
        )
        .await;
        client
            .stop(0, &rec, fixture.chunks.len() as u32)
            .await
            .expect(202);
        let status = client.until_finished(&rec).await;
        assert_eq!(status["status"], "ready", "{name}: {status}");
        let other = client.create(&fixture.mime_type).await;

        let (ok, out, err) = screenrec(&["recordings", "list", "--limit", "1"], &app.env);
        assert!(ok, "{name}: {err}");
        let lines: Vec<serde_json::Value> = out
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(
            lines[0]["recordingId"],
            other.id.as_str(),
            "{name}: newest first"
        );
        let cursor = lines[1]["nextCursor"].as_str().expect("a next page");
        let (ok, out, _) = screenrec(
            &["recordings", "list", "--limit", "1", "--cursor", cursor],
            &app.env,
        );
        assert!(ok && out.contains(&rec.id), "{name}: {out}");

        let (ok, out, _) = screenrec(&["recordings", "show", &rec.id], &app.env);
        let shown: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert!(ok, "{name}: {out}");
        assert_eq!(shown["status"], "ready");
        assert!(shown["downloadUrl"].is_string(), "{shown}");

        let (ok, out, _) = screenrec(&["recordings", "delete", &rec.id], &app.env);
        assert!(ok && out.contains("deleted"), "{name}: {out}");
        let path = format!("/recordings/{}", rec.id);
        client
            .send(0, reqwest::Method::GET, &path, Some(&rec.token), None)
            .await
            .expect_error(404, "recording_not_found");
        let (ok, _, err) = screenrec(&["recordings", "show", &rec.id], &app.env);
        assert!(!ok && err.contains("recording_not_found"), "{name}: {err}");
        let (ok, out, _) = screenrec(&["recordings", "delete", &rec.id], &app.env);
        assert!(ok && out.contains("not there"), "{name}: idempotent: {out}");
        let (ok, _, err) = screenrec(&["recordings", "show", "../../etc"], &app.env);
        assert!(!ok && err.contains("invalid_recording_id"), "{name}: {err}");
    }
}
