//! What ties a shared database to its bucket (`registry_settings`, migration 3).

use super::tx::PgTx;
use super::PostgresMetaStore;
use crate::{CoreError, Result};

impl PostgresMetaStore {
    /// Tie this database to the objects at `objects` (an `s3://BUCKET/PREFIX` as the store
    /// normalises it): the first registry to use the database records them, with a random
    /// registry id; later ones must give the same objects. Returns the registry id (`None`
    /// for a read-only store on a database never tied yet).
    ///
    /// A database opened with another registry's objects would see them all as garbage and
    /// let `gc` delete them: refused here, naming the objects the database was made with.
    pub fn bind_objects(&self, objects: &str) -> Result<Option<String>> {
        let settings = |tx: &mut PgTx<'_>| -> Result<(Option<String>, Option<String>)> {
            let rows = tx.query(
                "SELECT key, value FROM registry_settings WHERE key IN ('objects', 'id')",
                &[],
            )?;
            let (mut bound, mut id) = (None, None);
            for row in &rows {
                let key: String = tx.get(row, 0)?;
                let value: String = tx.get(row, 1)?;
                match key.as_str() {
                    "objects" => bound = Some(value),
                    _ => id = Some(value),
                }
            }
            Ok((bound, id))
        };
        let (mut bound, mut id) = self.read(settings)?;
        if bound.is_none() && self.read_only.is_none() {
            let fresh = format!("{:032x}", fastrand::u128(..));
            (bound, id) = self.write(|tx| {
                tx.execute(
                    "INSERT INTO registry_settings (key, value) VALUES ('objects', $1), ('id', $2) \
                     ON CONFLICT (key) DO NOTHING",
                    &[&objects, &fresh],
                )?;
                settings(tx)
            })?;
        }
        match bound {
            Some(bound) if bound != objects => Err(CoreError::InvalidInput {
                message: format!(
                    "the registry in {} keeps its objects in {bound}, not {objects}: give \
                     --objects {bound} (PACHA_OBJECTS); a database and its bucket are a pair, \
                     and another registry's objects would look like garbage to it",
                    self.shown
                ),
            }),
            _ => Ok(id),
        }
    }
}
