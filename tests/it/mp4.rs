//! `"output": "mp4"`, an MP4 for every browser: H.264 recordings (Matroska or fragmented MP4)
//! remuxed with every frame and `moov` first, Opus kept or converted to AAC; VP8 re-encoded to
//! H.264 + AAC only with `"transcode": true`; without it the merge fails with
//! `transcode_required`.

use serde_json::{Value, json};

use crate::common::fixtures::Recording;
use crate::common::media::{Probe, assert_matches_reference, ffprobe, reference};
use crate::common::upload::{Path, Plan, upload};
use crate::common::{Client, Rec, backends, spawn_app_with};

/// Create `fixture` as `format` asks, upload it, stop it and wait until it is finished.
async fn merged(client: &Client, fixture: &Recording, format: Value) -> (Rec, Value) {
    let mut body = json!({ "mimeType": fixture.mime_type });
    body.as_object_mut()
        .unwrap()
        .extend(format.as_object().unwrap().clone());
    let rec = client.create_with(body).await;
    upload(client, &rec, &fixture.chunks, Path::Server, Plan::default()).await;
    client
        .stop(0, &rec, fixture.chunks.len() as u32)
        .await
        .expect(202);
    let status = client.until_finished(&rec).await;
    (rec, status)
}

/// The packets of the streams of `kind` (`video`, `audio`).
fn packets(probe: &Probe, kind: &str) -> Vec<u64> {
    probe
        .streams
        .iter()
        .filter(|s| s.0 == kind)
        .map(|s| s.2)
        .collect()
}

fn codecs(probe: &Probe) -> Vec<&str> {
    probe.streams.iter().map(|s| s.1.as_str()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h264_becomes_mp4_with_every_frame_and_vp8_only_when_transcoded() {
    let dir = tempfile::tempdir().unwrap();
    let fixtures = Recording::all();
    let h264: Vec<&Recording> = fixtures
        .iter()
        .filter(|f| f.mime_type.contains("avc1"))
        .collect();
    assert!(h264.len() >= 3, "H.264 fixtures missing");
    let vp8 = Recording::load("vp8-opus-ts1000");
    let vp8_reference = reference(&vp8, dir.path());
    for backend in backends() {
        let app = spawn_app_with(&backend, &[("KEEP_CHUNKS", "false")]).await;
        let client = app.client();
        let name = &backend.name;
        let file = |label: &str| dir.path().join(format!("{name}-{label}.mp4"));

        // Remuxed: the reference's codecs and frame counts, in an MP4 with moov first.
        for fixture in &h264 {
            let label = format!("{name} / {}", fixture.name);
            let (_, status) = merged(&client, fixture, json!({ "output": "mp4" })).await;
            assert_eq!(status["status"], "ready", "{label}: {status}");
            assert_eq!(status["output"]["container"], "mp4", "{label}");
            assert_eq!(status["format"], json!({ "output": "mp4" }), "{label}");
            let out = file(&fixture.name);
            client
                .fetch(status["downloadUrl"].as_str().unwrap(), &out)
                .await;
            assert_matches_reference(&out, &reference(fixture, dir.path()), &label);
            assert!(ffprobe(&out).format.contains("mp4"), "{label}");
        }

        // Opus converted to AAC when asked: the video untouched.
        let opus = Recording::load("mp4-avc1-opus-ts1000");
        let opus_reference = reference(&opus, dir.path());
        let (_, status) = merged(&client, &opus, json!({ "output": "mp4", "audio": "aac" })).await;
        assert_eq!(status["status"], "ready", "{name}: {status}");
        assert_eq!(status["output"]["audioCodec"], "aac", "{name}: {status}");
        let out = file("aac");
        client
            .fetch(status["downloadUrl"].as_str().unwrap(), &out)
            .await;
        let got = ffprobe(&out);
        assert_eq!(codecs(&got), ["h264", "aac"], "{name}");
        assert_eq!(
            packets(&got, "video"),
            packets(&opus_reference, "video"),
            "{name}"
        );
        assert!(
            (got.duration - opus_reference.duration).abs() <= 0.05,
            "{name}: {} vs {}",
            got.duration,
            opus_reference.duration
        );

        // VP8 without transcode: the merge fails with transcode_required, whether the media
        // type names the codec or only the chunks do; re-encoded with it.
        let unnamed = Recording {
            mime_type: "video/webm".into(),
            ..vp8.clone()
        };
        for fixture in [&vp8, &unnamed] {
            let (_, status) = merged(&client, fixture, json!({ "output": "mp4" })).await;
            assert_eq!(status["status"], "failed", "{name}: {status}");
            assert_eq!(status["error"]["code"], "transcode_required", "{name}");
        }

        let (_, status) =
            merged(&client, &vp8, json!({ "output": "mp4", "transcode": true })).await;
        assert_eq!(status["status"], "ready", "{name}: {status}");
        let out = file("transcoded");
        client
            .fetch(status["downloadUrl"].as_str().unwrap(), &out)
            .await;
        let got = ffprobe(&out);
        assert_eq!(codecs(&got), ["h264", "aac"], "{name}");
        assert_eq!(
            packets(&got, "video"),
            packets(&vp8_reference, "video"),
            "{name}: a frame out for each frame in"
        );
        assert!(
            (got.duration - vp8_reference.duration).abs() <= 0.05,
            "{name}: duration {} vs {}",
            got.duration,
            vp8_reference.duration
        );
        assert_eq!(status["output"]["videoCodec"], "h264", "{name}");
        assert!(status["posterUrl"].is_string(), "{name}: {status}");
    }
}
