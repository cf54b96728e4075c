use std::os::fd::AsFd;

use nix::mqueue::{MQ_OFlag, MqAttr, mq_close, mq_open, mq_unlink};
use nix::sys::stat::Mode;
use proptest::prelude::*;

use crate::image::{FileEntry, MqueueImage, NotifyEntry, QueueEntry, QueuedMessage};
use crate::queue;

fn msg(prio: u32, data: &str) -> QueuedMessage {
    QueuedMessage {
        prio,
        data: data.as_bytes().to_vec(),
    }
}

fn queue_entry(messages: Vec<QueuedMessage>) -> QueueEntry {
    QueueEntry {
        id: 0,
        name: "/jobs".into(),
        unlinked: false,
        mode: 0o640,
        uid: 0,
        gid: 0,
        maxmsg: 4,
        msgsize: 16,
        messages,
        notify: None,
    }
}

#[test]
fn status_lines_parse_and_bad_ones_are_named() {
    let st = queue::parse_status("QSIZE:129        NOTIFY:0     SIGNO:10    NOTIFY_PID:4242  \n")
        .unwrap();
    assert_eq!(
        st,
        queue::Status {
            qsize: 129,
            notify: 0,
            signo: 10,
            notify_pid: 4242
        }
    );
    assert!(
        queue::parse_status("QSIZE:1 NOTIFY:0")
            .unwrap_err()
            .contains("NOTIFY_PID")
    );
    assert!(
        queue::parse_status("QSIZE:x NOTIFY:0 SIGNO:0 NOTIFY_PID:0")
            .unwrap_err()
            .contains("QSIZE")
    );
}

#[test]
fn bad_images_name_the_file_and_the_entry() {
    let too_many = MqueueImage {
        queues: vec![queue_entry(vec![msg(1, "a"); 5])],
        files: vec![],
    };
    let err = MqueueImage::decode_file(&too_many.encode_file())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("criu-rs-mqueue.bin")
            && err.contains("queue entry 0 (/jobs)")
            && err.contains("5 messages, more than its maxmsg 4"),
        "{err}"
    );

    let too_long = MqueueImage {
        queues: vec![queue_entry(vec![msg(1, "a"), msg(0, "seventeen bytes!!")])],
        files: vec![],
    };
    let err = too_long.check().unwrap_err().to_string();
    assert!(
        err.contains("message 1 holds 17 bytes, more than its msgsize 16"),
        "{err}"
    );

    let dangling = MqueueImage {
        queues: vec![queue_entry(vec![])],
        files: vec![FileEntry {
            id: 9,
            queue: 1,
            flags: 2,
        }],
    };
    let err = dangling.check().unwrap_err().to_string();
    assert!(
        err.contains("file entry 0 (id 9): queue 1 does not exist"),
        "{err}"
    );

    let mut bad_name = queue_entry(vec![]);
    bad_name.name = "/a/b".into();
    let err = MqueueImage {
        queues: vec![bad_name],
        files: vec![],
    }
    .check()
    .unwrap_err()
    .to_string();
    assert!(err.contains("not a queue name"), "{err}");

    let mut thread = queue_entry(vec![]);
    thread.notify = Some(NotifyEntry {
        pid: 5,
        sigev_notify: libc::SIGEV_THREAD,
        signo: 0,
        value: 0,
    });
    let err = MqueueImage {
        queues: vec![thread],
        files: vec![],
    }
    .check()
    .unwrap_err()
    .to_string();
    assert!(err.contains("notification"), "{err}");

    let err = MqueueImage::decode_file(b"CRRSMQ00")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("criu-rs-mqueue.bin") && err.contains("does not start with"),
        "{err}"
    );
    let err = MqueueImage::decode_file(b"CRRSMQ01\xff\xff")
        .unwrap_err()
        .to_string();
    assert!(err.contains("not decodable"), "{err}");
}

fn arb_queue() -> impl Strategy<Value = QueueEntry> {
    (
        "[a-z0-9_.-]{1,20}",
        any::<bool>(),
        0u32..0o7777,
        1u64..64,
        prop::collection::vec(
            (
                0u32..=crate::image::PRIO_MAX,
                prop::collection::vec(any::<u8>(), 0..64),
            ),
            0..10,
        ),
        prop::option::of((1i32..100_000, 1i32..=64, any::<u64>())),
    )
        .prop_map(|(name, unlinked, mode, extra, msgs, notify)| QueueEntry {
            id: 0,
            name: format!("/{name}"),
            unlinked,
            mode,
            uid: 1000,
            gid: 1000,
            maxmsg: msgs.len() as u64 + extra,
            msgsize: 64,
            messages: msgs
                .into_iter()
                .map(|(prio, data)| QueuedMessage { prio, data })
                .collect(),
            notify: notify.map(|(pid, signo, value)| NotifyEntry {
                pid,
                sigev_notify: libc::SIGEV_SIGNAL,
                signo,
                value,
            }),
        })
}

proptest! {
    #[test]
    fn images_round_trip(queues in prop::collection::vec(arb_queue(), 0..4), flags in any::<u32>()) {
        let mut image = MqueueImage { queues, files: vec![] };
        for (i, q) in image.queues.iter_mut().enumerate() {
            q.id = i as u32;
        }
        image.files = (0..image.queues.len() as u32).map(|q| FileEntry { id: 100 + q, queue: q, flags }).collect();
        let back = MqueueImage::decode_file(&image.encode_file()).unwrap();
        prop_assert_eq!(back, image);
    }
}

/// A real queue with messages of mixed priorities, removed when dropped.
struct TestQueue {
    name: String,
    fd: std::os::fd::OwnedFd,
}

impl TestQueue {
    fn new(tag: &str) -> Self {
        let name = format!("/criu-rs-test-{tag}-{}", std::process::id());
        let _ = mq_unlink(name.as_str());
        let attr = MqAttr::new(0, 8, 32, 0);
        let flags = MQ_OFlag::O_CREAT | MQ_OFlag::O_EXCL | MQ_OFlag::O_RDWR | MQ_OFlag::O_NONBLOCK;
        let mqd = mq_open(
            name.as_str(),
            flags,
            Mode::from_bits_truncate(0o600),
            Some(&attr),
        )
        .expect("mq_open");
        let fd = mqd.as_fd().try_clone_to_owned().unwrap();
        mq_close(mqd).unwrap();
        TestQueue { name, fd }
    }
}

impl Drop for TestQueue {
    fn drop(&mut self) {
        let _ = mq_unlink(self.name.as_str());
    }
}

fn mixed() -> Vec<QueuedMessage> {
    vec![
        msg(1, "low-a"),
        msg(9, "high"),
        msg(1, "low-b"),
        msg(5, "mid"),
        msg(0, ""),
    ]
}

/// The kernel's receive order for [`mixed`]: priority first, then arrival.
fn mixed_received() -> Vec<QueuedMessage> {
    vec![
        msg(9, "high"),
        msg(5, "mid"),
        msg(1, "low-a"),
        msg(1, "low-b"),
        msg(0, ""),
    ]
}

#[test]
fn a_failure_between_reading_and_writing_back_leaves_every_message_in_order() {
    let q = TestQueue::new("snap");
    queue::fill(q.fd.as_fd(), &mixed()).unwrap();
    let own = queue::reopen(q.fd.as_fd(), true, libc::O_RDWR).unwrap();
    assert_eq!(queue::attr(own.as_fd()).unwrap().curmsgs, 5);

    // The injected failure runs while the queue is empty: it sees every message.
    let (seen, outcome) = queue::snapshot(own.as_fd(), 32, |msgs| {
        assert_eq!(
            queue::attr(own.as_fd()).unwrap().curmsgs,
            0,
            "taken out first"
        );
        assert_eq!(msgs, mixed_received());
        Err::<(), _>("injected: image write failed")
    })
    .unwrap();
    assert_eq!(outcome, Err("injected: image write failed"));
    assert_eq!(seen, mixed_received());

    // Everything is back, in the same order with the same priorities; twice in a row.
    let (again, ok) = queue::snapshot(own.as_fd(), 32, |_| Ok::<_, ()>(())).unwrap();
    assert_eq!(ok, Ok(()));
    assert_eq!(again, mixed_received());
    let (last, read) = queue::drain(q.fd.as_fd(), 32);
    read.unwrap();
    assert_eq!(last, mixed_received());
}

#[test]
fn an_unlinked_queue_is_reopened_and_its_status_read_without_moving_the_task_s_offset() {
    let q = TestQueue::new("unl");
    queue::fill(q.fd.as_fd(), &[msg(3, "abc")]).unwrap();
    mq_unlink(q.name.as_str()).unwrap();
    assert!(queue::is_mqueue(q.fd.as_fd()));
    assert!(!queue::is_mqueue(
        std::fs::File::open("/dev/null").unwrap().as_fd()
    ));
    let own = queue::reopen(q.fd.as_fd(), true, libc::O_RDWR).unwrap();
    // Our namespace's queues all live on one filesystem.
    let dev = nix::sys::stat::fstat(q.fd.as_fd()).unwrap().st_dev;
    assert_eq!(queue::own_namespace_dev().unwrap(), dev);
    let st = queue::status(own.as_fd()).unwrap();
    assert_eq!((st.qsize, st.notify_pid), (3, 0));
    let (msgs, read) = queue::drain(own.as_fd(), 32);
    read.unwrap();
    assert_eq!(msgs, [msg(3, "abc")]);
}

#[test]
fn the_kernel_structs_written_into_tasks_have_libc_s_layout() {
    use std::mem::{offset_of, size_of};
    assert_eq!(size_of::<libc::sigevent>(), 64);
    assert_eq!(offset_of!(libc::sigevent, sigev_value), 0);
    assert_eq!(offset_of!(libc::sigevent, sigev_signo), 8);
    assert_eq!(offset_of!(libc::sigevent, sigev_notify), 12);
    assert_eq!(size_of::<libc::siginfo_t>(), 128);
    assert_eq!(offset_of!(libc::siginfo_t, si_code), 8);
    let ev = crate::notify::sigevent_bytes(&NotifyEntry {
        pid: 1,
        sigev_notify: libc::SIGEV_SIGNAL,
        signo: libc::SIGUSR2,
        value: 0x1122_3344_5566_7788,
    });
    assert_eq!(&ev[0..8], &0x1122_3344_5566_7788u64.to_ne_bytes());
    assert_eq!(&ev[8..12], &libc::SIGUSR2.to_ne_bytes());
    assert_eq!(&ev[12..16], &libc::SIGEV_SIGNAL.to_ne_bytes());
    assert!(ev[16..].iter().all(|&b| b == 0));
}
