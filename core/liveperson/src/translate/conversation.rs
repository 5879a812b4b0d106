//! Conversation changes to what the consumer's channel is told.

use switchboard_core::{ClosedBy, Outbound, OutboundEvent};

use crate::webhook::ConversationChange;

/// The consumer's notice of a conversation that `change` ends, or `None` when it does not end
/// it ([`ConversationChange::ends_conversation`]). Its id, `closed:{conversation}`, is the same
/// for every notification of that close. Who closed it is `closeReason`
/// (docs/protocol/liveperson.md §7.4.2); no reason, or one not listed there, counts as the
/// agent's.
pub fn closed_event(change: &ConversationChange) -> Option<OutboundEvent> {
    if !change.ends_conversation() {
        return None;
    }
    let by = match change.close_reason.as_deref() {
        Some("CONSUMER") => ClosedBy::Consumer,
        Some("SYSTEM") | Some("TIMEOUT") => ClosedBy::System,
        _ => ClosedBy::Agent,
    };
    Some(OutboundEvent::new(
        format!("closed:{}", change.conversation_id),
        Outbound::Closed { by },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(
        change_type: &str,
        stage: Option<&str>,
        close_reason: Option<&str>,
    ) -> ConversationChange {
        ConversationChange {
            change_type: change_type.into(),
            conversation_id: "conv-1".into(),
            state: stage.map(str::to_owned),
            stage: stage.map(str::to_owned),
            close_reason: close_reason.map(str::to_owned),
            skill_id: None,
            consumer_id: None,
            assigned_agents: Vec::new(),
            dialogs: Vec::new(),
            last_update_ms: None,
        }
    }

    #[test]
    fn a_close_says_who_closed_it_and_an_open_conversation_says_nothing() {
        let closed = |reason| closed_event(&change("UPSERT", Some("CLOSE"), reason));
        for (reason, by) in [
            (Some("CONSUMER"), ClosedBy::Consumer),
            (Some("SYSTEM"), ClosedBy::System),
            (Some("TIMEOUT"), ClosedBy::System),
            (Some("AGENT"), ClosedBy::Agent),
            (None, ClosedBy::Agent),
        ] {
            assert_eq!(
                closed(reason),
                Some(OutboundEvent::new("closed:conv-1", Outbound::Closed { by })),
                "{reason:?}"
            );
        }
        assert_eq!(closed_event(&change("UPSERT", Some("OPEN"), None)), None);
        // A DELETE that shows the conversation open is not a close; one without a state is.
        assert_eq!(closed_event(&change("DELETE", Some("OPEN"), None)), None);
        assert!(closed_event(&change("DELETE", None, None)).is_some());
    }
}
