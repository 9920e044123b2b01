//! Awaited round trips through a pipe (issue 16, item 2), beside the
//! blocking ones in the same interleaved group.
//!
//! | row | what |
//! |---|---|
//! | `pipe/roundtrip_1B_await/<m>` (`multiproc_blocking`) | blocking `send_bytes(b"x")` + `recv_bytes` of a `<m>` child's echo; median of a batch |
//! | `pipe/roundtrip_1B_await/<m>` (`multiproc`) | the same with `send_bytes_async(..).await` + `recv_bytes_async().await`, the batch inside one `block_on` of a tokio current-thread runtime (the reactor is async-io's, on its own thread) |
//!
//! The ratio of the two is the cost of waiting through the reactor: the
//! child's echo wakes the reactor's thread, which wakes the runtime's.
//! These rows run last: once the reactor's thread exists, the process is
//! multi-threaded and `fork` refuses to start children, so every child of
//! this group starts before the first await.

use std::time::{Duration, Instant};

use crate::{
    channels::{ConnPeer, conn_echo},
    cli::Options,
    floors::transport,
    harness::{Bench, Impl},
    rows::{METHODS, Outcome, run_benches},
};

/// Round trips per sample (a sample is their median).
fn rounds(opts: &Options) -> usize {
    if opts.quick { 100 } else { 1_000 }
}

fn blocking_rtt(p: &ConnPeer, rtts: &mut Vec<u64>, rounds: usize) -> Result<Duration, String> {
    rtts.clear();
    for _ in 0..rounds {
        let t = Instant::now();
        p.send_bytes(b"x").map_err(|e| format!("send_bytes failed: {e}"))?;
        let m = p.recv_bytes().map_err(|e| format!("recv_bytes failed: {e}"))?;
        rtts.push(t.elapsed().as_nanos() as u64);
        if m != b"x" {
            return Err(format!("the child echoed {m:?}"));
        }
    }
    Ok(transport::median_ns(rtts))
}

fn awaited_rtt(
    rt: &tokio::runtime::Runtime,
    p: &ConnPeer,
    rtts: &mut Vec<u64>,
    rounds: usize,
) -> Result<Duration, String> {
    rtts.clear();
    rt.block_on(async {
        for _ in 0..rounds {
            let t = Instant::now();
            p.send_bytes_async(b"x")
                .await
                .map_err(|e| format!("send_bytes_async failed: {e}"))?;
            let m = p
                .recv_bytes_async()
                .await
                .map_err(|e| format!("recv_bytes_async failed: {e}"))?;
            rtts.push(t.elapsed().as_nanos() as u64);
            if m != b"x" {
                return Err(format!("the child echoed {m:?}"));
            }
        }
        Ok(())
    })?;
    Ok(transport::median_ns(rtts))
}

/// Runs the rows `opts` selects.
pub(crate) fn run_all(opts: &Options, out: &mut Outcome) {
    let rounds = rounds(opts);
    let wanted: Vec<_> = METHODS
        .into_iter()
        .filter(|(_, m)| opts.wants(&format!("pipe/roundtrip_1B_await/{m}")))
        .collect();
    if wanted.is_empty() {
        return;
    }
    // Every child before the first await (see the module docs).
    let mut peers = Vec::new();
    for (method, m) in wanted {
        let start = || ConnPeer::start(method, conn_echo, None::<usize>, b"");
        match (start(), start()) {
            (Ok(a), Ok(b)) => peers.push((m, a, b)),
            (Err(e), _) | (_, Err(e)) => out.failures.push(format!("pipe/roundtrip_1B_await/{m}: {e}")),
        }
    }
    let rt = match tokio::runtime::Builder::new_current_thread().build() {
        Ok(rt) => rt,
        Err(e) => {
            out.failures
                .push(format!("pipe/roundtrip_1B_await: no tokio runtime: {e}"));
            return;
        }
    };
    let rt = &rt;
    let mut benches = Vec::new();
    for (m, blocking, awaited) in &peers {
        let mut rtts = Vec::with_capacity(rounds);
        benches.push(Bench::new(
            format!("pipe/roundtrip_1B_await/{m}"),
            Impl::OwnBlocking,
            format!("pipe(true); send_bytes(b\"x\") + recv_bytes of a {m} child's echo, blocking; median of {rounds}"),
            move || blocking_rtt(blocking, &mut rtts, rounds),
        ));
        let mut rtts = Vec::with_capacity(rounds);
        benches.push(Bench::new(
            format!("pipe/roundtrip_1B_await/{m}"),
            Impl::Multiproc,
            format!(
                "the same awaited: send_bytes_async + recv_bytes_async on a tokio current-thread runtime; median of {rounds}"
            ),
            move || awaited_rtt(rt, awaited, &mut rtts, rounds),
        ));
    }
    run_benches(out, opts.counts(15), benches);
}
