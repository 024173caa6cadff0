//! `sluice cluster reassign | reassignments | decommission`: moving
//! partitions between brokers (after kafka-reassign-partitions.sh), and
//! retiring a broker: every replica it holds is moved to the least-loaded
//! other broker, then it is unregistered.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::Context;
use kafka_protocol::messages::alter_partition_reassignments_request::{ReassignablePartition, ReassignableTopic};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

use super::{Format, check, print_table};
use crate::client::Client;

/// How often `decommission` looks whether the moves have finished.
const POLL_INTERVAL: Duration = Duration::from_millis(500);

/// One partition's move: (topic, partition, target replicas; None cancels).
pub type Move = (String, i32, Option<Vec<i32>>);

/// Sends the moves; fails naming every partition the cluster refused.
pub fn submit(client: &mut Client, moves: &[Move]) -> anyhow::Result<()> {
    let mut topics: BTreeMap<&str, Vec<ReassignablePartition>> = BTreeMap::new();
    for (topic, partition, target) in moves {
        topics.entry(topic).or_default().push(
            ReassignablePartition::default()
                .with_partition_index(*partition)
                .with_replicas(target.as_ref().map(|t| t.iter().map(|b| BrokerId(*b)).collect())),
        );
    }
    let request = AlterPartitionReassignmentsRequest::default()
        .with_timeout_ms(30_000)
        .with_topics(
            topics
                .into_iter()
                .map(|(name, partitions)| {
                    ReassignableTopic::default()
                        .with_name(TopicName(StrBytes::from_string(name.to_string())))
                        .with_partitions(partitions)
                })
                .collect(),
        );
    let response = client.send(&request, 0)?;
    check(response.error_code, response.error_message.as_deref(), "reassignment")?;
    let mut refused = Vec::new();
    for topic in &response.responses {
        for p in &topic.partitions {
            let what = format!("{}-{}", topic.name.0, p.partition_index);
            if let Err(e) = check(p.error_code, p.error_message.as_deref(), &what) {
                refused.push(e.to_string());
            }
        }
    }
    anyhow::ensure!(refused.is_empty(), "{}", refused.join("\n"));
    Ok(())
}

/// A partition being moved: topic, partition, replicas, adding, removing.
pub type Ongoing = (String, i32, Vec<i32>, Vec<i32>, Vec<i32>);

/// The partitions being moved.
pub fn ongoing(client: &mut Client) -> anyhow::Result<Vec<Ongoing>> {
    let response = client.send(&ListPartitionReassignmentsRequest::default().with_timeout_ms(30_000), 0)?;
    check(
        response.error_code,
        response.error_message.as_deref(),
        "listing reassignments",
    )?;
    let ids = |v: &[BrokerId]| v.iter().map(|b| b.0).collect::<Vec<_>>();
    Ok(response
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(|p| {
                (
                    t.name.0.to_string(),
                    p.partition_index,
                    ids(&p.replicas),
                    ids(&p.adding_replicas),
                    ids(&p.removing_replicas),
                )
            })
        })
        .collect())
}

pub fn print_ongoing(client: &mut Client, format: Format) -> anyhow::Result<()> {
    let moves = ongoing(client)?;
    let ids = |v: &[i32]| v.iter().map(i32::to_string).collect::<Vec<_>>().join(",");
    match format {
        Format::Json => {
            let list: Vec<_> = moves
                .iter()
                .map(|(t, p, r, a, d)| {
                    serde_json::json!({"topic": t, "partition": p, "replicas": r, "adding": a, "removing": d})
                })
                .collect();
            println!("{}", serde_json::to_string_pretty(&list)?);
        }
        Format::Table if moves.is_empty() => println!("No reassignment in progress."),
        Format::Table => {
            let rows: Vec<Vec<String>> = moves
                .iter()
                .map(|(t, p, r, a, d)| vec![t.clone(), p.to_string(), ids(r), ids(a), ids(d)])
                .collect();
            print_table(&["TOPIC", "PARTITION", "REPLICAS", "ADDING", "REMOVING"], &rows);
        }
    }
    Ok(())
}

/// Waits until no reassignment is in progress, or fails at `timeout`.
pub fn wait_until_done(client: &mut Client, timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    // Bounded by the deadline.
    loop {
        let left = ongoing(client)?.len();
        if left == 0 {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{left} partition(s) still moving after {} s; `sluice cluster reassignments` shows them",
            timeout.as_secs()
        );
        std::thread::sleep(POLL_INTERVAL);
    }
}

/// Moves every replica off `broker`, waits for the moves, then unregisters it.
pub fn decommission(client: &mut Client, broker: i32, timeout: Duration) -> anyhow::Result<()> {
    // The broker may be down (and so not listed): its replicas move all the same.
    let metadata = super::topic::metadata(client, None)?;
    let others: Vec<i32> = metadata
        .brokers
        .iter()
        .map(|b| b.node_id.0)
        .filter(|b| *b != broker)
        .collect();
    let partitions: Vec<(String, i32, Vec<i32>)> = metadata
        .topics
        .iter()
        .flat_map(|t| {
            let name = t.name.as_ref().map_or_else(String::new, |n| n.0.to_string());
            t.partitions.iter().map(move |p| {
                (
                    name.clone(),
                    p.partition_index,
                    p.replica_nodes.iter().map(|b| b.0).collect(),
                )
            })
        })
        .collect();
    let moves = plan_decommission(broker, &others, &partitions)?;
    println!("Moving {} replica(s) off broker {broker}.", moves.len());
    if !moves.is_empty() {
        submit(client, &moves)?;
        wait_until_done(client, timeout)?;
    }
    let response = client.send(&UnregisterBrokerRequest::default().with_broker_id(BrokerId(broker)), 0)?;
    check(
        response.error_code,
        response.error_message.as_deref(),
        &format!("unregistering broker {broker}"),
    )?;
    println!("Broker {broker} holds no replica and is unregistered; stop its process.");
    Ok(())
}

/// Each replica on `broker` goes, in its place in the replica list, to the
/// other broker holding the fewest replicas that does not hold this partition.
fn plan_decommission(broker: i32, others: &[i32], partitions: &[(String, i32, Vec<i32>)]) -> anyhow::Result<Vec<Move>> {
    let mut load: BTreeMap<i32, usize> = others.iter().map(|b| (*b, 0)).collect();
    for (_, _, replicas) in partitions {
        for b in replicas {
            if let Some(n) = load.get_mut(b) {
                *n += 1;
            }
        }
    }
    let mut moves = Vec::new();
    for (topic, partition, replicas) in partitions.iter().filter(|(_, _, r)| r.contains(&broker)) {
        let to = load
            .iter()
            .filter(|(b, _)| !replicas.contains(b))
            .min_by_key(|(b, n)| (**n, **b))
            .map(|(b, _)| *b)
            .with_context(|| {
                format!("{topic}-{partition} cannot leave broker {broker}: every other broker already holds a replica")
            })?;
        *load.get_mut(&to).expect("a known broker") += 1;
        let target = replicas.iter().map(|b| if *b == broker { to } else { *b }).collect();
        moves.push((topic.clone(), *partition, Some(target)));
    }
    Ok(moves)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decommission_spreads_the_replicas_and_keeps_their_places() {
        let partitions = vec![
            ("a".to_string(), 0, vec![3, 1]),
            ("a".to_string(), 1, vec![1, 2]),
            ("a".to_string(), 2, vec![2, 3]),
            ("b".to_string(), 0, vec![3, 4]),
        ];
        let moves = plan_decommission(3, &[1, 2, 4], &partitions).unwrap();
        assert_eq!(
            moves,
            vec![
                ("a".to_string(), 0, Some(vec![4, 1])),
                ("a".to_string(), 2, Some(vec![2, 1])),
                ("b".to_string(), 0, Some(vec![2, 4])),
            ]
        );
        let full = vec![("c".to_string(), 0, vec![1, 2, 3])];
        assert!(plan_decommission(3, &[1, 2], &full).is_err(), "nowhere to go");
    }
}
