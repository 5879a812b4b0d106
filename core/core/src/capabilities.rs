//! What a channel can render and report, so the runtime can degrade what it cannot.

use serde::{Deserialize, Serialize};

/// How well a channel supports one feature.
///
/// Graded rather than a yes/no: a channel may render buttons natively (`Full`), render some of
/// a card (`Partial`), turn it into text the consumer can still answer (`Fallback`), or not
/// carry it at all (`Unsupported`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Support {
    /// Rendered natively by the platform.
    Full,
    /// Rendered natively, but some parts are dropped or simplified.
    Partial,
    /// Not native: the channel renders a text version (for example numbered options).
    Fallback,
    /// Not carried at all; the runtime does not send it to this channel.
    #[default]
    Unsupported,
}

impl Support {
    /// True when the channel accepts events of this feature in some form.
    pub fn accepts(self) -> bool {
        !matches!(self, Support::Unsupported)
    }

    /// True when the channel renders the feature natively (fully or partly).
    pub fn native(self) -> bool {
        matches!(self, Support::Full | Support::Partial)
    }
}

/// What a channel can render (agent to consumer) and report (consumer to agent).
///
/// The runtime reads this to decide what to send: rich content goes to a channel without
/// native support as its text fallback, typing goes nowhere if unsupported, and so on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Capabilities {
    /// Plain text messages.
    pub text: Support,
    /// Cards, buttons and quick replies from the agent.
    pub rich_content: Support,
    /// Images sent by the agent.
    pub images: Support,
    /// Other files sent by the agent.
    pub files: Support,
    /// The agent's typing indicator.
    pub typing: Support,
    /// The platform reports that an agent message reached the consumer's device.
    pub delivery_receipts: bool,
    /// The platform reports that the consumer read an agent message.
    pub read_receipts: bool,
    /// The longest text one message may carry, in characters, if the platform has a limit.
    /// Longer texts are split by the channel itself; this is informative.
    pub max_text_chars: Option<usize>,
}

impl Capabilities {
    /// A text-only channel: no rich content, files, typing or receipts.
    pub fn text_only() -> Self {
        Self {
            text: Support::Full,
            rich_content: Support::Fallback,
            images: Support::Unsupported,
            files: Support::Unsupported,
            typing: Support::Unsupported,
            delivery_receipts: false,
            read_receipts: false,
            max_text_chars: None,
        }
    }

    /// Sets rich content support (builder style, since the struct is non-exhaustive).
    pub fn with_rich_content(mut self, s: Support) -> Self {
        self.rich_content = s;
        self
    }
    /// Sets image support.
    pub fn with_images(mut self, s: Support) -> Self {
        self.images = s;
        self
    }
    /// Sets file support.
    pub fn with_files(mut self, s: Support) -> Self {
        self.files = s;
        self
    }
    /// Sets typing indicator support.
    pub fn with_typing(mut self, s: Support) -> Self {
        self.typing = s;
        self
    }
    /// Declares delivery receipts.
    pub fn with_delivery_receipts(mut self, yes: bool) -> Self {
        self.delivery_receipts = yes;
        self
    }
    /// Declares read receipts.
    pub fn with_read_receipts(mut self, yes: bool) -> Self {
        self.read_receipts = yes;
        self
    }
    /// Declares the platform's text length limit.
    pub fn with_max_text_chars(mut self, n: usize) -> Self {
        self.max_text_chars = Some(n);
        self
    }
}
