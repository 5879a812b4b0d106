//! LivePerson's webhooks: authentication on raw bytes, then lenient parsing into typed changes.

mod notification;
mod verify;

pub use notification::{
    Audience, ConversationChange, DialogInfo, MessageChange, MessageEvent, Notification,
    NotificationChange, Role, parse,
};
pub use verify::{ACCOUNT_HEADER, CLIENT_HEADER, SIGNATURE_HEADER, sign_sha1, sign_sha256, verify};
