//! Former home of the child side, kept only for the pool, which imports
//! these items from here until its rewrite lands (then this file goes:
//! `crate::outcome` and `crate::child::panic` are their homes).

pub(crate) use crate::{
    child::panic::{enter_target, leave_target, take_panic},
    outcome::{Failure, Outcome, OutcomeRef},
};
