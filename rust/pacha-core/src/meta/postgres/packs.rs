//! The bucket's pack index (`store::PackIndex`) in the shared database: which small objects
//! live packed in which pack object of the bucket, at which bytes.

use std::collections::HashSet;
use std::time::{Duration, SystemTime};

use tokio_postgres::Row;

use super::tx::PgTx;
use super::PostgresMetaStore;
use crate::store::{PackIndex, PackedAt, Recorded};
use crate::{CoreError, Digest, Result};

fn hexes(digests: &[Digest]) -> Vec<String> {
    digests.iter().map(Digest::to_hex).collect()
}

fn size(value: i64, tx: &PgTx<'_>) -> Result<u64> {
    u64::try_from(value).map_err(|_| CoreError::Corrupt {
        message: format!(
            "{}: a negative size ({value}) in the pack index",
            tx.shown()
        ),
    })
}

/// (digest, pack, offset, size, seconds since the epoch the pack was recorded).
const PACKED_COLUMNS: &str = "p.digest, p.pack, p.\"offset\", p.size, \
     extract(epoch FROM k.created_at)::float8 FROM packed_objects p JOIN packs k ON k.digest = p.pack";

fn packed_at(tx: &PgTx<'_>, row: &Row) -> Result<(Digest, PackedAt)> {
    let seconds: f64 = tx.get(row, 4)?;
    let recorded = Duration::try_from_secs_f64(seconds)
        .ok()
        .and_then(|d| SystemTime::UNIX_EPOCH.checked_add(d));
    Ok((
        tx.digest(row, 0)?,
        PackedAt {
            pack: tx.digest(row, 1)?,
            offset: size(tx.get(row, 2)?, tx)?,
            size: size(tx.get(row, 3)?, tx)?,
            recorded,
        },
    ))
}

fn to_i64(n: u64) -> Result<i64> {
    super::to_bigint(n)
}

impl PackIndex for PostgresMetaStore {
    fn known(&self, digests: &[Digest]) -> Result<HashSet<Digest>> {
        let wanted = hexes(digests);
        self.read(|tx| {
            let rows = tx.query(
                "SELECT digest FROM objects WHERE digest = ANY($1) AND damaged_at IS NULL \
                 UNION SELECT p.digest FROM packed_objects p WHERE p.digest = ANY($1) \
                 AND NOT EXISTS (SELECT 1 FROM objects o \
                                 WHERE o.digest = p.digest AND o.damaged_at IS NOT NULL)",
                &[&wanted],
            )?;
            rows.iter().map(|row| tx.digest(row, 0)).collect()
        })
    }

    fn locate(&self, digests: &[Digest]) -> Result<Vec<(Digest, PackedAt)>> {
        let wanted = hexes(digests);
        self.read(|tx| {
            let rows = tx.query(
                &format!("SELECT {PACKED_COLUMNS} WHERE p.digest = ANY($1)"),
                &[&wanted],
            )?;
            rows.iter().map(|row| packed_at(tx, row)).collect()
        })
    }

    fn record_pack(
        &self,
        pack: &Digest,
        size: u64,
        members: &[(Digest, u64, u64)],
    ) -> Result<Vec<Digest>> {
        let pack = pack.to_hex();
        let pack_size = to_i64(size)?;
        let mut digests = Vec::with_capacity(members.len());
        let mut offsets = Vec::with_capacity(members.len());
        let mut sizes = Vec::with_capacity(members.len());
        for (digest, offset, size) in members {
            digests.push(digest.to_hex());
            offsets.push(to_i64(*offset)?);
            sizes.push(to_i64(*size)?);
        }
        self.write(|tx| {
            tx.execute(
                "INSERT INTO packs (digest, size) VALUES ($1, $2) ON CONFLICT (digest) DO NOTHING",
                &[&pack, &pack_size],
            )?;
            // A member found damaged in its old pack moves to this one; the old pack, if left
            // with no member, loses its row (its bytes are then an unrecorded pack, which gc
            // sweeps once older than the grace period).
            let moved = tx.query(
                "SELECT DISTINCT p.pack FROM packed_objects p JOIN objects o ON o.digest = p.digest \
                 WHERE p.digest = ANY($1) AND o.damaged_at IS NOT NULL",
                &[&digests],
            )?;
            let moved = moved
                .iter()
                .map(|row| tx.get::<String>(row, 0))
                .collect::<Result<Vec<String>>>()?;
            tx.execute(
                "INSERT INTO packed_objects (digest, pack, \"offset\", size) \
                 SELECT d, $1, o, s FROM unnest($2::text[], $3::bigint[], $4::bigint[]) AS m(d, o, s) \
                 ON CONFLICT (digest) DO UPDATE \
                 SET pack = excluded.pack, \"offset\" = excluded.\"offset\", size = excluded.size \
                 WHERE EXISTS (SELECT 1 FROM objects o \
                               WHERE o.digest = packed_objects.digest AND o.damaged_at IS NOT NULL)",
                &[&pack, &digests, &offsets, &sizes],
            )?;
            // Members found damaged before are whole again.
            let repaired = tx.query(
                "UPDATE objects SET damaged_at = NULL \
                 WHERE digest = ANY($1) AND damaged_at IS NOT NULL RETURNING digest",
                &[&digests],
            )?;
            let repaired = repaired
                .iter()
                .map(|row| tx.digest(row, 0))
                .collect::<Result<Vec<Digest>>>()?;
            if !moved.is_empty() {
                tx.execute(
                    "DELETE FROM packs k WHERE k.digest = ANY($1) AND NOT EXISTS \
                     (SELECT 1 FROM packed_objects p WHERE p.pack = k.digest)",
                    &[&moved],
                )?;
            }
            Ok(repaired)
        })
    }

    fn packed(&self) -> Result<Vec<(Digest, PackedAt)>> {
        self.read(|tx| {
            let rows = tx.query(&format!("SELECT {PACKED_COLUMNS} ORDER BY p.digest"), &[])?;
            rows.iter().map(|row| packed_at(tx, row)).collect()
        })
    }

    fn packs(&self) -> Result<Vec<Digest>> {
        self.read(|tx| {
            let rows = tx.query("SELECT digest FROM packs", &[])?;
            rows.iter().map(|row| tx.digest(row, 0)).collect()
        })
    }

    fn forget_packed(&self, digests: &[Digest]) -> Result<Vec<Digest>> {
        let wanted = hexes(digests);
        self.write(|tx| forget_places(tx, &wanted))
    }

    fn recorded(&self, digest: &Digest) -> Result<Recorded> {
        let wanted = digest.to_hex();
        self.read(|tx| {
            // Damage is stamped on the object's row; a pack place with no such row is sound.
            let row = tx.query_one(
                "SELECT bool_or(damaged) FROM ( \
                 SELECT damaged_at IS NOT NULL AS damaged FROM objects WHERE digest = $1 \
                 UNION ALL SELECT false FROM packed_objects WHERE digest = $1) AS found",
                &[&wanted],
            )?;
            Ok(match tx.get::<Option<bool>>(&row, 0)? {
                None => Recorded::Unknown,
                Some(false) => Recorded::Sound,
                Some(true) => Recorded::Damaged,
            })
        })
    }

    fn mark_damaged(&self, digests: &[Digest]) -> Result<()> {
        let wanted = hexes(digests);
        self.write(|tx| {
            tx.execute(
                "UPDATE objects SET damaged_at = now() WHERE digest = ANY($1)",
                &[&wanted],
            )
            .map(drop)
        })
    }

    fn begin_upload(&self, key: &str, upload: &str) -> Result<()> {
        self.write(|tx| {
            tx.execute(
                "INSERT INTO uploads (upload_id, key) VALUES ($1, $2) \
                 ON CONFLICT (upload_id) DO UPDATE SET renewed_at = now()",
                &[&upload, &key],
            )
            .map(drop)
        })
    }

    fn renew_upload(&self, upload: &str) -> Result<()> {
        self.write(|tx| {
            tx.execute(
                "UPDATE uploads SET renewed_at = now() WHERE upload_id = $1",
                &[&upload],
            )
            .map(drop)
        })
    }

    fn end_upload(&self, upload: &str) -> Result<()> {
        self.write(|tx| {
            tx.execute("DELETE FROM uploads WHERE upload_id = $1", &[&upload])
                .map(drop)
        })
    }

    fn stale_uploads(&self, idle: Duration) -> Result<Vec<(String, String)>> {
        let seconds = idle.as_secs_f64();
        self.read(|tx| {
            let rows = tx.query(
                "SELECT key, upload_id FROM uploads \
                 WHERE renewed_at <= now() - make_interval(secs => $1) ORDER BY started_at",
                &[&seconds],
            )?;
            rows.iter()
                .map(|row| Ok((tx.get(row, 0)?, tx.get(row, 1)?)))
                .collect()
        })
    }

    fn mark_repaired(&self, digests: &[Digest]) -> Result<()> {
        let wanted = hexes(digests);
        self.write(|tx| {
            tx.execute(
                "UPDATE objects SET damaged_at = NULL \
                 WHERE digest = ANY($1) AND damaged_at IS NOT NULL",
                &[&wanted],
            )?;
            // A pack place would still be read first; a pack left with no member loses its
            // row (its bytes are then swept by gc as an unrecorded pack).
            forget_places(tx, &wanted).map(drop)
        })
    }
}

/// Remove the pack places of `wanted`; returns the packs left with no member, whose rows
/// are removed too.
fn forget_places(tx: &mut PgTx<'_>, wanted: &[String]) -> Result<Vec<Digest>> {
    let touched = tx.query(
        "DELETE FROM packed_objects WHERE digest = ANY($1) RETURNING pack",
        &[&wanted],
    )?;
    let touched: HashSet<String> = touched
        .iter()
        .map(|row| tx.get::<String>(row, 0))
        .collect::<Result<_>>()?;
    let touched: Vec<String> = touched.into_iter().collect();
    let emptied = tx.query(
        "DELETE FROM packs k WHERE k.digest = ANY($1) AND NOT EXISTS \
         (SELECT 1 FROM packed_objects p WHERE p.pack = k.digest) RETURNING k.digest",
        &[&touched],
    )?;
    emptied.iter().map(|row| tx.digest(row, 0)).collect()
}
