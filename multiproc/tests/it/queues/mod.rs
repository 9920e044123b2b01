//! Queues across processes: their operations, and queues that end.

mod ending;
mod joinable_dead_consumer;
mod queue;
