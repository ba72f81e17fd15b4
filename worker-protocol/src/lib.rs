//! The wire contract between the Apex orchestrator and its workers.
//!
//! Everything that crosses Redis is defined here and nowhere else:
//!
//! - [`keys`]: the name of every Redis key, stream and consumer group, under a prefix.
//! - [`messages`]: the JSON messages on those streams, versioned by [`PROTOCOL_VERSION`].
//!
//! `schema/protocol.schema.json` describes the same messages for other languages, and
//! `examples/*.json` are golden messages that both the Rust tests and the Python worker's
//! tests parse and round-trip, so the two sides cannot drift. `PROTOCOL.md` explains the
//! flow of a task through these streams.

pub mod keys;
pub mod messages;

pub use keys::Keys;
pub use messages::*;

/// Version carried in every message's `v` field; a consumer rejects other versions.
pub const PROTOCOL_VERSION: u32 = 1;

/// The single field of a stream entry that holds the message's JSON text.
pub const MESSAGE_FIELD: &str = "m";
