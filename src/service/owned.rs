//! The owner's use cases: create as someone, reach a recording with either credential, list a
//! tenant's or an owner's recordings, delete one.

use std::net::IpAddr;

use futures::StreamExt;
use serde::Serialize;
use tracing::info;

use super::{Recordings, StatusView};
use crate::coord::RecordingMeta;
use crate::domain::{ObjectKey, Owner, RecordingId, Subject, UploadToken};
use crate::error::{Error, Result};
use crate::notify::EventKind;

/// Recordings read at once for a page of a listing.
const READS_IN_FLIGHT: usize = 16;
/// The longest page of a listing, and the default.
pub const MAX_PAGE: usize = 100;
pub const DEFAULT_PAGE: usize = 20;

/// A page of a listing, newest first; `next_cursor` asks for the next one.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Page {
    pub recordings: Vec<StatusView>,
    /// Pass as cursor for the next page; null on the last.
    pub next_cursor: Option<String>,
}

impl Recordings {
    /// Whom a new recording belongs to: the owner the credential speaks for, and, when the
    /// credential speaks for a whole tenant (an API key; anyone with `AUTH_MODE=none`), the
    /// owner the caller names. A JWT names its owner itself (`sub`).
    /// Each create counts against the owner's and the client address's create rate.
    pub async fn creator(
        &self,
        credential: Option<&str>,
        named: Option<&str>,
        client: Option<IpAddr>,
    ) -> Result<Owner> {
        let mut owner = self.owner_of(credential).await?;
        if let Some(named) = named {
            if owner.subject.is_some() {
                return Err(Error::InvalidOwner(
                    "the owner is the JWT's sub; do not name another".into(),
                ));
            }
            owner.subject = Some(Subject::parse(named)?);
        }
        self.throttle_create(&owner, client).await?;
        Ok(owner)
    }

    /// The owner an owner's credential (API key or JWT) speaks for. An upload token is refused:
    /// it reaches one recording's upload routes, not the owner's.
    pub async fn owner_of(&self, credential: Option<&str>) -> Result<Owner> {
        if !self.auth.is_open() && credential.is_some_and(|c| UploadToken::parse(c).is_ok()) {
            return Err(Error::Forbidden(
                "an upload token reaches its recording's upload routes only; this one needs the owner's API key or JWT".into(),
            ));
        }
        self.auth.owner(credential).await
    }

    /// A recording for the holder of either credential: its upload token, or its owner's API
    /// key or JWT. Another owner's recording is not found, exactly as a missing one.
    pub async fn access(
        &self,
        id: &RecordingId,
        credential: Option<&str>,
    ) -> Result<RecordingMeta> {
        match credential {
            Some(c) if !self.auth.is_open() && UploadToken::parse(c).is_err() => {
                let caller = self.auth.owner(Some(c)).await?;
                self.owned(id, &caller).await
            }
            token => self.authorize(id, token).await,
        }
    }

    /// `id`, if `caller` may see it.
    pub async fn owned(&self, id: &RecordingId, caller: &Owner) -> Result<RecordingMeta> {
        let meta = self
            .records
            .meta(id)
            .await?
            .filter(|meta| caller.may_see(&meta.owner))
            .ok_or(Error::RecordingNotFound)?;
        self.throttle_recording(id).await?;
        Ok(meta)
    }

    /// A page of `caller`'s recordings (its tenant's, or its own when it is one owner), newest
    /// first, after `cursor`. Read from the store's listings, so it needs nothing of the
    /// coordinator.
    pub async fn list(&self, caller: &Owner, limit: usize, cursor: Option<&str>) -> Result<Page> {
        let limit = limit.clamp(1, MAX_PAGE);
        let prefix = ObjectKey::listing_prefix(caller);
        let after = match cursor {
            Some(c) if ObjectKey::listed(c).is_some() => Some(format!("{prefix}{c}")),
            Some(_) => return Err(Error::InvalidCursor),
            None => None,
        };
        let listed = self
            .store()
            .list_from(&prefix, after.as_deref(), Some(limit))
            .await?;
        let names: Vec<&str> = listed
            .iter()
            .filter_map(|l| l.key.strip_prefix(&prefix))
            .collect();
        let next_cursor = (listed.len() == limit)
            .then(|| names.last().map(|n| (*n).to_owned()))
            .flatten();
        let ids: Vec<RecordingId> = names.iter().filter_map(|n| ObjectKey::listed(n)).collect();
        let metas: Vec<Result<Option<RecordingMeta>>> = futures::stream::iter(ids)
            .map(|id| async move { self.records.meta(&id).await })
            .buffered(READS_IN_FLIGHT)
            .collect()
            .await;
        let mut recordings = Vec::with_capacity(metas.len());
        for meta in metas {
            // Deleted since the listing: gone from it too.
            if let Some(meta) = meta? {
                recordings.push(self.view(&meta).await);
            }
        }
        Ok(Page {
            recordings,
            next_cursor,
        })
    }

    /// Delete `id` for `caller`: every object, all of its coordination state, a merge in
    /// flight stopped; subscribers hear `recordingDeleted`. Deleting a recording that is gone
    /// succeeds; another owner's is not found.
    pub async fn delete(&self, id: &RecordingId, caller: &Owner) -> Result<()> {
        let Some(meta) = self.records.meta(id).await? else {
            return Ok(());
        };
        if !caller.may_see(&meta.owner) {
            return Err(Error::RecordingNotFound);
        }
        // First the news, since the deletion removes the events with the rest.
        if let Err(e) = self.notifier.publish(id, EventKind::RecordingDeleted).await {
            tracing::warn!(recording_id = %id, error = %e, "recordingDeleted not published");
        }
        self.records.delete(id).await?;
        info!(recording_id = %id, tenant = caller.tenant.as_str(), "recording deleted");
        Ok(())
    }
}
