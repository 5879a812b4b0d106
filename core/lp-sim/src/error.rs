//! Errors returned by the simulator's Rust API.

/// An error from starting or driving the simulator.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SimError {
    /// Binding or serving the HTTP listener failed.
    #[error("simulator I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// The configuration or App Install Manifest is invalid.
    #[error("invalid simulator configuration: {0}")]
    Config(String),
    /// The embedded signing key could not be loaded (a bug in the crate).
    #[error("simulator key error: {0}")]
    Key(String),
    /// The simulator must be created inside a Tokio runtime.
    #[error("the simulator must be started inside a Tokio runtime")]
    NoRuntime,
    /// A control-API call named a conversation that does not exist.
    #[error("unknown conversation {0}")]
    UnknownConversation(String),
    /// A control-API call is not valid in the conversation's current state.
    #[error("invalid operation: {0}")]
    InvalidState(String),
    /// The agent side sent what the consumer's client did not announce in `Client-Properties`
    /// (`RICH_CONTENT` for structured content, `QUICK_REPLIES` for quick replies).
    #[error("the consumer's client did not announce {0} in Client-Properties")]
    NotAnnounced(&'static str),
}
