//! The records of `__consumer_offsets`, in Kafka's own binary format, so that
//! Kafka's tooling could read them: an offset commit is keyed by (group, topic,
//! partition), a group's membership by the group; a null value deletes the key.

use bytes::{BufMut, Bytes};

use crate::wire::{Malformed, Reader};

const OFFSET_KEY_VERSION: i16 = 1;
const GROUP_KEY_VERSION: i16 = 2;
const OFFSET_VALUE_VERSION: i16 = 3;
const GROUP_VALUE_VERSION: i16 = 3;

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Key {
    Offset {
        group: String,
        topic: String,
        partition: i32,
    },
    Group {
        group: String,
    },
}

impl Key {
    pub fn group(&self) -> &str {
        match self {
            Key::Offset { group, .. } | Key::Group { group } => group,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetValue {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: String,
    pub commit_timestamp_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberValue {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub rebalance_timeout_ms: i32,
    pub session_timeout_ms: i32,
    pub subscription: Bytes,
    pub assignment: Bytes,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupValue {
    pub protocol_type: String,
    pub generation: i32,
    pub protocol: Option<String>,
    pub leader: Option<String>,
    pub state_timestamp_ms: i64,
    pub members: Vec<MemberValue>,
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    // Paired with the checks where names enter (`model::NAME_BYTES_MAX`):
    // an accepted request's record always encodes.
    let len = i16::try_from(s.len()).expect("names are bounded by NAME_BYTES_MAX where they enter");
    out.put_i16(len);
    out.put_slice(s.as_bytes());
}

fn put_nullable_str(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        Some(s) => put_str(out, s),
        None => out.put_i16(-1),
    }
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.put_i32(b.len() as i32);
    out.put_slice(b);
}

pub fn encode_key(key: &Key) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    match key {
        Key::Offset {
            group,
            topic,
            partition,
        } => {
            out.put_i16(OFFSET_KEY_VERSION);
            put_str(&mut out, group);
            put_str(&mut out, topic);
            out.put_i32(*partition);
        }
        Key::Group { group } => {
            out.put_i16(GROUP_KEY_VERSION);
            put_str(&mut out, group);
        }
    }
    out
}

pub fn encode_offset(value: &OffsetValue) -> Vec<u8> {
    let mut out = Vec::with_capacity(32 + value.metadata.len());
    out.put_i16(OFFSET_VALUE_VERSION);
    out.put_i64(value.offset);
    out.put_i32(value.leader_epoch);
    put_str(&mut out, &value.metadata);
    out.put_i64(value.commit_timestamp_ms);
    out
}

pub fn encode_group(value: &GroupValue) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    out.put_i16(GROUP_VALUE_VERSION);
    put_str(&mut out, &value.protocol_type);
    out.put_i32(value.generation);
    put_nullable_str(&mut out, value.protocol.as_deref());
    put_nullable_str(&mut out, value.leader.as_deref());
    out.put_i64(value.state_timestamp_ms);
    out.put_i32(value.members.len() as i32);
    for m in &value.members {
        put_str(&mut out, &m.member_id);
        put_nullable_str(&mut out, m.group_instance_id.as_deref());
        put_str(&mut out, &m.client_id);
        put_str(&mut out, &m.client_host);
        out.put_i32(m.rebalance_timeout_ms);
        out.put_i32(m.session_timeout_ms);
        put_bytes(&mut out, &m.subscription);
        put_bytes(&mut out, &m.assignment);
    }
    out
}

pub fn decode_key(bytes: &[u8]) -> Result<Key, Malformed> {
    let mut r = Reader::new(bytes);
    match r.i16()? {
        0 | 1 => Ok(Key::Offset {
            group: r.str(false)?.to_string(),
            topic: r.str(false)?.to_string(),
            partition: r.i32()?,
        }),
        2 => Ok(Key::Group {
            group: r.str(false)?.to_string(),
        }),
        _ => Err(Malformed("unknown __consumer_offsets key version")),
    }
}

/// Reads offset values of versions 1 and 3 (Kafka writes 3; 1 adds an expiry time).
pub fn decode_offset(bytes: &[u8]) -> Result<OffsetValue, Malformed> {
    let mut r = Reader::new(bytes);
    let version = r.i16()?;
    if !(1..=3).contains(&version) {
        return Err(Malformed("unknown offset value version"));
    }
    let offset = r.i64()?;
    let leader_epoch = if version >= 3 { r.i32()? } else { -1 };
    let metadata = r.str(false)?.to_string();
    let commit_timestamp_ms = r.i64()?;
    Ok(OffsetValue {
        offset,
        leader_epoch,
        metadata,
        commit_timestamp_ms,
    })
}

pub fn decode_group(bytes: &[u8]) -> Result<GroupValue, Malformed> {
    let mut r = Reader::new(bytes);
    if r.i16()? != GROUP_VALUE_VERSION {
        return Err(Malformed("unknown group value version"));
    }
    let protocol_type = r.str(false)?.to_string();
    let generation = r.i32()?;
    let protocol = r.nullable_str(false)?.map(str::to_string);
    let leader = r.nullable_str(false)?.map(str::to_string);
    let state_timestamp_ms = r.i64()?;
    let count = r.array_len(false)?;
    let mut members = Vec::with_capacity(count.min(1024));
    for _ in 0..count {
        members.push(MemberValue {
            member_id: r.str(false)?.to_string(),
            group_instance_id: r.nullable_str(false)?.map(str::to_string),
            client_id: r.str(false)?.to_string(),
            client_host: r.str(false)?.to_string(),
            rebalance_timeout_ms: r.i32()?,
            session_timeout_ms: r.i32()?,
            subscription: Bytes::copy_from_slice(r.bytes()?),
            assignment: Bytes::copy_from_slice(r.bytes()?),
        });
    }
    Ok(GroupValue {
        protocol_type,
        generation,
        protocol,
        leader,
        state_timestamp_ms,
        members,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_values_round_trip() {
        let keys = [
            Key::Offset {
                group: "g".into(),
                topic: "t".into(),
                partition: 5,
            },
            Key::Group { group: "g".into() },
        ];
        for key in keys {
            assert_eq!(decode_key(&encode_key(&key)).unwrap(), key);
        }
        let offset = OffsetValue {
            offset: 42,
            leader_epoch: 3,
            metadata: "meta".into(),
            commit_timestamp_ms: 1_700_000_000_000,
        };
        assert_eq!(decode_offset(&encode_offset(&offset)).unwrap(), offset);
        let group = GroupValue {
            protocol_type: "consumer".into(),
            generation: 7,
            protocol: Some("range".into()),
            leader: Some("m1".into()),
            state_timestamp_ms: 9,
            members: vec![MemberValue {
                member_id: "m1".into(),
                group_instance_id: Some("i1".into()),
                client_id: "c".into(),
                client_host: "/127.0.0.1".into(),
                rebalance_timeout_ms: 300_000,
                session_timeout_ms: 45_000,
                subscription: Bytes::from_static(b"sub"),
                assignment: Bytes::from_static(b"asg"),
            }],
        };
        assert_eq!(decode_group(&encode_group(&group)).unwrap(), group);
    }

    #[test]
    fn kafka_offset_key_layout() {
        // Kafka 3.x: version 1, group "g", topic "t", partition 2.
        let bytes = [0, 1, 0, 1, b'g', 0, 1, b't', 0, 0, 0, 2];
        assert_eq!(encode_key(&decode_key(&bytes).unwrap()), bytes);
    }

    proptest::proptest! {
        #[test]
        fn decoders_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..128)) {
            let _ = decode_key(&bytes);
            let _ = decode_offset(&bytes);
            let _ = decode_group(&bytes);
        }
    }
}
