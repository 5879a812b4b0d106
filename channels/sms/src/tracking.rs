//! What the channel remembers about each agent message it sends, in the runtime's store (so
//! every connector instance, and the same one after a restart, finds it):
//!
//! - its **reference**: 20 hex digits of the SHA-256 of our message id. Each gateway call of
//!   the message carries `<reference>.<piece>` (Kannel in the `dlr-url`, Vonage as
//!   `client-ref`), short whatever LivePerson's ids look like: Kannel's SQL DLR storages keep
//!   the dlr-url in a `varchar(255)` column (Kannel's `doc/examples/dlr-mysql.conf`,
//!   `dlr-sdb.conf`), and Vonage caps `client-ref` at 40 characters (`definitions/sms.yml`);
//! - the **record** under `sms:<reference>`: the message id and the consumer's number (what a
//!   delivery report maps back to), how many pieces went, and the piece whose gateway call is
//!   in flight or ended without an answer (an *uncertain* send);
//! - the **reports** under `dlrseen:<reference>.<piece>`: the last report the gateway sent for
//!   a piece. Any report proves the gateway took the piece, so an uncertain send that has one
//!   is not sent again.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use switchboard_core::{ChannelContext, SubmitError};

/// Hex digits of a reference (80 bits: collisions between a channel's messages are out of
/// reach).
const REFERENCE_DIGITS: usize = 20;

/// The reference of one of our message ids.
pub fn reference(message_id: &str) -> String {
    let digest = hex::encode(Sha256::digest(message_id.as_bytes()));
    digest[..REFERENCE_DIGITS].to_owned()
}

/// What one gateway call of a message carries: `<reference>.<piece>`.
pub fn piece_ref(reference: &str, piece: usize) -> String {
    format!("{reference}.{piece}")
}

/// Reads a [`piece_ref`] back into the reference and the piece. `None` for anything else
/// (references of older versions, other systems' references).
pub fn parse_piece_ref(value: &str) -> Option<(&str, usize)> {
    let (reference, piece) = value.split_once('.')?;
    let hex = reference.len() == REFERENCE_DIGITS
        && reference
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    let piece = piece
        .parse::<usize>()
        .ok()
        .filter(|_| !piece.is_empty() && piece.bytes().all(|b| b.is_ascii_digit()))?;
    hex.then_some((reference, piece))
}

/// The piece whose gateway call started without a known outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sending {
    /// The piece.
    pub piece: usize,
    /// When its call started, in Unix seconds.
    pub at: i64,
}

/// What the store keeps about one agent message.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Record {
    /// Our message id.
    #[serde(rename = "m")]
    pub message: String,
    /// The consumer's number, normalised.
    #[serde(rename = "c")]
    pub consumer: String,
    /// Pieces known to have reached the gateway, from the first.
    #[serde(rename = "done", default)]
    pub done: usize,
    /// The piece whose call started and did not end with a known outcome.
    #[serde(rename = "sending", default, skip_serializing_if = "Option::is_none")]
    pub sending: Option<Sending>,
}

fn record_key(reference: &str) -> String {
    format!("sms:{reference}")
}

fn report_key(piece_ref: &str) -> String {
    format!("dlrseen:{piece_ref}")
}

/// The record of a message, by reference. An unreadable value counts as none.
pub async fn load(ctx: &ChannelContext, reference: &str) -> Result<Option<Record>, SubmitError> {
    Ok(ctx
        .load_state(&record_key(reference))
        .await?
        .filter(|v| !v.is_empty())
        .and_then(|v| serde_json::from_str(&v).ok()))
}

/// Saves the record of a message.
pub async fn save(
    ctx: &ChannelContext,
    reference: &str,
    record: &Record,
) -> Result<(), SubmitError> {
    let value = serde_json::to_string(record).unwrap_or_default();
    ctx.save_state(&record_key(reference), &value).await
}

/// Remembers the gateway's latest report for one piece (the proof that it took the piece).
pub async fn save_report(
    ctx: &ChannelContext,
    piece_ref: &str,
    status: &str,
) -> Result<(), SubmitError> {
    ctx.save_state(&report_key(piece_ref), status).await
}

/// The gateway's latest report for one piece, if any came.
pub async fn report(ctx: &ChannelContext, piece_ref: &str) -> Result<Option<String>, SubmitError> {
    Ok(ctx
        .load_state(&report_key(piece_ref))
        .await?
        .filter(|v| !v.is_empty()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn piece_refs_round_trip_and_stay_short() {
        let long =
            "lp:807fc65b-9755-401b-bb6f-ba599883d650:807fc65b-9755-401b-bb6f-ba599883d650:12";
        let r = reference(long);
        assert_eq!(r.len(), 20);
        let p = piece_ref(&r, 3);
        assert!(p.len() <= 40, "fits Vonage's client-ref");
        assert_eq!(parse_piece_ref(&p), Some((r.as_str(), 3)));
        assert_eq!(parse_piece_ref("out-42"), None);
        assert_eq!(parse_piece_ref("~abc"), None);
        assert_eq!(parse_piece_ref(&format!("{r}.")), None);
        assert_eq!(parse_piece_ref(&format!("{r}.+1")), None);
        assert_eq!(parse_piece_ref(&format!("{}.1", r.to_uppercase())), None);
    }
}
