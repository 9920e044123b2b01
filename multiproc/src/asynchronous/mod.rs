//! Async waits: `std::future::Future`s for [`Process::join`](crate::Process::join),
//! [`Connection`](crate::Connection) sends and receives, the queues' puts
//! and gets, and [`wait`](crate::wait) (the `async` feature).
//!
//! # Design
//!
//! The futures belong to no runtime: they wait on descriptors through
//! [async-io](https://docs.rs/async-io)'s reactor (smol's: one epoll and
//! one thread, `async-io`, that runs it while no `async_io::block_on`
//! does), which wakes whatever executor polled them: tokio's current-thread
//! or multi-thread runtime, smol, `futures::executor`. No operation has a
//! thread of its own. Each future that has to wait registers a duplicate of
//! the descriptor (so two futures may wait on one connection, and the
//! descriptor keeps its blocking mode for the blocking calls), and every
//! attempt is a non-blocking call of the same code the blocking API runs.
//!
//! - **Process join** waits for the child's pidfd to turn readable (it does
//!   when the child ends, whoever holds its other descriptors), and on a
//!   timer for the bootstrap deadline; then `join_timeout(0)` reaps and
//!   decodes.
//! - **Receive** tries a non-blocking receive, then waits for the socket to
//!   turn readable. The state of a message half received (a large one
//!   arrives in pieces) lives in the connection, not in the future, so a
//!   dropped future loses nothing and the next receive carries on. A
//!   receive in another thread or task that reads two messages at once
//!   leaves the second buffered, which no descriptor reports: a receive
//!   that ends with a whole message buffered wakes the async receives
//!   waiting on that connection.
//! - **Send** writes what the socket takes without blocking, then waits
//!   for room. A message must reach the stream whole: once its first byte
//!   is out, the rest is kept by the connection (its *tail*), and every
//!   later send, async or blocking, finishes that tail first; dropping the
//!   connection finishes it too (a blocking write that ends when the peer
//!   reads or closes). So dropping a send future never leaves half a
//!   message in the stream.
//! - **Queue get** tries a non-blocking get; while the queue is empty, the
//!   future counts as a watcher of the queue (as a mixed `wait` does), so
//!   a put in any process signals the queue's eventfd, which the future
//!   waits on, with a look every [`QUEUE_SLICE`](crate::QUEUE_SLICE) for a
//!   putter killed between its commit and its signal.
//! - **Queue put** on a full bounded queue: the same, for room. The
//!   future counts as a watcher of the queue's room (a second counter in
//!   the ring's header), so a get in any process, which otherwise wakes
//!   only futex sleepers, also signals the queue's room eventfd, which the
//!   future waits on; the end of the queue signals it too. Again a look
//!   every [`QUEUE_SLICE`](crate::QUEUE_SLICE) covers a getter killed
//!   between its commit and its signal.
//! - **wait** registers every descriptor and re-runs `wait` with a zero
//!   timeout at each wake, so its answer is exactly the blocking one's.
//!
//! An item or message is taken only by the poll that returns it, so
//! dropping any of these futures (a `select!` branch that lost, a
//! `timeout`) consumes nothing.
//!
//! # Fork
//!
//! The reactor's thread starts with the first wait, after which the
//! process has more than one thread, and the `fork` start method refuses to
//! start children from it (as it does under any multi-threaded runtime):
//! start `fork` children before the first await, or use `spawn` or
//! `forkserver`.

mod outgoing;
mod wakers;

#[cfg(feature = "async")]
mod connection;
#[cfg(feature = "async")]
mod process;
#[cfg(feature = "async")]
mod queue;
#[cfg(feature = "async")]
mod reactor;
#[cfg(feature = "async")]
mod wait;

pub(crate) use outgoing::Outgoing;
#[cfg(feature = "async")]
pub(crate) use reactor::Alarm;
#[cfg(feature = "async")]
pub use wait::wait_async;
pub(crate) use wakers::Wakers;
