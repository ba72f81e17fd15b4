//! Live progress: what the engine stored, and what workers stream, delivered to
//! WebSocket subscribers (docs/API.md, "WebSocket").
//!
//! - [`bus`]: where the writer publishes after each commit; routes every event to its
//!   run's stream or the fleet's, and keeps recent fleet events for `since` ([`ring`]).
//! - [`stream`]: one run's (or the fleet's) events turned into frames by one task, once
//!   per frame interval, shared by every subscriber; and the text each running attempt
//!   streamed so far ([`answers`]), for clients that join mid-answer.
//! - [`frame`], [`coalesce`]: what a frame holds, and which events a later one makes
//!   redundant within it. Pure.
//! - [`event`]: one published event, classified and encoded once.
//! - [`recent`]: a run stream's last frames' stored events, serving the replay of
//!   clients that join or resume with a cursor they cover, encoded once for all of them.
//! - [`shared_read`]: one store read (a snapshot, a run's summary) serving every
//!   subscriber that asks while it is in flight.
//!
//! The cost of a frame is paid once per stream, not per client × event: a client takes
//! the shared frame whole (cloning an `Arc` and the bytes' reference count), or, when
//! it filters (`?tasks=`) or overlaps its own replay, picks events out of it.

mod answers;
mod bus;
mod coalesce;
mod event;
mod frame;
mod recent;
mod ring;
mod shared_read;
mod stream;

pub use bus::{Bus, BusConfig};
#[cfg(test)]
pub use event::testing;
pub use event::{BusEvent, Kind};
pub use frame::Frame;
pub use stream::{Cadence, Feed, Snapshot, StoredPage, Subscription};
