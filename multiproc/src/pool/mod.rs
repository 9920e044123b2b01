//! A pool of worker processes (Python's `multiprocessing.Pool`).
//!
//! # Rooms
//!
//! | File | Job |
//! | --- | --- |
//! | `facade.rs` | [`Pool`](crate::Pool): submissions encoded (without the lock) and registered |
//! | `builder.rs` | [`PoolBuilder`](crate::PoolBuilder): configuration, starting the first workers |
//! | `job.rs` | a job's output and its [`JobState`](job::JobState); the job table |
//! | `scheduler.rs` (+ `work.rs`, `stop.rs`) | pending work, dispatch, replies, deaths, replacements, stopping: pure logic over the [`WorkerLink`](scheduler::WorkerLink) seam, unit-tested with mock links (`scheduler_tests.rs`) |
//! | `link.rs` | the link to a local worker process, and the launcher that starts them |
//! | `links.rs` | local or remote links and launchers as one type each (what the pool's state holds) |
//! | `remote/` | workers on other hosts over TCP: `Backend` (`backend.rs`), the link (`mod.rs`), the launcher and its accept thread (`launcher.rs`), the hello and build check (`hello.rs`), the worker role (`serve.rs`) |
//! | `driver.rs` | the callers' polling rounds (who waits, on what), running callbacks |
//! | `callbacks.rs` | [`Callbacks`](crate::Callbacks), done callbacks, which thread runs them |
//! | `handle.rs`, `async_result.rs`, `map_result.rs`, `imap.rs`, `map_iter.rs` | the result handles, one per file |
//! | `protocol.rs` | task and reply messages, encoded and decoded in one place for both sides |
//! | `encode.rs`, `decode.rs` | arguments on their way out, results on their way in |
//! | `worker.rs` | the worker loop and the batch trampoline |
//! | `executor/` | [`Executor`](crate::Executor) and [`TaskHandle`](crate::TaskHandle) in `mod.rs`; `wait`, `wait_async` and `as_completed` in `waiting.rs` |
//!
//! The dependencies point one way: protocol ← encode/decode ← job ←
//! callbacks ← scheduler ← link ← driver ← handles ← facade ← executor
//! (the worker loop uses only protocol and encode).
//!
//! A value's path through [`Pool::map`](crate::Pool::map): (1) the facade encodes the
//! arguments into chunks' task messages (`encode.rs`, `protocol.rs`);
//! (2) registers a job and queues the chunks (`job.rs`, `scheduler.rs`);
//! (3) the scheduler dispatches each chunk to a worker's link, which
//! sends it (`link.rs`); (4) the worker decodes and runs the tasks and
//! replies (`worker.rs`); (5) a caller driving a round waits on the links
//! (`driver.rs`); (6) the scheduler matches the reply to the oldest task
//! message of that worker and records it in the job; (7) the job is done
//! when nothing is outstanding; (8) the handle decodes the results
//! (`map_result.rs`, `decode.rs`).
//!
//! # Design
//!
//! ## Workers and links
//!
//! Each worker is a [`Process`](crate::Process) (daemonic, started with the pool's start
//! method) running an internal worker loop, a plain `fn`, so it works under
//! spawn, fork and forkserver alike. Each worker has its own duplex
//! [`Connection`](crate::Connection) to the parent: there is no shared queue, so there is no
//! lock a dying worker could hold. A task names its function the way a
//! spawned child names its target (code offsets of the function and of a
//! trampoline monomorphised for its argument and result types, see
//! `target.rs`); a *chunk* is one message carrying several encoded
//! arguments, answered by one message carrying each task's outcome
//! (value, panic with location and backtrace, or a codec failure). A
//! `map` chunk travels as one encoded `Vec<A>` to a batch trampoline and
//! comes back as one encoded `Vec<R>` when every task returned; after a
//! panic, or when the results do not encode together, the worker answers
//! with one outcome per task instead, so a failure stays with its task.
//!
//! ## Messages
//!
//! Every task message carries an id, fresh for each sending, and every
//! reply names the id it answers (the worker's first message, its
//! initializer's report, names 0); both headers are defined in
//! `protocol.rs`. A worker answers its chunks in order, so the parent takes
//! a reply only when it names the oldest chunk that worker holds and its
//! body is well formed. Anything else (a reply to an unknown, replayed or
//! later id, of the wrong kind, or no reply at all: a frame that task code
//! wrote onto the worker's socket, through a stale descriptor number say)
//! is a protocol violation: the worker is killed, every chunk it held
//! fails with [`ErrorKind::Protocol`](crate::ErrorKind::Protocol), and a new worker takes its place. A
//! result is only ever delivered to the task it names, never shifted to
//! another. (A task's raw `fork` child that returns into the worker loop
//! exits there without answering.)
//!
//! ## Library objects and codec failures
//!
//! Library objects (connections, queues, locks and the other primitives,
//! shared memory, `Value`/`Array`) travel in task arguments and in the
//! initializer's arguments under every start method, by the descriptor
//! passing of [`Process`](crate::Process) arguments: encoding them collects their
//! descriptors, the pool keeps duplicates of them with the chunk (the
//! arguments themselves are dropped once encoded), and they ride on the
//! chunk's task message (`SCM_RIGHTS`), or, for the initializer, in each
//! worker's start arguments (the pool keeps the initializer's copies for
//! replacement workers). The pool's copies are closed in fork children not
//! given them, so a passed connection's peer sees the end of the stream
//! once the task is done with it. One message carries at most 253
//! descriptors: a chunk whose arguments hold more fails the tasks past
//! that with [`ErrorKind::Serialize`](crate::ErrorKind::Serialize) (use a smaller chunk size). Results
//! cannot carry library objects: such a result fails its task with
//! [`ErrorKind::Serialize`](crate::ErrorKind::Serialize).
//! A panic of the caller's `Serialize` or `Deserialize` is neither the
//! caller's panic nor the worker's death: an argument's `Serialize` (in the
//! parent) and a result's `Deserialize` (in the parent) fail their task
//! with [`ErrorKind::Serialize`](crate::ErrorKind::Serialize) / [`ErrorKind::Deserialize`](crate::ErrorKind::Deserialize); in the
//! worker, a panic of a result's `Serialize` or of an argument's
//! `Deserialize` is that task's panic ([`ErrorKind::ChildPanicked`](crate::ErrorKind::ChildPanicked), as for
//! a [`Process`](crate::Process) target), except an argument's `Deserialize` panic in a
//! `map` chunk sent as one batch (small arguments, all of the chunk's
//! serialized), which is a `Deserialize` error of its task. A value that fails to encode or decode fails its
//! task alone, in a `map` chunk too: a chunk of serde values travels as an
//! *indexed* sequence (the `Vec`'s encoding behind a table of each
//! value's end, 4 bytes per value), and each value is decoded from
//! exactly its own bytes, so that a type whose `Deserialize` reads other
//! than what its `Serialize` wrote (`skip_serializing_if`, which postcard
//! cannot carry) fails its task rather than turning a neighbour into a
//! wrong value, as decoding the chunk as one `Vec` could (at a cost
//! over decoding the whole `Vec`; see the codec benchmark rows); numbers
//! and bytes travel raw, and cannot fail one by one.
//!
//! ## Driving
//!
//! There is no background thread (it would make the program
//! multithreaded, and `fork` is refused there: to this pool's workers and
//! to the program's own processes). The pool's state sits behind one
//! mutex and is driven by the callers:
//!
//! - **Dispatch** happens wherever work is added or results are taken:
//!   each pending chunk goes to the worker with the fewest chunks in
//!   flight that can take it (breadth first, so small work spreads over
//!   the workers). A worker holds more than one chunk only of the same
//!   `map` (separate submissions never wait behind a busy worker): two
//!   while its chunks are slow, up to 16 while they take under 1 ms (to
//!   hide the round trip), and only while their messages total at most
//!   64 KiB, so the parent never blocks writing to a worker that is
//!   itself blocked writing results. The chunks one worker is given in a
//!   round go out together, in one `sendmsg` (a burst of small tasks costs
//!   the parent one system call, not one per task).
//! - **Driving**: a caller that needs results (`get`, `wait`, `imap`,
//!   `join`) becomes the *driver* if nobody is: it collects every worker's
//!   connection, its process sentinel (a pidfd) and the pool's eventfd,
//!   releases the lock, and `poll`s; then it relocks, takes every result
//!   there, handles deaths, overdue tasks and replacement workers'
//!   initializers, and wakes the other waiting callers (a condition
//!   variable). Meanwhile other threads submit, take results and cancel;
//!   those waiting for their own result sleep on the condition variable
//!   with their own deadline. The eventfd wakes the driver when the set of
//!   workers changes under it (terminate, replacements); workers removed
//!   meanwhile keep their descriptors until its `poll` has returned.
//!   Submissions and `ready()` also take what has arrived, without
//!   blocking, so a pool nobody waits on still makes progress.
//! - **Callbacks** ([`Pool::apply_async_with`](crate::Pool::apply_async_with), [`Pool::map_async_with`](crate::Pool::map_async_with))
//!   run when their job finishes, in whichever caller drives or submits at
//!   that moment, without the lock; the decoded value is kept for `get`.
//!   A finished callback nudges the driver, whose check may be waiting
//!   for that job (`futures::wait` over several task handles).
//! - **Deadlines**: a wait whose deadline has passed still takes one look
//!   (dispatch and a zero-timeout poll) before it gives up, so Python's
//!   polling idiom (`wait(fs, timeout=0)`, `next(timeout=0)`) sees what is
//!   done.
//! - **Handles** are a job id and the pool: `AsyncResult` and `MapResult`
//!   take a finished job's output whole; `Imap` and the executor's
//!   `MapIter` take results as they arrive (a batch reply is decoded at
//!   once and kept as a run of consecutive results until their turn; what
//!   was taken is kept in the iterator, so a callback's panic unwinding
//!   through it loses nothing); `futures::wait` and `as_completed` drive
//!   with a check over several jobs of one pool. A dropped `AsyncResult`,
//!   `MapResult` or `TaskHandle` leaves its job to run (an orphan, forgotten
//!   once it has finished: Python's cache keeps it too); a dropped
//!   iterator's job is forgotten at once, its queued chunks skipped.
//! - **Terminating** kills the workers, then reads what each had sent
//!   before its death: a task that finished keeps its result.
//!
//! ## Large arguments
//!
//! Arguments are encoded, and an `imap`'s input read, without the lock. A
//! large argument (64 KiB or more encoded; the first item decides for a
//! `map`) alone in its chunk (`apply`, `imap`, or a `map` whose automatic
//! chunk comes to one task: arguments over 128 KiB) travels as a message
//! of its own that the worker receives as its own buffer: a `Vec<u8>` or `String` is taken over without a copy,
//! another type is encoded into a buffer of its own, which the worker
//! decodes in place. The automatic chunk size of large arguments keeps a
//! chunk near 256 KiB. Workers tell their allocator to keep freed memory
//! (glibc's `mallopt`: blocks up to 32 MiB from the heap, trimmed past
//! 64 MiB free), so that each large argument does not arrive in fresh pages:
//! a page fault per 4 KiB costs more than copying it. A worker's memory
//! therefore stays near its peak, as a CPython worker's does.
//!
//! ## Workers: start, death, replacement
//!
//! A `Pool` starts all its workers at `build`, as Python's does; an
//! [`Executor`](crate::Executor)'s pool starts them on demand (Python >= 3.9): a pending
//! chunk that no idle worker will take starts one, up to the pool's size,
//! and a dead worker is replaced only when work needs it; under fork,
//! every worker starts at the first need, as Python's fork context does.
//!
//! Workers are daemons: they die with the pool's process however it ends,
//! through the kernel's parent-death signal (see
//! [`ProcessBuilder::daemon`](crate::ProcessBuilder::daemon)). A worker's
//! parent is the thread that started it (the one that built the pool, or,
//! for a replacement, the caller that handled the death; under the fork
//! server, the server); when that
//! thread exits, the signal reaches the worker too and its handler returns,
//! so a task's blocking call that the kernel does not restart (`poll`, a
//! socket read with a timeout) may fail once with `EINTR`. The library's
//! own calls, and std's `sleep`, `read_exact` and `write_all`, retry.
//!
//! When a worker dies, the results it sent before dying are kept, the
//! chunk it was running fails with [`ErrorKind::ChildKilled`](crate::ErrorKind::ChildKilled) or
//! [`ErrorKind::ChildExited`](crate::ErrorKind::ChildExited) carrying its [`ExitStatus`](crate::ExitStatus),
//! the chunks queued behind it go back to the pending queue (they never
//! started), and a new worker takes its place; its initializer runs while
//! the pool serves on (no lock is held meanwhile). A worker that dies
//! while idle is noticed by its sentinel, or at the next send. With a task
//! timeout, the worker running an overdue chunk is killed and replaced,
//! and that chunk fails with [`ErrorKind::TaskTimeout`](crate::ErrorKind::TaskTimeout). With an
//! initializer, [`PoolBuilder::build`](crate::PoolBuilder::build) waits for every worker's report, and
//! one that fails makes `build` fail with its error (its panic for a
//! panic). Without one, `build` returns as soon as the workers are started
//! and they are given work at once (a round trip saved on a short-lived
//! pool); a worker that dies before its first message (killed from outside,
//! or unable to start) never ran the chunks it was given: they go back to
//! the pending queue and the worker is replaced, up to `3 × processes` such
//! deaths in a row, after which the pool is broken with the last one's
//! error. If a *replacement* worker's initializer fails (or takes more
//! than a minute), the pool is broken: every pending task and every later
//! submission fails with that error, tasks already with other workers
//! still finish. There is no respawn loop. Under `fork`, once the program
//! has other threads (where fork is refused), replacements are started by
//! the fork server.
//!
//! # Differences from Python
//!
//! - Functions are `fn(A) -> R` with serde arguments; several arguments are
//!   a tuple, so [`Pool::starmap`](crate::Pool::starmap) is [`Pool::map`](crate::Pool::map) under Python's name.
//! - [`Pool::map`](crate::Pool::map) returns the first error in input order (Python raises the
//!   first exception too); the results of the other tasks are dropped.
//! - `maxtasksperchild` counts chunks, as Python's does (a chunk is one
//!   task for the worker loop).
//! - The task timeout applies to a chunk: `timeout × tasks in the chunk`
//!   from the moment the chunk reached the head of its worker's queue.
//! - Task arguments may carry every library object, queues included
//!   (CPython refuses queues as task arguments); results cannot.
//! - `imap` reads its input as results are taken, not all at once in a
//!   task thread: after `join`, the part not read fails with
//!   [`ErrorKind::InvalidState`](crate::ErrorKind::InvalidState). An empty `map_async` calls its callback
//!   (with no results).
//! - Callbacks get a reference (`&R`, `&[R]`, `&Error`) and run in one of
//!   the caller's threads, not in a result-handler thread; a callback's
//!   panic comes out of the call that ran it, and a callback cannot wait
//!   for its own result, nor for that of a callback it runs within (an
//!   error, not a deadlock). A job is done once its callbacks have run, so
//!   two threads whose callbacks wait for each other's futures without a
//!   timeout wait for ever: give such waits a deadline.
//! - A pool belongs to the process that created it: in a fork child every
//!   operation that returns a `Result` fails with
//!   [`ErrorKind::InvalidState`](crate::ErrorKind::InvalidState) (`terminate` too); `close` does nothing,
//!   `ready()` is `false`, and dropping it does nothing.
//! - The executor's `map` yields each task's `Result` and goes on past a
//!   failure (Python's stops at the first exception); with no pool
//!   thread, tasks are sent only while some thread waits on the pool, so
//!   a consumer slower than the `map`'s timeout between two items can
//!   time out where Python's would not (see [`MapIter`](crate::MapIter)).
//!   `futures::wait`/`as_completed` take the futures of one executor; a
//!   done callback ([`TaskHandle::add_done_callback`](crate::TaskHandle::add_done_callback)) gets the result, not
//!   the future; added while the future's callbacks run in another
//!   thread, it runs right after them, in that thread (Python's would run
//!   at once, in the adding thread). `terminate_workers` waits up to a
//!   second for the workers to exit on `SIGTERM`, then kills the rest.
//! - Dropping a [`Pool`](crate::Pool) terminates it (as leaving Python's `with Pool()`
//!   block does): workers are killed and reaped, unfinished tasks fail with
//!   [`ErrorKind::Cancelled`](crate::ErrorKind::Cancelled) (their error callbacks run). It never hangs.
//!   Dropping an [`Executor`](crate::Executor) waits for its tasks, as leaving Python's
//!   `with ProcessPoolExecutor()` block does.

mod async_result;
mod callbacks;
mod decode;
mod driver;
mod encode;
mod executor;
mod facade;
mod handle;
mod imap;
mod job;
mod lifecycle;
mod link;
mod links;
mod map_iter;
mod map_result;
mod progress;
mod protocol;
#[cfg(unix)]
pub(crate) mod remote;
/// Remote workers are not ported to Windows yet: only the backend's
/// description exists there, and a remote backend fails at `build`.
#[cfg(not(unix))]
pub(crate) mod remote {
    #[allow(dead_code)]
    pub(crate) mod backend;
}
mod scheduler;
#[cfg(test)]
mod scheduler_tests;
pub(crate) mod worker;

#[cfg(feature = "async")]
pub use self::executor::wait_async as wait_futures_async;
#[cfg(feature = "progress")]
pub use self::progress::Progress;
pub use self::{
    async_result::AsyncResult,
    callbacks::Callbacks,
    executor::{AsCompleted, Executor, ReturnWhen, TaskHandle, Waited, as_completed, wait as wait_futures},
    facade::{Pool, builder::PoolBuilder, tasks::Tasks},
    imap::Imap,
    map_iter::MapIter,
    map_result::MapResult,
    remote::backend::{Backend, MpiFlavour},
};
