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

/// Replaces the password of a URL (`user:password@host`, `?password=`) with `***`.
pub(crate) fn redact_url(url: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let mut out = match base.find("://") {
        Some(scheme_end) => {
            let rest_start = scheme_end + 3;
            let rest = &base[rest_start..];
            let authority_end = rest.find(['/', '#']).unwrap_or(rest.len());
            let authority = &rest[..authority_end];
            match authority.rfind('@') {
                Some(at) => {
                    let userinfo = &authority[..at];
                    match userinfo.split_once(':') {
                        Some((user, _password)) => {
                            format!("{}{user}:***{}", &base[..rest_start], &rest[at..])
                        }
                        None => base.to_owned(),
                    }
                }
                None => base.to_owned(),
            }
        }
        None => base.to_owned(),
    };
    if let Some(query) = query {
        out.push('?');
        let pairs: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((key, _)) if key.eq_ignore_ascii_case("password") => format!("{key}=***"),
                _ => pair.to_owned(),
            })
            .collect();
        out.push_str(&pairs.join("&"));
    }
    out
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
}
