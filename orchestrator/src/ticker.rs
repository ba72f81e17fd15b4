//! The leader's schedule ticker: fires each schedule's due tick by starting its
//! template's run. The tick is recorded in the run's own row (`origin.schedule`,
//! `origin.tick_ms`), written in the same transaction as the run, and every write
//! checks the leader epoch. So after a failover the new leader reads what fired from
//! the runs themselves: a tick whose run committed is not fired again, one whose run
//! did not (or was fenced out) is fired once.

use crate::api::error::ApiError;
use crate::api::AppState;
use crate::dag::origin::RunOrigin;
use crate::store::daily::ScheduleRow;
use std::collections::HashMap;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How often schedules are looked at: the worst delay of a tick.
const PERIOD: Duration = Duration::from_millis(250);
/// Without `catch_up`, a tick this late is skipped rather than fired.
const LATE_MS: i64 = 60_000;

/// The last tick handled per schedule, and the creation time it belongs to (a schedule
/// deleted and created again under the same name starts afresh).
type Handled = HashMap<String, (i64, i64)>;

/// Starts the ticker; it stops when `shutdown` turns true.
pub fn spawn(state: AppState, mut shutdown: watch::Receiver<bool>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut handled = Handled::new();
        loop {
            tokio::select! {
                _ = shutdown.wait_for(|s| *s) => return,
                _ = tokio::time::sleep(PERIOD) => {}
            }
            if let Err(e) = tick(&state, &mut handled).await {
                tracing::warn!(error = %e, "schedule ticker: will try again");
            }
        }
    })
}

/// One pass over every schedule.
async fn tick(state: &AppState, handled: &mut Handled) -> Result<(), ApiError> {
    let _pass = state.daily.schedules.lock().await;
    let schedules = state.store.daily().list_schedules().await?;
    handled.retain(|name, _| schedules.iter().any(|s| &s.name == name));
    for s in schedules.iter().filter(|s| !s.paused) {
        if let Err(e) = fire_due(state, s, handled).await {
            tracing::warn!(schedule = %s.name, error = %e, "schedule tick not fired; will try again");
        }
    }
    Ok(())
}

/// The last tick handled: what this leader remembers, what the row says, and what the
/// schedule's latest run says (the record that commits with the run).
async fn last_tick(state: &AppState, s: &ScheduleRow, handled: &Handled) -> Result<i64, ApiError> {
    let remembered = handled
        .get(&s.name)
        .filter(|(created, _)| *created == s.created_at_ms)
        .map(|(_, t)| *t);
    let mut last = s
        .last_tick_ms
        .unwrap_or(s.created_at_ms)
        .max(s.created_at_ms);
    if let Some(t) = remembered {
        return Ok(last.max(t));
    }
    let runs = state.store.daily().schedule_runs(&s.name, 1).await?;
    if let Some(t) = runs
        .first()
        .and_then(|r| r.options.origin.as_ref())
        .and_then(|o| o.tick_ms)
    {
        last = last.max(t);
    }
    Ok(last)
}

async fn fire_due(
    state: &AppState,
    s: &ScheduleRow,
    handled: &mut Handled,
) -> Result<(), ApiError> {
    let spec = crate::api::schedules::ScheduleSpec::of(s)?;
    let timing = spec.timing(s.created_at_ms)?;
    let last = last_tick(state, s, handled).await?;
    let now = crate::engine::now_ms();
    let Some(due) = timing.latest_due(last, now) else {
        handled.insert(s.name.clone(), (s.created_at_ms, last));
        return Ok(());
    };
    let skip = if !spec.catch_up && now - due > LATE_MS {
        Some("it is late and catch_up is off")
    } else if spec.overlap == crate::api::schedules::Overlap::Skip
        && previous_still_running(state, &s.name).await?
    {
        Some("its previous run is still running (overlap: skip)")
    } else {
        None
    };
    match skip {
        Some(why) => {
            tracing::info!(schedule = %s.name, tick_ms = due, "tick skipped: {why}");
            metrics::counter!("apex_schedule_ticks_total", "outcome" => "skipped").increment(1);
        }
        None => {
            let origin = RunOrigin {
                schedule: Some(s.name.clone()),
                tick_ms: Some(due),
                ..RunOrigin::default()
            };
            let by = format!("schedule:{}", s.name);
            match crate::api::templates::start_run(
                state,
                &spec.template,
                spec.version,
                &spec.params,
                origin,
                &by,
            )
            .await
            {
                Ok(run) => {
                    tracing::info!(schedule = %s.name, tick_ms = due, run = %run.id, "schedule fired");
                    metrics::counter!("apex_schedule_ticks_total", "outcome" => "fired")
                        .increment(1);
                }
                // The store or engine could not take it now: the tick stays due.
                Err(e @ (ApiError::Unavailable(_) | ApiError::Internal(_))) => return Err(e),
                // The template went away or no longer takes these params: this tick can
                // never fire; the next ones may, once the schedule or template is fixed.
                Err(e) => {
                    tracing::warn!(schedule = %s.name, tick_ms = due, error = %e, "tick cannot start a run; skipped");
                    metrics::counter!("apex_schedule_ticks_total", "outcome" => "failed")
                        .increment(1);
                }
            }
        }
    }
    handled.insert(s.name.clone(), (s.created_at_ms, due));
    // A cache that outlives the runs retention deletes; the run row is the record.
    state.store.daily().set_schedule_tick(&s.name, due).await?;
    Ok(())
}

async fn previous_still_running(state: &AppState, name: &str) -> Result<bool, ApiError> {
    let runs = state.store.daily().schedule_runs(name, 1).await?;
    Ok(runs.first().is_some_and(|r| !r.state.is_terminal()))
}
