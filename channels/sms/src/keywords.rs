//! STOP / START / HELP: the opt-out keywords SMS consumers expect.
//!
//! The rule followed is the FCC's 47 CFR 64.1200(a)(10) (Federal Register 89 FR 15756,
//! 2024-03-05): a reply text using words such as "stop", "quit", "end", "revoke", "opt out",
//! "cancel" or "unsubscribe" revokes consent, and so does other wording a reasonable person
//! would read as a wish to stop; (a)(12) allows one confirmation text. The CTIA's Messaging
//! Principles add `STOPALL` and `HELP`.
//!
//! A consumer message whose whole text (trimmed, case-insensitive, a trailing `.` or `!`
//! ignored) is a keyword is handled here as well as forwarded:
//!
//! - opt-out (`STOP`, `STOPALL`, `STOP ALL`, `UNSUBSCRIBE`, `CANCEL`, `END`, `QUIT`,
//!   `REVOKE`, `OPT OUT`, `OPT-OUT`, `OPTOUT`): the consumer is recorded as opted out in the channel
//!   state (`optout:<number>`, durable, shared by every instance of the connector) and gets
//!   one confirmation. While opted out, `deliver` sends nothing and fails permanently, so that
//!   every agent message not sent shows as a dead letter with the reason.
//! - a **short message showing the intent** (see [`Keywords::classify`]: at most six words,
//!   no `?`, an opt-out word before a word about messages, or ending a message that is not a
//!   question (fillers such as "me", "now", "please" aside), and not negated — "stop texting
//!   me", "please unsubscribe me", "opt out now", but not "did it stop", "stop my order" or
//!   "I can't stop laughing") is an opt-out too. `END`, `CANCEL` and `QUIT` count only alone: "cancel my order" and "end of
//!   the month" are what a customer-care line hears every day.
//! - opt-in (`START`, `YES`, `UNSTOP`): for an opted-out consumer, the opt-out is lifted and
//!   confirmed once. From a consumer who is not opted out it is an ordinary message (`YES`
//!   is a common answer), with no automatic reply.
//! - help (`HELP`, `INFO`): the help text, at most once per number every `help_interval_secs`
//!   (an hour by default), so that two auto-responders never answer each other for ever.
//!
//! An opt-out or opt-in older than the consumer's current state (by the message's own time:
//! Kannel's `%T`, Vonage's `message-timestamp`) changes nothing: a replayed or late `START`
//! never undoes a later `STOP`.
//!
//! The replies carry the brand's name (`brand`), as carriers require of every program.
//!
//! The keyword message itself still reaches LivePerson as text (unless `forward = false`):
//! the agent sees in the transcript that the consumer opted out or asked for help, rather
//! than writing into a void.

use serde::Deserialize;
use switchboard_core::{ChannelConfig, ConfigError};

/// The default opt-out keywords: the FCC's list (47 CFR 64.1200(a)(10)) and the CTIA's
/// `STOPALL`, with the spellings consumers use.
pub const DEFAULT_OPT_OUT: &[&str] = &[
    "STOP",
    "STOPALL",
    "STOP ALL",
    "UNSUBSCRIBE",
    "CANCEL",
    "END",
    "QUIT",
    "REVOKE",
    "OPT OUT",
    "OPT-OUT",
    "OPTOUT",
];

/// Opt-out words that count only as a whole message, never inside a sentence: everyday words
/// on a customer-care line ("cancel my order", "end of the month", "quit the app").
pub const WHOLE_MESSAGE_ONLY: &[&str] = &["cancel", "end", "quit"];

/// The most words a message may have to be read as an opt-out by its intent.
pub const INTENT_MAX_WORDS: usize = 6;

/// Words that negate the opt-out word right after them ("don't stop", "can't stop").
const NEGATIONS: &[&str] = &[
    "not",
    "never",
    "don't",
    "dont",
    "didn't",
    "didnt",
    "doesn't",
    "doesnt",
    "won't",
    "wont",
    "can't",
    "cant",
    "cannot",
    "couldn't",
    "wouldn't",
    "shouldn't",
    "isn't",
    "wasn't",
];

/// Words that make a message a question ("did it stop", "will it end").
const QUESTION_STARTS: &[&str] = &[
    "did", "does", "do", "will", "when", "why", "how", "what", "can", "could", "is", "are", "has",
    "have", "should", "would", "where", "who",
];

/// Words about messages that, after an opt-out word, show the intent wherever it stands, even
/// in a request ("can you stop texting me").
const ABOUT_MESSAGES: &[&str] = &[
    "text",
    "texts",
    "texting",
    "message",
    "messages",
    "messaging",
    "msg",
    "msgs",
    "sms",
    "contacting",
    "sending",
    "calling",
];

/// Words that, after an opt-out word, keep it the point of the message ("stop it now",
/// "unsubscribe me please").
const FILLERS: &[&str] = &[
    "me", "now", "please", "pls", "plz", "it", "all", "this", "these",
];

/// The default time between two help replies to one number, in seconds.
pub const DEFAULT_HELP_INTERVAL_SECS: u64 = 3600;
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
    /// The brand's (program's) name, put before the default replies (`ACME: You are
    /// unsubscribed…`) and in place of `{brand}` in custom ones. Carriers require it.
    #[serde(default)]
    pub brand: Option<String>,
    /// Read short messages that show the intent ("stop texting me") as opt-outs. Default
    /// true.
    #[serde(default)]
    pub match_intent: Option<bool>,
    /// The least time between two help replies to one number, in seconds (60 to 86400).
    /// Default 3600.
    #[serde(default)]
    pub help_interval_secs: Option<u64>,
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
    /// Short messages showing the intent are opt-outs.
    pub match_intent: bool,
    /// The least time between two help replies to one number, in seconds.
    pub help_interval_secs: u64,
    /// The brand's name, if configured.
    pub brand: Option<String>,
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
            match_intent: true,
            help_interval_secs: DEFAULT_HELP_INTERVAL_SECS,
            brand: None,
        }
    }
}

/// The words of a message for intent matching: lower-cased, curly apostrophes made straight,
/// punctuation around each word removed.
fn words(text: &str) -> Vec<String> {
    text.to_lowercase()
        .replace(['\u{2019}', '\u{2018}'], "'")
        .split_whitespace()
        .map(|w| {
            w.trim_matches(|c: char| !c.is_alphanumeric() && c != '\'')
                .to_owned()
        })
        .filter(|w| !w.is_empty())
        .collect()
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
        let brand = match self.brand.as_deref().map(str::trim) {
            None => None,
            Some(b)
                if !b.is_empty() && b.chars().count() <= 30 && !b.chars().any(char::is_control) =>
            {
                Some(b.to_owned())
            }
            Some(_) => {
                return Err(config.error(
                    "keywords.brand",
                    "must be the brand's name, 1 to 30 printable characters",
                ));
            }
        };
        let text = |key: &str, given: Option<String>, default: &str| match given {
            None => Ok(match &brand {
                Some(b) => format!("{b}: {default}"),
                None => default.to_owned(),
            }),
            Some(t) if !t.trim().is_empty() && t.chars().count() <= 640 => {
                match (&brand, t.contains("{brand}")) {
                    (Some(b), true) => Ok(t.trim().replace("{brand}", b)),
                    (None, true) => Err(config.error(
                        "keywords.brand",
                        format!("required: keywords.{key} uses {{brand}}"),
                    )),
                    (_, false) => Ok(t.trim().to_owned()),
                }
            }
            Some(_) => Err(config.error(
                &format!("keywords.{key}"),
                "must be a text of 1 to 640 characters",
            )),
        };
        let help_interval_secs = match self.help_interval_secs {
            None => DEFAULT_HELP_INTERVAL_SECS,
            Some(s) if (60..=86_400).contains(&s) => s,
            Some(_) => {
                return Err(config.error(
                    "keywords.help_interval_secs",
                    "must be between 60 and 86400 (a help reply to every message lets two \
                     auto-responders answer each other for ever)",
                ));
            }
        };
        let enabled = self.enabled.unwrap_or(true);
        let defaults_used = self.opt_out_reply.is_none()
            || self.opt_in_reply.is_none()
            || self.help_reply.is_none();
        if enabled && brand.is_none() && defaults_used {
            tracing::warn!(
                instance = %config.instance,
                "channels.{}.keywords.brand is not set: carriers expect the brand's name in \
                 STOP and HELP replies",
                config.instance
            );
        }
        Ok(Keywords {
            enabled,
            opt_out_reply: text("opt_out_reply", self.opt_out_reply, DEFAULT_OPT_OUT_REPLY)?,
            opt_in_reply: text("opt_in_reply", self.opt_in_reply, DEFAULT_OPT_IN_REPLY)?,
            help_reply: text("help_reply", self.help_reply, DEFAULT_HELP_REPLY)?,
            forward: self.forward.unwrap_or(true),
            match_intent: self.match_intent.unwrap_or(true),
            help_interval_secs,
            opt_out,
            opt_in,
            help,
            brand,
        })
    }
}

impl Keywords {
    /// The keyword a message is (and keywords are enabled): its whole text is one, or, with
    /// `match_intent`, it is a short message showing the wish to opt out:
    ///
    /// - at most [`INTENT_MAX_WORDS`] words and no `?`;
    /// - an opt-out word or phrase (not one of [`WHOLE_MESSAGE_ONLY`]) followed by a word
    ///   about messages ("please stop texting me", "can you stop sending these"), or one that
    ///   ends the message or is followed by a filler ("I want to unsubscribe", "stop it now",
    ///   "unsubscribe me please") in a message that does not start as a question ("did it
    ///   stop"); "stop my order" is not one;
    /// - not right after a negation ("I can't stop laughing", "don't stop").
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
        } else if self.match_intent && self.shows_opt_out(text) {
            Some(Keyword::OptOut)
        } else {
            None
        }
    }

    /// The intent rule of [`Keywords::classify`].
    fn shows_opt_out(&self, text: &str) -> bool {
        if text.contains('?') {
            return false;
        }
        let words = words(text);
        if words.is_empty() || words.len() > INTENT_MAX_WORDS {
            return false;
        }
        let question = QUESTION_STARTS.contains(&words[0].as_str());
        self.opt_out
            .iter()
            .filter(|k| !WHOLE_MESSAGE_ONLY.contains(&k.as_str()))
            .any(|keyword| {
                let phrase: Vec<&str> = keyword.split(' ').collect();
                let n = phrase.len();
                words.len() >= n
                    && (0..=words.len() - n).any(|at| {
                        let found = words[at..at + n]
                            .iter()
                            .map(String::as_str)
                            .eq(phrase.iter().copied());
                        let negated = at > 0 && NEGATIONS.contains(&words[at - 1].as_str());
                        let next = words.get(at + n).map(String::as_str);
                        let about_messages = next.is_some_and(|w| ABOUT_MESSAGES.contains(&w));
                        let the_point = next.is_none_or(|w| FILLERS.contains(&w));
                        found && !negated && (about_messages || (the_point && !question))
                    })
            })
    }
}

/// The state key of a consumer's opt-out (value `"1"` while opted out).
pub(crate) fn opt_out_key(number: &str) -> String {
    format!("optout:{number}")
}

/// The state value of an opted-out consumer (followed by ` <ms>`, the time of the message
/// that opted them out; a bare `1` from earlier releases is read too).
pub(crate) const OPTED_OUT: &str = "1";
/// The state value of a consumer who opted in again (same form).
pub(crate) const OPTED_IN: &str = "0";

/// A consumer's opt-out state: opted out or not, and the time (Unix ms) of the message that
/// set it, if known.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct OptState {
    /// Opted out.
    pub(crate) opted_out: bool,
    /// When the deciding message was sent.
    pub(crate) at_ms: Option<i64>,
}

impl OptState {
    /// Reads a saved value (`1`, `0`, `1 <ms>`, `0 <ms>`); anything else is "not opted out".
    pub(crate) fn parse(value: &str) -> Self {
        let mut parts = value.split_whitespace();
        let opted_out = parts.next() == Some(OPTED_OUT);
        let at_ms = parts.next().and_then(|t| t.parse().ok());
        Self { opted_out, at_ms }
    }

    /// The value to save.
    pub(crate) fn value(self) -> String {
        let flag = if self.opted_out { OPTED_OUT } else { OPTED_IN };
        match self.at_ms {
            Some(ms) => format!("{flag} {ms}"),
            None => flag.to_owned(),
        }
    }

    /// Whether a keyword sent at `at_ms` may change this state: not when it is older than the
    /// message that set it (a replayed or late message).
    pub(crate) fn may_change(self, at_ms: i64) -> bool {
        self.at_ms.is_none_or(|set| at_ms >= set)
    }
}

/// The state key of the last help reply to a consumer (Unix seconds).
pub(crate) fn help_key(number: &str) -> String {
    format!("helpsent:{number}")
}
