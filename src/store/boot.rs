//! A power loss and the epoch: the one case where the file itself goes
//! back in time while pages still hold what they saw.
//!
//! With `--sync-ms N` (N > 0) a commit's output goes out before the commit
//! is synced to the disk. A crash of the *process* loses nothing of it (the
//! kernel's page cache keeps the log), but a power loss or a crash of the
//! *kernel* may: the file comes back without its last N ms of commits, and
//! the server would give their `seq`s again, to other messages. A page
//! that saw the lost ones would then take the new ones for messages it
//! already has, or show one `seq` with two texts.
//!
//! The file's epoch exists for a file that went back in time
//! (`wsrooms restore`): a page that knew another epoch starts its room
//! afresh. So a file that may have lost commits takes a new epoch too. It
//! may have, when the last process that had it open did not close it
//! (it was killed, or the machine went down) *and* ran in another boot of
//! the machine than this one: only a reboot comes between a power loss
//! and the next start, while after `kill -9` (same boot) nothing was lost
//! and the pages go on with `?since=N` as after a clean restart.
//!
//! The record: a `meta` row `open_in_boot` holding the boot's id (Linux's
//! `/proc/sys/kernel/random/boot_id`), written and synced when the file is
//! opened, before anything is served, and deleted at a clean close. On a
//! system without a boot id every start after an unclean stop takes a new
//! epoch (the safe side: pages reload their rooms).

use rusqlite::{Connection, OptionalExtension};

/// The `meta` key of the record.
const KEY: &str = "open_in_boot";

/// Where Linux tells the boot's id.
const BOOT_ID: &str = "/proc/sys/kernel/random/boot_id";

/// This boot's id, or `None` if the system does not tell it.
pub fn this_boot() -> Option<String> {
    let id = std::fs::read_to_string(BOOT_ID).ok()?;
    let id = id.trim();
    (!id.is_empty()).then(|| id.to_string())
}

/// What [`note_open`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LastStop {
    /// Closed cleanly, or a new file.
    Clean,
    /// Not closed, in this boot: a crash of the process (nothing lost).
    CrashedThisBoot,
    /// Not closed, in another boot (or no boot id to compare): commits
    /// not synced may be lost; the file took a new epoch.
    CrashedBeforeAReboot,
}

/// At open, in one transaction: judges how the last process let go of the
/// file, gives the file a new epoch if it may have lost commits (see the
/// module doc), and records that the file is open in `boot`. The caller
/// syncs the log afterwards, before serving anything.
pub fn note_open(conn: &Connection, boot: Option<&str>) -> rusqlite::Result<LastStop> {
    let tx = conn.unchecked_transaction()?;
    let last: Option<String> = tx
        .query_row("SELECT value FROM meta WHERE key = ?1", [KEY], |row| {
            row.get(0)
        })
        .optional()?;
    let stop = match (last, boot) {
        (None, _) => LastStop::Clean,
        (Some(last), Some(boot)) if last == boot => LastStop::CrashedThisBoot,
        (Some(_), _) => LastStop::CrashedBeforeAReboot,
    };
    if stop == LastStop::CrashedBeforeAReboot {
        tx.execute("UPDATE meta SET value = random() WHERE key = 'epoch'", [])?;
    }
    tx.execute(
        "INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)",
        (KEY, boot.unwrap_or("")),
    )?;
    tx.commit()?;
    Ok(stop)
}

/// At a clean close: the file is no longer open.
pub fn note_close(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute("DELETE FROM meta WHERE key = ?1", [KEY])
        .map(|_| ())
}
