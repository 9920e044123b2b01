//! Backend for targets without process support: every operation fails.
compile_error!("multiproc currently supports Linux only; other backends are planned");
