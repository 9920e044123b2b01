//! [`Progress`]: how far one call with a progress bar has come, as its
//! result handles report it.

/// How far a call with a progress bar has come (see [`Tasks::progress`](crate::Tasks::progress)).
#[cfg(feature = "progress")]
#[cfg_attr(docsrs, doc(cfg(feature = "progress")))]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Progress {
    pub(super) done: u64,
    pub(super) total: Option<u64>,
    pub(super) finished: bool,
}

#[cfg(feature = "progress")]
impl Progress {
    /// Tasks finished (failed ones included).
    pub fn done(&self) -> u64 {
        self.done
    }

    /// Tasks in all, when the input's length is known.
    pub fn total(&self) -> Option<u64> {
        self.total
    }

    /// Every task has finished.
    pub fn is_finished(&self) -> bool {
        self.finished
    }
}
