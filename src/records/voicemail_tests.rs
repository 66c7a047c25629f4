use super::*;
use crate::records::test_dir;

const SHOP: &str = "+81312345678";
const DELIVERY: &str = "+81398765432";

fn t(s: &str) -> jiff::Timestamp {
    s.parse().unwrap()
}

pub(crate) fn message(id: &str, line: &str, at: &str) -> Message {
    Message {
        id: id.into(),
        line: line.into(),
        caller: "+819011112222".into(),
        caller_name: Some("Tanaka".into()),
        received_at: t(at),
        duration_ms: 12_340,
        file: format!("{id}.wav"),
        size_bytes: 1000,
        state: MessageState::New,
        recovered: false,
        call_id: Some(format!("{id}@host")),
    }
}

fn store_with_files(name: &str, messages: &[Message]) -> VoicemailStore {
    let store = VoicemailStore::open(&test_dir(name)).unwrap();
    for m in messages {
        std::fs::write(store.file_path(m), b"RIFF").unwrap();
        store.insert(m).unwrap();
    }
    store
}

#[test]
fn insert_get_list_mark() {
    let a = message("a", SHOP, "2025-03-01T01:00:00Z");
    let b = message("b", DELIVERY, "2025-03-02T01:00:00Z");
    let c = Message {
        caller_name: None,
        call_id: None,
        recovered: true,
        ..message("c", SHOP, "2025-03-03T01:00:00Z")
    };
    let store = store_with_files("vm-crud", &[a.clone(), b.clone(), c.clone()]);
    assert_eq!(store.get("a").unwrap(), a);
    assert_eq!(store.get("c").unwrap(), c);
    assert!(matches!(store.get("zz"), Err(StoreError::NotFound(_))));
    // A duplicate id is refused.
    assert!(store.insert(&a).is_err());

    let ids = |f: &Filter| -> Vec<String> { store.list(f).unwrap().into_iter().map(|m| m.id).collect() };
    assert_eq!(ids(&Filter::default()), ["c", "b", "a"]);
    let shop_only = Filter {
        line: Some(SHOP.into()),
        ..Filter::default()
    };
    assert_eq!(ids(&shop_only), ["c", "a"]);

    store.mark("a", MessageState::Heard).unwrap();
    assert_eq!(store.get("a").unwrap().state, MessageState::Heard);
    let new_on_shop = Filter {
        only_new: true,
        ..shop_only.clone()
    };
    assert_eq!(ids(&new_on_shop), ["c"]);
    store.mark("c", MessageState::Archived).unwrap();
    assert_eq!(ids(&shop_only), ["a"]);
    let with_archived = Filter {
        include_archived: true,
        ..shop_only
    };
    assert_eq!(ids(&with_archived), ["c", "a"]);
    assert!(matches!(
        store.mark("zz", MessageState::Heard),
        Err(StoreError::NotFound(_))
    ));
}

#[test]
fn delete_removes_row_and_file() {
    let a = message("a", SHOP, "2025-03-01T01:00:00Z");
    let store = store_with_files("vm-delete", std::slice::from_ref(&a));
    let path = store.file_path(&a);
    assert!(path.exists());
    store.delete("a").unwrap();
    assert!(!path.exists());
    assert!(matches!(store.get("a"), Err(StoreError::NotFound(_))));
    assert!(matches!(store.delete("a"), Err(StoreError::NotFound(_))));
}

#[test]
fn usage_per_line_and_total() {
    let mut b = message("b", SHOP, "2025-03-02T01:00:00Z");
    b.size_bytes = 500;
    let store = store_with_files(
        "vm-usage",
        &[
            message("a", SHOP, "2025-03-01T01:00:00Z"),
            b,
            message("c", DELIVERY, "2025-03-01T01:00:00Z"),
        ],
    );
    store.mark("a", MessageState::Heard).unwrap();
    assert_eq!(
        store.usage(SHOP).unwrap(),
        BoxUsage {
            messages: 2,
            new: 1,
            bytes: 1500
        }
    );
    assert_eq!(store.usage("+810000").unwrap(), BoxUsage::default());
    assert_eq!(
        store.total_usage().unwrap(),
        BoxUsage {
            messages: 3,
            new: 2,
            bytes: 2500
        }
    );
}

#[test]
fn retention_archives_or_deletes_old_messages() {
    let store = store_with_files(
        "vm-retention",
        &[
            message("old", SHOP, "2025-01-01T00:00:00Z"),
            message("edge", SHOP, "2025-01-31T00:00:01Z"),
            message("recent", SHOP, "2025-02-25T00:00:00Z"),
        ],
    );
    let now = t("2025-03-02T00:00:00Z");
    // 30 days before now is 2025-01-31T00:00:00Z: "edge" is just inside.
    let archived = store.apply_retention(now, 30, RetentionAction::Archive).unwrap();
    assert_eq!(archived, ["old"]);
    assert_eq!(store.get("old").unwrap().state, MessageState::Archived);
    // Archiving again touches nothing.
    assert!(
        store
            .apply_retention(now, 30, RetentionAction::Archive)
            .unwrap()
            .is_empty()
    );
    let deleted = store.apply_retention(now, 5, RetentionAction::Delete).unwrap();
    assert_eq!(deleted, ["old", "edge"]);
    assert!(!store.dir().join("old.wav").exists());
    assert!(!store.dir().join("edge.wav").exists());
    assert_eq!(store.get("recent").unwrap().state, MessageState::New);
}

#[test]
fn survives_reopening() {
    let dir = test_dir("vm-reopen");
    let a = message("a", SHOP, "2025-03-01T01:00:00Z");
    VoicemailStore::open(&dir).unwrap().insert(&a).unwrap();
    assert_eq!(VoicemailStore::open(&dir).unwrap().get("a").unwrap(), a);
}

#[test]
fn a_finished_recording_becomes_a_new_message() {
    use crate::records::recording::{self, Frame, RecordingMeta};
    let dir = test_dir("vm-from-recording");
    let meta = RecordingMeta {
        line: SHOP.into(),
        caller: "+819011112222".into(),
        caller_name: None,
        call_id: Some("c1@host".into()),
        started_at: t("2025-03-01T05:00:00Z"),
    };
    let (tx, rx) = std::sync::mpsc::channel();
    let (mut sender, handle) = recording::start(&dir, "vm-r", meta.clone(), tx).unwrap();
    for _ in 0..50 {
        sender.push_frame(&Frame { samples: [100; 160] });
    }
    sender.finish();
    handle.join().unwrap();
    let done = rx.recv().unwrap();
    let path = done.path.unwrap();
    let m = Message::from_recording(&done.id, &path, done.duration, &done.meta, false).unwrap();
    assert_eq!(m.file, "vm-r.wav");
    assert_eq!(m.duration_ms, 1000);
    assert_eq!(m.size_bytes, 44 + 16_000);
    assert_eq!(m.received_at, meta.started_at);
    assert_eq!(m.state, MessageState::New);
    let store = VoicemailStore::open(&dir).unwrap();
    store.insert(&m).unwrap();
    assert_eq!(store.file_path(&store.get("vm-r").unwrap()), path);
}
