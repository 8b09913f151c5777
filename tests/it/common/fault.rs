//! A fault-injecting proxy, between the instances and the S3 server or Redis.
//!
//! In HTTP mode it takes one request per connection (it asks the upstream to close after
//! answering, so that a response ends where the connection does) and, as told, adds latency,
//! answers with `503 SlowDown`, or resets both connections in the middle of a body. In TCP mode
//! (Redis) it only relays, or goes away: every connection is cut and new ones are refused.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Fault {
    None,
    /// Wait this long before each request goes on.
    Latency(Duration),
    /// Answer this percentage of requests with `503 SlowDown`.
    SlowDown(u64),
    /// Reset this percentage of connections in the middle of a body (the request's when it
    /// has one, else the response's).
    ResetMidBody(u64),
    /// Cut every connection and refuse new ones.
    Down,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Http,
    Tcp,
}

pub struct Proxy {
    pub addr: SocketAddr,
    fault: watch::Sender<Fault>,
    /// Requests (HTTP) or connections (TCP) the proxy spoiled on purpose.
    pub injected: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    pub async fn start(upstream: SocketAddr, mode: Mode) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (fault, faults) = watch::channel(Fault::None);
        let injected = Arc::new(AtomicU64::new(0));
        let counter = injected.clone();
        let task = tokio::spawn(async move {
            let mut n = 0u64;
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    continue;
                };
                n += 1;
                let faults = faults.clone();
                let counter = counter.clone();
                tokio::spawn(async move {
                    let _ = match mode {
                        Mode::Http => http(client, upstream, faults, counter, n).await,
                        Mode::Tcp => tcp(client, upstream, faults, counter).await,
                    };
                });
            }
        });
        Self {
            addr,
            fault,
            injected,
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn set(&self, fault: Fault) {
        self.fault.send_replace(fault);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Whether connection `n` is one of `percent` in a hundred (spread evenly, reproducibly).
fn picked(n: u64, percent: u64) -> bool {
    (n.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) % 100 < percent
}

/// Reset a connection (RST, not FIN).
fn reset(stream: TcpStream) {
    let _ = stream.set_zero_linger();
    drop(stream);
}

async fn tcp(
    client: TcpStream,
    upstream: SocketAddr,
    mut faults: watch::Receiver<Fault>,
    injected: Arc<AtomicU64>,
) -> std::io::Result<()> {
    if *faults.borrow() == Fault::Down {
        injected.fetch_add(1, Ordering::Relaxed);
        reset(client);
        return Ok(());
    }
    let mut client = client;
    let mut server = TcpStream::connect(upstream).await?;
    tokio::select! {
        copied = tokio::io::copy_bidirectional(&mut client, &mut server) => copied.map(|_| ()),
        _ = faults.wait_for(|f| *f == Fault::Down) => {
            injected.fetch_add(1, Ordering::Relaxed);
            reset(client);
            reset(server);
            Ok(())
        }
    }
}

/// The end of an HTTP head in `buf`, if it is all there.
fn head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

async fn http(
    mut client: TcpStream,
    upstream: SocketAddr,
    faults: watch::Receiver<Fault>,
    injected: Arc<AtomicU64>,
    n: u64,
) -> std::io::Result<()> {
    let fault = *faults.borrow();
    if fault == Fault::Down {
        reset(client);
        return Ok(());
    }
    // The request's head, and what of its body came with it.
    let mut buf = Vec::with_capacity(16 * 1024);
    let end = loop {
        if let Some(end) = head_end(&buf) {
            break end;
        }
        let mut piece = [0u8; 16 * 1024];
        let read = client.read(&mut piece).await?;
        if read == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&piece[..read]);
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    // One request per connection: the upstream closes after its answer.
    let mut rewritten: Vec<String> = head
        .trim_end()
        .lines()
        .filter(|l| !l.to_ascii_lowercase().starts_with("connection:"))
        .map(str::to_owned)
        .collect();
    rewritten.push("Connection: close".into());
    let head_out = format!("{}\r\n\r\n", rewritten.join("\r\n"));
    let mut body = buf[end..].to_vec();
    while body.len() < length {
        let mut piece = vec![0u8; (length - body.len()).min(256 * 1024)];
        let read = client.read(&mut piece).await?;
        if read == 0 {
            return Ok(());
        }
        body.extend_from_slice(&piece[..read]);
    }
    match fault {
        Fault::Latency(d) => tokio::time::sleep(d).await,
        Fault::SlowDown(p) if picked(n, p) => {
            injected.fetch_add(1, Ordering::Relaxed);
            let xml = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>";
            let answer = format!(
                "HTTP/1.1 503 Slow Down\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{xml}",
                xml.len()
            );
            client.write_all(answer.as_bytes()).await?;
            return client.shutdown().await;
        }
        _ => {}
    }
    let mut server = TcpStream::connect(upstream).await?;
    server.write_all(head_out.as_bytes()).await?;
    let cut = matches!(fault, Fault::ResetMidBody(p) if picked(n, p));
    if cut && !body.is_empty() {
        injected.fetch_add(1, Ordering::Relaxed);
        server.write_all(&body[..body.len() / 2]).await?;
        reset(server);
        reset(client);
        return Ok(());
    }
    server.write_all(&body).await?;
    // The answer, relayed until the upstream closes (or cut after its first kilobyte).
    let mut relayed = 0usize;
    let mut piece = vec![0u8; if cut { 1024 } else { 64 * 1024 }];
    loop {
        let read = server.read(&mut piece).await?;
        if read == 0 {
            break;
        }
        if cut && relayed > 0 {
            injected.fetch_add(1, Ordering::Relaxed);
            reset(server);
            reset(client);
            return Ok(());
        }
        client.write_all(&piece[..read]).await?;
        relayed += read;
    }
    client.shutdown().await
}
