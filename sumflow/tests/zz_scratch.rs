#![allow(clippy::unwrap_used)]
mod common;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scratch_drop_time() {
    let broker = common::Tansu::start().await;
    broker.create_topic("sums", 3).await;
    for group in [true, false] {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", broker.brokers())
            .set("enable.auto.commit", "false")
            .set("debug", "cgrp");
        if group {
            c.set("group.id", "g");
        }
        let consumer: StreamConsumer = match c.create() {
            Ok(c) => c,
            Err(e) => {
                eprintln!("create failed {e}");
                continue;
            }
        };
        let md = consumer
            .fetch_metadata(Some("sums"), Duration::from_secs(5))
            .unwrap();
        eprintln!("partitions {}", md.topics()[0].partitions().len());
        let mut tpl = TopicPartitionList::new();
        for p in 0..3 {
            tpl.add_partition_offset("sums", p, Offset::Beginning)
                .unwrap();
        }
        let r = consumer.incremental_assign(&tpl);
        eprintln!("group={group} assign {r:?}");
        let _ = tokio::time::timeout(Duration::from_secs(2), consumer.recv()).await;
        let t = Instant::now();
        drop(consumer);
        eprintln!("group={group} drop took {:?}", t.elapsed());
    }
}
