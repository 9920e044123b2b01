//! Starting a child: the spawn and fork paths behind
//! [`Process::start`](super::Process::start).

use std::{sync::Arc, time::Instant};

use serde::{Serialize, de::DeserializeOwned};

use super::{Process, Running, SIGKILL, executable};
use crate::{
    Error, ErrorKind, Result, StartMethod, child,
    codec::CodecError,
    entry::{
        protocol::{self, Boot, PROTOCOL},
        role::{self, Role},
    },
    frame::{self, SOCKET_BUFFER},
    output,
    registry::{self, ChildCore, Me},
    sys::{self, ForkSide},
    target::{self, Call},
};

impl<R> Process<R>
where
    R: Serialize + DeserializeOwned + 'static,
{
    pub(super) fn launch(
        &mut self,
        call: Box<dyn Call>,
    ) -> std::result::Result<Running, (Error, Option<Box<dyn Call>>)> {
        if self.creator != sys::getpid() {
            let e = self.err(
                ErrorKind::InvalidState,
                "can only start a process object created by the current process",
            );
            return Err((e, Some(call)));
        }
        if registry::with_me(|me| me.daemon) {
            let e = self.err(
                ErrorKind::InvalidState,
                "daemonic processes are not allowed to have children",
            );
            return Err((e, Some(call)));
        }
        // Python reaps finished children at every start.
        registry::reap_finished();
        let method = self.method.unwrap_or_else(crate::context::get_start_method);
        if let Err(e) = method.check_available() {
            return Err((e.with_process(&self.name, None), Some(call)));
        }
        let prepared = match output::prepare(self.output, &self.name) {
            Ok(p) => p,
            Err(e) => {
                let e = Error::io("failed to prepare the child's output", e).with_process(&self.name, None);
                return Err((e, Some(call)));
            }
        };
        let core = match method {
            StartMethod::Spawn | StartMethod::ForkServer => {
                let requested = self.requested.take();
                self.launch_spawn(&*call, method, requested, prepared.as_ref())
                    .map_err(|e| (e, Some(call)))?
            }
            StartMethod::Fork => self.launch_fork(call, prepared.as_ref())?,
        };
        self.attached = prepared.map(output::Prepared::attach).unwrap_or_default();
        let core = Arc::new(core);
        registry::register(core.clone());
        Ok(Running {
            core,
            method,
            reader: frame::Reader::control(),
            ready: method == StartMethod::Fork,
            started: Instant::now(),
            outcome: None,
            boot_timed_out: false,
        })
    }

    /// Spawn, or a fork server's fork: either way the child gets its
    /// target through the bootstrap socket.
    pub(super) fn launch_spawn(
        &self,
        call: &dyn Call,
        method: StartMethod,
        requested: Option<crate::forkserver::Requested>,
        prepared: Option<&output::Prepared>,
    ) -> Result<ChildCore> {
        let Some((trampoline, target_offset, target_addr)) = call.entry() else {
            return Err(self.err(
                ErrorKind::Unsupported,
                "a closure can only run under the fork start method; pass a fn item or a non-capturing closure to run it under spawn",
            ));
        };
        if role::entry_was_skipped() {
            // This process was spawned by the library but is running `main`:
            // its entry point never ran. Starting a child here would run
            // `main` again, and so on without end.
            return Err(self.err(
                ErrorKind::Bootstrap,
                "this process was started by multiproc but its entry point never ran (it is running main); \
                 call multiproc::init() first thing in main, or enable the auto-entry feature",
            ));
        }
        if !target::in_same_image(target_addr) {
            return Err(self.err(
                ErrorKind::Unsupported,
                "the target (or this library) lives in a shared library; spawn can only run functions of the main executable",
            ));
        }
        let (args, fds) = call.encode_args().map_err(|CodecError(e)| {
            self.err(ErrorKind::Serialize, format!("failed to serialize the arguments: {e}"))
        })?;
        let exe = sys::exe_identity().map_err(|e| Error::io("cannot identify the running executable", e))?;
        // `set_executable`: another path of this build, checked before
        // anything starts; the child checks the build id again.
        let program = executable::checked().map_err(|e| e.with_process(&self.name, None))?;
        // Read once per process; a fork server may run a copy.
        let build_id = executable::own_build_id()
            .ok()
            .flatten()
            .map(<[u8]>::to_vec)
            .unwrap_or_default();
        let boot = registry::with_me(|me: &Me| Boot {
            protocol: PROTOCOL,
            exe,
            build_id,
            trampoline,
            target: target_offset,
            name: self.name.clone(),
            identity: self.identity.clone(),
            daemon: self.daemon,
            authkey: me.authkey,
            parent_pid: sys::getpid(),
            parent_name: me.name.clone(),
            default_method: crate::context::get_start_method(),
            backtrace: self.backtrace,
            output: prepared.is_some(),
        });
        let (handle, ours) = match method {
            StartMethod::ForkServer => match requested {
                Some(r) => crate::forkserver::finish_request(r, self.bootstrap_timeout),
                None => crate::forkserver::request_child(self.bootstrap_timeout),
            }
            .map_err(|e| e.with_process(&self.name, None))?,
            _ => role::spawn(Role::Child, program.as_deref()).map_err(|e| {
                let what = match &program {
                    Some(p) => format!("failed to spawn the child process from {}", p.display()),
                    None => "failed to spawn the child process".to_owned(),
                };
                Error::io(what, e).with_process(&self.name, None)
            })?,
        };
        let _ = ours.set_send_buffer(SOCKET_BUFFER);
        // A child that died at once makes these fail (EPIPE); `join`
        // reports that as a bootstrap failure with the child's status.
        // The child's output descriptors ride on the Boot frame.
        let sent = protocol::send_boot(&ours, &boot, prepared.map(output::Prepared::child_fds));
        if sent.is_ok() && !protocol::args_fit_inline(args.len()) {
            // Large arguments stream into the child as it reads them.
            let streamed = protocol::stream_args(&ours, (&args, &fds.fds), &handle, self.bootstrap_timeout);
            if streamed.is_ok() {
                fds.sent();
            } else if let Err(frame::StreamError::Timeout) = streamed {
                // The child is alive but not reading: it never reached the
                // entry point. Stop it here rather than hand out a process
                // that can only fail.
                let _ = handle.signal(SIGKILL);
                let core = ChildCore::new(handle, ours, self.name.clone(), self.daemon);
                let status = core.wait(None).ok().flatten();
                let mut e = self.err(
                    ErrorKind::Bootstrap,
                    format!(
                        "the child did not take its arguments within {:?} and was killed; \
                         if the automatic entry is disabled, call multiproc::init() first thing in main",
                        self.bootstrap_timeout
                    ),
                );
                if let Some(s) = status {
                    e = e.with_status(s);
                }
                return Err(e);
            }
        } else if sent.is_ok() && protocol::send_args(&ours, &args, &fds.fds).is_ok() {
            fds.sent();
        }
        Ok(ChildCore::new(handle, ours, self.name.clone(), self.daemon))
    }

    pub(super) fn launch_fork(
        &self,
        call: Box<dyn Call>,
        out: Option<&output::Prepared>,
    ) -> std::result::Result<ChildCore, (Error, Option<Box<dyn Call>>)> {
        // The relay of prefixed output is locked from here to the fork: its
        // thread (not counted) then holds no lock the child could inherit.
        let relay = output::lock_for_fork();
        // With the opt-in, a count that cannot be read is taken as "several".
        let counted = sys::thread_count().map(|n| n.saturating_sub(relay.threads()).max(1));
        let threads = match (counted, self.allow_threads) {
            (Ok(1), _) => 1,
            (Ok(n), true) => n,
            (Err(_), true) => usize::MAX,
            (Ok(n), false) => {
                let e = self.err(
                    ErrorKind::ForkWithThreads,
                    format!(
                        "refusing to fork: this process runs {n} threads, and locks they hold would stay locked in \
                         the child; use the spawn start method, or see ProcessBuilder::allow_fork_with_threads"
                    ),
                );
                return Err((e, Some(call)));
            }
            (Err(e), false) => return Err((Error::io("cannot count this process's threads", e), Some(call))),
        };
        let prepared = (|| {
            let (ours, theirs) = sys::socketpair()?;
            theirs.set_send_buffer(SOCKET_BUFFER)?;
            let devnull = sys::null_device()?;
            Ok::<_, std::io::Error>((ours, theirs, devnull))
        })();
        let (ours, theirs, devnull) = match prepared {
            Ok(x) => x,
            Err(e) => return Err((Error::io("failed to prepare the fork", e), Some(call))),
        };
        // The connections among the arguments (user code may run here, so
        // before the registry is locked).
        let keep = call.endpoint_fds();
        // Output buffered before the fork must not be written twice.
        child::flush_std_streams();
        let lock = registry::fork_locked();
        let me = lock.me();
        let child_me = Me {
            name: self.name.clone(),
            identity: self.identity.clone(),
            daemon: self.daemon,
            start_method: Some(StartMethod::Fork),
            authkey: me.authkey,
            parent: None,
        };
        let parent = (sys::getpid(), me.name.clone());
        // SAFETY: the child below only runs the target under the rules
        // documented on `allow_fork_with_threads` (single-threaded parent
        // unless the caller opted in) and leaves through `finish`/`exit_now`.
        #[allow(unsafe_code)]
        let side = unsafe { sys::fork_child() };
        match side {
            Err(e) => {
                drop(lock);
                Err((Error::io("fork failed", e), Some(call)))
            }
            Ok(ForkSide::Child) => {
                if let Err(e) = relay.in_child(out) {
                    // The child cannot be what was asked; it has not run the
                    // target, and says why on the descriptor it still has.
                    let _ = sys::write_all_raw(
                        2,
                        format!("multiproc: cannot redirect the child's output: {e}\n").as_bytes(),
                    );
                    sys::exit_now(70);
                }
                child::fork_child_main(
                    lock,
                    child_me,
                    parent,
                    (ours, theirs, devnull),
                    call,
                    (threads > 1, keep, self.backtrace),
                )
            }
            Ok(ForkSide::Parent(handle)) => {
                drop(lock);
                drop(relay);
                drop(theirs);
                Ok(ChildCore::new(handle, ours, self.name.clone(), self.daemon))
            }
        }
    }
}
