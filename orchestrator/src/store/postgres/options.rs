//! Run options changed after submission (a person raised the run's budget).

use super::*;
use crate::dag::RunOptions;
use std::sync::Arc;

/// Stores each run's new options, in order (a later one for the same run wins).
pub(super) async fn update_options(
    conn: &mut sqlx::PgConnection,
    options: &[(String, Arc<RunOptions>)],
) -> Result<(), StoreError> {
    for (run, o) in options {
        sqlx::query("update runs set options = $1::jsonb where id = $2")
            .bind(json_text(&**o))
            .bind(run.as_str())
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}
