//! Worker autoscaling on queue depth. [`Autoscaler`] is the pure policy: how many
//! workers a queue's work calls for, scaling up at once and down only after a cooldown.
//! The engine evaluates it per queue and publishes the answer (`apex_workers_desired`,
//! `GET /api/v1/queues`); actuators follow it: `apex up`'s local supervisor, or
//! Kubernetes (KEDA / HPA on the metric).

mod policy;

pub use policy::{Autoscaler, Policy};
