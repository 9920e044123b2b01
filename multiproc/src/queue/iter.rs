//! Iterating over a queue until it ends.

use std::iter::FusedIterator;

use serde::{Serialize, de::DeserializeOwned};

use super::{JoinableQueue, Queue, SimpleQueue};
use crate::error::{Result, channel::RecvError};

/// Takes the next item for an iterator: `None` at the end, and after an
/// error (which is yielded once).
fn next_item<T: Serialize + DeserializeOwned + 'static>(queue: &Queue<T>, done: &mut bool) -> Option<Result<T>> {
    if *done {
        return None;
    }
    match queue.get() {
        Ok(item) => Some(Ok(item)),
        Err(RecvError::Disconnected) => {
            *done = true;
            None
        }
        Err(RecvError::Failed(e)) => {
            *done = true;
            Some(Err(e))
        }
    }
}

/// An iterator that takes items from a queue, waiting for each, until the
/// queue has ended and is drained ([`Queue::iter`]).
///
/// Each item is a `Result`: an item that fails to decode (or a queue whose
/// shared memory was overwritten) is yielded as an error, and the
/// iteration then stops; the items behind it stay in the queue.
#[derive(Debug)]
pub struct QueueIter<'a, T> {
    queue: &'a Queue<T>,
    done: bool,
}

impl<T: Serialize + DeserializeOwned + 'static> Iterator for QueueIter<'_, T> {
    type Item = Result<T>;

    fn next(&mut self) -> Option<Result<T>> {
        next_item(self.queue, &mut self.done)
    }
}

impl<T: Serialize + DeserializeOwned + 'static> FusedIterator for QueueIter<'_, T> {}

/// [`QueueIter`] owning its queue handle (`for item in queue`).
#[derive(Debug)]
pub struct QueueIntoIter<T> {
    queue: Queue<T>,
    done: bool,
}

impl<T: Serialize + DeserializeOwned + 'static> Iterator for QueueIntoIter<T> {
    type Item = Result<T>;

    fn next(&mut self) -> Option<Result<T>> {
        next_item(&self.queue, &mut self.done)
    }
}

impl<T: Serialize + DeserializeOwned + 'static> FusedIterator for QueueIntoIter<T> {}

impl<T> Queue<T> {
    /// Takes items as they come, waiting for each, until the queue has
    /// ended (closed for all, or every producer gone) and is drained. Other
    /// consumers, here and in other processes, take their own share: each
    /// item goes to exactly one of them.
    ///
    /// ```
    /// # fn main() -> multiproc::Result<()> {
    /// let q = multiproc::Queue::new()?;
    /// for i in 0..3 {
    ///     q.put(i)?;
    /// }
    /// q.close_for_all()?;
    /// let mut sum = 0;
    /// for item in q.iter() {
    ///     sum += item?;
    /// }
    /// assert_eq!(sum, 3);
    /// # Ok(()) }
    /// ```
    pub fn iter(&self) -> QueueIter<'_, T> {
        QueueIter {
            queue: self,
            done: false,
        }
    }
}

impl<'a, T: Serialize + DeserializeOwned + 'static> IntoIterator for &'a Queue<T> {
    type Item = Result<T>;
    type IntoIter = QueueIter<'a, T>;

    fn into_iter(self) -> QueueIter<'a, T> {
        self.iter()
    }
}

impl<T: Serialize + DeserializeOwned + 'static> IntoIterator for Queue<T> {
    type Item = Result<T>;
    type IntoIter = QueueIntoIter<T>;

    fn into_iter(self) -> QueueIntoIter<T> {
        QueueIntoIter {
            queue: self,
            done: false,
        }
    }
}

impl<T> SimpleQueue<T> {
    /// Takes items until the queue has ended and is drained; see
    /// [`Queue::iter`].
    pub fn iter(&self) -> QueueIter<'_, T> {
        self.0.iter()
    }
}

impl<'a, T: Serialize + DeserializeOwned + 'static> IntoIterator for &'a SimpleQueue<T> {
    type Item = Result<T>;
    type IntoIter = QueueIter<'a, T>;

    fn into_iter(self) -> QueueIter<'a, T> {
        self.0.iter()
    }
}

impl<T: Serialize + DeserializeOwned + 'static> IntoIterator for SimpleQueue<T> {
    type Item = Result<T>;
    type IntoIter = QueueIntoIter<T>;

    fn into_iter(self) -> QueueIntoIter<T> {
        self.0.into_iter()
    }
}

impl<'a, T: Serialize + DeserializeOwned + 'static> IntoIterator for &'a JoinableQueue<T> {
    type Item = Result<T>;
    type IntoIter = QueueIter<'a, T>;

    fn into_iter(self) -> QueueIter<'a, T> {
        self.0.iter()
    }
}

impl<T: Serialize + DeserializeOwned + 'static> IntoIterator for JoinableQueue<T> {
    type Item = Result<T>;
    type IntoIter = QueueIntoIter<T>;

    fn into_iter(self) -> QueueIntoIter<T> {
        self.0.into_iter()
    }
}
