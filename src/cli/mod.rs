//! The `sluice` tools besides `serve`: each talks to a running broker over
//! the Kafka protocol through `crate::client`, as any Kafka client would.

pub mod groups;
