//! Turns: a transactional producer's Produce requests append in the order
//! they arrived on this shard.
//!
//! Requests of one connection are handled concurrently (`net::connection`),
//! and a batch that opens its producer's transaction on a partition waits
//! for the coordinator before it is appended (`produce::append_first_batches`).
//! Without turns, the producer's next request, pipelined behind it, waits
//! for the coordinator too and can be appended first: its later sequence
//! numbers land before the earlier ones, and the earlier batch is then
//! refused as OUT_OF_ORDER_SEQUENCE_NUMBER (Kafka reads one request per
//! connection at a time, so its clients rely on this order). A turn lasts
//! until the request's batches are written, not while acks=all waits.
//!
//! Shard-local: a producer's requests come over one connection, so to one
//! shard.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};

/// Tickets waiting per producer. One connection has at most 128 requests
/// in flight; more than this many means several connections share the
/// producer id (hostile, or a misconfigured fleet), whose requests then
/// go without turns, as before turns existed, rather than grow the queue.
const TICKETS_PER_PRODUCER_MAX: usize = 1024;

#[derive(Default)]
struct Turns {
    /// Per producer id: the next ticket to hand out, and the tickets taken
    /// and not yet passed, oldest (whose turn it is) first.
    producers: RefCell<HashMap<i64, (u64, VecDeque<u64>)>>,
    passed: event_listener::Event,
}

thread_local! {
    static TURNS: Turns = Turns::default();
}

/// A place in `producer_id`'s queue; passing it on is dropping it, also
/// when the request is cancelled before its turn came.
pub struct Turn {
    producer_id: i64,
    ticket: u64,
}

/// Takes the next place in `producer_id`'s queue (`None` if it is full).
/// Synchronous, so a request takes its place before its handler first
/// yields: places follow the order in which the handlers started, which is
/// the arrival order.
pub fn take(producer_id: i64) -> Option<Turn> {
    TURNS.with(|turns| {
        let mut producers = turns.producers.borrow_mut();
        let (next, queue) = producers.entry(producer_id).or_default();
        if queue.len() >= TICKETS_PER_PRODUCER_MAX {
            return None;
        }
        let ticket = *next;
        *next += 1;
        queue.push_back(ticket);
        Some(Turn { producer_id, ticket })
    })
}

impl Turn {
    fn is_first(&self) -> bool {
        TURNS.with(|turns| {
            let producers = turns.producers.borrow();
            let (_, queue) = producers.get(&self.producer_id).expect("a taken turn is queued");
            queue.front() == Some(&self.ticket)
        })
    }

    /// Resolves once every request of the producer that arrived before this
    /// one has passed its turn.
    pub async fn wait(&self) {
        // Bounded: each wake follows a turn passed, and the queue ahead is finite.
        loop {
            if self.is_first() {
                return;
            }
            let listener = TURNS.with(|turns| turns.passed.listen());
            if self.is_first() {
                return;
            }
            listener.await;
        }
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        TURNS.with(|turns| {
            let mut producers = turns.producers.borrow_mut();
            let (_, queue) = producers.get_mut(&self.producer_id).expect("a taken turn is queued");
            let at = queue
                .iter()
                .position(|t| *t == self.ticket)
                .expect("a turn is passed once");
            queue.remove(at);
            if queue.is_empty() {
                producers.remove(&self.producer_id);
            }
            if at == 0 {
                turns.passed.notify(usize::MAX);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;
    use std::pin::pin;
    use std::task::{Context, Poll, Waker};

    fn ready(turn: &Turn) -> bool {
        let mut waiting = pin!(turn.wait());
        matches!(
            waiting.as_mut().poll(&mut Context::from_waker(Waker::noop())),
            Poll::Ready(())
        )
    }

    #[test]
    fn turns_come_in_the_order_taken_and_a_cancelled_one_is_skipped() {
        let first = take(7).unwrap();
        let second = take(7).unwrap();
        let third = take(7).unwrap();
        let other = take(8).unwrap();
        assert!(
            ready(&first) && ready(&other),
            "the oldest of each producer goes at once"
        );
        assert!(!ready(&second) && !ready(&third));
        drop(second); // cancelled while waiting
        assert!(!ready(&third), "still behind the first");
        drop(first);
        assert!(ready(&third));
        drop(third);
        drop(other);
        TURNS.with(|t| assert!(t.producers.borrow().is_empty(), "no state outlives the requests"));
    }

    #[test]
    fn a_full_queue_hands_out_no_turn() {
        let held: Vec<Turn> = (0..TICKETS_PER_PRODUCER_MAX).map(|_| take(9).unwrap()).collect();
        assert!(take(9).is_none());
        drop(held);
        assert!(take(9).is_some());
    }
}
