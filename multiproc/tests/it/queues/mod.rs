//! Queues across processes: their operations, and queues that end.

mod ending;
mod queue;
