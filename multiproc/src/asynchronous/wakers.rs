//! Wakers of futures waiting for an event that no descriptor reports:
//! a message left buffered by another receiver of the same connection,
//! the end of a message whose send another sender finished.

use std::{
    sync::{
        Mutex,
        atomic::{AtomicBool, Ordering},
    },
    task::Waker,
};

/// A set of wakers, woken all at once. Costs one relaxed load to the side
/// that wakes while nobody waits.
#[derive(Debug, Default)]
pub(crate) struct Wakers {
    any: AtomicBool,
    list: Mutex<Vec<Waker>>,
}

impl Wakers {
    /// Adds `waker` (once per task) until the next [`wake_all`](Self::wake_all).
    /// Call before looking at the state the event changes, so that an
    /// event after the look finds the waker here.
    #[cfg_attr(not(feature = "async"), allow(dead_code))]
    pub(crate) fn register(&self, waker: &Waker) {
        let mut list = self.list.lock().unwrap_or_else(|e| e.into_inner());
        if !list.iter().any(|w| w.will_wake(waker)) {
            list.push(waker.clone());
        }
        self.any.store(true, Ordering::SeqCst);
    }

    /// `true` when some waker is registered.
    pub(crate) fn any(&self) -> bool {
        self.any.load(Ordering::SeqCst)
    }

    /// Wakes and forgets every registered waker.
    pub(crate) fn wake_all(&self) {
        if !self.any() {
            return;
        }
        let list = {
            let mut list = self.list.lock().unwrap_or_else(|e| e.into_inner());
            self.any.store(false, Ordering::SeqCst);
            std::mem::take(&mut *list)
        };
        for w in list {
            w.wake();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{
        sync::{
            Arc,
            atomic::{AtomicUsize, Ordering},
        },
        task::{Wake, Waker},
    };

    use super::Wakers;

    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn a_task_is_woken_once_per_registration_round() {
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(count.clone());
        let wakers = Wakers::default();
        wakers.wake_all();
        assert!(!wakers.any());
        wakers.register(&waker);
        wakers.register(&waker);
        assert!(wakers.any());
        wakers.wake_all();
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        assert!(!wakers.any());
        wakers.wake_all();
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
    }
}
