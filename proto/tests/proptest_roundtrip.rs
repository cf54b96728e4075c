//! Property tests: random messages of the main image types survive encode/decode through
//! the prost types, the framing codec and crit JSON (plain and pretty), byte for byte.

use criu_proto::images::*;
use criu_proto::json::{self, DecodeOptions};
use criu_proto::prost_reflect::{DynamicMessage, Kind, MessageDescriptor, Value};
use criu_proto::{ImageKind, framing};
use proptest::prelude::*;
use prost::Message;

/// Small deterministic generator (xorshift64*), seeded by proptest.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn chance(&mut self) -> bool {
        self.next() & 1 == 1
    }
    /// Integers biased towards edge values.
    fn int(&mut self) -> u64 {
        match self.below(6) {
            0 => 0,
            1 => u64::MAX,
            2 => self.below(10),
            3 => 1 << self.below(64),
            _ => self.next(),
        }
    }
}

fn scalar(rng: &mut Rng, kind: &Kind, conv: bool, depth: usize) -> Value {
    match kind {
        Kind::Message(m) => Value::Message(random_message(rng, m, depth + 1)),
        Kind::Enum(e) => {
            let vals: Vec<i32> = e.values().map(|v| v.number()).collect();
            Value::EnumNumber(vals[rng.below(vals.len() as u64) as usize])
        }
        Kind::Bool => Value::Bool(rng.chance()),
        Kind::String => {
            let len = rng.below(12);
            let s: String = (0..len)
                .map(|_| char::from_u32(rng.below(0x3000) as u32 + 1).unwrap_or('x'))
                .collect();
            Value::String(s)
        }
        Kind::Bytes => {
            let len = rng.below(100) as usize;
            let mut b: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            if conv {
                // quopri line breaks are text line breaks, like in crit.
                b.retain(|&c| c != b'\n' && c != b'\r');
            }
            Value::Bytes(b.into())
        }
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => Value::I32(rng.int() as i32),
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => Value::I64(rng.int() as i64),
        Kind::Uint32 | Kind::Fixed32 => Value::U32(rng.int() as u32),
        Kind::Uint64 | Kind::Fixed64 => Value::U64(rng.int()),
        Kind::Float => Value::F32(1.5),
        Kind::Double => Value::F64(2.5),
    }
}

fn random_message(rng: &mut Rng, desc: &MessageDescriptor, depth: usize) -> DynamicMessage {
    let mut msg = DynamicMessage::new(desc.clone());
    for f in desc.fields() {
        let is_msg = matches!(f.kind(), Kind::Message(_));
        let opts = json::field_opts(&f);
        let conv = opts.conv.is_some();
        if f.is_list() {
            if is_msg && depth >= 3 {
                continue;
            }
            let n = if opts.ipadd {
                [0, 1, 4][rng.below(3) as usize]
            } else {
                rng.below(4)
            };
            let items = (0..n)
                .map(|_| scalar(rng, &f.kind(), conv, depth))
                .collect();
            msg.set_field(&f, Value::List(items));
        } else if f.is_required() || (rng.chance() && !(is_msg && depth >= 3)) {
            msg.set_field(&f, scalar(rng, &f.kind(), conv, depth));
        }
    }
    msg
}

fn typed_round_trip<M: Message + Default>(bytes: &[u8]) -> Vec<u8> {
    M::decode(bytes).expect("typed decode").encode_to_vec()
}

fn typed(name: &str, bytes: &[u8]) -> Vec<u8> {
    match name {
        "core_entry" => typed_round_trip::<CoreEntry>(bytes),
        "mm_entry" => typed_round_trip::<MmEntry>(bytes),
        "vma_entry" => typed_round_trip::<VmaEntry>(bytes),
        "pagemap_head" => typed_round_trip::<PagemapHead>(bytes),
        "pagemap_entry" => typed_round_trip::<PagemapEntry>(bytes),
        "pstree_entry" => typed_round_trip::<PstreeEntry>(bytes),
        "inventory_entry" => typed_round_trip::<InventoryEntry>(bytes),
        "fdinfo_entry" => typed_round_trip::<FdinfoEntry>(bytes),
        "file_entry" => typed_round_trip::<FileEntry>(bytes),
        "fs_entry" => typed_round_trip::<FsEntry>(bytes),
        "task_kobj_ids_entry" => typed_round_trip::<TaskKobjIdsEntry>(bytes),
        "sa_entry" => typed_round_trip::<SaEntry>(bytes),
        "itimer_entry" => typed_round_trip::<ItimerEntry>(bytes),
        "posix_timer_entry" => typed_round_trip::<PosixTimerEntry>(bytes),
        "rseq_entry" => typed_round_trip::<RseqEntry>(bytes),
        "stats_entry" => typed_round_trip::<StatsEntry>(bytes),
        "pipe_data_entry" => typed_round_trip::<PipeDataEntry>(bytes),
        "creds_entry" => typed_round_trip::<CredsEntry>(bytes),
        "rlimit_entry" => typed_round_trip::<RlimitEntry>(bytes),
        other => panic!("no typed mapping for {other}"),
    }
}

fn check(name: &str, seed: u64) {
    let desc = criu_proto::descriptor_pool()
        .get_message_by_name(name)
        .unwrap();
    let mut rng = Rng(seed | 1);
    let msg = random_message(&mut rng, &desc, 0);
    let bytes = msg.encode_to_vec();
    assert_eq!(typed(name, &bytes), bytes, "{name}: prost types");
    for pretty in [false, true] {
        let j = json::message_to_json(&msg, pretty);
        let back = json::json_to_message(&desc, &j, name)
            .unwrap_or_else(|e| panic!("{name} pretty={pretty}: {e}\n{j}"));
        assert_eq!(
            back.encode_to_vec(),
            bytes,
            "{name} pretty={pretty}: JSON\n{j}"
        );
    }
}

/// A whole image of `kind` with random entries through framing and JSON.
fn check_image(kind: ImageKind, seed: u64) {
    let pool = criu_proto::descriptor_pool();
    let mut rng = Rng(seed | 1);
    let n = if kind.single_entry() {
        1
    } else {
        1 + rng.below(4) as usize
    };
    let mut bytes = framing::header_bytes(kind).unwrap();
    for i in 0..n {
        let desc = pool
            .get_message_by_name(kind.entry_message_name(i))
            .unwrap();
        framing::frame_message(&mut bytes, &random_message(&mut rng, &desc, 0)).unwrap();
    }
    let img = framing::parse_as(kind, &bytes).unwrap();
    assert_eq!(img.entries.len(), n);
    assert_eq!(img.encode().unwrap(), bytes);
    for pretty in [false, true] {
        let doc = json::decode_as(
            kind,
            &bytes,
            DecodeOptions {
                pretty,
                no_payload: false,
            },
        )
        .unwrap();
        assert_eq!(json::encode(&doc).unwrap(), bytes, "{kind} pretty={pretty}");
    }
}

const MESSAGES: &[&str] = &[
    "core_entry",
    "mm_entry",
    "vma_entry",
    "pagemap_head",
    "pagemap_entry",
    "pstree_entry",
    "inventory_entry",
    "fdinfo_entry",
    "file_entry",
    "fs_entry",
    "task_kobj_ids_entry",
    "sa_entry",
    "itimer_entry",
    "posix_timer_entry",
    "rseq_entry",
    "stats_entry",
    "pipe_data_entry",
    "creds_entry",
    "rlimit_entry",
];

const IMAGES: &[ImageKind] = &[
    ImageKind::Core,
    ImageKind::Mm,
    ImageKind::Vmas,
    ImageKind::Pagemap,
    ImageKind::Pstree,
    ImageKind::Inventory,
    ImageKind::Fdinfo,
    ImageKind::Files,
    ImageKind::Fs,
    ImageKind::Ids,
    ImageKind::Sigact,
    ImageKind::Itimers,
    ImageKind::PosixTimers,
    ImageKind::Stats,
    ImageKind::Creds,
    ImageKind::Rlimit,
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn messages_round_trip(seed in any::<u64>(), which in 0..MESSAGES.len()) {
        check(MESSAGES[which], seed);
    }

    #[test]
    fn images_round_trip(seed in any::<u64>(), which in 0..IMAGES.len()) {
        check_image(IMAGES[which], seed);
    }
}

#[test]
fn every_listed_message_many_seeds() {
    for name in MESSAGES {
        for seed in 0..40u64 {
            check(name, seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) + 1);
        }
    }
}
