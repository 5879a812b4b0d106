//! `switchboard trace`: the timeline of the events a key names, read from the store (so it
//! works while the connector runs, and sees every instance sharing the store).

use serde_json::{Value, json};
use switchboard_store::{Store, TraceRecord, redact_url};
use time::format_description::BorrowedFormatItem;
use time::macros::format_description;

use crate::config::LoadedConfig;

/// The most rows naming the key that are followed to their events (a busy consumer's
/// address names many).
pub const KEY_ROWS: usize = 1000;

/// Why `switchboard trace` printed no timeline.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    /// The store could not be opened (exit status 2).
    #[error("cannot open the store at `{url}`: {source}")]
    Store {
        /// The URL, its password redacted.
        url: String,
        /// Why.
        #[source]
        source: switchboard_store::StoreError,
    },
    /// The configuration names an SQLite file that does not exist (exit status 2): opening
    /// it would create an empty store instead of reading the connector's.
    #[error("no store at `{url}`: the file does not exist (is `store.url` the connector's?)")]
    Missing {
        /// The URL.
        url: String,
    },
    /// The store could be opened but not read.
    #[error("cannot read the trace from the store at `{url}`: {source}")]
    Read {
        /// The URL, its password redacted.
        url: String,
        /// Why.
        #[source]
        source: switchboard_store::StoreError,
    },
    /// Nothing in the trace names the key (exit status 1).
    #[error(
        "no event found for `{key}` in the trace (kept {retention}): expected a platform message id, a LivePerson conversation id or a consumer address `<instance>:<id>`"
    )]
    NoMatch {
        /// The key asked for.
        key: String,
        /// How long rows are kept, for the message.
        retention: String,
    },
    /// Tracing is off and nothing is kept (exit status 1).
    #[error(
        "tracing is off (`store.trace_retention` in {file}): no timeline is recorded, so none can be shown for `{key}`"
    )]
    Off {
        /// The key asked for.
        key: String,
        /// The config file.
        file: String,
    },
}

impl TraceError {
    /// 2 when the store could not be opened, 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            TraceError::Store { .. } | TraceError::Missing { .. } => 2,
            _ => 1,
        }
    }
}

/// Looks `key` up and prints its timeline (a table, or `{"events": […]}` with `json`).
pub async fn run(
    loaded: &LoadedConfig,
    file: &std::path::Path,
    key: &str,
    json_out: bool,
) -> Result<(), TraceError> {
    let url = &loaded.config.store.url;
    let retention = loaded.config.store.trace_retention();
    if let Some(path) = sqlite_file(url)
        && !path.exists()
    {
        return Err(match retention {
            None => TraceError::Off {
                key: key.to_owned(),
                file: file.display().to_string(),
            },
            Some(_) => TraceError::Missing {
                url: redact_url(url),
            },
        });
    }
    let store = Store::connect(url)
        .await
        .map_err(|source| TraceError::Store {
            url: redact_url(url),
            source,
        })?;
    let records = store
        .trace_lookup(key, KEY_ROWS)
        .await
        .map_err(|source| TraceError::Read {
            url: redact_url(url),
            source,
        });
    store.close().await;
    let records = records?;
    if records.is_empty() {
        return Err(match retention {
            None => TraceError::Off {
                key: key.to_owned(),
                file: file.display().to_string(),
            },
            Some(d) => TraceError::NoMatch {
                key: key.to_owned(),
                retention: format!("{} s", d.as_secs()),
            },
        });
    }
    if json_out {
        let events: Vec<Value> = records.iter().map(to_json).collect();
        println!("{}", json!({ "events": events }));
    } else {
        if retention.is_none() {
            println!("note: tracing is off now (`store.trace_retention`); these rows are older");
        }
        print!("{}", table(&records));
    }
    Ok(())
}

/// The file of an SQLite URL (`sqlite://path`, `sqlite:path`, parameters after `?`), `None`
/// for PostgreSQL and in-memory databases.
fn sqlite_file(url: &str) -> Option<std::path::PathBuf> {
    let rest = url.strip_prefix("sqlite:")?;
    let rest = rest.strip_prefix("//").unwrap_or(rest);
    let path = rest.split('?').next().unwrap_or_default();
    if path.is_empty() || path == ":memory:" || url.contains("mode=memory") {
        return None;
    }
    Some(std::path::PathBuf::from(path))
}

/// One row as JSON.
pub fn to_json(record: &TraceRecord) -> Value {
    let e = &record.entry;
    json!({
        "at": rfc3339(record.at_ms),
        "instance": record.instance,
        "direction": switchboard_store::trace_direction(e.direction),
        "stage": e.stage.as_str(),
        "channel": e.channel,
        "consumer": e.consumer,
        "conversation_id": e.conversation_id,
        "platform_id": e.platform_id,
        "platform_alias": e.platform_alias,
        "item": e.item,
        "detail": e.detail,
    })
}

/// The timeline as an aligned table, one row per stage.
pub fn table(records: &[TraceRecord]) -> String {
    let headers = [
        "at",
        "instance",
        "direction",
        "stage",
        "channel",
        "item",
        "conversation",
        "platform id",
        "detail",
    ];
    let rows: Vec<[String; 9]> = records
        .iter()
        .map(|r| {
            let e = &r.entry;
            let dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".to_owned());
            [
                rfc3339(r.at_ms),
                r.instance.clone(),
                switchboard_store::trace_direction(e.direction).to_owned(),
                e.stage.as_str().to_owned(),
                dash(&e.channel),
                e.item.map_or_else(|| "-".to_owned(), |i| i.to_string()),
                dash(&e.conversation_id),
                dash(&e.platform_id),
                detail_text(&e.detail),
            ]
        })
        .collect();
    let mut widths = headers.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &[String]| {
        let mut out = String::new();
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            if i + 1 == cells.len() {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<w$}  "));
            }
        }
        out.trim_end().to_owned() + "\n"
    };
    let mut out = line(&headers.map(str::to_owned));
    for row in &rows {
        out.push_str(&line(row));
    }
    out
}

/// `key=value` pairs of a detail object, in its order.
fn detail_text(detail: &Value) -> String {
    match detail {
        Value::Object(map) => map
            .iter()
            .filter(|(_, v)| !v.is_null())
            .map(|(k, v)| match v {
                Value::String(s) => format!("{k}={s}"),
                other => format!("{k}={other}"),
            })
            .collect::<Vec<_>>()
            .join(" "),
        other => other.to_string(),
    }
}

/// The timeline's times: RFC 3339 (section 5.6, <https://www.rfc-editor.org/rfc/rfc3339#section-5.6>)
/// in UTC, always to the millisecond, so that the times of a timeline sort as text.
const RFC3339_MS: &[BorrowedFormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");

/// Unix milliseconds as RFC 3339 in UTC, to the millisecond. A time beyond four-digit years
/// (which no clock wrote) is printed as its number of milliseconds.
pub fn rfc3339(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|at| at.format(RFC3339_MS).ok())
        .unwrap_or_else(|| ms.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_urls_name_their_file() {
        assert_eq!(
            sqlite_file("sqlite://data/sb.db"),
            Some("data/sb.db".into())
        );
        assert_eq!(
            sqlite_file("sqlite:///var/lib/sb.db?mode=rwc"),
            Some("/var/lib/sb.db".into())
        );
        assert_eq!(sqlite_file("sqlite::memory:"), None);
        assert_eq!(sqlite_file("postgres://u@h/db"), None);
    }

    #[test]
    fn times_are_rfc3339_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(1_796_342_400_123), "2026-12-04T00:00:00.123Z");
        assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(rfc3339(-1), "1969-12-31T23:59:59.999Z");
        assert_eq!(rfc3339(253_402_300_799_999), "9999-12-31T23:59:59.999Z");
        assert_eq!(rfc3339(i64::MAX), i64::MAX.to_string());
    }
}
