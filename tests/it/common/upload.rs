//! Upload drivers for every ingest path, with concurrency, random delays and duplicate
//! deliveries, and the check of what landed in storage.

use std::time::Duration;

use futures::StreamExt;
use screenrec::domain::{ChunkIndex, ObjectKey, RecordingId};
use screenrec::http::ws::encode_chunk_frame;
use screenrec::store::{ObjectStore, read_all};
use serde_json::json;
use sha2::{Digest, Sha256};

use super::{Client, Rec};
use crate::ws_client::Ws;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Path {
    /// `PUT /recordings/{id}/chunks/{seq}`.
    Server,
    /// Presigned PUT straight to storage, then confirm.
    Presigned,
    /// Binary WebSocket frames with a seq.
    WsSeq,
    /// Binary WebSocket frames without a seq, in order on one connection.
    WsNext,
}

pub const ALL_PATHS: [Path; 4] = [Path::Server, Path::Presigned, Path::WsSeq, Path::WsNext];

/// A small deterministic PRNG (xorshift64*), so runs are reproducible from a seed.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            v.swap(i, self.below(i as u64 + 1) as usize);
        }
    }
}

#[derive(Clone, Copy, Debug)]
pub struct Plan {
    pub in_flight: usize,
    /// Percent of chunks delivered twice.
    pub duplicate_pct: u64,
    pub max_delay_ms: u64,
    pub seed: u64,
}

impl Default for Plan {
    fn default() -> Self {
        Self {
            in_flight: 4,
            duplicate_pct: 10,
            max_delay_ms: 5,
            seed: 1,
        }
    }
}

/// Upload `chunks` as recording `rec` over `path`, spreading requests over the client's
/// instances. Every delivery must be answered with its index.
pub async fn upload(client: &Client, rec: &Rec, chunks: &[Vec<u8>], path: Path, plan: Plan) {
    let mut rng = Rng::new(plan.seed);
    if path == Path::WsNext {
        // Arrival order is the order: one connection, in sequence, re-sending some chunks.
        let mut ws = authed_ws(client, 0, rec).await;
        let id = RecordingId::parse(&rec.id).unwrap();
        for (i, c) in chunks.iter().enumerate() {
            let copies = if rng.below(100) < plan.duplicate_pct {
                2
            } else {
                1
            };
            for _ in 0..copies {
                ws.send_binary(encode_chunk_frame(&id, None, c)).await;
                let ack = ws.recv().await;
                assert_eq!(ack["type"], "chunkAck", "{ack}");
                assert_eq!(ack["index"], i, "{ack}");
            }
        }
        return;
    }
    let mut jobs: Vec<(u32, u64)> = Vec::new();
    for seq in 0..chunks.len() as u32 {
        jobs.push((seq, rng.below(plan.max_delay_ms + 1)));
        if rng.below(100) < plan.duplicate_pct {
            jobs.push((seq, rng.below(plan.max_delay_ms + 1)));
        }
    }
    rng.shuffle(&mut jobs);
    // Each lane is one worker: its own instance and, for WebSocket, its own connection.
    let lanes: Vec<Vec<(usize, (u32, u64))>> = (0..plan.in_flight)
        .map(|lane| {
            jobs.iter()
                .copied()
                .enumerate()
                .filter(|(n, _)| n % plan.in_flight == lane)
                .collect()
        })
        .collect();
    futures::stream::iter(lanes.into_iter().enumerate())
        .for_each_concurrent(None, |(lane, jobs)| async move {
            let mut ws = match path {
                Path::WsSeq => Some(authed_ws(client, lane, rec).await),
                _ => None,
            };
            for (n, (seq, delay)) in jobs {
                tokio::time::sleep(Duration::from_millis(delay)).await;
                let bytes = chunks[seq as usize].clone();
                let index = match path {
                    Path::Server => {
                        client.put_chunk(n, rec, seq, bytes).await.expect(200)["index"].clone()
                    }
                    Path::Presigned => client.presigned_chunk(n, rec, seq, bytes).await.expect(200)
                        ["index"]
                        .clone(),
                    Path::WsSeq => {
                        let ws = ws.as_mut().unwrap();
                        let id = RecordingId::parse(&rec.id).unwrap();
                        ws.send_binary(encode_chunk_frame(&id, Some(seq), &bytes))
                            .await;
                        let ack = ws.recv().await;
                        assert_eq!(ack["type"], "chunkAck", "{ack}");
                        ack["index"].clone()
                    }
                    Path::WsNext => unreachable!(),
                };
                assert_eq!(index, seq, "chunk {seq} got index {index}");
            }
        })
        .await;
}

pub async fn authed_ws(client: &Client, n: usize, rec: &Rec) -> Ws {
    let mut ws = Ws::connect(&client.ws_url(n)).await;
    let reply = ws
        .call(json!({ "type": "auth", "recordingId": rec.id, "token": rec.token }))
        .await;
    assert_eq!(reply["type"], "authorized", "{reply}");
    ws
}

/// SHA-256 of the stored chunk objects `0..count` concatenated in index order.
pub async fn stored_sha256(store: &dyn ObjectStore, rec: &Rec, count: u32) -> String {
    let id = RecordingId::parse(&rec.id).unwrap();
    let mut h = Sha256::new();
    for i in 0..count {
        let key = ObjectKey::chunk(&id, ChunkIndex::new(i));
        let bytes = read_all(store, &key, None)
            .await
            .unwrap_or_else(|e| panic!("reading {key}: {e}"));
        h.update(&bytes);
    }
    hex::encode(h.finalize())
}
