//! The merge: every real recording, through the CLI and through the whole service, checked
//! with ffprobe against a plain remux; damaged sequences never become ready.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::Value;

use crate::common::fixtures::Recording;
use crate::common::media::{Probe, assert_matches_reference, assert_poster, reference};
use crate::common::upload::{Path as Route, Plan, upload};
use crate::common::{Client, Rec, backends, spawn_app_with};

fn cli(out_dir: &Path, files: &[PathBuf]) -> (bool, Value, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_screenrec"))
        .arg("merge")
        .arg("--out-dir")
        .arg(out_dir)
        .args(files)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    (
        out.status.success(),
        serde_json::from_str(&stdout).unwrap_or(Value::Null),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Write chunks as `chunk-NNNNNN.ext` files.
fn write_chunks(dir: &Path, chunks: &[(u32, &Vec<u8>)], ext: &str) -> Vec<PathBuf> {
    std::fs::create_dir_all(dir).unwrap();
    chunks
        .iter()
        .map(|(i, bytes)| {
            let p = dir.join(format!("chunk-{i:06}.{ext}"));
            std::fs::write(&p, bytes).unwrap();
            p
        })
        .collect()
}

fn ext(fixture: &Recording) -> &'static str {
    if fixture.mime_type.contains("mp4") {
        "mp4"
    } else {
        "webm"
    }
}

#[test]
fn cli_merges_every_fixture_like_a_plain_remux() {
    let dir = tempfile::tempdir().unwrap();
    for fixture in Recording::all() {
        let reference = reference(&fixture, dir.path());
        let indexed: Vec<(u32, &Vec<u8>)> = fixture
            .chunks
            .iter()
            .enumerate()
            .map(|(i, c)| (i as u32, c))
            .collect();
        let files = write_chunks(&dir.path().join(&fixture.name), &indexed, ext(&fixture));
        let out_dir = dir.path().join(format!("out-{}", fixture.name));
        let (ok, report, stderr) = cli(&out_dir, &files);
        assert!(ok, "{}: {stderr}", fixture.name);
        for field in [
            "output",
            "container",
            "videoCodec",
            "audioCodec",
            "durationS",
            "sizeBytes",
        ] {
            assert!(
                report.get(field).is_some(),
                "{}: no {field} in {report}",
                fixture.name
            );
        }
        let output = PathBuf::from(report["output"].as_str().unwrap());
        assert_matches_reference(&output, &reference, &fixture.name);
        assert_eq!(
            report["sizeBytes"],
            std::fs::metadata(&output).unwrap().len()
        );
        let expected_container = match fixture.name.as_str() {
            n if n.starts_with("mp4") => "mp4",
            n if n.starts_with("h264") => "mkv",
            _ => "webm",
        };
        assert_eq!(report["container"], expected_container, "{}", fixture.name);
    }
}

/// A recorder may end its first blob a byte into the file header: the header then spans
/// chunks 0 and 1, and the recording still merges like the unsplit one.
#[test]
fn a_header_split_across_the_first_chunks_merges() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["vp8-opus-ts1000", "mp4-avc1-opus-ts1000"] {
        let fixture = Recording::load(name);
        let reference = reference(&fixture, dir.path());
        let (first, rest) = fixture.chunks[0].split_at(1);
        let (first, rest) = (first.to_vec(), rest.to_vec());
        let split: Vec<&Vec<u8>> = [&first, &rest]
            .into_iter()
            .chain(&fixture.chunks[1..])
            .collect();
        let indexed: Vec<(u32, &Vec<u8>)> = split
            .into_iter()
            .enumerate()
            .map(|(i, c)| (i as u32, c))
            .collect();
        let files = write_chunks(&dir.path().join(name), &indexed, ext(&fixture));
        let (ok, report, stderr) = cli(&dir.path().join(format!("out-{name}")), &files);
        assert!(ok, "{name}: {stderr}");
        let output = PathBuf::from(report["output"].as_str().unwrap());
        assert_matches_reference(&output, &reference, name);
    }
}

#[test]
fn cli_refuses_damaged_sequences_naming_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let f = Recording::load("vp8-opus-ts1000");
    let c = &f.chunks;
    let n = c.len() as u32;
    let all = |skip: u32| {
        (0..n)
            .filter(|i| *i != skip)
            .map(|i| (i, &c[i as usize]))
            .collect::<Vec<_>>()
    };
    let mut swapped: Vec<(u32, &Vec<u8>)> = (0..n).map(|i| (i, &c[i as usize])).collect();
    swapped.swap(4, 5);
    swapped[4].0 = 4;
    swapped[5].0 = 5;
    let mut duplicated: Vec<(u32, &Vec<u8>)> = (0..n).map(|i| (i, &c[i as usize])).collect();
    duplicated.insert(6, (6, &c[5]));
    for (k, item) in duplicated.iter_mut().enumerate() {
        item.0 = k as u32;
    }
    let headless: Vec<(u32, &Vec<u8>)> = (1..n).map(|i| (i - 1, &c[i as usize])).collect();
    let cases: Vec<(&str, Vec<PathBuf>, &str)> = vec![
        (
            "gap",
            write_chunks(&dir.path().join("gap"), &all(5), "webm"),
            "missing_chunks",
        ),
        (
            "swapped",
            write_chunks(&dir.path().join("swapped"), &swapped, "webm"),
            "frames_lost",
        ),
        (
            "duplicated",
            write_chunks(&dir.path().join("duplicated"), &duplicated, "webm"),
            "frames_lost",
        ),
        (
            "headless",
            write_chunks(&dir.path().join("headless"), &headless, "webm"),
            "missing_header",
        ),
        ("no files", Vec::new(), "<CHUNK_FILE>"),
    ];
    for (name, files, code) in cases {
        let (ok, _, stderr) = cli(&dir.path().join(format!("out-{name}")), &files);
        assert!(!ok, "{name} merged");
        assert!(
            stderr.contains(code),
            "{name}: expected {code}, got {stderr}"
        );
    }
    // Two files for one index.
    let twice = write_chunks(&dir.path().join("twice"), &all(99), "webm");
    let mut files = twice.clone();
    let extra = dir.path().join("twice/other-000003.webm");
    std::fs::write(&extra, &c[3]).unwrap();
    files.push(extra);
    let (ok, _, stderr) = cli(&dir.path().join("out-twice"), &files);
    assert!(!ok && stderr.contains("duplicate_chunk"), "{stderr}");
    // A restart-style chunk inside a timeslice recording.
    let restart = Recording::load("vp8-restart2000");
    let mut mixed: Vec<(u32, &Vec<u8>)> = (0..n).map(|i| (i, &c[i as usize])).collect();
    mixed[3].1 = &restart.chunks[1];
    let (ok, _, stderr) = cli(
        &dir.path().join("out-mixed"),
        &write_chunks(&dir.path().join("mixed"), &mixed, "webm"),
    );
    assert!(!ok && stderr.contains("mixed_chunk_layout"), "{stderr}");
}

/// 64 bytes of fixed pseudo-random garbage.
fn garbage() -> Vec<u8> {
    (0u32..64)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect()
}

/// The damaged versions of a recording the fidelity proof asks for: every middle chunk cut to
/// half, every adjacent pair of middle chunks swapped (timeslice recordings only: restart-style
/// chunks are whole files in any order), and a middle chunk without its last byte or with 64
/// bytes of garbage appended.
fn damaged(fixture: &Recording) -> Vec<(String, Vec<Vec<u8>>)> {
    let whole = &fixture.chunks;
    let n = whole.len();
    let mut out = Vec::new();
    for i in 1..n.saturating_sub(1) {
        let mut c = whole.clone();
        let half = c[i].len() / 2;
        c[i].truncate(half);
        out.push((format!("chunk {i} cut to half"), c));
    }
    if !fixture.name.contains("restart") {
        for i in 1..n.saturating_sub(2) {
            let mut c = whole.clone();
            c.swap(i, i + 1);
            out.push((format!("chunks {i} and {} swapped", i + 1), c));
        }
    }
    let mid = n / 2;
    let mut c = whole.clone();
    c[mid].pop();
    out.push((format!("chunk {mid} without its last byte"), c));
    let mut c = whole.clone();
    c[mid].extend_from_slice(&garbage());
    out.push((format!("chunk {mid} with 64 bytes of garbage"), c));
    out
}

/// The frames of each kind in a merge report.
fn frames(report: &Value) -> (u64, u64) {
    (
        report["videoFrames"].as_u64().unwrap_or(0),
        report["audioFrames"].as_u64().unwrap_or(0),
    )
}

/// Every damaged sequence through the CLI: refused with a code, or merged with every frame of
/// the whole recording. Never a short success.
#[test]
fn cli_never_merges_a_damaged_recording_short() {
    let dir = tempfile::tempdir().unwrap();
    let (mut tried, mut refused, mut whole_again) = (0, 0, 0);
    let mut codes = std::collections::BTreeMap::<String, u32>::new();
    for fixture in Recording::all() {
        let ext = ext(&fixture);
        let indexed = |chunks: &[Vec<u8>]| -> Vec<(u32, Vec<u8>)> {
            chunks
                .iter()
                .enumerate()
                .map(|(i, c)| (i as u32, c.clone()))
                .collect()
        };
        let run = |label: &str, chunks: &[Vec<u8>]| {
            let at = dir
                .path()
                .join(format!("{}-{}", fixture.name, label.replace(' ', "-")));
            let owned = indexed(chunks);
            let refs: Vec<(u32, &Vec<u8>)> = owned.iter().map(|(i, c)| (*i, c)).collect();
            cli(&at.join("out"), &write_chunks(&at, &refs, ext))
        };
        let (ok, report, stderr) = run("whole", &fixture.chunks);
        assert!(ok, "{}: {stderr}", fixture.name);
        let expected = frames(&report);
        for (what, chunks) in damaged(&fixture) {
            tried += 1;
            let label = format!("{}: {what}", fixture.name);
            let (ok, report, stderr) = run(&what, &chunks);
            if ok {
                assert_eq!(frames(&report), expected, "{label} merged short: {report}");
                whole_again += 1;
                continue;
            }
            let code = stderr
                .trim_start_matches("error: ")
                .split(':')
                .next()
                .unwrap_or_default()
                .to_owned();
            assert!(
                [
                    "frames_lost",
                    "timestamps_out_of_order",
                    "mixed_chunk_layout"
                ]
                .contains(&code.as_str()),
                "{label}: refused without a damage code: {stderr}"
            );
            refused += 1;
            *codes.entry(code).or_default() += 1;
        }
    }
    assert_eq!(tried, refused + whole_again);
    eprintln!(
        "damaged sequences: {tried} tried, {refused} refused {codes:?}, {whole_again} merged whole, 0 merged short"
    );
}

/// `screenrec merge --salvage`: a gap in the numbering and a damaged restart-style file are left
/// out and reported; what is kept is whole.
#[test]
fn cli_salvages_what_it_can() {
    let dir = tempfile::tempdir().unwrap();
    let run = |name: &str, chunks: &[(u32, &Vec<u8>)], ext: &str| {
        let at = dir.path().join(name);
        let out = Command::new(env!("CARGO_BIN_EXE_screenrec"))
            .args(["merge", "--salvage", "--out-dir"])
            .arg(at.join("out"))
            .args(write_chunks(&at, chunks, ext))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<Value>(&out.stdout).unwrap()
    };

    // A timeslice recording without chunk 6: video resumes at the next keyframe.
    let f = Recording::load("vp8-opus-ts1000");
    let without: Vec<(u32, &Vec<u8>)> = f
        .chunks
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 6)
        .map(|(i, c)| (i as u32, c))
        .collect();
    let report = run("gap", &without, "webm");
    assert_eq!(report["salvaged"], true, "{report}");
    let lost = report["lost"].as_array().unwrap();
    assert_eq!(lost.len(), 1, "{report}");
    assert!(
        lost[0]["chunks"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!(6)),
        "{report}"
    );
    let (video, audio) = frames(&report);
    assert!(
        video > 0 && video < 355 && audio > 0 && audio < 201,
        "{report}"
    );

    // A restart-style recording whose file 2 is cut: the other files are merged whole.
    let r = Recording::load("vp8-restart2000");
    let cut = r.chunks[2][..r.chunks[2].len() / 2].to_vec();
    let damaged: Vec<(u32, &Vec<u8>)> = r
        .chunks
        .iter()
        .enumerate()
        .map(|(i, c)| (i as u32, if i == 2 { &cut } else { c }))
        .collect();
    let report = run("restart", &damaged, "webm");
    assert_eq!(report["salvaged"], true, "{report}");
    assert_eq!(
        report["lost"][0]["chunks"],
        serde_json::json!([2]),
        "{report}"
    );
    // File 2 holds 57 of the 211 frames.
    assert_eq!(frames(&report), (211 - 57, 0), "{report}");
}

/// Follow `GET /download` to the presigned URL and save the video.
async fn download(client: &Client, rec: &Rec, to: &Path) -> reqwest::header::HeaderMap {
    let r = client.download(0, rec).await.expect(302);
    client.fetch(r["downloadUrl"].as_str().unwrap(), to).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fixture_becomes_a_downloadable_seekable_video_on_every_backend() {
    let dir = tempfile::tempdir().unwrap();
    let fixtures = Recording::all();
    let references: Vec<Probe> = fixtures.iter().map(|f| reference(f, dir.path())).collect();
    for backend in backends() {
        let app = spawn_app_with(&backend, &[("KEEP_CHUNKS", "false")]).await;
        let client = app.client();
        for (fixture, reference) in fixtures.iter().zip(&references) {
            let label = format!("{} / {}", backend.name, fixture.name);
            let rec = client.create(&fixture.mime_type).await;
            upload(
                &client,
                &rec,
                &fixture.chunks,
                Route::Server,
                Plan::default(),
            )
            .await;
            client
                .stop(0, &rec, fixture.chunks.len() as u32)
                .await
                .expect(202);
            let status = client.until_finished(&rec).await;
            assert_eq!(status["status"], "ready", "{label}: {status}");
            assert!(
                status["downloadUrl"].is_string() && status["expiresAt"].is_string(),
                "{label}: a ready status carries its download URL: {status}"
            );
            let output = &status["output"];
            for field in [
                "durationS",
                "sizeBytes",
                "container",
                "videoCodec",
                "width",
                "height",
                "frameRate",
            ] {
                assert!(
                    !output[field].is_null(),
                    "{label}: output lacks {field}: {status}"
                );
            }
            let file = dir.path().join(format!(
                "{}-{}.{}",
                backend.name,
                fixture.name,
                output["container"].as_str().unwrap()
            ));
            let headers = download(&client, &rec, &file).await;
            let disposition = headers
                .get("content-disposition")
                .map(|v| v.to_str().unwrap().to_owned());
            assert!(
                disposition
                    .as_deref()
                    .is_some_and(|d| d.contains(&format!("recording-{}", rec.id))),
                "{label}: Content-Disposition {disposition:?}"
            );
            assert_matches_reference(&file, reference, &label);
            assert_eq!(
                output["sizeBytes"],
                std::fs::metadata(&file).unwrap().len(),
                "{label}"
            );
            // The chunks are gone once the output is safe.
            let id = screenrec::domain::RecordingId::parse(&rec.id).unwrap();
            let chunk0 =
                screenrec::domain::ObjectKey::chunk(&id, screenrec::domain::ChunkIndex::new(0));
            assert!(
                app.state
                    .recordings
                    .store()
                    .head(&chunk0)
                    .await
                    .unwrap()
                    .is_none(),
                "{label}"
            );
            let manifest = app.manifest(&rec).await;
            assert_eq!(manifest["recording"]["status"], "ready", "{label}");
            // Its poster, from the status and from the redirect.
            let poster = client
                .send(
                    0,
                    Method::GET,
                    &format!("/recordings/{}/poster", rec.id),
                    Some(&rec.token),
                    None,
                )
                .await
                .expect(302);
            let url = status["posterUrl"].as_str().expect("a posterUrl");
            for url in [url, poster["posterUrl"].as_str().unwrap()] {
                let jpeg = client.http.get(url).send().await.unwrap();
                assert_eq!(jpeg.status(), 200, "{label}: {url}");
                let file = dir
                    .path()
                    .join(format!("{}-{}.jpg", backend.name, fixture.name));
                std::fs::write(&file, jpeg.bytes().await.unwrap()).unwrap();
                let size = (
                    output["width"].as_u64().unwrap(),
                    output["height"].as_u64().unwrap(),
                );
                assert_poster(&file, size, &label);
            }
            assert_eq!(output["poster"]["width"], output["width"], "{label}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_recordings_fail_with_a_code_and_never_become_ready() {
    let f = Recording::load("vp8-opus-ts1000");
    let (vp8, vp9) = (
        Recording::load("vp8-opus-ts1000"),
        Recording::load("vp9-ts1000"),
    );
    let h264 = Recording::load("h264-mkv-ts500");
    let mp4 = Recording::load("mp4-avc1-kf1000-ts1000");
    for backend in backends() {
        let app = spawn_app_with(&backend, &[]).await;
        let client = app.client();
        let mut cases: Vec<(&str, &Recording, Vec<Vec<u8>>, &str)> = Vec::new();
        let mut swapped = f.chunks.clone();
        swapped.swap(4, 5);
        cases.push(("swapped", &f, swapped, "frames_lost"));
        cases.push(("headless", &f, f.chunks[1..].to_vec(), "missing_header"));
        let mut mixed = f.chunks.clone();
        mixed[2] = Recording::load("vp8-restart2000").chunks[0].clone();
        cases.push(("mixed", &f, mixed, "mixed_chunk_layout"));
        // A sample of the damage the CLI test tries in full, one of each kind.
        let damage: Vec<(&str, &Recording)> = vec![
            ("cut to half", &h264),
            ("swapped", &vp9),
            ("without its last byte", &mp4),
            ("64 bytes of garbage", &vp8),
        ];
        let samples: Vec<(String, Vec<Vec<u8>>, &Recording)> = damage
            .iter()
            .flat_map(|(kind, fixture)| {
                damaged(fixture)
                    .into_iter()
                    .filter(move |(what, _)| what.contains(kind))
                    .take(1)
                    .map(move |(what, chunks)| (what, chunks, *fixture))
            })
            .collect();
        assert_eq!(samples.len(), damage.len());
        for (what, chunks, fixture) in &samples {
            cases.push((what, fixture, chunks.clone(), "frames_lost"));
        }
        for (name, f, chunks, code) in cases {
            let rec = client.create(&f.mime_type).await;
            upload(&client, &rec, &chunks, Route::Server, Plan::default()).await;
            client.stop(0, &rec, chunks.len() as u32).await.expect(202);
            let status = client.until_finished(&rec).await;
            assert_eq!(
                status["status"], "failed",
                "{} / {name}: {status}",
                backend.name
            );
            assert_eq!(
                status["error"]["code"], code,
                "{} / {name}: {status}",
                backend.name
            );
            client
                .download(0, &rec)
                .await
                .expect_error(409, "not_ready");
        }
        // A chunk object changed in storage after it was received.
        let rec = client.create(&f.mime_type).await;
        upload(&client, &rec, &f.chunks, Route::Server, Plan::default()).await;
        let id = screenrec::domain::RecordingId::parse(&rec.id).unwrap();
        let key = screenrec::domain::ObjectKey::chunk(&id, screenrec::domain::ChunkIndex::new(7));
        app.state
            .recordings
            .store()
            .put(&key, bytes::Bytes::from(f.chunks[8].clone()), "video/webm")
            .await
            .unwrap();
        client
            .stop(0, &rec, f.chunks.len() as u32)
            .await
            .expect(202);
        let status = client.until_finished(&rec).await;
        assert_eq!(
            status["error"]["code"], "chunk_corrupted",
            "{}: {status}",
            backend.name
        );
        assert_eq!(
            status["error"]["message"]
                .as_str()
                .map(|m| m.contains("chunk 7")),
            Some(true)
        );
    }
}

/// A salvage is asked for, refuses a malformed request, and is reported everywhere: the status,
/// the manifest and the ready event (replayed to a late subscriber). A normal merge never does it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn salvage_is_asked_for_and_reported_in_the_status_the_manifest_and_the_event() {
    let f = Recording::load("vp9-ts1000");
    let missing = 3;
    for backend in backends() {
        let app = spawn_app_with(&backend, &[]).await;
        let client = app.client();
        let label = &backend.name;
        let rec = client.create(&f.mime_type).await;
        for (i, c) in f.chunks.iter().enumerate().filter(|(i, _)| *i != missing) {
            client
                .put_chunk(0, &rec, i as u32, c.clone())
                .await
                .expect(200);
        }
        let count = f.chunks.len() as u32;
        client
            .stop(0, &rec, count)
            .await
            .expect_error(409, "missing_chunks");
        let merge = |body: Value| {
            let (client, rec) = (&client, &rec);
            async move {
                let path = format!("/recordings/{}/merge", rec.id);
                client
                    .send(
                        0,
                        reqwest::Method::POST,
                        &path,
                        Some(&rec.token),
                        Some(body),
                    )
                    .await
            }
        };
        merge(serde_json::json!({ "salvage": false }))
            .await
            .expect_error(400, "invalid_json");
        merge(serde_json::json!({ "salvage": true, "quality": "best" }))
            .await
            .expect_error(400, "invalid_json");
        merge(serde_json::json!({ "salvage": true, "chunkCount": 0 }))
            .await
            .expect_error(400, "invalid_chunk_count");
        let asked = merge(serde_json::json!({ "salvage": true }))
            .await
            .expect(202);
        assert!(
            ["stopping", "merging", "ready"].contains(&asked["status"].as_str().unwrap()),
            "{label}: {asked}"
        );
        let status = client.until_finished(&rec).await;
        assert_eq!(status["status"], "ready", "{label}: {status}");
        assert_eq!(status["salvaged"], true, "{label}: {status}");
        assert_eq!(
            status["chunkCount"], count,
            "{label}: the count defaults to past the highest stored chunk"
        );
        let lost = status["lost"].as_array().unwrap();
        assert_eq!(lost.len(), 1, "{label}: {status}");
        assert!(
            lost[0]["chunks"]
                .as_array()
                .unwrap()
                .contains(&serde_json::json!(missing)),
            "{label}: {status}"
        );
        assert!(
            status.get("error").is_none(),
            "{label}: the failure is gone: {status}"
        );
        // Asking again answers the status.
        assert_eq!(
            merge(serde_json::json!({ "salvage": true }))
                .await
                .expect(202)["salvaged"],
            true
        );

        // The worker writes the manifest just after the state: wait for it.
        let deadline = Instant::now() + Duration::from_secs(10);
        let manifest = loop {
            let manifest = app.manifest(&rec).await;
            if manifest["recording"]["status"] == "ready" || Instant::now() > deadline {
                break manifest;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert_eq!(
            manifest["recording"]["salvaged"], true,
            "{label}: {manifest}"
        );
        assert_eq!(manifest["recording"]["lost"], status["lost"], "{label}");

        let mut ws = crate::ws_client::Ws::connect(&client.ws_url(0)).await;
        ws.send_json(
            serde_json::json!({ "type": "subscribe", "recordingId": rec.id, "token": rec.token }),
        )
        .await;
        let ready = loop {
            let event = ws.recv().await;
            if event["type"] == "recordingReady" {
                break event;
            }
        };
        assert_eq!(ready["salvaged"], true, "{label}: {ready}");
        assert_eq!(ready["lost"], status["lost"], "{label}: {ready}");

        // A whole recording merges whole; asking to salvage it afterwards changes nothing.
        let whole = client.create(&f.mime_type).await;
        for (i, c) in f.chunks.iter().enumerate() {
            client
                .put_chunk(0, &whole, i as u32, c.clone())
                .await
                .expect(200);
        }
        client.stop(0, &whole, count).await.expect(202);
        let done = client.until_finished(&whole).await;
        assert_eq!(done["status"], "ready", "{label}: {done}");
        assert!(
            done.get("salvaged").is_none() && done.get("lost").is_none(),
            "{label}: {done}"
        );
        let path = format!("/recordings/{}/merge", whole.id);
        let again = client
            .send(
                0,
                reqwest::Method::POST,
                &path,
                Some(&whole.token),
                Some(serde_json::json!({ "salvage": true })),
            )
            .await
            .expect(202);
        assert_eq!(again["status"], "ready");
        assert!(again.get("salvaged").is_none(), "{label}: {again}");
    }
}
