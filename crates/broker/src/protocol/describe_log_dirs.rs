//! DescribeLogDirs: the one log directory and the size of every partition in it.

use bytes::Bytes;
use kafka_protocol::messages::describe_log_dirs_response::{
    DescribeLogDirsPartition, DescribeLogDirsResult, DescribeLogDirsTopic,
};
use kafka_protocol::messages::{DescribeLogDirsRequest, DescribeLogDirsResponse, TopicName};

use super::{Malformed, RequestHeader, Response, decode, encode_response, str_bytes};
use crate::cluster::shard::{self, local};

pub async fn handle(header: &RequestHeader, body: Bytes) -> Result<Response, Malformed> {
    let request: DescribeLogDirsRequest = decode(body, header.api_version)?;
    let wanted = |topic: &str, partition: i32| match &request.topics {
        None => true,
        Some(topics) => topics
            .iter()
            .any(|t| t.topic.0.as_str() == topic && t.partitions.contains(&partition)),
    };
    let mut sizes = shard::partition_sizes().await;
    sizes.retain(|(tp, _)| wanted(&tp.topic, tp.partition));
    sizes.sort();
    let mut topics: Vec<DescribeLogDirsTopic> = Vec::new();
    for (tp, bytes) in sizes {
        let partition = DescribeLogDirsPartition::default()
            .with_partition_index(tp.partition)
            .with_partition_size(bytes as i64);
        match topics.last_mut() {
            Some(last) if last.name.0.as_str() == tp.topic => last.partitions.push(partition),
            _ => topics.push(
                DescribeLogDirsTopic::default()
                    .with_name(TopicName(str_bytes(tp.topic)))
                    .with_partitions(vec![partition]),
            ),
        }
    }
    let data_dir = local().config.data_dir.clone();
    let (total_bytes, usable_bytes) = disk_space(&data_dir).unwrap_or((-1, -1));
    let mut result = DescribeLogDirsResult::default()
        .with_log_dir(str_bytes(data_dir.display().to_string()))
        .with_topics(topics);
    if header.api_version >= 4 {
        result.total_bytes = total_bytes;
        result.usable_bytes = usable_bytes;
    }
    encode_response(header, &DescribeLogDirsResponse::default().with_results(vec![result]))
}

/// Total and available bytes of the filesystem holding `dir` (statvfs).
fn disk_space(dir: &std::path::Path) -> Option<(i64, i64)> {
    let path = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()).ok()?;
    // SAFETY: statvfs fills the zeroed struct we own; the path is NUL-terminated.
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(path.as_ptr(), &mut stat) } != 0 {
        return None;
    }
    let block = stat.f_frsize as i64;
    Some((stat.f_blocks as i64 * block, stat.f_bavail as i64 * block))
}
