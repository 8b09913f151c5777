use std::fmt;

use crate::error::{Error, Result};

/// Where a recording is in its life:
///
/// ```text
/// recording ──stop──▶ stopping ──merge starts──▶ merging ──▶ ready
///     │                 ▲  │                         │
///     └──salvage────────┤  └───────────▶ failed ◀────┘
///                       └───salvage────────┘
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RecordingState {
    Recording,
    Stopping,
    Merging,
    Ready,
    Failed,
}

impl RecordingState {
    pub const ALL: [RecordingState; 5] = [
        Self::Recording,
        Self::Stopping,
        Self::Merging,
        Self::Ready,
        Self::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Recording => "recording",
            Self::Stopping => "stopping",
            Self::Merging => "merging",
            Self::Ready => "ready",
            Self::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|state| state.as_str() == s)
            .ok_or_else(|| Error::Internal(format!("unknown recording state {s:?}")))
    }

    /// Whether the state machine allows `self -> to`. A merge that is taken over after its
    /// lease expired moves `merging -> merging`; a salvage moves a failed recording back to
    /// `stopping`.
    pub fn can_become(self, to: RecordingState) -> bool {
        use RecordingState::*;
        matches!(
            (self, to),
            (Recording, Stopping)
                | (Stopping, Merging)
                | (Stopping, Failed)
                | (Merging, Merging)
                | (Merging, Ready)
                | (Merging, Failed)
                | (Failed, Stopping)
        )
    }

    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Ready | Self::Failed)
    }
}

impl fmt::Display for RecordingState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::RecordingState::*;
    use super::*;

    #[test]
    fn names_round_trip() {
        for s in RecordingState::ALL {
            assert_eq!(RecordingState::parse(s.as_str()).unwrap(), s);
        }
        assert!(RecordingState::parse("paused").is_err());
    }

    #[test]
    fn only_forward_transitions() {
        assert!(Recording.can_become(Stopping));
        assert!(Merging.can_become(Ready));
        assert!(!Ready.can_become(Merging));
        assert!(!Failed.can_become(Recording));
        assert!(Failed.can_become(Stopping));
        assert!(!Recording.can_become(Ready));
        assert!(!Stopping.can_become(Recording));
    }
}
