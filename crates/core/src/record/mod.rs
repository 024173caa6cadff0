//! RecordBatch v2: the on-wire and on-disk unit of data. Batches are stored
//! byte for byte as producers send them; the broker only patches the fields
//! the CRC does not cover (base offset, leader epoch).

mod batch;
pub mod builder;
pub mod control;

pub use batch::*;
