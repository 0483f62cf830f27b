//! The query path from bytes to answer: any datagram or TCP message, from any
//! source, at any time. The first two bytes choose the transport, the source and
//! the clock; the rest is the message. Every answer must parse with hickory-proto,
//! keep the query's ID and question, and fit the size the client can take.
#![no_main]

use std::net::IpAddr;

use gslb::dns::engine::Transport;
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

const SOURCES: [&str; 6] = [
    "192.0.2.1",
    "10.1.2.3",
    "100.64.9.9",
    "2001:db8:ff::1",
    "::ffff:10.1.0.1",
    "127.0.0.1",
];

fuzz_target!(|data: &[u8]| {
    let Some((&ctl, msg)) = data.split_first() else {
        return;
    };
    let transport = if ctl & 1 == 0 {
        Transport::Udp
    } else {
        Transport::Tcp
    };
    let src: IpAddr = SOURCES[usize::from(ctl >> 1) % SOURCES.len()]
        .parse()
        .unwrap();
    // Around the time the sample cookies are made for, a few seconds apart, so
    // that the rate limiter's buckets fill and empty.
    let now_ms = 1_750_000_000_000 + u64::from(ctl >> 4) * 700;
    common::answer_and_check(msg, src, transport, now_ms);
});
