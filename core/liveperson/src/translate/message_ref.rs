//! Switchboard's id of an outbound event that came from a sequenced agent event:
//! `lp:{conversation}:{dialog}:{sequence}`. It carries the event's coordinates, so a channel's
//! receipt or button click (which hands the id back) finds its way to the agent's event.

use crate::send_api::DialogRef;

/// The id of the agent event `sequence` of `dialog`.
pub fn message_ref(dialog: &DialogRef, sequence: i64) -> String {
    format!(
        "lp:{}:{}:{sequence}",
        dialog.conversation_id, dialog.dialog_id
    )
}

/// Reads a [`message_ref`] back; `None` for any other id (a channel's own, or a mangled one).
pub fn parse_message_ref(id: &str) -> Option<(DialogRef, i64)> {
    let rest = id.strip_prefix("lp:")?;
    let (rest, sequence) = rest.rsplit_once(':')?;
    let (conversation_id, dialog_id) = rest.split_once(':')?;
    Some((
        DialogRef {
            conversation_id: conversation_id.to_owned(),
            dialog_id: dialog_id.to_owned(),
        },
        sequence.parse().ok()?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_refs_round_trip() {
        let d = DialogRef {
            conversation_id: "c-1".into(),
            dialog_id: "d-2".into(),
        };
        assert_eq!(message_ref(&d, 7), "lp:c-1:d-2:7");
        assert_eq!(parse_message_ref(&message_ref(&d, 7)), Some((d, 7)));
        assert_eq!(parse_message_ref("3f2a-uuid"), None);
        assert_eq!(parse_message_ref("lp:c:d:x"), None);
        assert_eq!(parse_message_ref("lp:c:7"), None);
    }
}
