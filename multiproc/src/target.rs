//! What a child runs, and how it is named across a process boundary.
//!
//! A spawned child is a fresh copy of the same executable, so a function can
//! be named by its address relative to a known function of this crate
//! ([`anchor`]): address-space randomisation moves the whole image, not the
//! distance between two functions in it. The parent sends two such offsets:
//! the user's function (`fn() -> R` or `fn(A) -> R`) and a *trampoline*,
//! a function monomorphised for `A` and `R` that decodes the arguments, calls
//! the target and encodes its result. The trampoline's own signature is not
//! generic ([`Trampoline`]), so the child can call it without knowing `A` or
//! `R`.
//!
//! Why this is sound: the child runs the identical file (the parent execs
//! `/proc/self/exe`, and the child also compares device and inode before it
//! trusts an offset); the target was a `fn` pointer in the parent, so only
//! non-capturing closures and plain functions can be named this way; and a
//! target that lives in another loaded object (a `dylib`), whose distance
//! from the anchor would differ between processes, is refused before start.
//! Nothing here conjures a closure value from nothing, the unsoundness that
//! made procspawn and mitosis abandon zero-sized closures.
//!
//! Under `fork` none of this is needed: the child has a copy of the parent's
//! memory, so the target, its arguments or a capturing closure are simply
//! called ([`Call::run_here`]).
#![allow(unsafe_code)]

use std::{borrow::Cow, panic::AssertUnwindSafe};

use serde::{Serialize, de::DeserializeOwned};

use crate::{
    child::panic,
    codec::{self, CodecError},
    outcome::Outcome,
    sys::{Fd, RawFd},
};

/// The non-generic signature of every trampoline: target address and
/// encoded arguments in, outcome out.
///
/// # Safety
/// A trampoline monomorphised for `fn(A) -> R` (or `fn() -> R`) must be
/// called only with the address of a function of exactly that type: it
/// turns the address back into a function pointer and calls it.
pub(crate) type Trampoline = unsafe fn(usize, Vec<u8>, Vec<Fd>) -> Outcome;

/// The reference point for code offsets. Never called.
#[inline(never)]
fn anchor() {}

fn anchor_addr() -> usize {
    anchor as fn() as usize
}

/// The distance of `addr` from the anchor.
pub(crate) fn offset_of(addr: usize) -> i64 {
    addr.wrapping_sub(anchor_addr()) as i64
}

/// The address at `offset` from the anchor.
pub(crate) fn addr_of(offset: i64) -> usize {
    anchor_addr().wrapping_add(offset as usize)
}

/// `true` when `addr` and the anchor both lie in the main executable, so
/// that the offset means the same thing in the re-executed child (a shared
/// library, even one that links this crate, may load elsewhere or not at
/// all there).
pub(crate) fn in_same_image(addr: usize) -> bool {
    let main = crate::sys::main_image_base();
    main.is_some() && crate::sys::image_base(anchor_addr()) == main && crate::sys::image_base(addr) == main
}

/// Turns an offset received from the parent back into a trampoline.
///
/// # Safety
/// `offset` must be the [`offset_of`] a [`Trampoline`] in a process running
/// the same executable file.
pub(crate) unsafe fn trampoline_at(offset: i64) -> Trampoline {
    let addr = addr_of(offset);
    // SAFETY: per the contract, `addr` is the address of a function of type
    // Trampoline in this very image.
    unsafe { std::mem::transmute::<usize, Trampoline>(addr) }
}

/// Turns an offset received from the parent back into a plain function.
///
/// # Safety
/// `offset` must be the [`offset_of`] a `fn()` in a process running the
/// same executable file.
pub(crate) unsafe fn fn_at(offset: i64) -> fn() {
    // SAFETY: per the contract, the address is that of a `fn()` in this image.
    unsafe { std::mem::transmute::<usize, fn()>(addr_of(offset)) }
}

/// # Safety
/// `target` must be the address of a `fn() -> R` (see [`Trampoline`]).
unsafe fn trampoline_unit<R: Serialize + 'static>(target: usize, args: Vec<u8>, fds: Vec<Fd>) -> Outcome {
    if !args.is_empty() || !fds.is_empty() {
        return Outcome::failed_args("a target without arguments received arguments".into());
    }
    // SAFETY: per this function's contract, `target` is a `fn() -> R`.
    let f = unsafe { std::mem::transmute::<usize, fn() -> R>(target) };
    run_caught(move || Ok(f()))
}

/// # Safety
/// `target` must be the address of a `fn(A) -> R` (see [`Trampoline`]).
unsafe fn trampoline_args<A: DeserializeOwned + 'static, R: Serialize + 'static>(
    target: usize,
    args: Vec<u8>,
    fds: Vec<Fd>,
) -> Outcome {
    // SAFETY: per this function's contract, `target` is a `fn(A) -> R`.
    let f = unsafe { std::mem::transmute::<usize, fn(A) -> R>(target) };
    run_caught(
        move || match codec::fds::supply(fds, || codec::decode_owned::<A>(args)) {
            Ok(args) => Ok(f(args)),
            Err(CodecError(e)) => Err(Outcome::failed_args(e)),
        },
    )
}

/// Runs `f` and encodes its value, turning a panic anywhere in user code
/// (a `Deserialize` of the arguments, the target, a `Serialize` or `Drop`
/// of the result) into [`Outcome::Panic`].
pub(crate) fn run_caught<R: Serialize + 'static>(f: impl FnOnce() -> Result<R, Outcome>) -> Outcome {
    panic::enter_target();
    let result = std::panic::catch_unwind(AssertUnwindSafe(|| match f() {
        Ok(value) => match codec::encode(&value) {
            Ok(bytes) => Outcome::Value(bytes.into_owned()),
            Err(CodecError(e)) => Outcome::failed_result(e),
        },
        Err(outcome) => outcome,
    }));
    panic::leave_target();
    result.unwrap_or_else(|payload| Outcome::Panic(panic::take_panic(panic::payload_text(&*payload))))
}

/// A target with everything it needs, before start.
pub(crate) trait Call: Send {
    /// How a spawned child finds the code: (trampoline, target) offsets, or
    /// `None` for a closure, which only `fork` can carry.
    fn entry(&self) -> Option<(i64, i64, usize)>;
    /// The encoded arguments for a spawned child, and the descriptors of
    /// the endpoints among them (`Exported::sent` once they are sent).
    fn encode_args(&self) -> Result<(Cow<'_, [u8]>, codec::fds::Exported), CodecError>;
    /// The descriptors of the connections among the arguments, for a fork
    /// child to keep; `None` when they cannot be listed (a closure).
    fn endpoint_fds(&self) -> Option<Vec<RawFd>>;
    /// Runs the target in this process (a fork child).
    fn run_here(self: Box<Self>) -> Outcome;
}

/// `fn() -> R`.
pub(crate) struct FnCall0<R> {
    pub(crate) f: fn() -> R,
}

impl<R: Serialize + 'static> Call for FnCall0<R> {
    fn entry(&self) -> Option<(i64, i64, usize)> {
        let tramp = trampoline_unit::<R> as Trampoline as usize;
        let target = self.f as usize;
        Some((offset_of(tramp), offset_of(target), target))
    }
    fn encode_args(&self) -> Result<(Cow<'_, [u8]>, codec::fds::Exported), CodecError> {
        Ok((Cow::Borrowed(&[]), codec::fds::Exported::default()))
    }
    fn endpoint_fds(&self) -> Option<Vec<RawFd>> {
        Some(Vec::new())
    }
    fn run_here(self: Box<Self>) -> Outcome {
        let f = self.f;
        run_caught(move || Ok(f()))
    }
}

/// `fn(A) -> R` with its argument.
pub(crate) struct FnCall1<A, R> {
    pub(crate) f: fn(A) -> R,
    pub(crate) args: A,
}

impl<A: Serialize + DeserializeOwned + Send + 'static, R: Serialize + 'static> Call for FnCall1<A, R> {
    fn entry(&self) -> Option<(i64, i64, usize)> {
        let tramp = trampoline_args::<A, R> as Trampoline as usize;
        let target = self.f as usize;
        Some((offset_of(tramp), offset_of(target), target))
    }
    fn encode_args(&self) -> Result<(Cow<'_, [u8]>, codec::fds::Exported), CodecError> {
        let (bytes, fds) = codec::fds::collect(|| codec::encode(&self.args));
        Ok((bytes?, fds))
    }
    fn endpoint_fds(&self) -> Option<Vec<RawFd>> {
        // An argument that does not encode cannot be listed: keep every
        // connection then, as a closure does.
        if !crate::registry::any_endpoints() {
            return Some(Vec::new());
        }
        codec::fds::list(|| codec::encode(&self.args).is_ok())
    }
    fn run_here(self: Box<Self>) -> Outcome {
        let FnCall1 { f, args } = *self;
        run_caught(move || Ok(f(args)))
    }
}

/// A closure, possibly capturing; `fork` only.
pub(crate) struct ClosureCall<F> {
    pub(crate) f: F,
}

impl<F: FnOnce() -> R + Send + 'static, R: Serialize + 'static> Call for ClosureCall<F> {
    fn entry(&self) -> Option<(i64, i64, usize)> {
        None
    }
    fn encode_args(&self) -> Result<(Cow<'_, [u8]>, codec::fds::Exported), CodecError> {
        Err(CodecError("a closure cannot be sent to a spawned process".into()))
    }
    fn endpoint_fds(&self) -> Option<Vec<RawFd>> {
        None
    }
    fn run_here(self: Box<Self>) -> Outcome {
        let f = self.f;
        run_caught(move || Ok(f()))
    }
}

/// The (trampoline, target) offsets that name `f` in a worker of the same
/// executable (the pool's task messages), or `None` when `f` lies outside
/// the main executable and so has no offset valid in another process.
pub(crate) fn offsets_of<A: DeserializeOwned + 'static, R: Serialize + 'static>(f: fn(A) -> R) -> Option<(i64, i64)> {
    let tramp = trampoline_args::<A, R> as Trampoline as usize;
    let target = f as usize;
    (in_same_image(tramp) && in_same_image(target)).then(|| (offset_of(tramp), offset_of(target)))
}

/// Runs the task named by offsets from [`offsets_of`] on its encoded
/// argument and the descriptors of the library objects in it: decode,
/// call, catch a panic, encode the result.
///
/// # Safety
/// `(tramp, target)` must come from [`offsets_of`] in a process running the
/// same executable file (the pool's parent, which started this worker).
pub(crate) unsafe fn run_offsets(tramp: i64, target: i64, args: Vec<u8>, fds: Vec<Fd>) -> Outcome {
    // SAFETY: per the contract, `tramp` names a trampoline monomorphised for
    // the `fn(A) -> R` whose offset is `target`, in this very image.
    let t = unsafe { trampoline_at(tramp) };
    // SAFETY: per the contract, `target` names the `fn(A) -> R` that `t`
    // was monomorphised for.
    unsafe { t(addr_of(target), args, fds) }
}
