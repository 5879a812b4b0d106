//! Translation between Switchboard's canonical events and LivePerson's, both ways, without
//! I/O: the code the router runs and the benchmarks measure.
//!
//! - [`plan`] ([`consumer`]): a consumer event to the Send API requests it becomes;
//!   [`delivered`]: the receipts of an agent event the consumer's channel delivered.
//! - [`agent_event`]: an agent messaging event to what the consumer's channel delivers.
//! - [`closed_event`]: a conversation change that ends a conversation to the consumer's notice.
//! - [`message_ref`]: the id of an outbound event that came from an agent event, through which
//!   receipts and clicks find it again.
//! - [`upload_file_type`], [`mime_of_file_type`]: LivePerson's `fileType` names.

mod agent;
pub mod consumer;
mod conversation;
mod files;
mod message_ref;

pub use agent::{AgentEvent, agent_event};
pub use consumer::{Needs, Step, Upload, chat_state, delivered, needs, plan};
pub use conversation::closed_event;
pub use files::{MAX_UPLOAD_BYTES, mime_of_file_type, upload_file_type};
pub use message_ref::{message_ref, parse_message_ref};
