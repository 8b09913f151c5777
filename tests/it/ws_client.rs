//! A minimal WebSocket client for the tests.

use futures::{SinkExt, StreamExt};
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

pub struct Ws {
    inner: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
}

impl Ws {
    pub async fn connect(url: &str) -> Self {
        Self::try_connect(url).await.unwrap()
    }

    /// Connect, or say why not (for clients that retry).
    pub async fn try_connect(url: &str) -> Result<Self, String> {
        let (inner, _) = tokio_tungstenite::connect_async(url)
            .await
            .map_err(|e| format!("connecting {url}: {e}"))?;
        Ok(Self { inner })
    }

    pub async fn send_json(&mut self, v: Value) {
        self.try_send_json(v).await.unwrap();
    }

    pub async fn try_send_json(&mut self, v: Value) -> Result<(), String> {
        self.send(Message::Text(v.to_string().into())).await
    }

    async fn send(&mut self, m: Message) -> Result<(), String> {
        self.inner.send(m).await.map_err(|e| e.to_string())
    }

    pub async fn send_text(&mut self, s: &str) {
        self.inner.send(Message::Text(s.into())).await.unwrap();
    }

    pub async fn send_binary(&mut self, b: Vec<u8>) {
        self.try_send_binary(b).await.unwrap();
    }

    pub async fn try_send_binary(&mut self, b: Vec<u8>) -> Result<(), String> {
        self.send(Message::Binary(b.into())).await
    }

    /// The next JSON text message (pings and pongs skipped).
    pub async fn recv(&mut self) -> Value {
        self.try_recv().await.unwrap()
    }

    /// The next JSON text message, or why there is none: no message within 30 s, the socket
    /// closed or broken, something else than JSON text.
    pub async fn try_recv(&mut self) -> Result<Value, String> {
        loop {
            let msg = tokio::time::timeout(std::time::Duration::from_secs(30), self.inner.next())
                .await
                .map_err(|_| "no WebSocket message within 30 s".to_owned())?
                .ok_or("WebSocket closed")?
                .map_err(|e| format!("WebSocket error: {e}"))?;
            match msg {
                Message::Text(t) => {
                    return serde_json::from_str(t.as_str()).map_err(|e| e.to_string());
                }
                Message::Ping(_) | Message::Pong(_) => continue,
                other => return Err(format!("unexpected message {other:?}")),
            }
        }
    }

    /// Connect with a tiny receive buffer, so the server feels a client that does not read.
    pub async fn connect_small_buffer(url: &str) -> Self {
        let addr = url
            .trim_start_matches("ws://")
            .split('/')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        let stream = socket.connect(addr).await.unwrap();
        let (inner, _) =
            tokio_tungstenite::client_async(url, tokio_tungstenite::MaybeTlsStream::Plain(stream))
                .await
                .unwrap();
        Self { inner }
    }

    /// Wait (at most 60 s in all) for the server to close the connection; its close code.
    pub async fn close_code(&mut self) -> Option<u16> {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            match tokio::time::timeout_at(deadline, self.inner.next())
                .await
                .expect("no close within 60 s")
            {
                Some(Ok(Message::Close(frame))) => return frame.map(|f| u16::from(f.code)),
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return None,
            }
        }
    }

    /// Send a JSON request and return its reply.
    pub async fn call(&mut self, v: Value) -> Value {
        self.send_json(v).await;
        self.recv().await
    }
}
