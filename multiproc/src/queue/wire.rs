//! A queue on the wire: the indexes of its descriptors, checked on
//! arrival.

use std::{
    marker::PhantomData,
    sync::{Arc, atomic::AtomicBool},
};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{Queue, core::Core, ring::ShmRing};
use crate::{codec, sys::Fd};

/// On the wire: the indexes of the six descriptors (see
/// `crate::codec::fds`).
#[derive(Serialize, Deserialize)]
struct Passed {
    control: u32,
    data: u32,
    side_tx: u32,
    side_rx: u32,
    ready: u32,
    room: u32,
    /// The producers' watch descriptor, for a queue made with producers.
    producers: Option<u32>,
}

impl<T> Serialize for Queue<T> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::Error as _;
        let [control, data] = self.core.ring.fds();
        let export = |fd: &Fd| codec::fds::export(fd.raw()).map_err(S::Error::custom);
        Passed {
            control: export(control)?,
            data: export(data)?,
            side_tx: export(&self.core.side_tx)?,
            side_rx: export(&self.core.side_rx)?,
            ready: export(&self.core.ready)?,
            room: export(&self.core.room)?,
            producers: self.core.producers.as_ref().map(export).transpose()?,
        }
        .serialize(s)
    }
}

impl<'de, T> Deserialize<'de> for Queue<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Queue<T>, D::Error> {
        use serde::de::Error as _;
        let p = Passed::deserialize(d)?;
        let import = |i| codec::fds::import(i).map_err(D::Error::custom);
        let (control, data, side_tx, side_rx, ready, room) = (
            import(p.control)?,
            import(p.data)?,
            import(p.side_tx)?,
            import(p.side_rx)?,
            import(p.ready)?,
            import(p.room)?,
        );
        let producers = p.producers.map(import).transpose()?;
        if producers.as_ref().is_some_and(|fd| !fd.is_socket()) {
            return Err(D::Error::custom(
                "not a queue: its producers' descriptor is not a socket",
            ));
        }
        let ring = ShmRing::from_fds(control, data).map_err(|e| D::Error::custom(format!("not a queue: {e}")))?;
        if !ready.is_eventfd() {
            // A put signals it: never write to a descriptor that is not one.
            return Err(D::Error::custom(
                "not a queue: its readiness descriptor is not an eventfd",
            ));
        }
        if !room.is_eventfd() {
            // A get signals it, as a put signals the other.
            return Err(D::Error::custom("not a queue: its room descriptor is not an eventfd"));
        }
        Ok(Queue {
            core: Arc::new(Core {
                ring,
                side_tx,
                side_rx,
                ready,
                room,
                closed: AtomicBool::new(false),
                producers,
            }),
            _items: PhantomData,
        })
    }
}
