// A Sarama (github.com/IBM/sarama) round trip against a broker: a
// three-member consumer group settles on the topic's partitions, then a sync
// producer sends records with keys and headers, and the group reads each
// exactly once (nothing was read before the assignment settled, so no
// rebalance can hand a record out twice). tests/test_go_clients.py runs
// it: `sarama-check BOOTSTRAP TOPIC`. It prints "OK" or exits non-zero with
// the first expectation that failed.
package main

import (
	"context"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/IBM/sarama"
)

const records = 300

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, format+"\n", args...)
	os.Exit(1)
}

type member struct {
	mu      *sync.Mutex
	seen    map[string]int
	claimed map[int]int // member index → partitions claimed in its current session
	index   int
}

func (m member) Setup(session sarama.ConsumerGroupSession) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for _, partitions := range session.Claims() {
		n += len(partitions)
	}
	m.claimed[m.index] = n
	return nil
}

func (member) Cleanup(sarama.ConsumerGroupSession) error { return nil }

func (m member) ConsumeClaim(session sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) error {
	for msg := range claim.Messages() {
		m.mu.Lock()
		m.seen[string(msg.Value)]++
		m.mu.Unlock()
		session.MarkMessage(msg, "")
	}
	return nil
}

func main() {
	if len(os.Args) != 3 {
		fail("usage: sarama-check BOOTSTRAP TOPIC")
	}
	brokers, topic := []string{os.Args[1]}, os.Args[2]
	config := sarama.NewConfig()
	config.Version = sarama.V3_6_0_0
	config.Producer.Return.Successes = true
	config.Producer.RequiredAcks = sarama.WaitForAll
	config.Consumer.Offsets.Initial = sarama.OffsetOldest
	config.Consumer.Offsets.AutoCommit.Interval = 100 * time.Millisecond

	var mu sync.Mutex
	seen := map[string]int{}
	claimed := map[int]int{}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var groups []sarama.ConsumerGroup
	var wg sync.WaitGroup
	for i := 0; i < 3; i++ {
		group, err := sarama.NewConsumerGroup(brokers, "sarama-group", config)
		if err != nil {
			fail("group: %v", err)
		}
		groups = append(groups, group)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				if err := group.Consume(ctx, []string{topic}, member{&mu, seen, claimed, i}); err != nil && ctx.Err() == nil {
					fmt.Fprintf(os.Stderr, "consume: %v\n", err)
					time.Sleep(100 * time.Millisecond)
				}
			}
		}()
	}
	for ctx.Err() == nil {
		mu.Lock()
		settled := len(claimed) == 3 && claimed[0]+claimed[1]+claimed[2] == 6 &&
			claimed[0] > 0 && claimed[1] > 0 && claimed[2] > 0
		mu.Unlock()
		if settled {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if ctx.Err() != nil {
		fail("the three members never shared the six partitions: %v", claimed)
	}
	producer, err := sarama.NewSyncProducer(brokers, config)
	if err != nil {
		fail("producer: %v", err)
	}
	for i := 0; i < records; i++ {
		_, _, err := producer.SendMessage(&sarama.ProducerMessage{
			Topic:   topic,
			Key:     sarama.StringEncoder(fmt.Sprintf("k%d", i%10)),
			Value:   sarama.StringEncoder(fmt.Sprintf("v%d", i)),
			Headers: []sarama.RecordHeader{{Key: []byte("n"), Value: []byte(fmt.Sprint(i))}},
		})
		if err != nil {
			fail("send %d: %v", i, err)
		}
	}
	producer.Close()

	for ctx.Err() == nil {
		mu.Lock()
		done := len(seen) == records
		mu.Unlock()
		if done {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	// Give auto-commit a round, then leave.
	time.Sleep(500 * time.Millisecond)
	cancel()
	wg.Wait()
	for _, g := range groups {
		g.Close()
	}
	if len(seen) != records {
		fail("consumed %d of %d distinct records", len(seen), records)
	}
	for v, n := range seen {
		if n != 1 {
			fail("%s read %d times", v, n)
		}
	}
	fmt.Println("OK")
}
