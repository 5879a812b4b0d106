//! Slack's message markup ("mrkdwn") to plain text for LivePerson, and plain text to mrkdwn
//! for Slack.

/// Escapes plain text for a Slack `text` or mrkdwn field (`&`, `<`, `>` only, as Slack asks).
pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Turns mrkdwn into plain text: `<@U123>` becomes `@name` (through `user_name`), `<#C1|general>`
/// `#general`, `<https://x|label>` `label (https://x)`, `<!here>` `@here`, and the entities
/// `&amp;` `&lt;` `&gt;` their characters.
pub fn to_plain(text: &str, user_name: impl Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find('<') {
        out.push_str(&unescape(&rest[..start]));
        let Some(len) = rest[start..].find('>') else {
            out.push_str(&unescape(&rest[start..]));
            return out;
        };
        let inner = &rest[start + 1..start + len];
        let (target, label) = match inner.split_once('|') {
            Some((t, l)) => (t, Some(l)),
            None => (inner, None),
        };
        let rendered = if let Some(user) = target.strip_prefix('@') {
            format!(
                "@{}",
                label
                    .map(str::to_owned)
                    .or_else(|| user_name(user))
                    .unwrap_or_else(|| user.to_owned())
            )
        } else if let Some(channel) = target.strip_prefix('#') {
            format!("#{}", label.unwrap_or(channel))
        } else if let Some(special) = target.strip_prefix('!') {
            let name = special.split('^').next().unwrap_or(special);
            // Group mentions carry their label with the `@` (`<!subteam^S1|@team>`).
            format!("@{}", label.map_or(name, |l| l.trim_start_matches('@')))
        } else {
            let url = unescape(target);
            match label {
                Some(l) if unescape(l) != url => format!("{} ({url})", unescape(l)),
                _ => url,
            }
        };
        out.push_str(&rendered);
        rest = &rest[start + len + 1..];
    }
    out.push_str(&unescape(rest));
    out
}

fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// The user ids mentioned in mrkdwn (`<@U123>` without a label), to look their names up.
pub fn mentioned_users(text: &str) -> Vec<String> {
    let mut users = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("<@") {
        let after = &rest[start + 2..];
        let end = after.find(['>', '|']).unwrap_or(after.len());
        let id = &after[..end];
        if !id.is_empty() && after[end..].starts_with('>') && !users.iter().any(|u| u == id) {
            users.push(id.to_owned());
        }
        rest = &after[end..];
    }
    users
}
