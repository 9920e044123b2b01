//! Python's `ShareableList`: attached by name or passed to a child, edited
//! there and seen by the parent, with clear errors and nothing left in
//! /dev/shm; under every start method.

use multiproc::{ErrorKind, ListItem, ShareableList, StartMethod};

use crate::support::{DEADLINE, start};

/// Attaches by name, checks what the parent wrote, and changes items;
/// reports the errors of an out-of-range index and an oversized string.
fn edit_by_name(name: String) -> (ErrorKind, ErrorKind, String) {
    let list = ShareableList::attach(&name).expect("attach by name");
    assert_eq!(list.len(), 6);
    assert_eq!(list.get(0).unwrap(), ListItem::Str("howdy".into()));
    assert_eq!(list.get(2).unwrap(), ListItem::Float(-273.15));
    list.set(0, "partner").unwrap(); // 7 bytes: fits the 8-byte slot
    list.set(1, list.get(1).unwrap().int() + 1).unwrap();
    list.set(3, ListItem::None).unwrap();
    list.set(4, "now a str").unwrap(); // 9 bytes in a 16-byte slot
    list.set(5, 99).unwrap();
    let range = list.get(6).unwrap_err();
    let oversized = list.set(0, "much too long").unwrap_err();
    assert!(!list.shm().owns_name(), "an attached list never unlinks");
    (range.kind(), oversized.kind(), oversized.to_string())
}

trait Int {
    fn int(&self) -> i64;
}

impl Int for ListItem {
    fn int(&self) -> i64 {
        match self {
            ListItem::Int(i) => *i,
            other => panic!("not an int: {other:?}"),
        }
    }
}

fn shm_entry_exists(name: &str) -> bool {
    std::path::Path::new("/dev/shm").join(name).exists()
}

/// Python's `ShareableList`: made in the parent, attached by name in a
/// child that changes it; the parent sees every change; an index out of
/// range and a string past its slot are clear errors; unlinking leaves
/// nothing in /dev/shm.
fn shareable_list_attached_by_name_in_a_child(m: StartMethod) {
    let mut list = ShareableList::new([
        ListItem::from("howdy"),
        41.into(),
        (-273.15).into(),
        true.into(),
        b"eight by".as_slice().into(),
        ().into(),
    ])
    .unwrap();
    let name = list.name().to_owned();
    assert!(shm_entry_exists(&name));
    let mut p = start(m, edit_by_name, name.clone());
    let (range, oversized, msg) = p.join_timeout(DEADLINE).expect("the child's report");
    assert_eq!(range, ErrorKind::InvalidInput);
    assert_eq!(oversized, ErrorKind::InvalidInput);
    assert!(msg.contains("exceeds the 8 bytes"), "{msg}");
    assert_eq!(
        list.to_vec().unwrap(),
        [
            ListItem::Str("partner".into()),
            ListItem::Int(42),
            ListItem::Float(-273.15),
            ListItem::None,
            ListItem::Str("now a str".into()),
            ListItem::Int(99),
        ]
    );
    assert_eq!(list.count(&ListItem::None).unwrap(), 1);
    assert_eq!(list.index(&ListItem::Int(99)).unwrap(), Some(5));
    assert_eq!(list.format().unwrap(), "8sqdxxxxxx?x16sq");
    list.shm_mut().unlink().unwrap();
    assert!(!shm_entry_exists(&name), "unlink leaves nothing in /dev/shm");
    assert!(ShareableList::attach(&name).is_err());
    // The mapping stays usable after the unlink.
    assert_eq!(list.get(1).unwrap(), ListItem::Int(42));
}

/// The child gets the list as an argument (by descriptor) and writes.
fn write_passed(list: ShareableList) {
    list.set(0, "from the child").unwrap();
}

/// Dropping the creator's list unlinks its name, also after a child used
/// it through a passed handle.
fn shareable_list_passed_and_dropped(m: StartMethod) {
    let list = ShareableList::new([ListItem::from("a string of room")]).unwrap();
    let name = list.name().to_owned();
    let attached = ShareableList::attach(&name).unwrap();
    let mut p = start(m, write_passed, attached);
    p.join_timeout(DEADLINE).unwrap();
    assert_eq!(list.get(0).unwrap(), ListItem::Str("from the child".into()));
    drop(list);
    assert!(!shm_entry_exists(&name), "the creator's drop unlinks");
}

per_method!(
    shareable_list_attached_by_name_in_a_child,
    shareable_list_passed_and_dropped
);
