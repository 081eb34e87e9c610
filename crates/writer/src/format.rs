//! The lake's format version, `_joblake/format.json`: which layout of the lake's truth a
//! joblake may read and write. Format 1 (no marker) kept each table's checkpoint in
//! `_joblake/state/`; format 2 makes every table a Delta table whose log holds it. A joblake
//! refuses a lake of a newer format than it knows, before it changes anything; the first
//! commit to an older (or new) lake records the format it writes.

use serde::{Deserialize, Serialize};

use crate::{Error, Lake, Result, layout};

/// The format this joblake writes.
pub const FORMAT: u32 = 2;

#[derive(Debug, Serialize, Deserialize)]
struct Marker {
    format: u32,
    /// The joblake that recorded it, for the message an older one gives.
    written_by: String,
}

/// Fails with [`Error::NewerLake`] when the lake's format is newer than [`FORMAT`].
pub async fn check(lake: &Lake) -> Result<()> {
    match read(lake).await? {
        Some(m) if m.format > FORMAT => Err(Error::NewerLake {
            lake: lake.url(),
            found: m.format,
            known: FORMAT,
            written_by: m.written_by,
        }),
        _ => Ok(()),
    }
}

/// Records [`FORMAT`] as the lake's (the lake lock is held), after [`check`].
pub(crate) async fn record(lake: &Lake) -> Result<()> {
    check(lake).await?;
    if read(lake).await?.is_some_and(|m| m.format == FORMAT) {
        return Ok(());
    }
    let marker = Marker {
        format: FORMAT,
        written_by: format!("joblake {}", env!("CARGO_PKG_VERSION")),
    };
    let bytes = serde_json::to_vec_pretty(&marker).expect("the marker serialises");
    lake.put(&layout::format(), bytes.into()).await
}

async fn read(lake: &Lake) -> Result<Option<Marker>> {
    let Some(bytes) = lake.get_opt(&layout::format()).await? else {
        return Ok(None);
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| Error::CorruptState {
            path: lake.reader_path(layout::format().as_ref()),
            detail: e.to_string(),
        })
}
