//! STOP / START / HELP: the opt-out keywords SMS consumers expect (CTIA, carrier rules).
//!
//! A consumer message whose whole text (trimmed, case-insensitive, a trailing `.` or `!`
//! ignored) is a keyword is handled here as well as forwarded:
//!
//! - opt-out (`STOP`, `STOPALL`, `UNSUBSCRIBE`, `CANCEL`, `END`, `QUIT`): the consumer is
//!   recorded as opted out in the channel state (`optout:<number>`, durable, shared by every
//!   instance of the connector) and gets one confirmation. While opted out, `deliver` sends
//!   nothing and fails permanently, so that every agent message not sent shows as a dead
//!   letter with the reason.
//! - opt-in (`START`, `YES`, `UNSTOP`): for an opted-out consumer, the opt-out is lifted and
//!   confirmed once. From a consumer who is not opted out it is an ordinary message (`YES`
//!   is a common answer), with no automatic reply.
//! - help (`HELP`, `INFO`): the help text is sent every time.
//!
//! The keyword message itself still reaches LivePerson as text (unless `forward = false`):
//! the agent sees in the transcript that the consumer opted out or asked for help, rather
//! than writing into a void.

use serde::Deserialize;
use switchboard_core::{ChannelConfig, ConfigError};

/// The default opt-out keywords.
pub const DEFAULT_OPT_OUT: &[&str] = &["STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT"];
/// The default opt-in keywords.
pub const DEFAULT_OPT_IN: &[&str] = &["START", "YES", "UNSTOP"];
/// The default help keywords.
pub const DEFAULT_HELP: &[&str] = &["HELP", "INFO"];
/// The default confirmation of an opt-out.
pub const DEFAULT_OPT_OUT_REPLY: &str = "You are unsubscribed and will receive no more messages \
from us. Reply START to subscribe again.";
/// The default confirmation of an opt-in.
pub const DEFAULT_OPT_IN_REPLY: &str =
    "You are subscribed again. Reply STOP to unsubscribe, HELP for help.";
/// The default answer to a help keyword.
pub const DEFAULT_HELP_REPLY: &str = "Write your question and an agent will answer. \
Reply STOP to unsubscribe, START to subscribe again.";

/// The `[channels.<instance>.keywords]` table, as written in the file. Every key is optional.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeywordsConfig {
    /// Handle keywords at all. Default true; false when the gateway or carrier already does
    /// (then `deliver` does not check opt-outs either).
    #[serde(default)]
    pub enabled: Option<bool>,
    /// Words that opt a consumer out. Default `STOP STOPALL UNSUBSCRIBE CANCEL END QUIT`.
    #[serde(default)]
    pub opt_out: Option<Vec<String>>,
    /// Words that opt an opted-out consumer back in. Default `START YES UNSTOP`.
    #[serde(default)]
    pub opt_in: Option<Vec<String>>,
    /// Words that ask for the help text. Default `HELP INFO`.
    #[serde(default)]
    pub help: Option<Vec<String>>,
    /// The confirmation sent once when a consumer opts out.
    #[serde(default)]
    pub opt_out_reply: Option<String>,
    /// The confirmation sent once when an opted-out consumer opts in again.
    #[serde(default)]
    pub opt_in_reply: Option<String>,
    /// The answer to a help keyword.
    #[serde(default)]
    pub help_reply: Option<String>,
    /// Forward keyword messages to LivePerson as text, so the agent sees them. Default true.
    #[serde(default)]
    pub forward: Option<bool>,
}

/// Which keyword a message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keyword {
    /// Stop all messages.
    OptOut,
    /// Resume messages.
    OptIn,
    /// Send the help text.
    Help,
}

/// Validated keyword settings. Keywords are kept lower-cased.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keywords {
    /// Keywords are handled.
    pub enabled: bool,
    /// Opt-out words.
    pub opt_out: Vec<String>,
    /// Opt-in words.
    pub opt_in: Vec<String>,
    /// Help words.
    pub help: Vec<String>,
    /// The opt-out confirmation.
    pub opt_out_reply: String,
    /// The opt-in confirmation.
    pub opt_in_reply: String,
    /// The help text.
    pub help_reply: String,
    /// Keyword messages are forwarded to LivePerson.
    pub forward: bool,
}

impl Default for Keywords {
    fn default() -> Self {
        let words = |w: &[&str]| w.iter().map(|s| s.to_lowercase()).collect();
        Self {
            enabled: true,
            opt_out: words(DEFAULT_OPT_OUT),
            opt_in: words(DEFAULT_OPT_IN),
            help: words(DEFAULT_HELP),
            opt_out_reply: DEFAULT_OPT_OUT_REPLY.to_owned(),
            opt_in_reply: DEFAULT_OPT_IN_REPLY.to_owned(),
            help_reply: DEFAULT_HELP_REPLY.to_owned(),
            forward: true,
        }
    }
}

/// A message's text as compared with keywords: trimmed, lower-cased, without a trailing `.`
/// or `!`, inner white space collapsed.
fn comparable(text: &str) -> String {
    let t = text.trim().trim_end_matches(['.', '!']).trim();
    t.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

impl KeywordsConfig {
    /// Checks the lists and texts; errors name the key (`keywords.opt_out`).
    pub fn validate(self, config: &ChannelConfig) -> Result<Keywords, ConfigError> {
        let defaults = Keywords::default();
        let list = |key: &str, given: Option<Vec<String>>, default: Vec<String>| {
            let Some(given) = given else {
                return Ok(default);
            };
            let mut out: Vec<String> = Vec::with_capacity(given.len());
            for word in given {
                let w = comparable(&word);
                if w.is_empty() || w.chars().count() > 32 || w.chars().any(char::is_control) {
                    return Err(config.error(
                        &format!("keywords.{key}"),
                        "each keyword must be 1 to 32 printable characters",
                    ));
                }
                if !out.contains(&w) {
                    out.push(w);
                }
            }
            Ok(out)
        };
        let opt_out = list("opt_out", self.opt_out, defaults.opt_out)?;
        let opt_in = list("opt_in", self.opt_in, defaults.opt_in)?;
        let help = list("help", self.help, defaults.help)?;
        for (key, words, others) in [
            ("opt_in", &opt_in, &opt_out),
            ("help", &help, &opt_out),
            ("help", &help, &opt_in),
        ] {
            if let Some(w) = words.iter().find(|w| others.contains(w)) {
                return Err(config.error(
                    &format!("keywords.{key}"),
                    format!("`{w}` is in two keyword lists"),
                ));
            }
        }
        let text = |key: &str, given: Option<String>, default: String| match given {
            None => Ok(default),
            Some(t) if !t.trim().is_empty() && t.chars().count() <= 640 => Ok(t.trim().to_owned()),
            Some(_) => Err(config.error(
                &format!("keywords.{key}"),
                "must be a text of 1 to 640 characters",
            )),
        };
        Ok(Keywords {
            enabled: self.enabled.unwrap_or(true),
            opt_out_reply: text("opt_out_reply", self.opt_out_reply, defaults.opt_out_reply)?,
            opt_in_reply: text("opt_in_reply", self.opt_in_reply, defaults.opt_in_reply)?,
            help_reply: text("help_reply", self.help_reply, defaults.help_reply)?,
            forward: self.forward.unwrap_or(true),
            opt_out,
            opt_in,
            help,
        })
    }
}

impl Keywords {
    /// The keyword a message is, if its whole text is one (and keywords are enabled).
    pub fn classify(&self, text: &str) -> Option<Keyword> {
        if !self.enabled {
            return None;
        }
        let t = comparable(text);
        if t.is_empty() {
            None
        } else if self.opt_out.contains(&t) {
            Some(Keyword::OptOut)
        } else if self.opt_in.contains(&t) {
            Some(Keyword::OptIn)
        } else if self.help.contains(&t) {
            Some(Keyword::Help)
        } else {
            None
        }
    }
}

/// The state key of a consumer's opt-out (value `"1"` while opted out).
pub(crate) fn opt_out_key(number: &str) -> String {
    format!("optout:{number}")
}

/// The state value of an opted-out consumer.
pub(crate) const OPTED_OUT: &str = "1";
/// The state value of a consumer who opted in again.
pub(crate) const OPTED_IN: &str = "0";
