//! KIP-430: a client may ask which operations it is allowed on a resource
//! (Metadata, DescribeCluster, DescribeGroups, ConsumerGroupDescribe). Sluice
//! has no authorizer yet, so, as Kafka without one, every operation the
//! resource type supports is allowed. A client that does not ask gets
//! Kafka's "omitted", INT32_MIN, which no client decodes as operations.

/// "Not requested": Kafka's `Integer.MIN_VALUE`.
pub const OMITTED: i32 = i32::MIN;

/// Kafka's `AclOperation` codes, each a bit of the field.
#[derive(Clone, Copy)]
#[repr(u8)]
enum Operation {
    Read = 3,
    Write = 4,
    Create = 5,
    Delete = 6,
    Alter = 7,
    Describe = 8,
    ClusterAction = 9,
    DescribeConfigs = 10,
    AlterConfigs = 11,
    IdempotentWrite = 12,
}

use Operation::*;

/// The operations Kafka supports on each resource type (`AclEntry.supportedOperations`).
const TOPIC: &[Operation] = &[
    Read,
    Write,
    Create,
    Delete,
    Alter,
    Describe,
    DescribeConfigs,
    AlterConfigs,
];
const CLUSTER: &[Operation] = &[
    Create,
    ClusterAction,
    DescribeConfigs,
    AlterConfigs,
    IdempotentWrite,
    Alter,
    Describe,
];
const GROUP: &[Operation] = &[Read, Describe, Delete, DescribeConfigs, AlterConfigs];

const fn bits(operations: &[Operation]) -> i32 {
    let mut field = 0;
    let mut i = 0;
    // Bounded by the slice.
    while i < operations.len() {
        field |= 1 << operations[i] as u8;
        i += 1;
    }
    field
}

fn answer(asked: bool, operations: &[Operation]) -> i32 {
    if asked { bits(operations) } else { OMITTED }
}

pub fn topic(asked: bool) -> i32 {
    answer(asked, TOPIC)
}

pub fn cluster(asked: bool) -> i32 {
    answer(asked, CLUSTER)
}

pub fn group(asked: bool) -> i32 {
    answer(asked, GROUP)
}
