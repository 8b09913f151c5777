//! Merge benchmark on a synthetic recording of at least 1 GiB (bench/make-recording.sh), all
//! three measured in one run against the same S3 server (LocalStack, or `BENCH_S3_ENDPOINT`) and Redis:
//!
//! - (a) screenrec: `POST /stop` to `ready`, on a fresh `screenrec serve` process whose peak RSS
//!   (VmHWM, ffmpeg being a child process of its own) is read from /proc;
//! - (b) the naive pipeline: parallel GETs of every chunk to disk, `cat`, `ffmpeg -c copy`,
//!   multipart upload;
//! - (c) the floor: parallel GET of every chunk's bytes plus a multipart PUT of the output.
//!
//! (a), (b) and (c) are taken in turn `BENCH_REPS` times (5 unless set) and their medians
//! compared. The same run repeats (a) on a ~10 MiB recording, to show memory does not grow
//! with length, and times the frame accounting that (a) runs inline on its feed to ffmpeg
//! (every chunk parsed for its frames, in memory), as a share of (a).
//! Writes bench/results/merge.json (or $BENCH_OUT).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use futures::{StreamExt, TryStreamExt};
use screenrec::domain::{ChunkIndex, ObjectKey, RecordingId};
use screenrec::store::{ObjectStore, PART_SIZE, S3Settings, S3Store};
use serde_json::{Value, json};

const GETS_IN_FLIGHT: usize = 8;

fn env(name: &str) -> anyhow::Result<String> {
    std::env::var(name).with_context(|| format!("{name} is not set: run scripts/bench"))
}

struct Instance {
    child: Child,
    base: String,
}

impl Instance {
    async fn start(vars: &HashMap<&str, String>) -> anyhow::Result<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let child = Command::new(env!("CARGO_BIN_EXE_screenrec"))
            .arg("serve")
            .envs(vars.iter().map(|(k, v)| (*k, v.as_str())))
            .env("BIND_ADDR", format!("127.0.0.1:{port}"))
            .env(
                "RUST_LOG",
                std::env::var("BENCH_RUST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(Stdio::null())
            .stderr(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open("bench/data/instances.log")?,
            )
            .spawn()?;
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        for _ in 0..300 {
            if http
                .get(format!("{base}/readyz"))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                return Ok(Self { child, base });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!("screenrec serve did not become ready")
    }

    /// Peak resident memory in MiB (VmHWM).
    fn peak_rss_mib(&self) -> anyhow::Result<f64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))?;
        let kb: f64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .context("no VmHWM")?;
        Ok(round(kb / 1024.0))
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn round(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn chunk_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "webm"))
        .collect();
    files.sort();
    ensure!(
        !files.is_empty(),
        "no chunks in {}: run bench/make-recording.sh",
        dir.display()
    );
    Ok(files)
}

struct Run {
    id: RecordingId,
    chunks: u32,
    bytes: u64,
    seconds: f64,
    peak_rss_mib: f64,
    idle_rss_mib: f64,
    output: Value,
}

/// Write the page cache's dirty pages to disk, so that a measurement does not pay for the
/// writes of what came before it (the upload, or another measurement).
fn settle() -> anyhow::Result<()> {
    ensure!(Command::new("sync").status()?.success(), "sync failed");
    Ok(())
}

/// Upload through one instance, then stop and merge on a fresh one, timing stop to ready.
async fn screenrec_merge(vars: &HashMap<&str, String>, files: &[PathBuf]) -> anyhow::Result<Run> {
    let http = reqwest::Client::new();
    let ingest = Instance::start(vars).await?;
    let created: Value = http
        .post(format!("{}/recordings", ingest.base))
        .json(&json!({ "mimeType": "video/webm;codecs=vp8" }))
        .send()
        .await?
        .json()
        .await?;
    let id = created["recordingId"].as_str().context("no id")?.to_owned();
    let token = created["uploadToken"]
        .as_str()
        .context("no token")?
        .to_owned();
    let bytes: u64 = futures::stream::iter(files.iter().enumerate())
        .map(|(seq, path)| {
            let (http, base, id, token) = (&http, &ingest.base, &id, &token);
            async move {
                let body = tokio::fs::read(path).await?;
                let len = body.len() as u64;
                let r = http
                    .put(format!("{base}/recordings/{id}/chunks/{seq}"))
                    .bearer_auth(token)
                    .body(body)
                    .send()
                    .await?;
                ensure!(r.status().is_success(), "chunk {seq}: {}", r.status());
                Ok::<_, anyhow::Error>(len)
            }
        })
        .buffer_unordered(4)
        .try_fold(0, |a, b| async move { Ok(a + b) })
        .await?;
    drop(ingest);
    settle()?;

    let merger = Instance::start(vars).await?;
    let idle_rss_mib = merger.peak_rss_mib()?;
    let started = Instant::now();
    let r = http
        .post(format!("{}/recordings/{id}/stop", merger.base))
        .bearer_auth(&token)
        .json(&json!({ "chunkCount": files.len() }))
        .send()
        .await?;
    ensure!(r.status() == 202, "stop: {}", r.status());
    let status = loop {
        let s: Value = http
            .get(format!("{}/recordings/{id}", merger.base))
            .bearer_auth(&token)
            .send()
            .await?
            .json()
            .await?;
        match s["status"].as_str() {
            Some("ready") => break s,
            Some("failed") => bail!("merge failed: {s}"),
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    };
    let seconds = started.elapsed().as_secs_f64();
    Ok(Run {
        id: RecordingId::parse(&id)?,
        chunks: files.len() as u32,
        bytes,
        seconds: round(seconds),
        peak_rss_mib: merger.peak_rss_mib()?,
        idle_rss_mib,
        output: status["output"].clone(),
    })
}

async fn get_all(
    store: &S3Store,
    id: &RecordingId,
    chunks: u32,
    to: Option<&Path>,
) -> anyhow::Result<u64> {
    futures::stream::iter(0..chunks)
        .map(|i| async move {
            let key = ObjectKey::chunk(id, ChunkIndex::new(i));
            let bytes = screenrec::store::read_all(store, &key, None).await?;
            if let Some(dir) = to {
                tokio::fs::write(dir.join(format!("chunk-{i:06}.webm")), &bytes).await?;
            }
            Ok::<_, anyhow::Error>(bytes.len() as u64)
        })
        .buffer_unordered(GETS_IN_FLIGHT)
        .try_fold(0, |a, b| async move { Ok(a + b) })
        .await
}

/// (b): what a user would script.
async fn naive(
    store: &S3Store,
    run: &Run,
    work: &Path,
    ffmpeg: &Path,
) -> anyhow::Result<(f64, PathBuf)> {
    let started = Instant::now();
    let dir = work.join("naive");
    std::fs::create_dir_all(&dir)?;
    get_all(store, &run.id, run.chunks, Some(&dir)).await?;
    let concat = work.join("concat.webm");
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "cat {}/chunk-*.webm > {}",
            dir.display(),
            concat.display()
        ))
        .status()?;
    ensure!(status.success(), "cat failed");
    let out = work.join("naive-output.webm");
    let status = Command::new(ffmpeg)
        .args(["-v", "error", "-y", "-i"])
        .arg(&concat)
        .args(["-c", "copy"])
        .arg(&out)
        .status()?;
    ensure!(status.success(), "ffmpeg failed");
    let key = upload(store, &out).await?.key;
    let seconds = started.elapsed().as_secs_f64();
    store.delete(&key).await?;
    std::fs::remove_dir_all(&dir)?;
    std::fs::remove_file(&concat)?;
    Ok((round(seconds), out))
}

/// A file uploaded as a user would: a multipart upload, four parts in flight (as the merge has
/// once its remux is over).
struct Uploaded {
    key: ObjectKey,
    complete_s: f64,
}

async fn upload(store: &S3Store, path: &Path) -> anyhow::Result<Uploaded> {
    let key = ObjectKey::output(&RecordingId::generate(), screenrec::domain::Container::WebM);
    let size = std::fs::metadata(path)?.len();
    let upload = store.begin_upload(&key, "video/webm").await?;
    futures::stream::iter(0..size.div_ceil(PART_SIZE))
        .map(|n| {
            let offset = n * PART_SIZE;
            upload.part(n as u32 + 1, path, offset, PART_SIZE.min(size - offset))
        })
        .buffer_unordered(4)
        .try_collect::<()>()
        .await?;
    let completing = Instant::now();
    upload.complete().await?;
    Ok(Uploaded {
        key,
        complete_s: round(completing.elapsed().as_secs_f64()),
    })
}

/// Remove a run's chunks and output.
async fn remove(store: &S3Store, run: &Run) -> anyhow::Result<()> {
    futures::stream::iter(0..run.chunks)
        .map(|i| async move {
            store
                .delete(&ObjectKey::chunk(&run.id, ChunkIndex::new(i)))
                .await
        })
        .buffer_unordered(GETS_IN_FLIGHT)
        .try_collect::<()>()
        .await?;
    let output = run.output["key"].as_str().context("no output key")?;
    store.delete(&ObjectKey::parse(output)?).await?;
    Ok(())
}

/// (c): moving the bytes and nothing else, as one GET phase then one PUT phase.
struct Floor {
    get_s: f64,
    put_s: f64,
    complete_s: f64,
}

async fn floor(store: &S3Store, run: &Run, output: &Path) -> anyhow::Result<Floor> {
    let started = Instant::now();
    get_all(store, &run.id, run.chunks, None).await?;
    let get_s = started.elapsed().as_secs_f64();
    let uploaded = upload(store, output).await?;
    let put_s = started.elapsed().as_secs_f64() - get_s;
    store.delete(&uploaded.key).await?;
    Ok(Floor {
        get_s: round(get_s),
        put_s: round(put_s),
        complete_s: uploaded.complete_s,
    })
}

/// The frame accounting of a merge alone: the chunks read into memory first, then every byte
/// fed through it in 1 MiB pieces, as the merge's feed does. The median of `reps` passes.
fn accounting_s(files: &[PathBuf], reps: usize) -> anyhow::Result<(f64, u64)> {
    use screenrec::merge::frames::Accounting;
    use screenrec::merge::plan::Format;
    let chunks: Vec<Vec<u8>> = files.iter().map(std::fs::read).collect::<Result<_, _>>()?;
    let mut times = Vec::new();
    let mut frames = 0;
    for _ in 0..reps {
        let started = Instant::now();
        let mut accounting = Accounting::new(Format::sniff(&chunks[0])?, chunks.len() as u32);
        for (i, chunk) in chunks.iter().enumerate() {
            for piece in chunk.chunks(1 << 20) {
                accounting.feed(i as u32, piece)?;
            }
        }
        let (inventory, _) = accounting.finish()?;
        times.push(started.elapsed().as_secs_f64());
        frames = inventory.tracks.iter().map(|t| t.frames).sum();
    }
    times.sort_by(f64::total_cmp);
    Ok((times[times.len() / 2], frames))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // BENCH_S3_ENDPOINT (named BENCH_S3_SERVER) instead of LocalStack: scripts/bench also runs
    // the benchmark against s3s-fs, a far lighter server, to show what LocalStack's CPU costs.
    let (endpoint, server) = match std::env::var("BENCH_S3_ENDPOINT") {
        Ok(e) => (e, env("BENCH_S3_SERVER")?),
        Err(_) => (env("SCREENREC_TEST_LOCALSTACK")?, "LocalStack".to_owned()),
    };
    let redis = env("SCREENREC_TEST_REDIS_URL")?;
    let big =
        PathBuf::from(std::env::var("BENCH_DATA").unwrap_or_else(|_| "bench/data/big".into()));
    let small = PathBuf::from(
        std::env::var("BENCH_DATA_SMALL").unwrap_or_else(|_| "bench/data/small".into()),
    );
    let ffmpeg = screenrec::merge::Ffmpeg::locate(None)?;
    let work = tempfile::tempdir()?;
    let stamp = format!("{}", std::process::id());
    let bucket = format!("bench-merge-{stamp}");
    let settings = S3Settings {
        bucket: bucket.clone(),
        region: Some("us-east-1".into()),
        endpoint: Some(endpoint.clone()),
        force_path_style: true,
    };
    let store = S3Store::connect(&settings).await;
    store
        .client()
        .create_bucket()
        .bucket(&bucket)
        .send()
        .await?;
    let vars: HashMap<&str, String> = HashMap::from([
        ("STORAGE", "s3".to_string()),
        ("S3_BUCKET", bucket.clone()),
        ("S3_ENDPOINT", endpoint.clone()),
        ("S3_FORCE_PATH_STYLE", "true".into()),
        ("REDIS_URL", redis.clone()),
        ("REDIS_PREFIX", format!("bench{stamp}:")),
        ("KEEP_CHUNKS", "true".into()),
        ("MAX_CHUNK_BYTES", (8 << 20).to_string()),
        (
            "MERGE_WORK_DIR",
            work.path().join("merges").display().to_string(),
        ),
    ]);

    let small_run = screenrec_merge(&vars, &chunk_files(&small)?).await?;
    // Each measurement varies by ±20% from run to run on a shared 2-core machine, so (a), (b)
    // and (c) are taken in turn `reps` times, and the medians compared.
    let reps: usize = std::env::var("BENCH_REPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5)
        .max(1);
    let big_files = chunk_files(&big)?;
    let mut runs = Vec::new();
    let mut times = Vec::new();
    for rep in 0..reps {
        let run = screenrec_merge(&vars, &big_files).await?;
        settle()?;
        let (naive_s, naive_out) = naive(&store, &run, work.path(), ffmpeg.path()).await?;
        settle()?;
        let parts = floor(&store, &run, &naive_out).await?;
        let floor_s = round(parts.get_s + parts.put_s);
        println!(
            "run {}: a {} s, b {naive_s} s, c {floor_s} s (GET {} s, PUT {} s of which completing {} s), peak RSS {} MiB",
            rep + 1,
            run.seconds,
            parts.get_s,
            parts.put_s,
            parts.complete_s,
            run.peak_rss_mib
        );
        times.push(json!({
            "a": run.seconds, "b": naive_s, "c": floor_s, "cGetS": parts.get_s, "cPutS": parts.put_s, "cCompleteS": parts.complete_s,
            "aOverB": round(run.seconds / naive_s), "aOverC": round(run.seconds / floor_s),
            "peakRssMib": run.peak_rss_mib,
        }));
        // The next repetition starts from the same stored state (LocalStack slows as it fills).
        if rep + 1 < reps {
            remove(&store, &run).await?;
        }
        runs.push((run, naive_s, floor_s));
    }
    let median = |f: &dyn Fn(&(Run, f64, f64)) -> f64| {
        let mut v: Vec<f64> = runs.iter().map(f).collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (a_s, naive_s, floor_s) = (median(&|r| r.0.seconds), median(&|r| r.1), median(&|r| r.2));
    // The machine's speed drifts between repetitions; a ratio within one repetition compares
    // measurements taken seconds apart.
    let paired_b = median(&|r| r.0.seconds / r.1);
    let paired_c = median(&|r| r.0.seconds / r.2);
    let peak_rss_mib = runs.iter().map(|r| r.0.peak_rss_mib).fold(0.0, f64::max);
    let run = &runs[0].0;
    let (accounting_s, accounted_frames) = accounting_s(&big_files, reps)?;
    let accounting_share = accounting_s / a_s;

    let gib = run.bytes as f64 / (1u64 << 30) as f64;
    let throughput = run.bytes as f64 / a_s / 1048576.0;
    // A 2-hour screen recording at 8 Mbit/s (a generous 1080p bitrate) is 7.2 GB.
    let two_hour_bytes = 2.0 * 3600.0 * 8e6 / 8.0;
    let two_hour_s = two_hour_bytes / 1048576.0 / throughput;
    let result = json!({
        "benchmark": "merge",
        "s3Server": server,
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "recording": { "bytes": run.bytes, "gib": round(gib), "chunks": run.chunks, "output": run.output },
        "repetitions": reps,
        "runs": times,
        "a_screenrecStopToReadyS": a_s,
        "b_naivePipelineS": naive_s,
        "c_floorGetPlusPutS": floor_s,
        "ratioToNaive": round(a_s / naive_s),
        "ratioToFloor": round(a_s / floor_s),
        "medianRatioToNaiveWithinRepetition": round(paired_b),
        "medianRatioToFloorWithinRepetition": round(paired_c),
        "goals": { "ratioToNaive": "<= 0.60", "ratioToFloor": "<= 1.15", "peakRssMib": "<= 64, and within 16 of the small recording's", "accountingShareOfMerge": "<= 0.05" },
        "accounting": { "seconds": round3(accounting_s), "frames": accounted_frames, "shareOfMerge": round3(accounting_share), "mibPerS": round(run.bytes as f64 / accounting_s / 1048576.0) },
        "peakRssMib": peak_rss_mib,
        "idleRssMib": run.idle_rss_mib,
        "small": { "bytes": small_run.bytes, "chunks": small_run.chunks, "stopToReadyS": small_run.seconds, "peakRssMib": small_run.peak_rss_mib },
        "throughputMibPerS": round(throughput),
        "twoHourRecording": {
            "assumedBitrateMbps": 8,
            "bytes": two_hour_bytes,
            "estimatedMergeS": round(two_hour_s),
            "lambdaLimitS": 900,
            "tmpNeededBytes": two_hour_bytes,
            "note": "timeslice recordings stream into ffmpeg, so /tmp holds only the output; restart-style recordings also hold their chunks (2x)"
        },
    });
    let out = std::env::var("BENCH_OUT").unwrap_or_else(|_| "bench/results/merge.json".into());
    std::fs::write(&out, serde_json::to_string_pretty(&result)? + "\n")?;
    println!("| measurement | seconds | ratio |");
    println!("|---|---|---|");
    println!(
        "| (a) screenrec stop → ready, {:.2} GiB in {} chunks | {a_s} | |",
        gib, run.chunks
    );
    println!(
        "| (b) naive: parallel GET, cat, ffmpeg -c copy, multipart PUT | {naive_s} | a/b = {} (goal ≤ 0.60) |",
        result["ratioToNaive"]
    );
    println!(
        "| (c) floor: parallel GET + multipart PUT | {floor_s} | a/c = {} (goal ≤ 1.15) |",
        result["ratioToFloor"]
    );
    println!(
        "within one repetition, medians: a/b = {}, a/c = {}",
        round(paired_b),
        round(paired_c)
    );
    println!(
        "peak RSS of the merging process: {} MiB (idle {} MiB); {} MiB for a {:.1} MiB recording",
        peak_rss_mib,
        run.idle_rss_mib,
        small_run.peak_rss_mib,
        small_run.bytes as f64 / 1048576.0
    );
    println!(
        "frame accounting: {:.3} s for {accounted_frames} frames, {:.1}% of (a) (goal ≤ 5%)",
        accounting_s,
        accounting_share * 100.0
    );
    println!("results written to {out}");
    Ok(())
}
