//! EDNS options: the input is the RDATA of the OPT record of a well-formed query
//! for a name that has answers (so every option reaches the engine), plus the
//! readers of ECS and COOKIE on their own. Invariants: a valid ECS option is
//! echoed with its family, source prefix and address; a COOKIE option is answered
//! with the client cookie and a 16-byte server cookie, or the query is FORMERR.
#![no_main]

use gslb::dns::engine::Transport;
use gslb::dns::wire;
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let Some((&ctl, opts)) = data.split_first() else {
        return;
    };
    // The readers alone: never panic; what they accept re-encodes to the input.
    if let Some(e) = wire::read_ecs(opts) {
        let mut back = e.family.to_be_bytes().to_vec();
        back.extend_from_slice(&[e.source, e.scope]);
        back.extend_from_slice(&e.addr[..usize::from(e.addr_len)]);
        assert_eq!(back, opts);
    }
    if let Some(c) = wire::read_cookie(opts) {
        assert_eq!(&c.bytes[..usize::from(c.len)], opts);
        assert!(c.server().is_empty() || c.server().len() >= 8);
    }
    let names: [&[u8]; 4] = [
        b"\x03loc\x01f\x07example\x00",
        b"\x03app\x01f\x07example\x00",
        b"\x03big\x01f\x07example\x00",
        b"\x04down\x01f\x07example\x00",
    ];
    let name = names[usize::from(ctl) % names.len()];
    let Ok(rdlen) = u16::try_from(opts.len()) else {
        return;
    };
    let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 1];
    q.extend_from_slice(name);
    q.extend_from_slice(&[0, if ctl & 4 == 0 { 1 } else { 28 }, 0, 1]);
    // OPT: root owner, type 41, payload 1232, rcode/version/flags 0.
    q.extend_from_slice(&[0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0]);
    q.extend_from_slice(&rdlen.to_be_bytes());
    q.extend_from_slice(opts);
    let transport = if ctl & 8 == 0 {
        Transport::Udp
    } else {
        Transport::Tcp
    };
    let src = if ctl & 16 == 0 {
        "10.1.2.3"
    } else {
        "2001:db8:ff::7"
    };
    common::answer_and_check(&q, src.parse().unwrap(), transport, 1_750_000_000_000);
});
