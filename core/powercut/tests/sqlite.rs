//! The harness against SQLite itself: a commit synced before it returned survives the power
//! cut, one that was not does not.

use rusqlite::Connection;
use switchboard_powercut::Disk;

/// Commits `rows` single-row transactions with `synchronous` set as given, cuts the power,
/// and counts the rows in what survived.
fn rows_after_cut(synchronous: &str, rows: i64) -> i64 {
    let dir = tempfile::tempdir().unwrap();
    let disk = Disk::watch(dir.path()).unwrap();
    let path = dir.path().join("t.db");
    let conn = Connection::open(&path).unwrap();
    conn.pragma_update(None, "journal_mode", "WAL").unwrap();
    conn.pragma_update(None, "synchronous", synchronous)
        .unwrap();
    conn.execute("CREATE TABLE t (n INTEGER)", []).unwrap();
    disk.flush_all();
    for n in 0..rows {
        conn.execute("INSERT INTO t (n) VALUES (?1)", [n]).unwrap();
    }
    disk.power_cut();
    // The machine is off: nothing the process does now reaches the disk.
    assert!(conn.execute("INSERT INTO t (n) VALUES (-1)", []).is_err());
    drop(conn);
    let after = tempfile::tempdir().unwrap();
    disk.restore_into(after.path()).unwrap();
    let conn = Connection::open(after.path().join("t.db")).unwrap();
    conn.query_row("SELECT count(*) FROM t", [], |row| row.get(0))
        .unwrap()
}

#[test]
fn commits_synced_by_synchronous_full_survive_the_power_cut() {
    assert_eq!(rows_after_cut("FULL", 20), 20);
}

#[test]
fn commits_left_unsynced_by_synchronous_normal_are_lost_in_the_power_cut() {
    assert_eq!(rows_after_cut("NORMAL", 20), 0);
}

#[test]
fn files_outside_the_watched_directory_are_untouched_by_the_cut() {
    let watched = tempfile::tempdir().unwrap();
    let other = tempfile::tempdir().unwrap();
    let disk = Disk::watch(watched.path()).unwrap();
    let conn = Connection::open(other.path().join("o.db")).unwrap();
    conn.execute("CREATE TABLE t (n INTEGER)", []).unwrap();
    disk.power_cut();
    conn.execute("INSERT INTO t (n) VALUES (1)", []).unwrap();
}
