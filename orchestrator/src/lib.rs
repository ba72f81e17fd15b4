//! Apex orchestrator.
pub mod dag;
pub mod state_machine;
