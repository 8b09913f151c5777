//! Notifier for the serverless mode: API Gateway holds the WebSockets, so events go out through
//! its Management API (`POST /@connections/{id}`, SigV4-signed by the AWS SDK). Which
//! connections follow a recording is kept in Redis, with a TTL (API Gateway closes a connection
//! after 2 hours) and cleanup on `$disconnect` and on `410 Gone`. Versions and history are the
//! Redis notifier's, so a reconnecting client gets what it missed.

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_apigatewaymanagement::Client;
use aws_sdk_apigatewaymanagement::error::SdkError;
use aws_sdk_apigatewaymanagement::primitives::Blob;
use redis::AsyncCommands;
use redis::aio::ConnectionManager;
use tracing::{debug, warn};

use super::{Event, EventKind, Notifier, RedisNotifier, Subscription};
use crate::domain::RecordingId;
use crate::error::{Error, Result};

/// API Gateway's longest connection.
const CONNECTION_TTL: Duration = Duration::from_secs(2 * 3600);
const ATTEMPTS: u32 = 3;

pub struct ApiGatewayNotifier {
    events: RedisNotifier,
    conn: ConnectionManager,
    prefix: String,
    client: Client,
}

/// An API Gateway connection id, checked before it reaches a Redis key or a URL.
fn check_connection_id(id: &str) -> Result<&str> {
    if !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"=+/_-".contains(&b))
    {
        Ok(id)
    } else {
        Err(Error::InvalidRecordingId("connection id is not valid"))
    }
}

impl ApiGatewayNotifier {
    /// `endpoint` is the WebSocket API stage's management endpoint
    /// (`https://{api-id}.execute-api.{region}.amazonaws.com/{stage}`).
    pub async fn connect(
        sdk: &aws_config::SdkConfig,
        redis_url: &str,
        prefix: &str,
        ttl: Duration,
        endpoint: &str,
    ) -> Result<Self> {
        let events = RedisNotifier::connect(redis_url, prefix, ttl).await?;
        let conn = events.connection().clone();
        // Retries are this adapter's own (`post`), so the SDK does not retry as well.
        let config = aws_sdk_apigatewaymanagement::config::Builder::from(sdk)
            .endpoint_url(endpoint)
            .retry_config(aws_sdk_apigatewaymanagement::config::retry::RetryConfig::disabled())
            .build();
        Ok(Self {
            events,
            conn,
            prefix: prefix.to_owned(),
            client: Client::from_conf(config),
        })
    }

    fn followers_key(&self, id: &RecordingId) -> String {
        format!("{}rec:{{{id}}}:conns", self.prefix)
    }

    fn connection_key(&self, connection_id: &str) -> String {
        format!("{}conn:{connection_id}", self.prefix)
    }

    /// A connection follows a recording (the `$default` route's subscribe).
    pub async fn register(&self, id: &RecordingId, connection_id: &str) -> Result<()> {
        let connection_id = check_connection_id(connection_id)?;
        let ttl = CONNECTION_TTL.as_secs() as i64;
        let (followers, recordings) = (self.followers_key(id), self.connection_key(connection_id));
        redis::pipe()
            .sadd(&followers, connection_id)
            .expire(&followers, ttl)
            .sadd(&recordings, id.as_str())
            .expire(&recordings, ttl)
            .query_async::<()>(&mut self.conn.clone())
            .await?;
        Ok(())
    }

    /// A connection is gone (`$disconnect`, or `410` from API Gateway): forget it everywhere.
    pub async fn unregister(&self, connection_id: &str) -> Result<()> {
        let connection_id = check_connection_id(connection_id)?;
        let mut conn = self.conn.clone();
        let key = self.connection_key(connection_id);
        let recordings: Vec<String> = conn.smembers(&key).await?;
        let mut pipe = redis::pipe();
        for rec in recordings {
            if let Ok(id) = RecordingId::parse(&rec) {
                pipe.srem(self.followers_key(&id), connection_id);
            }
        }
        pipe.del(&key);
        pipe.query_async::<()>(&mut conn).await?;
        Ok(())
    }

    /// A connection stops following one recording (`unsubscribe`).
    pub async fn unfollow(&self, id: &RecordingId, connection_id: &str) -> Result<()> {
        let connection_id = check_connection_id(connection_id)?;
        redis::pipe()
            .srem(self.followers_key(id), connection_id)
            .srem(self.connection_key(connection_id), id.as_str())
            .query_async::<()>(&mut self.conn.clone())
            .await?;
        Ok(())
    }

    /// The connections following a recording.
    pub async fn followers(&self, id: &RecordingId) -> Result<Vec<String>> {
        Ok(self.conn.clone().smembers(self.followers_key(id)).await?)
    }

    /// The recordings a connection follows.
    pub async fn following(&self, connection_id: &str) -> Result<Vec<String>> {
        let key = self.connection_key(check_connection_id(connection_id)?);
        Ok(self.conn.clone().smembers(key).await?)
    }

    /// The kept events of a recording after version `after` (a subscriber's replay).
    pub async fn history(&self, id: &RecordingId, after: u64) -> Result<Vec<Event>> {
        self.events.history(id, after).await
    }

    /// Send one message to one connection. `Ok(false)`: the connection is gone (and forgotten).
    pub async fn send(&self, connection_id: &str, body: &[u8]) -> Result<bool> {
        let sent = self.post(check_connection_id(connection_id)?, body).await?;
        if !sent {
            self.unregister(connection_id).await?;
        }
        Ok(sent)
    }

    /// Post one message to one connection, retrying transient failures with backoff.
    /// `Ok(false)`: the connection is gone.
    async fn post(&self, connection_id: &str, body: &[u8]) -> Result<bool> {
        let mut delay = Duration::from_millis(100);
        for attempt in 1..=ATTEMPTS {
            let sent = self
                .client
                .post_to_connection()
                .connection_id(connection_id)
                .data(Blob::new(body))
                .send()
                .await;
            match sent {
                Ok(_) => return Ok(true),
                Err(SdkError::ServiceError(e))
                    if e.err().is_gone_exception() || e.raw().status().as_u16() == 410 =>
                {
                    return Ok(false);
                }
                Err(e) if attempt < ATTEMPTS => {
                    debug!(connection_id, attempt, error = %e, "PostToConnection failed; retrying");
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                }
                Err(e) => {
                    return Err(Error::Internal(format!(
                        "PostToConnection {connection_id}: {}",
                        aws_sdk_apigatewaymanagement::error::DisplayErrorContext(e)
                    )));
                }
            }
        }
        unreachable!("the last attempt returns")
    }

    /// Deliver an event to every connection following its recording; drop the gone ones.
    async fn deliver(&self, id: &RecordingId, event: &Event) -> Result<()> {
        let body = serde_json::to_vec(event).expect("serializable");
        let followers = self.followers(id).await?;
        let results = futures::future::join_all(followers.iter().map(|c| {
            let body = &body;
            async move { (c, self.post(c, body).await) }
        }))
        .await;
        for (connection_id, result) in results {
            match result {
                Ok(true) => {}
                Ok(false) => {
                    debug!(connection_id, "connection gone; removed");
                    self.unregister(connection_id).await?;
                }
                Err(e) => warn!(recording_id = %id, error = %e, "event not delivered"),
            }
        }
        Ok(())
    }
}

#[async_trait]
impl Notifier for ApiGatewayNotifier {
    async fn publish(&self, id: &RecordingId, kind: EventKind) -> Result<Event> {
        let event = self.events.publish(id, kind).await?;
        self.deliver(id, &event).await?;
        Ok(event)
    }

    async fn subscribe(&self, id: &RecordingId, after: Option<u64>) -> Result<Subscription> {
        self.events.subscribe(id, after).await
    }

    async fn version(&self, id: &RecordingId) -> Result<u64> {
        self.events.version(id).await
    }
}

#[cfg(test)]
mod tests {
    use super::check_connection_id;

    #[test]
    fn connection_ids_are_checked() {
        assert!(check_connection_id("L0SM9cOFvHcCIhw=").is_ok());
        for bad in ["", "a b", "../x", "x:y", &"a".repeat(129)] {
            assert!(check_connection_id(bad).is_err(), "{bad:?}");
        }
    }
}
