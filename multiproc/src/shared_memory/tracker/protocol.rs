//! The tracker's messages, one datagram each on its sequenced-packet
//! socket: an operation byte, then its fields.
//!
//! ```text
//! owner → tracker   "C" size (u64 LE) name    create the segment and track it
//!                   "R" name                  track a name (re-telling a new tracker)
//!                   "U" name                  forget a name
//! tracker → owner   "c" name  + descriptor    created
//!                   "e" errno (i32 LE) name   not created (0: not an OS error)
//!                   "r" name                  tracked
//! ```

/// The longest datagram: an operation byte, a size or an errno, and a
/// name (`NAME_MAX`).
pub(crate) const MAX_MESSAGE: usize = 1 + 8 + 255;

/// A request of the owner.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Request<'a> {
    Create { size: u64, name: &'a [u8] },
    Register { name: &'a [u8] },
    Unregister { name: &'a [u8] },
}

/// An answer of the tracker (the descriptor of `Created` travels beside
/// the datagram).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Reply<'a> {
    Created { name: &'a [u8] },
    Failed { errno: i32, name: &'a [u8] },
    Registered { name: &'a [u8] },
}

impl<'a> Request<'a> {
    pub(crate) fn encode(&self) -> Vec<u8> {
        match *self {
            Request::Create { size, name } => [&b"C"[..], &size.to_le_bytes(), name].concat(),
            Request::Register { name } => [&b"R"[..], name].concat(),
            Request::Unregister { name } => [&b"U"[..], name].concat(),
        }
    }

    /// `None` for a datagram that is no request (ignored by the tracker).
    pub(crate) fn decode(bytes: &'a [u8]) -> Option<Request<'a>> {
        match bytes.split_first()? {
            (b'C', rest) if rest.len() > 8 => {
                let (size, name) = rest.split_at(8);
                let size = u64::from_le_bytes(size.try_into().expect("8 bytes"));
                Some(Request::Create { size, name })
            }
            (b'R', name) => Some(Request::Register { name }),
            (b'U', name) => Some(Request::Unregister { name }),
            _ => None,
        }
    }

    /// Whether `reply` answers this request: the same name, and an answer
    /// this operation can have.
    pub(crate) fn is_answered_by(&self, reply: &Reply<'_>) -> bool {
        match (*self, *reply) {
            (Request::Create { name, .. }, Reply::Created { name: n } | Reply::Failed { name: n, .. }) => n == name,
            (Request::Register { name }, Reply::Registered { name: n }) => n == name,
            _ => false,
        }
    }
}

impl<'a> Reply<'a> {
    pub(crate) fn encode(&self) -> Vec<u8> {
        match *self {
            Reply::Created { name } => [&b"c"[..], name].concat(),
            Reply::Failed { errno, name } => [&b"e"[..], &errno.to_le_bytes(), name].concat(),
            Reply::Registered { name } => [&b"r"[..], name].concat(),
        }
    }

    /// `None` for a datagram that is no answer.
    pub(crate) fn decode(bytes: &'a [u8]) -> Option<Reply<'a>> {
        match bytes.split_first()? {
            (b'c', name) => Some(Reply::Created { name }),
            (b'e', rest) if rest.len() >= 4 => {
                let (errno, name) = rest.split_at(4);
                let errno = i32::from_le_bytes(errno.try_into().expect("4 bytes"));
                Some(Reply::Failed { errno, name })
            }
            (b'r', name) => Some(Reply::Registered { name }),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_message_decodes_to_itself() {
        let name = &b"/mp-x"[..];
        for r in [
            Request::Create { size: 4096, name },
            Request::Register { name },
            Request::Unregister { name },
        ] {
            assert_eq!(Request::decode(&r.encode()), Some(r));
        }
        for r in [
            Reply::Created { name },
            Reply::Failed { errno: 17, name },
            Reply::Registered { name },
        ] {
            assert_eq!(Reply::decode(&r.encode()), Some(r));
        }
    }

    #[test]
    fn the_bytes_on_the_wire_stay_as_they_were() {
        assert_eq!(
            Request::Create { size: 1, name: b"n" }.encode(),
            b"C\x01\0\0\0\0\0\0\0n"
        );
        assert_eq!(Request::Register { name: b"n" }.encode(), b"Rn");
        assert_eq!(Request::Unregister { name: b"n" }.encode(), b"Un");
        assert_eq!(Reply::Failed { errno: 2, name: b"n" }.encode(), b"e\x02\0\0\0n");
    }

    #[test]
    fn malformed_datagrams_are_no_message() {
        for bytes in [&b""[..], b"C", b"C\x01\0\0\0\0\0\0\0", b"X", b"c"[..0].as_ref()] {
            assert_eq!(Request::decode(bytes), None, "{bytes:?}");
        }
        for bytes in [&b""[..], b"e\x11", b"k", b"C"] {
            assert_eq!(Reply::decode(bytes), None, "{bytes:?}");
        }
    }
}
