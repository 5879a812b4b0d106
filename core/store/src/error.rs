//! The store's error type.

use std::path::PathBuf;

/// Everything that can go wrong in the store.
///
/// Database URLs in messages are always redacted: passwords never appear.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The URL names no backend this store supports.
    #[error(
        "unsupported database URL `{url}`: expected `sqlite://FILE`, `sqlite::memory:` or `postgres://…`"
    )]
    UnsupportedUrl {
        /// The URL, with any password redacted.
        url: String,
    },
    /// The directory that should hold the SQLite file could not be created.
    #[error("cannot create the directory `{}` for the database file", path.display())]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// Why it failed.
        #[source]
        source: std::io::Error,
    },
    /// The URL could not be parsed or the database could not be reached.
    #[error("cannot connect to the database at `{url}`")]
    Connect {
        /// The URL, with any password redacted.
        url: String,
        /// Why it failed.
        #[source]
        source: sqlx::Error,
    },
    /// Applying the embedded schema migrations failed.
    #[error("cannot apply the store's schema migrations")]
    Migrate(#[source] sqlx::migrate::MigrateError),
    /// `store.sync` was given for PostgreSQL, which ignores it.
    #[error("`store.sync` applies to SQLite only: PostgreSQL makes commits durable itself")]
    SyncOnPostgres,
    /// The PostgreSQL session commits asynchronously (`synchronous_commit = off`): an event
    /// answered 2xx could be lost in a crash of the server.
    #[error(
        "the PostgreSQL database at `{url}` has `synchronous_commit = off`: commits would not be durable before Switchboard answers; set it to `on` (or `local`) for Switchboard's role or database"
    )]
    AsynchronousCommit {
        /// The URL, with any password redacted.
        url: String,
    },
    /// A query failed.
    #[error("database query failed")]
    Database(#[from] sqlx::Error),
    /// The SQLite writer thread could not be started.
    #[error("cannot start the SQLite writer thread")]
    WriterThread(#[source] std::io::Error),
    /// A write on the SQLite writer's own connection failed.
    #[error("database write failed")]
    Sqlite(#[from] rusqlite::Error),
    /// A stored value could not be interpreted (for example a payload that is not JSON).
    #[error("invalid data in table `{table}`: {detail}")]
    Corrupt {
        /// The table holding the value.
        table: &'static str,
        /// What is wrong with it.
        detail: String,
    },
}

/// The one way a database URL is shown (errors, logs, `switchboard check`, start-up lines):
/// the password of `user:password@host` and any `password=` parameter become `***`.
///
/// It must hold for URLs that are not valid too, since a mistyped one is exactly what gets
/// printed in an error: whatever stands between the first `:` of the user part and the last
/// `@` before the path is masked, with or without a well-formed `scheme://` in front
/// (`postgress:/bob:pw@db`, `bob:pw@db/app`), and a parameter named `password` (or ending in
/// `password`, as `sslpassword`) is masked wherever it is.
pub fn redact_url(url: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let mut out = redact_userinfo(base);
    if let Some(query) = query {
        out.push('?');
        let pairs: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((key, _)) if key.to_ascii_lowercase().ends_with("password") => {
                    format!("{key}=***")
                }
                _ => pair.to_owned(),
            })
            .collect();
        out.push_str(&pairs.join("&"));
    }
    out
}

/// Masks the password of the user part of `base` (a URL without its query).
fn redact_userinfo(base: &str) -> String {
    // The user part ends at the last `@`: a password may hold `@`, `/` or `#` unencoded, and
    // masking too much of a strange URL is better than showing a piece of a password.
    let Some(at) = base.rfind('@') else {
        return base.to_owned();
    };
    // It starts after `scheme://`; in a URL without one (mistyped, or no scheme at all),
    // everything after the first `:` before the `@` is masked, scheme and user included.
    let start = base.find("://").map_or(0, |i| i + 3).min(at);
    match base[start..at].find(':') {
        Some(colon) => format!("{}:***{}", &base[..start + colon], &base[at..]),
        None => base.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact_url("postgres://bob:s3cret@db:5432/app?sslmode=require"),
            "postgres://bob:***@db:5432/app?sslmode=require"
        );
        assert_eq!(
            redact_url("postgres://db/app?user=bob&password=s3cret"),
            "postgres://db/app?user=bob&password=***"
        );
        assert_eq!(redact_url("postgres://bob@db/app"), "postgres://bob@db/app");
        assert_eq!(redact_url("sqlite://data/sb.db"), "sqlite://data/sb.db");
    }

    #[test]
    fn mistyped_and_odd_urls_never_show_the_password() {
        for (url, shown) in [
            ("postgress://bob:pw-42@db/app", "postgress://bob:***@db/app"),
            ("postgres:/bob:pw-42@db/app", "postgres:***@db/app"),
            ("postgres:bob:pw-42@db/app", "postgres:***@db/app"),
            ("bob:pw-42@db/app", "bob:***@db/app"),
            (
                "postgres://bob:p@ss/w-42@db/app",
                "postgres://bob:***@db/app",
            ),
            (
                "postgres://bob:pw:42@db:5432/app",
                "postgres://bob:***@db:5432/app",
            ),
            (
                "postgres://db/app?sslpassword=pw-42&x=1",
                "postgres://db/app?sslpassword=***&x=1",
            ),
        ] {
            let redacted = redact_url(url);
            assert_eq!(redacted, shown, "{url}");
            assert!(
                !redacted.contains("pw-42") && !redacted.contains("42@"),
                "{redacted}"
            );
        }
    }
}
